//! Sparse against dense `predict` of the reference MLP (784 → 128 relu → 10 softmax) on
//! the 10k MNIST test images, at batch 1 and 256, for kernels pruned by magnitude to
//! 50/80/90/95 %, and the density where the sparse Dense kernel stops winning (the
//! crossover `SparseChoice::Auto` uses). The dense MLP is trained for one epoch first so
//! the weights pruned are real ones. Not in CI: `bench/prune/run`.

use hasten::compress::mask::magnitude_mask;
use hasten::compress::sparse::SparseMatrix;
use hasten::compress::{PruningParams, SparseChoice, SparseModel};
use hasten::prelude::*;
use hasten_examples::{compile_reference, exit_code, mnist};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

/// How long `f` takes, in seconds.
fn seconds(
    f: impl FnOnce() -> Result<(), Box<dyn std::error::Error>>,
) -> Result<f64, Box<dyn std::error::Error>> {
    let started = Instant::now();
    f()?;
    Ok(started.elapsed().as_secs_f64())
}

/// `min / median` in milliseconds.
fn ms((min, median): (f64, f64)) -> String {
    format!("{:.1} / {:.1} ms", 1e3 * min, 1e3 * median)
}

/// `weights` with every kernel pruned to `sparsity` by magnitude.
fn pruned(
    weights: &BTreeMap<String, HostTensor>,
    sparsity: f32,
) -> Result<BTreeMap<String, HostTensor>, Box<dyn std::error::Error>> {
    let mut out = weights.clone();
    for (name, w) in weights.iter().filter(|(n, _)| n.ends_with("/kernel")) {
        let values = w.as_f32()?;
        let mask = magnitude_mask(values, w.shape.dims(), &PruningParams::default(), sparsity)?;
        let kept = values
            .iter()
            .zip(&mask.values)
            .map(|(v, m)| v * m)
            .collect();
        out.insert(name.clone(), HostTensor::f32(w.shape.clone(), kept)?);
    }
    Ok(out)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (x_train, y_train, x_test, _) = mnist()?;
    let mut model = Sequential::new();
    model.add(Flatten::new().input_shape([28, 28]));
    model.add(Dense::new(128).activation(Activation::Relu));
    model.add(Dense::new(10).activation(Activation::Softmax));
    let mut model = compile_reference(model)?;
    model.fit(
        &x_train,
        &y_train,
        FitOptions::epochs(1).verbose(Verbosity::Silent),
    )?;
    let trained = model.get_weights()?;

    println!("10k test images, min / median of several runs, dense and sparse alternating\n");
    println!(
        "| sparsity | dense b=1 | sparse b=1 | speed-up | dense b=256 | sparse b=256 | speed-up |"
    );
    println!("|---|---|---|---|---|---|---|");
    for sparsity in [0.5f32, 0.8, 0.9, 0.95] {
        model.set_weights(&pruned(&trained, sparsity)?)?;
        let mut sparse = SparseModel::new(&mut model, SparseChoice::Always)?;
        let mut row = format!("| {:.0} % ", 100.0 * sparsity);
        for batch in [1, 256] {
            let runs = if batch == 1 { 5 } else { 11 };
            let (mut dense, mut fast) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                dense.push(seconds(|| {
                    Ok(model.predict(&x_test, batch).map(|_| ())?)
                })?);
                fast.push(seconds(|| {
                    Ok(sparse.predict(&x_test, batch).map(|_| ())?)
                })?);
            }
            let (dense, fast) = (min_median(dense), min_median(fast));
            row += &format!("| {} | {} | {:.2}× ", ms(dense), ms(fast), dense.1 / fast.1);
        }
        println!("{row}|");
    }
    println!("(speed-up: dense median / sparse median)");
    crossovers(&trained, &x_test)
}

/// Min and median of `times`.
fn min_median(mut times: Vec<f64>) -> (f64, f64) {
    times.sort_by(f64::total_cmp);
    (times[0], times[times.len() / 2])
}

/// The crossover at batch 1 and 256: the first layer's product alone, the sparse kernel
/// against the same Dense layer run by `predict` on the CPU backend.
fn crossovers(
    trained: &BTreeMap<String, HostTensor>,
    x_test: &HostTensor,
) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "\nfirst layer alone (784 → 128, no bias), per sample, medians of 7\n\n\
         | density | dense b=1 | sparse b=1 | sparse / dense | dense b=256 | sparse b=256 | \
         sparse / dense |\n|---|---|---|---|---|---|---|"
    );
    let x = x_test.rows(0, 1024)?.reshape([1024, 784])?;
    let mut crossover = [None, None];
    for density in [0.05f32, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9] {
        let weights = pruned(trained, 1.0 - density)?;
        let kernel = &weights["dense/kernel"];
        let mut one = Sequential::new().input([784]);
        one.add(Dense::new(128).use_bias(false));
        one.build()?;
        one.set_weights(&BTreeMap::from([(
            "dense/kernel".to_string(),
            kernel.clone(),
        )]))?;
        let matrix = SparseMatrix::from_dense(kernel.as_f32()?, 784, 128);
        let mut y = vec![0.0; 1024 * 128];
        let mut row = format!("| {:.0} % ", 100.0 * density);
        for (k, batch) in [1usize, 256].into_iter().enumerate() {
            let (mut dense, mut fast) = (Vec::new(), Vec::new());
            for _ in 0..7 {
                dense.push(seconds(|| Ok(one.predict(&x, batch).map(|_| ())?))?);
                fast.push(seconds(|| {
                    let x = x.as_f32()?;
                    for (x, y) in x.chunks(batch * 784).zip(y.chunks_mut(batch * 128)) {
                        matrix.matmul(x, None, y);
                    }
                    Ok(())
                })?);
            }
            let (dense, fast) = (min_median(dense).1 / 1024.0, min_median(fast).1 / 1024.0);
            if fast > dense && crossover[k].is_none() {
                crossover[k] = Some(density);
            }
            row += &format!(
                "| {:.2} µs | {:.2} µs | {:.2} ",
                1e6 * dense,
                1e6 * fast,
                fast / dense
            );
        }
        println!("{row}|");
    }
    for (k, batch) in [1, 256].into_iter().enumerate() {
        match crossover[k] {
            Some(d) => println!(
                "crossover at batch {batch}: the sparse kernel is slower from density {:.0} % on",
                100.0 * d
            ),
            None => println!("crossover at batch {batch}: above 90 % density"),
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    exit_code(run())
}
