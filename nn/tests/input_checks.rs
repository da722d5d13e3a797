//! What `fit`, `evaluate`, `predict` and `validation_data` accept: exactly the declared
//! per-sample dims (a trailing channel of 1 may be left out), only finite values (unless the
//! check is turned off), refused before any step with the model unchanged; and where the input
//! may be declared (`Sequential::input` or any first layer, once).

mod common;

use common::TempDir;
use hasten_nn::prelude::*;
use hasten_nn::Error;
use hasten_tensor::{HostData, Shape};
use std::collections::BTreeMap;

/// Conv2D(4, 3×3) → Flatten → Dense(3, softmax) on 6×6×1 samples, compiled.
fn conv_model() -> Sequential {
    let mut model = Sequential::new()
        .seed(3)
        .with(
            Conv2D::new(4, [3, 3])
                .activation(Activation::Relu)
                .input_shape([6, 6, 1]),
        )
        .with(Flatten::new())
        .with(Dense::new(3).activation(Activation::Softmax));
    model
        .compile(
            Adam::default(),
            Loss::sparse_categorical_crossentropy(),
            &[Metric::Accuracy],
        )
        .unwrap();
    model
}

fn images(dims: &[usize]) -> HostTensor {
    let n: usize = dims.iter().product();
    HostTensor::f32(
        dims.to_vec(),
        (0..n).map(|i| (i % 13) as f32 / 13.0).collect(),
    )
    .unwrap()
}

fn labels(n: usize) -> HostTensor {
    HostTensor::i32([n], (0..n as i32).map(|i| i % 3).collect()).unwrap()
}

fn quiet(epochs: usize) -> FitOptions {
    FitOptions::epochs(epochs)
        .batch_size(4)
        .verbose(Verbosity::Silent)
}

fn bad_data(result: Result<impl std::fmt::Debug, Error>) -> String {
    match result {
        Err(Error::BadData(message)) => message,
        other => panic!("expected a BadData error, got {other:?}"),
    }
}

/// The state before and after a refused call are the same, and no step ran.
fn assert_unchanged(model: &mut Sequential, before: &BTreeMap<String, HostTensor>) {
    assert_eq!(&model.get_state().unwrap(), before);
    assert_eq!(model.iterations().unwrap(), 0);
}

#[test]
fn non_finite_inputs_are_refused_naming_sample_and_position() {
    let mut model = conv_model();
    let before = model.get_state().unwrap();
    for (value, name) in [
        (f32::NAN, "NaN"),
        (f32::INFINITY, "+Inf"),
        (f32::NEG_INFINITY, "-Inf"),
    ] {
        let mut x = images(&[12, 6, 6, 1]).as_f32().unwrap().to_vec();
        x[10 * 36 + 2 * 6 + 5] = value;
        x[11 * 36] = f32::NAN; // only the first bad value is named
        let x = HostTensor::f32([12, 6, 6, 1], x).unwrap();
        let want = format!("x[10] has {name} at (2, 5, 0)");
        let e = bad_data(model.fit(&x, &labels(12), quiet(1)));
        assert!(e.contains(&want), "fit: {e}");
        let e = bad_data(model.evaluate(&x, &labels(12), 4));
        assert!(e.contains(&want), "evaluate: {e}");
        let e = bad_data(model.predict(&x, 4));
        assert!(e.contains(&want), "predict: {e}");
        let options = quiet(1).validation_data(x.clone(), labels(12));
        let e = bad_data(model.fit(&images(&[8, 6, 6, 1]), &labels(8), options));
        assert!(e.contains(&format!("validation {want}")), "validation: {e}");
        // Without the channel the position has two coordinates.
        let x = x.reshape([12, 6, 6]).unwrap();
        let e = bad_data(model.predict(&x, 4));
        assert!(e.contains(&format!("x[10] has {name} at (2, 5)")), "{e}");
        assert_unchanged(&mut model, &before);
    }
}

#[test]
fn the_finite_check_can_be_turned_off() {
    let mut model = conv_model();
    let mut x = images(&[8, 6, 6, 1]).as_f32().unwrap().to_vec();
    x[5 * 36] = f32::NAN;
    let x = HostTensor::f32([8, 6, 6, 1], x).unwrap();
    let history = model
        .fit(&x, &labels(8), quiet(1).check_finite(false))
        .unwrap();
    assert!(history.last("loss").unwrap().is_nan());
    model.set_check_finite(false);
    let scores = model.predict(&x, 4).unwrap();
    assert!(scores.as_f32().unwrap().iter().any(|v| v.is_nan()));
    assert!(model.evaluate(&x, &labels(8), 4).unwrap()["loss"].is_nan());
}

#[test]
fn integer_inputs_need_no_finite_check() {
    let mut model = conv_model();
    let x = HostTensor::new(Shape::new([8, 6, 6, 1]), HostData::U8(vec![7; 8 * 36])).unwrap();
    model.fit(&x, &labels(8), quiet(1)).unwrap();
    model.predict(&x, 4).unwrap();
}

#[test]
fn samples_of_another_shape_are_refused_naming_both_shapes() {
    let mut model = conv_model();
    let before = model.get_state().unwrap();
    // Same element count per sample, other dims: the case that used to train silently.
    let x = images(&[12, 6, 3, 2]);
    let e = bad_data(model.fit(&x, &labels(12), quiet(1)));
    assert!(
        e.contains("[12, 6, 3, 2]") && e.contains("[6, 6, 1]"),
        "{e}"
    );
    assert!(
        e.contains("[samples, 6, 6, 1]") && e.contains("[samples, 6, 6]"),
        "{e}"
    );
    assert!(e.contains("x.reshape([12, 6, 6, 1])"), "{e}");
    for dims in [
        &[12, 36][..],
        &[12, 6, 6, 1, 1],
        &[12, 1, 6, 6],
        &[12, 7, 6, 1],
        &[12],
    ] {
        let x = images(dims);
        let e = bad_data(model.fit(&x, &labels(12), quiet(1)));
        assert!(e.contains("[6, 6, 1]"), "{dims:?}: {e}");
        bad_data(model.evaluate(&x, &labels(12), 4));
        bad_data(model.predict(&x, 4));
        let options = quiet(1).validation_data(x.clone(), labels(12));
        let e = bad_data(model.fit(&images(&[8, 6, 6, 1]), &labels(8), options));
        assert!(e.starts_with("validation x has shape"), "{e}");
    }
    assert_unchanged(&mut model, &before);
    // The channel of 1 may be left out, and gives the same predictions.
    let x = images(&[5, 6, 6, 1]);
    let with_channel = model.predict(&x, 4).unwrap();
    let without = model
        .predict(&x.clone().reshape([5, 6, 6]).unwrap(), 4)
        .unwrap();
    assert_eq!(with_channel, without);
    model
        .fit(&x.reshape([5, 6, 6]).unwrap(), &labels(5), quiet(1))
        .unwrap();
}

#[test]
fn a_dense_model_wants_flat_samples() {
    let mut model = Sequential::new().with(
        Dense::new(3)
            .activation(Activation::Softmax)
            .input_shape([36]),
    );
    model
        .compile(Sgd::new(0.1), Loss::sparse_categorical_crossentropy(), &[])
        .unwrap();
    let e = bad_data(model.fit(&images(&[4, 6, 6]), &labels(4), quiet(1)));
    assert!(e.contains("x.reshape([4, 36])"), "{e}");
    assert!(!e.contains("left out"), "36 is not a channel of 1: {e}");
    model.fit(&images(&[4, 36]), &labels(4), quiet(1)).unwrap();
}

#[test]
fn conv2d_reads_two_dims_as_one_channel() {
    let mut model = Sequential::new()
        .with(Conv2D::new(2, [3, 3]).input_shape([6, 6]))
        .with(Flatten::new())
        .with(Dense::new(3).activation(Activation::Softmax));
    model
        .compile(Sgd::new(0.1), Loss::sparse_categorical_crossentropy(), &[])
        .unwrap();
    model
        .fit(&images(&[4, 6, 6]), &labels(4), quiet(1))
        .unwrap();
    model
        .fit(&images(&[4, 6, 6, 1]), &labels(4), quiet(1))
        .unwrap();
    bad_data(model.fit(&images(&[4, 6, 6, 2]), &labels(4), quiet(1)));
}

/// One model per layer kind, that kind first with `input_shape`.
fn first_layers() -> Vec<(Box<dyn Layer>, Vec<usize>)> {
    vec![
        (Box::new(Dense::new(4).input_shape([6])), vec![6]),
        (
            Box::new(Conv2D::new(2, [3, 3]).input_shape([6, 6, 1])),
            vec![6, 6, 1],
        ),
        (
            Box::new(MaxPooling2D::new([2, 2]).input_shape([6, 6, 2])),
            vec![6, 6, 2],
        ),
        (
            Box::new(AveragePooling2D::new([2, 2]).input_shape([6, 6, 2])),
            vec![6, 6, 2],
        ),
        (Box::new(Flatten::new().input_shape([6, 6])), vec![6, 6]),
        (Box::new(Dropout::new(0.2).input_shape([6])), vec![6]),
        (
            Box::new(BatchNormalization::new().input_shape([6])),
            vec![6],
        ),
        (
            Box::new(ActivationLayer::new(Activation::Tanh).input_shape([6])),
            vec![6],
        ),
        (Box::new(Softmax::new().input_shape([6])), vec![6]),
    ]
}

#[test]
fn any_layer_may_come_first_and_declare_the_input() {
    for (first, dims) in first_layers() {
        let kind = first.kind();
        let mut model = Sequential::new();
        model.add_boxed(first);
        model.add(Flatten::new());
        model.add(Dense::new(3).activation(Activation::Softmax));
        model
            .compile(
                Adam::default(),
                Loss::sparse_categorical_crossentropy(),
                &[],
            )
            .unwrap_or_else(|e| panic!("{kind} first: {e}"));
        let x = images(&[[4].as_slice(), &dims].concat());
        model.fit(&x, &labels(4), quiet(1)).unwrap();
        // The declaration survives a save and load.
        let dir = TempDir::new("input_checks", kind);
        model.save(dir.path()).unwrap();
        let mut loaded = Sequential::load(dir.path()).unwrap();
        assert_eq!(
            loaded.layers()[0].declared_input_shape(),
            Some(&dims[..]),
            "{kind}"
        );
        assert_eq!(
            loaded.predict(&x, 4).unwrap(),
            model.predict(&x, 4).unwrap()
        );
    }
}

#[test]
fn the_input_may_be_declared_on_the_model() {
    // Keras 3's `keras.Input(shape=(28, 28))` followed by the tutorial's layers.
    let build = || {
        Sequential::new()
            .input([6, 6])
            .with(Flatten::new())
            .with(Dense::new(8).activation(Activation::Relu))
            .with(Dropout::new(0.2))
            .with(Dense::new(3))
    };
    let mut model = build();
    model
        .compile(
            Adam::default(),
            Loss::sparse_categorical_crossentropy().from_logits(true),
            &[Metric::Accuracy],
        )
        .unwrap();
    model
        .fit(&images(&[8, 6, 6]), &labels(8), quiet(1))
        .unwrap();
    let dir = TempDir::new("input_checks", "model-input");
    model.save(dir.path()).unwrap();
    let mut loaded = Sequential::load(dir.path()).unwrap();
    assert_eq!(loaded.declared_input(), Some(&[6, 6][..]));
    let x = images(&[3, 6, 6]);
    assert_eq!(
        loaded.predict(&x, 4).unwrap(),
        model.predict(&x, 4).unwrap()
    );
    assert_eq!(build().summary().unwrap(), loaded.summary().unwrap());
}

#[test]
fn an_input_declared_twice_or_late_is_an_error() {
    let mut twice = Sequential::new()
        .input([6])
        .with(Dense::new(3).input_shape([6]));
    let e = twice.summary().unwrap_err().to_string();
    assert!(e.contains("declared twice"), "{e}");

    let mut late = Sequential::new()
        .with(Dense::new(4).input_shape([6]))
        .with(Dense::new(3).input_shape([4]));
    let e = late.summary().unwrap_err().to_string();
    assert!(
        e.contains("layer 1 (Dense)") && e.contains("only the first layer"),
        "{e}"
    );

    let mut none = Sequential::new().with(Flatten::new());
    let e = none.summary().unwrap_err().to_string();
    assert!(e.contains("Sequential::new().input("), "{e}");
}
