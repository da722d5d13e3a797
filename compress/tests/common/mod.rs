//! Small models and data the pruning tests train.

#![allow(dead_code)]

use hasten_nn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

/// `n` samples of `features` values with labels in `0..classes`.
pub fn classification(
    n: usize,
    dims: &[usize],
    classes: usize,
    seed: u64,
) -> (HostTensor, HostTensor) {
    let per: usize = dims.iter().product();
    let mut rng = StdRng::seed_from_u64(seed);
    let x: Vec<f32> = (0..n * per).map(|_| rng.random_range(-1.0..1.0)).collect();
    // The label is the best of `classes` fixed linear scores: learnable by every model here.
    let y: Vec<i32> = x
        .chunks(per)
        .map(|s| {
            let score = |c: usize| -> f32 {
                s.iter()
                    .enumerate()
                    .map(|(i, v)| v * ((i * 7 + c * 13) as f32).sin())
                    .sum()
            };
            (0..classes)
                .max_by(|&a, &b| score(a).total_cmp(&score(b)))
                .unwrap_or(0) as i32
        })
        .collect();
    let mut shape = vec![n];
    shape.extend_from_slice(dims);
    (
        HostTensor::f32(shape, x).expect("x"),
        HostTensor::i32(vec![n], y).expect("y"),
    )
}

/// The reference MLP's architecture at a smaller input: Dense(hidden, relu) → Dense(classes,
/// softmax).
pub fn mlp(features: usize, hidden: usize, classes: usize) -> Sequential {
    let mut model = Sequential::new();
    model.add(
        Dense::new(hidden)
            .activation(Activation::Relu)
            .input_shape([features]),
    );
    model.add(Dense::new(classes).activation(Activation::Softmax));
    model
}

/// The reference CNN's architecture at a smaller image.
pub fn cnn(side: usize, filters: usize, classes: usize) -> Sequential {
    let mut model = Sequential::new();
    model.add(
        Conv2D::new(filters, [3, 3])
            .activation(Activation::Relu)
            .input_shape([side, side, 1]),
    );
    model.add(MaxPooling2D::new([2, 2]));
    model.add(Flatten::new());
    model.add(Dense::new(classes).activation(Activation::Softmax));
    model
}

/// Adam at `lr`, sparse categorical cross-entropy, accuracy.
pub fn compile(model: &mut Sequential, lr: f32) {
    model
        .compile(
            Adam::new(lr),
            Loss::sparse_categorical_crossentropy(),
            &[Metric::Accuracy],
        )
        .expect("compile");
}

/// Quiet, unshuffled-by-seed fit options.
pub fn options(epochs: usize, batch: usize) -> FitOptions {
    FitOptions::epochs(epochs)
        .batch_size(batch)
        .verbose(Verbosity::Silent)
        .seed(7)
}

/// A fresh directory under the temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// `hasten-compress-{pid}-{name}`, emptied.
    pub fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("hasten-compress-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    /// The path of `name` inside.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The values of a float tensor.
pub fn values(t: &HostTensor) -> Vec<f32> {
    t.as_f32().expect("f32").to_vec()
}

/// `n` values, each nonzero (uniform in ±1) with probability `density`.
pub fn sparse_random(n: usize, density: f64, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            if rng.random::<f64>() < density {
                rng.random_range(-1.0..1.0)
            } else {
                0.0
            }
        })
        .collect()
}
