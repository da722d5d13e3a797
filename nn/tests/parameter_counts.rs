//! `summary` and `count_params` count what Keras counts: weights and batch-norm statistics,
//! not Dropout's step counter, which is state (saved and restored with the weights).

mod common;

use common::TempDir;
use hasten_nn::prelude::*;
use hasten_tensor::io::{load_safetensors, save_safetensors};
use hasten_tensor::HostData;

/// Keras's MNIST convnet with 16 and 32 filters and "same" padding: `model.summary()` in
/// Keras 3 reports 20,490 parameters, all trainable.
fn keras_convnet() -> Sequential {
    Sequential::new()
        .input([28, 28, 1])
        .with(
            Conv2D::new(16, [3, 3])
                .activation(Activation::Relu)
                .padding(Padding::Same),
        )
        .with(MaxPooling2D::new([2, 2]))
        .with(
            Conv2D::new(32, [3, 3])
                .activation(Activation::Relu)
                .padding(Padding::Same),
        )
        .with(MaxPooling2D::new([2, 2]))
        .with(Flatten::new())
        .with(Dropout::new(0.5))
        .with(Dense::new(10).activation(Activation::Softmax))
}

#[test]
fn a_dropout_model_counts_as_keras_does() {
    let mut model = keras_convnet();
    assert_eq!(model.count_params().unwrap(), 20_490);
    let summary = model.summary().unwrap();
    for line in [
        " Total params: 20,490",
        " Trainable params: 20,490",
        " Non-trainable params: 0",
    ] {
        assert!(summary.lines().any(|l| l == line), "{line:?} in\n{summary}");
    }
    let dropout_row = summary.lines().find(|l| l.contains("(Dropout)")).unwrap();
    assert!(dropout_row.trim_end().ends_with(" 0"), "{dropout_row}");
    // The counter is still state, saved with the weights.
    assert!(model.weight_names().iter().any(|n| n == "dropout/seed"));
}

#[test]
fn batch_norm_statistics_are_non_trainable_parameters() {
    let mut model = Sequential::new()
        .with(Dense::new(16).input_shape([8]))
        .with(BatchNormalization::new())
        .with(Dense::new(3));
    // 8·16 + 16, then gamma, beta, moving mean and variance of 16, then 16·3 + 3.
    assert_eq!(model.count_params().unwrap(), 144 + 64 + 51);
    let summary = model.summary().unwrap();
    assert!(summary.contains(" Total params: 259"), "{summary}");
    assert!(summary.contains(" Trainable params: 227"), "{summary}");
    assert!(summary.contains(" Non-trainable params: 32"), "{summary}");
}

#[test]
fn the_counter_is_saved_and_restored() {
    let mut model = Sequential::new()
        .with(Dense::new(4).input_shape([3]))
        .with(Dropout::new(0.5))
        .with(Dense::new(2).activation(Activation::Softmax));
    model
        .compile(
            Adam::default(),
            Loss::sparse_categorical_crossentropy(),
            &[],
        )
        .unwrap();
    let x = HostTensor::f32([6, 3], (0..18).map(|i| i as f32 / 18.0).collect()).unwrap();
    let y = HostTensor::i32([6], vec![0, 1, 0, 1, 0, 1]).unwrap();
    let options = FitOptions::epochs(1)
        .batch_size(2)
        .verbose(Verbosity::Silent);
    model.fit(&x, &y, options).unwrap();
    let dir = TempDir::new("parameter_counts", "saved");
    model.save(dir.path()).unwrap();
    let mut loaded = Sequential::load(dir.path()).unwrap();
    let counter = &loaded.get_weights().unwrap()["dropout/seed"];
    assert_eq!(counter.data, HostData::I32(vec![3]));
}

#[test]
fn weights_with_an_f32_counter_still_load() {
    // Earlier versions kept the counter as an f32.
    let mut model = Sequential::new()
        .with(Dense::new(4).input_shape([3]))
        .with(Dropout::new(0.5));
    let dir = TempDir::new("parameter_counts", "f32-counter");
    let path = dir.join("weights.safetensors");
    let mut weights = model.get_weights().unwrap();
    weights.insert("dropout/seed".into(), HostTensor::scalar(12.0));
    save_safetensors(&path, &weights).unwrap();
    assert_eq!(
        load_safetensors(&path).unwrap()["dropout/seed"].dtype(),
        hasten_tensor::DType::F32
    );
    model.load_weights(&path).unwrap();
    let counter = &model.get_weights().unwrap()["dropout/seed"];
    assert_eq!(counter.data, HostData::I32(vec![12]));
}
