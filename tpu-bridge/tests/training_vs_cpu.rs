//! The reference MLP and CNN trained for 50 steps on the PJRT plugin and on the CPU backend
//! from the same initial weights and batches: the loss of every step within 1e-4 relative,
//! and every weight and optimizer slot after the last step within 1e-4. Each `fit` epoch is
//! one step (the data is one batch), so the history's losses are the per-step losses. The
//! same on 2 and 4 plugin devices (`PjrtBackend::replicated`), each on its share of the
//! global batch, and their predictions joined in order.

mod common;

use hasten_nn::prelude::*;
use hasten_tensor::{Backend, CpuBackend, HostTensor};
use hasten_testkit::models::{batch, cnn, compile_on, mlp};
use hasten_tpu::PjrtBackend;
use std::sync::Arc;

const STEPS: usize = 50;
const BATCH: usize = 32;
const TOL: f64 = 1e-4;

/// The MLP with Dropout(0.5): every replica's mask must be its rows of the one-device mask.
fn mlp_dropout() -> Sequential {
    let mut m = Sequential::new().seed(5);
    m.add(
        Dense::new(64)
            .activation(Activation::Relu)
            .input_shape([784]),
    );
    m.add(Dropout::new(0.5));
    m.add(Dense::new(10).activation(Activation::Softmax));
    m
}

/// What a run gave: the per-step losses, the final state and the predictions on the batch.
struct Trained {
    losses: Vec<f64>,
    state: std::collections::BTreeMap<String, HostTensor>,
    predictions: HostTensor,
}

/// Trains `model` on `backend`.
fn train(
    mut model: Sequential,
    backend: Arc<dyn Backend>,
    data: &(HostTensor, HostTensor),
) -> Trained {
    compile_on(&mut model, backend);
    let options = FitOptions::epochs(STEPS)
        .batch_size(BATCH)
        .shuffle(false)
        .verbose(Verbosity::Silent);
    let history = model.fit(&data.0, &data.1, options).unwrap();
    Trained {
        losses: history.get("loss").unwrap().to_vec(),
        state: model.get_state().unwrap(),
        predictions: model.predict(&data.0, BATCH).unwrap(),
    }
}

/// `model` trained on the plugin (on `replicas` devices) against the CPU backend.
fn check(model: fn() -> Sequential, dims: &[usize], replicas: usize) {
    let Some(path) = common::plugin_path() else {
        return;
    };
    let pjrt = if replicas == 1 {
        PjrtBackend::new(Some(&path))
    } else {
        PjrtBackend::replicated(Some(&path), replicas)
    };
    let data = batch(dims);
    let want = train(model(), Arc::new(CpuBackend::new()), &data);
    let got = train(
        model(),
        Arc::new(pjrt.expect("the test plugin loads")),
        &data,
    );
    let (got_loss, want_loss) = (&got.losses, &want.losses);
    assert_eq!(got_loss.len(), STEPS);
    let mut failures = Vec::new();
    for (step, (g, w)) in got_loss.iter().zip(want_loss).enumerate() {
        if (g - w).abs() > TOL * w.abs() {
            failures.push(format!("step {step}: loss {g}, CPU {w}"));
        }
    }
    assert!(want_loss[STEPS - 1] < want_loss[0], "the model must learn");
    for (name, w) in &want.state {
        if let Err(e) = common::same(&got.state[name], w, TOL) {
            failures.push(format!("{name}: {e}"));
        }
    }
    if let Err(e) = common::same(&got.predictions, &want.predictions, TOL) {
        failures.push(format!("predictions: {e}"));
    }
    assert!(
        failures.is_empty(),
        "{replicas} replica(s): {}",
        failures.join("\n")
    );
}

#[test]
fn mlp_trains_as_on_the_cpu() {
    check(mlp, &[BATCH, 784], 1);
}

#[test]
fn cnn_trains_as_on_the_cpu() {
    check(cnn, &[BATCH, 28, 28], 1);
}

#[test]
fn mlp_on_2_and_4_devices_trains_as_one_device() {
    check(mlp, &[BATCH, 784], 2);
    check(mlp, &[BATCH, 784], 4);
}

#[test]
fn cnn_on_2_and_4_devices_trains_as_one_device() {
    check(cnn, &[BATCH, 28, 28], 2);
    check(cnn, &[BATCH, 28, 28], 4);
}

#[test]
fn dropout_on_2_devices_trains_as_one_device() {
    check(mlp_dropout, &[BATCH, 784], 2);
}

#[test]
fn a_batch_that_does_not_divide_and_too_many_replicas_are_errors() {
    let Some(path) = common::plugin_path() else {
        return;
    };
    let pjrt = PjrtBackend::replicated(Some(&path), 4).expect("the test plugin loads");
    let mut model = mlp();
    compile_on(&mut model, Arc::new(pjrt));
    let data = batch(&[BATCH, 784]);
    let options = FitOptions::epochs(1)
        .batch_size(30)
        .verbose(Verbosity::Silent);
    let e = model
        .fit(&data.0, &data.1, options)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("global batch of 30 does not divide by 4 replicas"),
        "{e}"
    );

    let e = PjrtBackend::replicated(Some(&path), 500)
        .err()
        .expect("500 replicas")
        .to_string();
    assert!(e.contains("500 replicas"), "{e}");
}
