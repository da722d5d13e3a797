//! What the input check of `fit` costs, against one epoch of the reference MLP measured in the
//! same run, on the full MNIST training set (60,000 × 784 `f32`s).
//!
//! `fit` copies its samples whether it checks them or not, so the check's cost is the copy
//! with the scan less the plain copy; the scan alone (what `predict` adds) is printed too.
//! Each figure is the median of its repeats.

use hasten::nn::model::finite::{copy_and_find_non_finite, first_non_finite};
use hasten::prelude::*;
use hasten_examples::mnist;
use std::hint::black_box;
use std::time::Instant;

/// Median seconds of `runs` calls of `f`.
fn median_seconds(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

/// Seconds of one epoch of the reference MLP at batch 32 (the input check off).
fn mlp_epoch(x: &HostTensor, y: &HostTensor) -> Result<f64, hasten::nn::Error> {
    let mut model = Sequential::new()
        .with(
            Dense::new(128)
                .activation(Activation::Relu)
                .input_shape([784]),
        )
        .with(Dense::new(10).activation(Activation::Softmax));
    model.compile(
        Adam::default(),
        Loss::sparse_categorical_crossentropy(),
        &[Metric::Accuracy],
    )?;
    let options = FitOptions::epochs(2)
        .batch_size(32)
        .verbose(Verbosity::Silent)
        .check_finite(false);
    // The second epoch: the first includes compiling the step.
    Ok(model.fit(x, y, options)?.seconds[1])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (x, y, _, _) = mnist()?;
    let x = x.reshape([60_000, 784])?;
    let values = x.as_f32()?;
    let runs = 21;
    let copy = median_seconds(runs, || {
        black_box(values.to_vec());
    });
    let copy_and_scan = median_seconds(runs, || {
        black_box(copy_and_find_non_finite(black_box(values)));
    });
    let scan = median_seconds(runs, || {
        black_box(first_non_finite(black_box(values)));
    });
    let mut epochs: Vec<f64> = (0..3)
        .map(|_| mlp_epoch(&x, &y))
        .collect::<Result<_, _>>()?;
    epochs.sort_by(f64::total_cmp);
    let epoch = epochs[1];
    let check = (copy_and_scan - copy).max(0.0);
    let gb = std::mem::size_of_val(values) as f64 / 1e9;
    println!("MNIST train set: {:.1} MB of f32", gb * 1e3);
    println!("copy alone:          {:>8.2} ms", copy * 1e3);
    println!("copy with the check: {:>8.2} ms", copy_and_scan * 1e3);
    println!(
        "scan alone:          {:>8.2} ms ({:.1} GB/s)",
        scan * 1e3,
        gb / scan
    );
    println!("one MLP epoch (batch 32): {:.3} s", epoch);
    println!(
        "check in fit: {:.2} ms = {:.2} % of an epoch; scan alone: {:.2} % of an epoch",
        check * 1e3,
        100.0 * check / epoch,
        100.0 * scan / epoch
    );
    Ok(())
}
