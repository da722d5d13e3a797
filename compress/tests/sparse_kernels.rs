//! The sparse kernels against independent references: a product written out in f64, and the
//! dense CPU path (`Sequential::predict` on the same weights), at densities 1–100 %, at batch
//! sizes on both sides of the tiled path's threshold and not multiples of its tile, with
//! zero and nonzero inputs, and with ±∞ and NaN in the weights and inputs.

mod common;

use common::*;
use hasten_compress::sparse::{SparseMatrix, TILE, TILED_FROM};
use hasten_compress::{SparseChoice, SparseModel};
use hasten_nn::Sequential;
use hasten_tensor::HostTensor;
use std::collections::BTreeMap;

const DENSITIES: [f64; 8] = [0.01, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0];
const BATCHES: [usize; 12] = [1, 2, 3, 4, 7, 8, 15, 16, 17, 33, 100, 257];

/// `x · W + b` in f64, written out.
fn reference(x: &[f32], w: &[f32], b: &[f32], features: usize, units: usize) -> Vec<f32> {
    x.chunks(features)
        .flat_map(|row| {
            (0..units).map(move |j| {
                let dot: f64 = row
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| v as f64 * w[i * units + j] as f64)
                    .sum();
                (dot + b[j] as f64) as f32
            })
        })
        .collect()
}

/// Equal within rounding, NaN where `want` is NaN, the same infinity where it is infinite.
fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let same = if b.is_nan() || b.is_infinite() {
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
        } else {
            (a - b).abs() <= 1e-5 * (1.0 + b.abs())
        };
        assert!(same, "{what}, [{i}]: {a} vs {b}");
    }
}

#[test]
fn the_thresholds_are_what_the_tests_straddle() {
    assert!(BATCHES.contains(&(TILED_FROM - 1)) && BATCHES.contains(&TILED_FROM));
    assert!(BATCHES.iter().any(|b| b % TILE != 0 && *b > TILE));
}

#[test]
fn the_product_equals_the_written_out_one_at_every_density_and_batch() {
    let (features, units) = (67, 29);
    let bias = sparse_random(units, 1.0, 9);
    for (k, density) in DENSITIES.into_iter().enumerate() {
        let w = sparse_random(features * units, density, k as u64);
        let matrix = SparseMatrix::from_dense(&w, features, units);
        assert_eq!(matrix.nnz(), w.iter().filter(|&&v| v != 0.0).count());
        for samples in BATCHES {
            // Half the inputs zero (rows the one-sample kernel skips), then none.
            for input_density in [0.5, 1.0] {
                let x = sparse_random(samples * features, input_density, 100 + samples as u64);
                let mut y = vec![f32::NAN; samples * units];
                matrix.matmul(&x, Some(&bias), &mut y);
                let want = reference(&x, &w, &bias, features, units);
                let what = format!("density {density}, {samples} samples, inputs {input_density}");
                assert_close(&y, &want, &what);
            }
        }
    }
}

#[test]
fn non_finite_values_give_what_the_written_out_product_gives() {
    let (features, units) = (21, 19);
    let bias = sparse_random(units, 1.0, 2);
    for samples in BATCHES {
        for (weights, inputs) in [(true, false), (false, true), (true, true)] {
            let mut w = sparse_random(features * units, 0.3, 3);
            let mut x = sparse_random(samples * features, 0.5, 4);
            if weights {
                // ∞ meets zero inputs (0 · ∞ = NaN) and nonzero ones; NaN poisons its unit.
                w[2] = f32::INFINITY;
                w[units * 7 + 5] = f32::NEG_INFINITY;
                w[units * 12 + 11] = f32::NAN;
            }
            if inputs {
                // A non-finite input meets pruned weights too: `∞ · 0 = NaN` in the dense
                // product.
                x[3] = f32::INFINITY;
                x[features * (samples - 1) + 8] = f32::NAN;
                x[features * (samples / 2) + 1] = f32::NEG_INFINITY;
            }
            let matrix = SparseMatrix::from_dense(&w, features, units);
            let mut y = vec![0.0; samples * units];
            matrix.matmul(&x, Some(&bias), &mut y);
            let want = reference(&x, &w, &bias, features, units);
            let what = format!("{samples} samples, weights {weights}, inputs {inputs}");
            assert_close(&y, &want, &what);
        }
    }
}

/// The reference MLP's shape at `features` inputs, its kernels `density` dense (`poison`
/// written over the first kernel's cells at the given indices).
fn mlp_with(features: usize, density: f64, poison: &[(usize, f32)], seed: u64) -> Sequential {
    let (hidden, classes) = (37, 10);
    let mut model = mlp(features, hidden, classes);
    model.build().unwrap();
    let mut kernel = sparse_random(features * hidden, density, seed);
    for &(i, v) in poison {
        kernel[i] = v;
    }
    let tensor = |shape: Vec<usize>, v: Vec<f32>| HostTensor::f32(shape, v).unwrap();
    let weights = BTreeMap::from([
        (
            "dense/kernel".into(),
            tensor(vec![features, hidden], kernel),
        ),
        (
            "dense/bias".into(),
            tensor(vec![hidden], sparse_random(hidden, 1.0, seed + 1)),
        ),
        (
            "dense_1/kernel".into(),
            tensor(
                vec![hidden, classes],
                sparse_random(hidden * classes, density, seed + 2),
            ),
        ),
        (
            "dense_1/bias".into(),
            tensor(vec![classes], sparse_random(classes, 1.0, seed + 3)),
        ),
    ]);
    model.set_weights(&weights).unwrap();
    model
}

/// The sparse model's predictions against the dense CPU path's, every batch size.
fn assert_predicts_as_dense(model: &mut Sequential, x: &HostTensor, what: &str) {
    let mut sparse = SparseModel::new(model, SparseChoice::Always).unwrap();
    assert_eq!(sparse.sparse_layers().len(), 2, "{what}");
    for batch in BATCHES {
        let want = values(&model.predict(x, batch).unwrap());
        let got = values(&sparse.predict(x, batch).unwrap());
        assert_close(&got, &want, &format!("{what}, batch {batch}"));
    }
}

#[test]
fn a_sparse_mlp_predicts_what_the_dense_cpu_path_predicts() {
    let features = 100; // not a multiple of the 8-wide transpose blocks
    for (k, density) in DENSITIES.into_iter().enumerate() {
        let mut model = mlp_with(features, density, &[], 10 * k as u64);
        for input_density in [0.2, 1.0] {
            let x = sparse_random(300 * features, input_density, 5);
            let x = HostTensor::f32(vec![300, features], x).unwrap();
            let what = format!("density {density}, inputs {input_density}");
            assert_predicts_as_dense(&mut model, &x, &what);
        }
    }
}

#[test]
fn non_finite_weights_give_what_the_dense_cpu_path_gives() {
    let features = 40;
    // ∞ meets zero inputs (0 · ∞ = NaN) and nonzero ones; NaN poisons its unit; the hidden
    // ∞ and NaN then meet the second layer's pruned weights.
    let poison = [
        (3, f32::INFINITY),
        (37 * 5 + 2, f32::NEG_INFINITY),
        (37 * 9 + 30, f32::NAN),
    ];
    let mut model = mlp_with(features, 0.3, &poison, 3);
    let x = HostTensor::f32(vec![40, features], sparse_random(40 * features, 0.5, 6)).unwrap();
    assert_predicts_as_dense(&mut model, &x, "non-finite weights");
}

#[test]
fn non_finite_inputs_give_what_the_dense_cpu_path_gives() {
    let features = 40;
    let mut model = mlp_with(features, 0.3, &[], 4);
    let mut x = sparse_random(40 * features, 0.5, 7);
    for (i, v) in [
        (5, f32::INFINITY),
        (features * 3 + 1, f32::NAN),
        (features * 20, -f32::INFINITY),
    ] {
        x[i] = v;
    }
    let x = HostTensor::f32(vec![40, features], x).unwrap();
    model.set_check_finite(false); // `predict` refuses such data unless told
    assert_predicts_as_dense(&mut model, &x, "non-finite inputs");
}

#[test]
fn non_finite_inputs_are_refused_unless_the_check_is_off() {
    let features = 40;
    let mut model = mlp_with(features, 0.3, &[], 5);
    let mut x = sparse_random(40 * features, 0.5, 8);
    x[features * 6 + 9] = f32::NAN;
    let x = HostTensor::f32(vec![40, features], x).unwrap();
    let mut sparse = SparseModel::new(&mut model, SparseChoice::Always).unwrap();
    let error = sparse.predict(&x, 8).unwrap_err().to_string();
    assert!(error.contains("x[6] has NaN at (9)"), "{error}");
    assert!(error.contains("set_check_finite(false)"), "{error}");
    sparse.set_check_finite(false);
    let y = values(&sparse.predict(&x, 8).unwrap());
    assert!(y[6 * 10..7 * 10].iter().all(|v| v.is_nan()));
    assert!(y[..6 * 10].iter().all(|v| v.is_finite()));
}
