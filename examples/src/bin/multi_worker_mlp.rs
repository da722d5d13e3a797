//! The reference MLP trained by N processes over MPI (`MultiWorker`), on synthetic data:
//!
//! ```sh
//! cargo build --release -p hasten-examples --features mpi --bin multi_worker_mlp
//! mpirun -n 2 target/release/multi_worker_mlp --check
//! ```
//!
//! Every rank holds the same data and takes its share of each global batch; rank 0 prints the
//! epochs, writes the checkpoint (`--checkpoint-dir`) and, with `--check`, also trains the
//! model on one CPU backend and compares every state tensor (within 1e-5 of its largest
//! magnitude). `HASTEN_TEST_HANG_RANK=r` makes rank r hang before training, to show the
//! timeout ending the job.

use clap::Parser;
use hasten::parallel::MultiWorker;
use hasten::prelude::*;
use hasten_examples::{compile_reference, exit_code};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Flags.
#[derive(Parser, Debug)]
struct Args {
    /// Global batch (split between the ranks).
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Epochs of 20 steps.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Seconds a step may wait for the other ranks before the job is aborted.
    #[arg(long, default_value_t = 60.0)]
    timeout_s: f64,
    /// Rank 0 saves the model here after training.
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Rank 0 also trains on one CPU backend and compares the weights.
    #[arg(long)]
    check: bool,
}

fn mlp() -> Result<Sequential, hasten::nn::Error> {
    let mut model = Sequential::new().seed(7);
    model.add(
        Dense::new(128)
            .activation(Activation::Relu)
            .input_shape([784]),
    );
    model.add(Dense::new(10).activation(Activation::Softmax));
    compile_reference(model)
}

/// Deterministic inputs in [0, 1) and labels, the same on every rank.
fn data(n: usize) -> Result<(HostTensor, HostTensor), Box<dyn std::error::Error>> {
    let x = (0..n * 784)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let y = (0..n).map(|i| ((i * 31) % 10) as i32).collect();
    Ok((HostTensor::f32([n, 784], x)?, HostTensor::i32([n], y)?))
}

fn train(model: &mut Sequential, data: &(HostTensor, HostTensor), args: &Args, loud: bool) {
    let verbosity = if loud {
        Verbosity::EpochLine
    } else {
        Verbosity::Silent
    };
    let options = FitOptions::epochs(args.epochs)
        .batch_size(args.batch_size)
        .verbose(verbosity);
    if let Err(e) = model.fit(&data.0, &data.1, options) {
        eprintln!("fit failed: {e}");
        std::process::exit(1);
    }
}

fn largest_difference(a: &mut Sequential, b: &mut Sequential) -> Result<f32, hasten::nn::Error> {
    let (a, b) = (a.get_state()?, b.get_state()?);
    let mut worst = 0f32;
    for (name, x) in &a {
        if let (Ok(x), Ok(y)) = (x.as_f32(), b[name].as_f32()) {
            let scale = y.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
            let diff = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            worst = worst.max(diff / scale);
        }
    }
    Ok(worst)
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let worker = MultiWorker::init(Duration::from_secs_f64(args.timeout_s))?;
    if std::env::var("HASTEN_TEST_HANG_RANK").ok() == Some(worker.rank().to_string()) {
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let (rank, size, chief) = (worker.rank(), worker.size(), worker.is_chief());
    let data = data(20 * args.batch_size)?;
    let mut model = mlp()?;
    model.set_backend(Arc::new(worker))?;
    train(&mut model, &data, args, chief);
    if chief {
        if let Some(dir) = &args.checkpoint_dir {
            model.save(dir)?;
        }
    }
    if args.check && chief {
        let mut reference = mlp()?;
        train(&mut reference, &data, args, false);
        let worst = largest_difference(&mut model, &mut reference)?;
        println!("{size} ranks vs one device: largest relative difference {worst:e}");
        if worst > 1e-5 {
            return Err(format!("rank {rank}: the ranks' model differs from one device's").into());
        }
        println!("multi-worker equals one device");
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    exit_code(run(&Args::parse()))
}
