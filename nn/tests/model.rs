//! The Keras-style model API: summaries match Keras's, training learns, bad input is an error,
//! and the model runs unchanged on another backend.

mod common;

use common::mlp_classifier;
use hasten_nn::prelude::*;
use hasten_nn::Error;
use hasten_tensor::{CpuBackend, CpuOptions};
use std::sync::Arc;

fn mlp() -> Sequential {
    let mut model = Sequential::new();
    model.add(
        Dense::new(128)
            .activation(Activation::Relu)
            .input_shape([784]),
    );
    model.add(Dense::new(10).activation(Activation::Softmax));
    model
}

/// Two separable blobs in 4-D, labelled 0 and 1 (plus a third class far away).
fn blobs(n: usize) -> (HostTensor, HostTensor) {
    let mut x = Vec::with_capacity(n * 4);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let class = (i % 3) as i32;
        for j in 0..4 {
            let jitter = ((i * 7 + j * 13) % 17) as f32 / 17.0 - 0.5;
            x.push(class as f32 * 2.0 - 2.0 + jitter * 0.8 + j as f32 * 0.1);
        }
        y.push(class);
    }
    (
        HostTensor::f32([n, 4], x).unwrap(),
        HostTensor::i32([n], y).unwrap(),
    )
}

/// 4 → Dense(16, relu) → Dense(3, softmax), Adam at 0.01.
fn small_model(seed: u64) -> Sequential {
    mlp_classifier(Sequential::new().seed(seed), 4, 16, 3, 0.01)
}

#[test]
fn mlp_summary_matches_keras() {
    let s = mlp().summary().unwrap();
    assert!(s.contains("dense (Dense)"), "{s}");
    assert!(s.contains("dense_1 (Dense)"), "{s}");
    assert!(s.contains("(None, 128)") && s.contains("100,480"), "{s}");
    assert!(s.contains("(None, 10)") && s.contains("1,290"), "{s}");
    assert!(s.contains("Total params: 101,770"), "{s}");
}

#[test]
fn cnn_summary_matches_keras() {
    let mut model = Sequential::new();
    model.add(
        Conv2D::new(32, [3, 3])
            .activation(Activation::Relu)
            .input_shape([28, 28]),
    );
    model.add(MaxPooling2D::new([2, 2]));
    model.add(Flatten::new());
    model.add(Dense::new(10).activation(Activation::Softmax));
    let s = model.summary().unwrap();
    for expected in [
        "conv2d (Conv2D)",
        "(None, 26, 26, 32)",
        "320",
        "max_pooling2d (MaxPooling2D)",
        "(None, 13, 13, 32)",
        "flatten (Flatten)",
        "(None, 5408)",
        "54,090",
        "Total params: 54,410",
    ] {
        assert!(s.contains(expected), "missing {expected:?} in\n{s}");
    }
}

#[test]
fn fit_learns_and_predict_gives_probabilities() {
    let (x, y) = blobs(96);
    let mut model = small_model(3);
    let history = model
        .fit(
            &x,
            &y,
            FitOptions::epochs(30)
                .batch_size(16)
                .verbose(Verbosity::Silent),
        )
        .unwrap();
    let loss = history.get("loss").unwrap();
    assert!(
        loss[loss.len() - 1] < loss[0] * 0.5,
        "loss did not fall: {loss:?}"
    );
    assert!(history.last("accuracy").unwrap() > 0.9);
    let p = model.predict(&x, 10).unwrap();
    assert_eq!(p.shape.dims(), &[96, 3]);
    for row in p.as_f32().unwrap().chunks(3) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    let eval = model.evaluate(&x, &y, 7).unwrap();
    assert!(eval["accuracy"] > 0.9, "{eval:?}");
    assert_eq!(model.iterations().unwrap(), 30 * 6);
}

#[test]
fn validation_split_and_partial_batches() {
    let (x, y) = blobs(100);
    let mut model = small_model(5);
    let options = FitOptions::epochs(2)
        .batch_size(32)
        .validation_split(0.2)
        .verbose(Verbosity::Silent);
    let history = model.fit(&x, &y, options).unwrap();
    assert!(history.get("val_loss").is_some() && history.get("val_accuracy").is_some());
    // 80 training samples at batch 32: 3 steps per epoch, the last one of 16.
    assert_eq!(model.iterations().unwrap(), 6);
}

#[test]
fn the_same_model_trains_identically_on_a_differently_optimised_backend() {
    let (x, y) = blobs(48);
    let mut fast = small_model(11);
    let mut reference = small_model(11);
    reference
        .set_backend(Arc::new(CpuBackend::with_options(CpuOptions::reference())))
        .unwrap();
    let opts = || {
        FitOptions::epochs(3)
            .batch_size(8)
            .verbose(Verbosity::Silent)
    };
    fast.fit(&x, &y, opts()).unwrap();
    reference.fit(&x, &y, opts()).unwrap();
    let (a, b) = (
        fast.get_weights().unwrap(),
        reference.get_weights().unwrap(),
    );
    for (name, t) in &a {
        let (u, v) = (t.as_f32().unwrap(), b[name].as_f32().unwrap());
        for (p, q) in u.iter().zip(v) {
            assert!(
                (p - q).abs() <= 1e-5 * (1.0 + q.abs()),
                "{name}: {p} vs {q}"
            );
        }
    }
}

#[test]
fn softmax_cross_entropy_stays_finite_for_extreme_logits() {
    let mut model = Sequential::new();
    model.add(
        Dense::new(2)
            .activation(Activation::Softmax)
            .input_shape([1]),
    );
    model
        .compile(Sgd::new(0.1), Loss::sparse_categorical_crossentropy(), &[])
        .unwrap();
    let mut w = model.get_weights().unwrap();
    w.insert(
        "dense/kernel".into(),
        HostTensor::f32([1, 2], vec![500.0, -500.0]).unwrap(),
    );
    model.set_weights(&w).unwrap();
    let x = HostTensor::f32([2, 1], vec![1.0, 1.0]).unwrap();
    let y = HostTensor::i32([2], vec![1, 0]).unwrap();
    let eval = model.evaluate(&x, &y, 2).unwrap();
    // Class 1 has probability e^-1000 for the first sample: loss ≈ 1000 / 2, not infinity.
    assert!((eval["loss"] - 500.0).abs() < 1.0, "{eval:?}");
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let mut model = small_model(1);
    let (x, y) = blobs(10);
    let wrong_x = HostTensor::f32([10, 5], vec![0.0; 50]).unwrap();
    assert!(matches!(
        model.fit(&wrong_x, &y, FitOptions::epochs(1)),
        Err(Error::BadData(_))
    ));
    let bad_labels = HostTensor::i32([10], vec![7; 10]).unwrap();
    assert!(matches!(
        model.fit(&x, &bad_labels, FitOptions::epochs(1)),
        Err(Error::BadData(_))
    ));
    let short_labels = HostTensor::i32([9], vec![0; 9]).unwrap();
    assert!(matches!(
        model.evaluate(&x, &short_labels, 4),
        Err(Error::BadData(_))
    ));

    let mut uncompiled = mlp();
    let (x, y) = (
        HostTensor::f32([1, 784], vec![0.0; 784]).unwrap(),
        HostTensor::i32([1], vec![0]).unwrap(),
    );
    assert!(matches!(
        uncompiled.fit(&x, &y, FitOptions::epochs(1)),
        Err(Error::NotCompiled)
    ));

    let mut no_input = Sequential::new();
    no_input.add(Dense::new(3));
    let err = no_input.summary().unwrap_err().to_string();
    assert!(err.contains("input shape"), "{err}");

    let mut bad_conv = Sequential::new();
    bad_conv.add(Conv2D::new(4, [3, 3]).input_shape([10]));
    let err = bad_conv.summary().unwrap_err().to_string();
    assert!(err.contains("(height, width"), "{err}");
}

#[test]
fn a_learning_rate_schedule_sets_the_rate_of_every_step() {
    let (x, y) = blobs(32);
    let mut model = small_model(2);
    let schedule = ExponentialDecay::new(0.1, 4, 0.5).unwrap();
    model
        .set_learning_rate_schedule(Some(Box::new(schedule.clone())))
        .unwrap();
    model
        .fit(
            &x,
            &y,
            FitOptions::epochs(3)
                .batch_size(8)
                .verbose(Verbosity::Silent),
        )
        .unwrap();
    // 12 steps; the last one ran at the rate for step 11 (steps count from 0).
    assert_eq!(model.iterations().unwrap(), 12);
    let expected = schedule.rate(11);
    assert!(
        (model.learning_rate().unwrap() - expected).abs() < 1e-9,
        "{expected}"
    );
    assert!((expected - 0.1 * 0.5f32.powf(11.0 / 4.0)).abs() < 1e-7);
}
