//! The reference CNN on MNIST trained by N processes over MPI (`MultiWorker`, TensorFlow's
//! `MultiWorkerMirroredStrategy`): every rank takes its share of each global batch.
//!
//! ```sh
//! cargo build --release -p hasten-examples --features mpi --bin mpi_cnn
//! mpirun -n 2 target/release/mpi_cnn --epochs 10
//! ```
//!
//! Rank 0 prints the epochs, the throughput (samples/s) and the test accuracy, and with
//! `--checkpoint-dir` saves a checkpoint after every epoch; a job started again with the same
//! directory resumes from it (with the same number of ranks).

use clap::Parser;
use hasten::nn::callbacks::model_checkpoint::resume_epoch_for;
use hasten::parallel::MultiWorker;
use hasten::prelude::*;
use hasten_examples::{compile_reference, exit_code, mnist, reference_cnn};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Flags.
#[derive(Parser, Debug)]
struct Args {
    /// Epochs to train.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Global batch (split between the ranks).
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Seed for weights and shuffling (the same on every rank).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Seconds a step may wait for the other ranks before the job is aborted.
    #[arg(long, default_value_t = 120.0)]
    timeout_s: f64,
    /// Rank 0 saves a checkpoint here after every epoch; resume from it if one exists.
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    // strategy = tf.distribute.MultiWorkerMirroredStrategy(); with strategy.scope(): ...
    let worker = MultiWorker::init(Duration::from_secs_f64(args.timeout_s))?;
    let (chief, ranks) = (worker.is_chief(), worker.size());
    let (x_train, y_train, x_test, y_test) = mnist()?;
    let saved = args
        .checkpoint_dir
        .as_ref()
        .filter(|d| d.join("training.json").exists());
    let mut model = match saved {
        Some(dir) => Sequential::load(dir)?,
        None => compile_reference(reference_cnn(args.seed))?,
    };
    model.set_backend(Arc::new(worker))?;
    let initial_epoch = match saved {
        Some(dir) => resume_epoch_for(dir, &model)?,
        None => 0,
    };
    let verbose = if chief {
        Verbosity::EpochLine
    } else {
        Verbosity::Silent
    };
    let mut options = FitOptions::epochs(args.epochs)
        .batch_size(args.batch_size)
        .seed(args.seed)
        .initial_epoch(initial_epoch)
        .verbose(verbose);
    if let (true, Some(dir)) = (chief, &args.checkpoint_dir) {
        options = options.callback(ModelCheckpoint::new(dir));
    }
    let start = Instant::now();
    model.fit(&x_train, &y_train, options)?;
    let seconds = start.elapsed().as_secs_f64();
    let samples = x_train.shape.dims()[0] * args.epochs.saturating_sub(initial_epoch);
    let test = model.evaluate(&x_test, &y_test, 256)?;
    if chief {
        println!(
            "ranks {ranks}: {:.0} samples/s ({samples} samples in {seconds:.1} s); test loss \
             {:.4}, test accuracy {:.4}",
            samples as f64 / seconds,
            test["loss"],
            test["accuracy"]
        );
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    exit_code(run(&Args::parse()))
}
