//! Models, data and comparisons shared by the strategy tests.

#![allow(dead_code)]

use hasten_nn::prelude::*;
use hasten_tensor::Backend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Random inputs of per-sample shape `sample` and labels in `0..10`, `n` samples.
pub fn data(n: usize, sample: &[usize], seed: u64) -> (HostTensor, HostTensor) {
    let mut rng = StdRng::seed_from_u64(seed);
    let per: usize = sample.iter().product();
    let x: Vec<f32> = (0..n * per).map(|_| rng.random_range(0.0..1.0)).collect();
    let y: Vec<i32> = (0..n).map(|_| rng.random_range(0..10)).collect();
    let mut dims = vec![n];
    dims.extend_from_slice(sample);
    (
        HostTensor::f32(dims, x).unwrap(),
        HostTensor::i32([n], y).unwrap(),
    )
}

/// The reference MLP: Dense(128, relu) on 784 inputs, then Dense(10, softmax).
pub fn mlp() -> Sequential {
    Sequential::new()
        .with(
            Dense::new(128)
                .activation(Activation::Relu)
                .input_shape([784]),
        )
        .with(Dense::new(10).activation(Activation::Softmax))
}

/// The reference CNN: Conv2D(32, 3×3, relu) on 28×28, MaxPooling2D(2×2), Flatten,
/// Dense(10, softmax).
pub fn cnn() -> Sequential {
    Sequential::new()
        .with(
            Conv2D::new(32, [3, 3])
                .activation(Activation::Relu)
                .input_shape([28, 28]),
        )
        .with(MaxPooling2D::new([2, 2]))
        .with(Flatten::new())
        .with(Dense::new(10).activation(Activation::Softmax))
}

/// The MLP with Dropout(0.5) between its layers.
pub fn mlp_dropout() -> Sequential {
    Sequential::new()
        .with(
            Dense::new(64)
                .activation(Activation::Relu)
                .input_shape([784]),
        )
        .with(Dropout::new(0.5))
        .with(Dense::new(10).activation(Activation::Softmax))
}

/// A small CNN with batch normalisation over its feature maps (moments over batch, rows and
/// columns) and over a dense layer's features. A ReLU comes before each normalisation: a
/// bias right before one has a gradient of exactly zero, which Adam turns from rounding noise
/// into full-size steps, so no two summation orders could agree on it.
pub fn cnn_batch_norm() -> Sequential {
    Sequential::new()
        .with(
            Conv2D::new(8, [3, 3])
                .activation(Activation::Relu)
                .input_shape([12, 12]),
        )
        .with(BatchNormalization::new().momentum(0.9))
        .with(Flatten::new())
        .with(Dense::new(16).activation(Activation::Relu))
        .with(BatchNormalization::new())
        .with(Dense::new(10).activation(Activation::Softmax))
}

/// What a run produced: the history's per-epoch logs and the final state.
pub struct Trained {
    pub history: BTreeMap<String, Vec<f64>>,
    pub state: BTreeMap<String, HostTensor>,
    pub model: Sequential,
}

/// Trains `model` (Adam, sparse categorical cross-entropy, accuracy) on `backend`.
pub fn train(
    model: Sequential,
    backend: Arc<dyn Backend>,
    data: &(HostTensor, HostTensor),
    batch: usize,
    epochs: usize,
) -> Trained {
    train_with(model, Adam::new(1e-3), backend, data, batch, epochs)
}

/// Trains `model` with `optimizer` (sparse categorical cross-entropy, accuracy) on `backend`.
pub fn train_with(
    mut model: Sequential,
    optimizer: impl Optimizer + 'static,
    backend: Arc<dyn Backend>,
    data: &(HostTensor, HostTensor),
    batch: usize,
    epochs: usize,
) -> Trained {
    model.set_backend(backend).unwrap();
    model
        .compile(
            optimizer,
            Loss::sparse_categorical_crossentropy(),
            &[Metric::Accuracy],
        )
        .unwrap();
    let options = FitOptions::epochs(epochs)
        .batch_size(batch)
        .verbose(Verbosity::Silent);
    let history = model.fit(&data.0, &data.1, options).unwrap();
    let history = ["loss", "accuracy"]
        .iter()
        .map(|k| (k.to_string(), history.get(k).unwrap().to_vec()))
        .collect();
    let state = model.get_state().unwrap();
    Trained {
        history,
        state,
        model,
    }
}

/// The largest difference between `a` and `b` relative to the largest magnitude in `b`.
pub fn relative_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

/// Asserts that every state tensor and every logged value of `a` equals `b`'s within `tol`
/// (relative to each tensor's largest magnitude).
pub fn assert_same_training(a: &Trained, b: &Trained, tol: f32) {
    assert_eq!(
        a.state.keys().collect::<Vec<_>>(),
        b.state.keys().collect::<Vec<_>>()
    );
    for (name, value) in &a.state {
        let other = &b.state[name];
        match (value.as_f32(), other.as_f32()) {
            (Ok(x), Ok(y)) => {
                let d = relative_difference(x, y);
                assert!(
                    d <= tol,
                    "state {name}: relative difference {d:e} > {tol:e}"
                );
            }
            _ => assert_eq!(value, other, "state {name}"),
        }
    }
    for (name, values) in &a.history {
        let x: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        let y: Vec<f32> = b.history[name].iter().map(|&v| v as f32).collect();
        let d = relative_difference(&x, &y);
        assert!(d <= tol, "{name}: {x:?} vs {y:?}");
    }
}
