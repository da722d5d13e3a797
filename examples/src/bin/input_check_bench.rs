//! What the input check of `fit` costs, against one epoch of the reference MLP measured in the
//! same run, on the full MNIST training set (60,000 × 784 `f32`s).
//!
//! `fit` copies its samples whether it checks them or not, and the check scans each chunk of
//! the copy while it is in cache, so its cost is the copy with the scan less the plain copy.
//! Both copies go into one reused buffer (a fresh 188 MB allocation's page faults vary by tens
//! of milliseconds, more than the scan costs) and alternate, and the cost is the median of
//! the paired differences. The scan alone (what `predict` and `evaluate` add, as they read the
//! samples in place) is printed too.

use hasten::nn::model::finite::{append_and_find_non_finite, first_non_finite};
use hasten::prelude::*;
use hasten_examples::mnist;
use std::hint::black_box;
use std::time::Instant;

/// Seconds one call of `f` takes.
fn seconds(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64()
}

/// The median of `values`.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
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
    let runs = 31;
    let mut buffer: Vec<f32> = values.to_vec();
    let (mut copies, mut differences) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        buffer.clear();
        let copy = seconds(|| buffer.extend_from_slice(black_box(values)));
        buffer.clear();
        let checked = seconds(|| {
            black_box(append_and_find_non_finite(black_box(values), &mut buffer));
        });
        copies.push(copy);
        differences.push(checked - copy);
    }
    let (copy, check) = (median(copies), median(differences).max(0.0));
    let scan = median(
        (0..runs)
            .map(|_| seconds(|| _ = black_box(first_non_finite(black_box(values)))))
            .collect(),
    );
    let mut epochs: Vec<f64> = (0..3)
        .map(|_| mlp_epoch(&x, &y))
        .collect::<Result<_, _>>()?;
    let epoch = median(std::mem::take(&mut epochs));
    let gb = std::mem::size_of_val(values) as f64 / 1e9;
    println!("MNIST train set: {:.1} MB of f32", gb * 1e3);
    println!("copy alone (reused buffer): {:>8.2} ms", copy * 1e3);
    println!(
        "scan alone:                 {:>8.2} ms ({:.1} GB/s)",
        scan * 1e3,
        gb / scan
    );
    println!("one MLP epoch (batch 32): {:.3} s", epoch);
    println!(
        "check in fit (median paired difference): {:.2} ms = {:.2} % of an epoch; \
         scan alone: {:.2} % of an epoch",
        check * 1e3,
        100.0 * check / epoch,
        100.0 * scan / epoch
    );
    Ok(())
}
