//! `Mirrored` on N CPU replicas trains exactly as one CPU backend does with the same global
//! batch (up to the order of the sums), for the reference models, dropout and batch norm.

mod common;

use common::*;
use hasten_nn::prelude::*;
use hasten_parallel::{shard_graph, split_batch, Mirrored};
use hasten_tensor::{Backend, CpuBackend, DType, Error, Graph};
use std::sync::Arc;

const TOLERANCE: f32 = 1e-5;

fn one_device() -> Arc<dyn Backend> {
    Arc::new(CpuBackend::new())
}

fn mirrored(n: usize) -> Arc<dyn Backend> {
    Arc::new(Mirrored::cpu(n).unwrap())
}

/// 20 steps (two epochs of ten batches) of `model` on one device and on `replicas`, with
/// Adam.
fn compare(model: fn() -> Sequential, sample: &[usize], batch: usize, replicas: &[usize]) {
    let data = data(10 * batch, sample, 7);
    let reference = train(model(), one_device(), &data, batch, 2);
    for &n in replicas {
        let parallel = train(model(), mirrored(n), &data, batch, 2);
        assert_same_training(&parallel, &reference, TOLERANCE);
    }
}

#[test]
fn mlp_on_two_and_four_replicas_equals_one_device() {
    compare(mlp, &[784], 32, &[2, 4]);
}

#[test]
fn cnn_on_two_and_four_replicas_equals_one_device() {
    compare(cnn, &[28, 28], 16, &[2, 4]);
}

#[test]
fn dropout_masks_equal_one_devices() {
    compare(mlp_dropout, &[784], 32, &[2, 4]);
}

/// With SGD and momentum: batch normalisation's backward pass cancels most of its gradient,
/// leaving some weights' gradients near rounding noise, and Adam's first steps move each
/// weight by about `lr·sign(g)` whatever `|g|`; so after Adam a different summation order
/// differs by up to 1.7e-4 (measured) while the gradients themselves agree to 1e-6. SGD keeps
/// relative errors relative.
#[test]
fn batch_norm_statistics_equal_one_devices() {
    let data = data(160, &[12, 12], 7);
    let sgd = || Sgd::new(0.01).momentum(0.9);
    let reference = train_with(cnn_batch_norm(), sgd(), one_device(), &data, 16, 2);
    for n in [2, 4] {
        let parallel = train_with(cnn_batch_norm(), sgd(), mirrored(n), &data, 16, 2);
        assert_same_training(&parallel, &reference, TOLERANCE);
    }
}

#[test]
fn an_uneven_batch_is_split_as_keras_does_and_equals_one_device() {
    // 10 rows on 4 replicas: 3, 3, 2 and 2 rows.
    compare(mlp, &[784], 10, &[4]);
}

#[test]
fn a_batch_smaller_than_the_replicas_is_refused_with_a_message() {
    let data = data(6, &[784], 3);
    let mut model = mlp();
    model.set_backend(mirrored(4)).unwrap();
    model
        .compile(
            Adam::new(1e-3),
            Loss::sparse_categorical_crossentropy(),
            &[Metric::Accuracy],
        )
        .unwrap();
    let options = FitOptions::epochs(1)
        .batch_size(3)
        .verbose(Verbosity::Silent);
    let err = model
        .fit(&data.0, &data.1, options)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("batch of 3") && err.contains("4 replicas"),
        "{err}"
    );
}

#[test]
fn evaluate_and_predict_equal_one_devices() {
    let data = data(96, &[784], 11);
    let mut reference = train(mlp(), one_device(), &data, 32, 1).model;
    let mut parallel = train(mlp(), mirrored(3), &data, 32, 1).model;
    // 96 rows in batches of 20: the last batch of 16 is split 6, 5, 5.
    let a = parallel.evaluate(&data.0, &data.1, 20).unwrap();
    let b = reference.evaluate(&data.0, &data.1, 20).unwrap();
    for (name, value) in &b {
        let d = ((a[name] - value) / value.abs().max(1e-12)).abs();
        assert!(d <= TOLERANCE as f64, "{name}: {} vs {value}", a[name]);
    }
    let p = parallel.predict(&data.0, 20).unwrap();
    let q = reference.predict(&data.0, 20).unwrap();
    assert_eq!(p.shape, q.shape);
    let d = relative_difference(p.as_f32().unwrap(), q.as_f32().unwrap());
    assert!(d <= TOLERANCE, "predictions differ by {d:e}");
}

#[test]
fn a_replicas_graph_needs_a_communicator() {
    let mut g = Graph::new();
    let x = g.input("x", [8, 3], DType::F32).unwrap();
    let m = g.mean(x, &[0], false).unwrap();
    g.output("m", m).unwrap();
    let shard = split_batch(8, 2).unwrap()[1];
    let sharded = shard_graph(&g, 8, shard).unwrap();
    assert_eq!(
        sharded
            .graph
            .shape(sharded.graph.inputs()[0].1)
            .unwrap()
            .dims(),
        &[4, 3]
    );
    let err = CpuBackend::new().compile(&sharded.graph).err().unwrap();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("communicator"), "{err}");
}
