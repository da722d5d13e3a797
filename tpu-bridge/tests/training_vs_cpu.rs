//! The reference MLP and CNN trained for 50 steps on the PJRT plugin and on the CPU backend
//! from the same initial weights and batches: the loss of every step within 1e-4 relative,
//! and every weight and optimizer slot after the last step within 1e-4. Each `fit` epoch is
//! one step (the data is one batch), so the history's losses are the per-step losses.

mod common;

use hasten_nn::prelude::*;
use hasten_tensor::{Backend, CpuBackend, HostTensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

const STEPS: usize = 50;
const BATCH: usize = 32;
const TOL: f64 = 1e-4;

fn mlp() -> Sequential {
    let mut m = Sequential::new().seed(3);
    m.add(
        Dense::new(128)
            .activation(Activation::Relu)
            .input_shape([784]),
    );
    m.add(Dense::new(10).activation(Activation::Softmax));
    m
}

fn cnn() -> Sequential {
    let mut m = Sequential::new().seed(4);
    m.add(
        Conv2D::new(32, [3, 3])
            .activation(Activation::Relu)
            .input_shape([28, 28]),
    );
    m.add(MaxPooling2D::new([2, 2]));
    m.add(Flatten::new());
    m.add(Dense::new(10).activation(Activation::Softmax));
    m
}

/// One batch of pixel-like inputs and labels 0..10.
fn batch(dims: &[usize]) -> (HostTensor, HostTensor) {
    let mut rng = StdRng::seed_from_u64(50);
    let n: usize = dims.iter().product();
    let x = (0..n).map(|_| rng.random_range(0.0f32..1.0)).collect();
    let y = (0..BATCH).map(|_| rng.random_range(0..10)).collect();
    (
        HostTensor::f32(dims.to_vec(), x).unwrap(),
        HostTensor::i32([BATCH], y).unwrap(),
    )
}

/// Trains `model` on `backend`: the per-step losses and the final state.
fn train(
    mut model: Sequential,
    backend: Arc<dyn Backend>,
    data: &(HostTensor, HostTensor),
) -> (Vec<f64>, std::collections::BTreeMap<String, HostTensor>) {
    model.set_backend(backend).unwrap();
    model
        .compile(
            Adam::default(),
            Loss::sparse_categorical_crossentropy(),
            &[Metric::Accuracy],
        )
        .unwrap();
    let options = FitOptions::epochs(STEPS)
        .batch_size(BATCH)
        .shuffle(false)
        .verbose(Verbosity::Silent);
    let history = model.fit(&data.0, &data.1, options).unwrap();
    let losses = history.get("loss").unwrap().to_vec();
    (losses, model.get_state().unwrap())
}

fn check(model: fn() -> Sequential, dims: &[usize]) {
    let Some(pjrt) = common::backend() else {
        return;
    };
    let data = batch(dims);
    let (want_loss, want_state) = train(model(), Arc::new(CpuBackend::new()), &data);
    let (got_loss, got_state) = train(model(), Arc::new(pjrt), &data);
    assert_eq!(got_loss.len(), STEPS);
    let mut failures = Vec::new();
    for (step, (g, w)) in got_loss.iter().zip(&want_loss).enumerate() {
        if (g - w).abs() > TOL * w.abs() {
            failures.push(format!("step {step}: loss {g}, CPU {w}"));
        }
    }
    assert!(want_loss[STEPS - 1] < want_loss[0], "the model must learn");
    for (name, w) in &want_state {
        let g = &got_state[name];
        if let Err(e) = common::same(g, w, TOL) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn mlp_trains_as_on_the_cpu() {
    check(mlp, &[BATCH, 784]);
}

#[test]
fn cnn_trains_as_on_the_cpu() {
    check(cnn, &[BATCH, 28, 28]);
}
