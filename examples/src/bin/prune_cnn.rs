//! The seed's pruning snippet: the reference CNN wrapped in `prune_low_magnitude`, Adam,
//! 10 epochs; and the same model trained dense the same way, for comparison. Prints test
//! accuracy, per-layer sparsity, dense against pruned size (raw and gzip) and inference time
//! at batch 1 and 256, dense against the sparse model.
//!
//! `cargo run --release -p hasten-examples --bin prune_cnn [-- --final-sparsity 0.8
//! --schedule polynomial|constant --model cnn|mlp --epochs 10 --end-fraction 0.4
//! --begin-epochs 0 --frequency 100 --seed 42]`

use clap::{Parser, ValueEnum};
use hasten::compress::{
    dense_size, prune_low_magnitude, sparse_size, strip_pruning, ConstantSparsity, PolynomialDecay,
    PruningParams, PruningSchedule, SparseChoice, SparseModel,
};
use hasten::prelude::*;
use hasten_examples::{compile_reference, exit_code, mnist};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ScheduleKind {
    /// `PolynomialDecay(0 → final)` from `--begin-epochs` to `--end-fraction` of the steps.
    Polynomial,
    /// `ConstantSparsity(final)` from `--begin-epochs` on.
    Constant,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModelKind {
    /// The reference CNN.
    Cnn,
    /// The reference MLP.
    Mlp,
}

#[derive(Parser, Debug)]
struct Args {
    /// Sparsity at the end of the schedule.
    #[arg(long, default_value_t = 0.8)]
    final_sparsity: f32,
    /// The pruning schedule.
    #[arg(long, value_enum, default_value = "polynomial")]
    schedule: ScheduleKind,
    /// Which reference model.
    #[arg(long, value_enum, default_value = "cnn")]
    model: ModelKind,
    /// Epochs for both the dense and the pruned model.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Samples per step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Seed of weights and shuffling (the same for both models).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where the polynomial schedule reaches its final sparsity, as a fraction of all steps:
    /// 40 % leaves six of ten epochs to recover at the final mask (see ARCHITECTURE.md).
    #[arg(long, default_value_t = 0.4)]
    end_fraction: f64,
    /// Epochs trained dense before pruning begins (the schedule's `begin_step`).
    #[arg(long, default_value_t = 0)]
    begin_epochs: usize,
    /// Steps between mask updates (tfmot's `frequency`).
    #[arg(long, default_value_t = 100)]
    frequency: i64,
}

fn reference(kind: ModelKind, seed: u64) -> Sequential {
    let mut model = Sequential::new().seed(seed);
    match kind {
        ModelKind::Cnn => {
            model.add(
                Conv2D::new(32, [3, 3])
                    .activation(Activation::Relu)
                    .input_shape([28, 28]),
            );
            model.add(MaxPooling2D::new([2, 2]));
            model.add(Flatten::new());
        }
        ModelKind::Mlp => {
            model.add(Flatten::new().input_shape([28, 28]));
            model.add(Dense::new(128).activation(Activation::Relu));
        }
    }
    model.add(Dense::new(10).activation(Activation::Softmax));
    model
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let (x_train, y_train, x_test, y_test) = mnist()?;
    let steps_per_epoch = 60_000usize.div_ceil(args.batch_size);
    let begin_step = (steps_per_epoch * args.begin_epochs) as i64;
    let end_step = (args.end_fraction * (steps_per_epoch * args.epochs) as f64) as i64;
    let schedule: PruningSchedule = match args.schedule {
        ScheduleKind::Polynomial => {
            PolynomialDecay::new(0.0, args.final_sparsity, begin_step, end_step)
                .frequency(args.frequency)
                .into()
        }
        ScheduleKind::Constant => ConstantSparsity::new(args.final_sparsity, begin_step)
            .frequency(args.frequency)
            .into(),
    };
    let fit = |model: &mut Sequential| {
        let options = FitOptions::epochs(args.epochs)
            .batch_size(args.batch_size)
            .seed(args.seed)
            .verbose(Verbosity::EpochLine);
        model.fit(&x_train, &y_train, options)
    };

    println!("== dense {:?}", args.model);
    let mut dense = compile_reference(reference(args.model, args.seed))?;
    fit(&mut dense)?;
    let dense_accuracy = dense.evaluate(&x_test, &y_test, 256)?["accuracy"];

    println!("== pruned {:?}, {schedule:?}", args.model);
    let mut pruned = prune_low_magnitude(
        reference(args.model, args.seed),
        PruningParams::new(schedule),
    )?;
    pruned = compile_reference(pruned)?;
    let history = fit(&mut pruned)?;
    let pruned_accuracy = pruned.evaluate(&x_test, &y_test, 256)?["accuracy"];

    println!("\n| model | test accuracy |\n|---|---|");
    println!("| dense | {:.2} % |", 100.0 * dense_accuracy);
    println!(
        "| pruned | {:.2} % ({:+.2} points) |",
        100.0 * pruned_accuracy,
        100.0 * (pruned_accuracy - dense_accuracy)
    );
    println!("\n| layer | sparsity | threshold |\n|---|---|---|");
    for (name, values) in &history.metrics {
        if let Some(layer) = name.strip_suffix("/sparsity") {
            let threshold = history
                .last(&format!("{layer}/threshold"))
                .unwrap_or(f64::NAN);
            println!(
                "| {layer} | {:.2} % | {threshold:.4} |",
                100.0 * values[values.len() - 1]
            );
        }
    }

    let dense_bytes = dense_size(&mut dense)?;
    let sparse_bytes = sparse_size(&mut pruned)?;
    let mut stripped = strip_pruning(pruned)?;
    let stripped_bytes = dense_size(&mut stripped)?;
    println!("\n| file | raw bytes | gzip bytes | gzip vs dense |\n|---|---|---|---|");
    for (what, s) in [
        ("dense model", dense_bytes),
        ("stripped pruned model", stripped_bytes),
        ("sparse file (CSR)", sparse_bytes),
    ] {
        println!(
            "| {what} | {} | {} | {:.3} |",
            s.raw,
            s.gzip,
            s.gzip as f64 / dense_bytes.gzip as f64
        );
    }

    println!("\n| predict 10k test images | batch 1 | batch 256 |\n|---|---|---|");
    let mut sparse = SparseModel::new(&mut stripped, SparseChoice::Auto)?;
    let sparse_layers: Vec<String> = sparse
        .sparse_layers()
        .iter()
        .map(|(n, d)| format!("{n} at density {d:.3}"))
        .collect();
    let time = |f: &mut dyn FnMut(usize) -> Result<HostTensor, Box<dyn std::error::Error>>,
                batch| {
        let started = Instant::now();
        f(batch).map(|_| started.elapsed().as_secs_f64())
    };
    let mut dense_times = Vec::new();
    let mut sparse_times = Vec::new();
    for batch in [1, 256] {
        dense_times.push(time(&mut |b| Ok(dense.predict(&x_test, b)?), batch)?);
        sparse_times.push(time(&mut |b| Ok(sparse.predict(&x_test, b)?), batch)?);
    }
    println!(
        "| dense model | {:.3} s | {:.3} s |",
        dense_times[0], dense_times[1]
    );
    println!(
        "| sparse model | {:.3} s | {:.3} s |",
        sparse_times[0], sparse_times[1]
    );
    println!(
        "| speed-up | {:.2}× | {:.2}× |",
        dense_times[0] / sparse_times[0],
        dense_times[1] / sparse_times[1]
    );
    println!(
        "sparse layers: {}",
        if sparse_layers.is_empty() {
            "none (above the crossover density, or dearer sparse by the cost model)".into()
        } else {
            sparse_layers.join(", ")
        }
    );
    Ok(())
}

fn main() -> ExitCode {
    exit_code(run(&Args::parse()))
}
