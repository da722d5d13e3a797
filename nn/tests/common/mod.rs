//! Reference train steps built straight from IR ops, with no layer code in between: the
//! foundation's proof that one graph holds forward, loss, backward and the optimizer update.
//! Also the small Keras-style classifiers the model-level tests train, and temporary
//! directories for the tests that write files.

#![allow(dead_code)]

use hasten_nn::prelude::{Activation, Adam, Dense, Loss, Metric, Sequential};
use hasten_tensor::{grad, DType, Graph, HostTensor, NodeId, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

/// A fresh, empty directory under the system temp dir, unique per process, removed again on
/// drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// The directory `hasten-{suite}-{process id}-{name}`, emptied if it exists.
    pub fn new(suite: &str, name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("hasten-{suite}-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The path of `name` inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `bytes` to the file `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, bytes).expect("write test file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Compiles `model` as a classifier of integer labels: Adam at `lr`, sparse categorical
/// cross-entropy, and accuracy as a metric.
pub fn compile_classifier(mut model: Sequential, lr: f32) -> Sequential {
    model
        .compile(
            Adam::new(lr),
            Loss::sparse_categorical_crossentropy(),
            &[Metric::Accuracy],
        )
        .unwrap();
    model
}

/// A small classifier of `features` inputs: `Dense(hidden, relu)` then `Dense(classes,
/// softmax)`, added to `model` (which carries the seed) and compiled by
/// [`compile_classifier`].
pub fn mlp_classifier(
    model: Sequential,
    features: usize,
    hidden: usize,
    classes: usize,
    lr: f32,
) -> Sequential {
    let model = model
        .with(
            Dense::new(hidden)
                .activation(Activation::Relu)
                .input_shape([features]),
        )
        .with(Dense::new(classes).activation(Activation::Softmax));
    compile_classifier(model, lr)
}

/// A train-step graph and the initial values of its state.
pub struct TrainStep {
    /// Inputs `x` and `y`; outputs `loss` and `accuracy`; state updated in place.
    pub graph: Graph,
    /// Initial weights (optimizer slots start at zero).
    pub init: Vec<(String, HostTensor)>,
}

/// Keras's glorot-uniform initialisation.
pub fn glorot(rng: &mut StdRng, dims: &[usize], fan_in: usize, fan_out: usize) -> HostTensor {
    let limit = (6.0 / (fan_in + fan_out) as f32).sqrt();
    let n: usize = dims.iter().product();
    HostTensor::f32(
        dims.to_vec(),
        (0..n).map(|_| rng.random_range(-limit..limit)).collect(),
    )
    .unwrap()
}

/// Mean sparse softmax cross-entropy of `logits` `[B, C]` against `i32` labels `[B]`, and the
/// batch accuracy.
pub fn softmax_cross_entropy(
    g: &mut Graph,
    logits: NodeId,
    labels: NodeId,
    classes: usize,
) -> Result<(NodeId, NodeId)> {
    let log_probs = g.log_softmax(logits)?;
    let one_hot = g.one_hot(labels, classes)?;
    let picked = g.mul(one_hot, log_probs)?;
    let per_sample = g.sum(picked, &[1], false)?;
    let mean = g.mean_all(per_sample)?;
    let loss = g.neg(mean)?;
    let predicted = g.argmax(logits, 1)?;
    let hit = g.compare(hasten_tensor::ir::CompareOp::Eq, predicted, labels)?;
    let hit = g.cast(hit, DType::F32)?;
    let accuracy = g.mean_all(hit)?;
    Ok((loss, accuracy))
}

/// Appends Adam (Keras's formulation: `lr_t = lr·√(1-β₂ᵗ)/(1-β₁ᵗ)`, `ε` outside the root) for
/// each parameter, with its moments and the step count as state.
pub fn adam(g: &mut Graph, params: &[NodeId], grads: &[NodeId], lr: f32) -> Result<()> {
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-7f32);
    let t = g.parameter("adam/iterations", [0usize; 0], DType::F32)?;
    let one = g.scalar(1.0);
    let t1 = g.add(t, one)?;
    g.update(t, t1)?;
    // β^t = exp(t·ln β)
    let pow = |g: &mut Graph, beta: f32| -> Result<NodeId> {
        let e = g.scale(t1, beta.ln())?;
        g.exp(e)
    };
    let b1t = pow(g, b1)?;
    let b2t = pow(g, b2)?;
    let c2 = g.sub(one, b2t)?;
    let c2 = g.sqrt(c2)?;
    let c1 = g.sub(one, b1t)?;
    let ratio = g.div(c2, c1)?;
    let lr_t = g.scale(ratio, lr)?;
    for (&p, &dp) in params.iter().zip(grads) {
        let name = match &g.node(p)?.op {
            hasten_tensor::ir::Op::Parameter { name } => name.clone(),
            _ => unreachable!("adam is given parameters"),
        };
        let shape = g.shape(p)?.clone();
        let m = g.parameter(&format!("{name}/m"), shape.clone(), DType::F32)?;
        let v = g.parameter(&format!("{name}/v"), shape, DType::F32)?;
        let m_old = g.scale(m, b1)?;
        let m_add = g.scale(dp, 1.0 - b1)?;
        let m_new = g.add(m_old, m_add)?;
        let v_old = g.scale(v, b2)?;
        let g2 = g.mul(dp, dp)?;
        let v_add = g.scale(g2, 1.0 - b2)?;
        let v_new = g.add(v_old, v_add)?;
        let root = g.sqrt(v_new)?;
        let eps_n = g.scalar(eps);
        let denom = g.add(root, eps_n)?;
        let step = g.div(m_new, denom)?;
        let step = g.mul(step, lr_t)?;
        let p_new = g.sub(p, step)?;
        g.update(m, m_new)?;
        g.update(v, v_new)?;
        g.update(p, p_new)?;
    }
    Ok(())
}

/// The reference MLP (Dense(128, relu) → Dense(10)) with softmax cross-entropy and Adam.
pub fn mlp(batch: usize, seed: u64) -> Result<TrainStep> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut g = Graph::new();
    let x = g.input("x", [batch, 784], DType::F32)?;
    let y = g.input("y", [batch], DType::I32)?;
    let w1 = g.parameter("w1", [784, 128], DType::F32)?;
    let b1 = g.parameter("b1", [128], DType::F32)?;
    let w2 = g.parameter("w2", [128, 10], DType::F32)?;
    let b2 = g.parameter("b2", [10], DType::F32)?;
    let h = g.matmul(x, w1)?;
    let h = g.add(h, b1)?;
    let h = g.relu(h)?;
    let logits = g.matmul(h, w2)?;
    let logits = g.add(logits, b2)?;
    let (loss, accuracy) = softmax_cross_entropy(&mut g, logits, y, 10)?;
    let params = [w1, b1, w2, b2];
    let grads = grad(&mut g, loss, &params)?;
    adam(&mut g, &params, &grads, 1e-3)?;
    g.output("loss", loss)?;
    g.output("accuracy", accuracy)?;
    let init = vec![
        ("w1".to_string(), glorot(&mut rng, &[784, 128], 784, 128)),
        ("w2".to_string(), glorot(&mut rng, &[128, 10], 128, 10)),
    ];
    Ok(TrainStep { graph: g, init })
}

/// The reference CNN (Conv2D(32, 3×3, relu) → MaxPool(2×2) → Flatten → Dense(10)) with softmax
/// cross-entropy and Adam.
pub fn cnn(batch: usize, seed: u64) -> Result<TrainStep> {
    use hasten_tensor::ir::PaddingMode;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut g = Graph::new();
    let x = g.input("x", [batch, 28, 28, 1], DType::F32)?;
    let y = g.input("y", [batch], DType::I32)?;
    let k = g.parameter("k", [3, 3, 1, 32], DType::F32)?;
    let kb = g.parameter("kb", [32], DType::F32)?;
    let w = g.parameter("w", [13 * 13 * 32, 10], DType::F32)?;
    let b = g.parameter("b", [10], DType::F32)?;
    let c = g.conv2d(x, k, [1, 1], PaddingMode::Valid, [1, 1])?;
    let c = g.add(c, kb)?;
    let c = g.relu(c)?;
    let p = g.max_pool2d(c, [2, 2], [2, 2], PaddingMode::Valid)?;
    let flat = g.reshape(p, [batch, 13 * 13 * 32])?;
    let logits = g.matmul(flat, w)?;
    let logits = g.add(logits, b)?;
    let (loss, accuracy) = softmax_cross_entropy(&mut g, logits, y, 10)?;
    let params = [k, kb, w, b];
    let grads = grad(&mut g, loss, &params)?;
    adam(&mut g, &params, &grads, 1e-3)?;
    g.output("loss", loss)?;
    g.output("accuracy", accuracy)?;
    let init = vec![
        ("k".to_string(), glorot(&mut rng, &[3, 3, 1, 32], 9, 9 * 32)),
        (
            "w".to_string(),
            glorot(&mut rng, &[13 * 13 * 32, 10], 13 * 13 * 32, 10),
        ),
    ];
    Ok(TrainStep { graph: g, init })
}
