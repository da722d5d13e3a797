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

/// The best of `runs` timings of `f`, in seconds.
fn best_of(
    runs: usize,
    mut f: impl FnMut() -> Result<(), Box<dyn std::error::Error>>,
) -> Result<f64, Box<dyn std::error::Error>> {
    let mut best = f64::INFINITY;
    for _ in 0..runs {
        let started = Instant::now();
        f()?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(best)
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

    println!(
        "| sparsity | dense b=1 | sparse b=1 | speed-up | dense b=256 | sparse b=256 | speed-up |"
    );
    println!("|---|---|---|---|---|---|---|");
    for sparsity in [0.5f32, 0.8, 0.9, 0.95] {
        model.set_weights(&pruned(&trained, sparsity)?)?;
        let mut sparse = SparseModel::new(&mut model, SparseChoice::Always)?;
        let mut row = format!("| {:.0} % ", 100.0 * sparsity);
        for batch in [1, 256] {
            let runs = if batch == 1 { 3 } else { 7 };
            let dense = best_of(runs, || Ok(model.predict(&x_test, batch).map(|_| ())?))?;
            let fast = best_of(runs, || Ok(sparse.predict(&x_test, batch).map(|_| ())?))?;
            row += &format!(
                "| {:.1} ms | {:.1} ms | {:.2}× ",
                1e3 * dense,
                1e3 * fast,
                dense / fast
            );
        }
        println!("{row}|");
    }

    // The crossover: the first layer's product alone, sparse kernel against the dense
    // GEMM run by the CPU backend on the same kernel, at batch 256.
    println!("\n| density | dense GEMM | sparse kernel | sparse / dense |\n|---|---|---|---|");
    let x = x_test.rows(0, 256)?.reshape([256, 784])?;
    let mut crossover = None;
    for density in [0.05f32, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7] {
        let weights = pruned(&trained, 1.0 - density)?;
        let kernel = &weights["dense/kernel"];
        let mut one = Sequential::new().input([784]);
        one.add(Dense::new(128).use_bias(false));
        one.build()?;
        one.set_weights(&BTreeMap::from([(
            "dense/kernel".to_string(),
            kernel.clone(),
        )]))?;
        let matrix = SparseMatrix::from_dense(kernel.as_f32()?, 784, 128);
        let mut y = vec![0.0; 256 * 128];
        let reps = 200;
        let dense = best_of(5, || {
            for _ in 0..reps {
                one.predict(&x, 256)?;
            }
            Ok(())
        })? / reps as f64;
        let fast = best_of(5, || {
            for _ in 0..reps {
                matrix.matmul(x.as_f32()?, None, &mut y);
            }
            Ok(())
        })? / reps as f64;
        if fast > dense && crossover.is_none() {
            crossover = Some(density);
        }
        println!(
            "| {:.0} % | {:.1} µs | {:.1} µs | {:.2} |",
            100.0 * density,
            1e6 * dense,
            1e6 * fast,
            fast / dense
        );
    }
    match crossover {
        Some(d) => println!(
            "\ncrossover: the sparse kernel is slower from density {:.0} % on",
            100.0 * d
        ),
        None => println!("\ncrossover: above 70 % density"),
    }
    Ok(())
}

fn main() -> ExitCode {
    exit_code(run())
}
