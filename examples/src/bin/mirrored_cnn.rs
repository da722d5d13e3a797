//! The reference CNN on MNIST under TensorFlow's `MirroredStrategy` snippet: the model is
//! built, compiled and fitted as on one device, on `Mirrored::cpu(N)` — N replicas on threads
//! of this process, each taking 1/N of every global batch, gradients all-reduced.
//! Prints the training throughput (samples/s) and the test accuracy.

use clap::Parser;
use hasten::prelude::*;
use hasten_examples::{compile_reference, exit_code, mnist, reference_cnn};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// Flags.
#[derive(Parser, Debug)]
struct Args {
    /// Replicas (threads), each on its share of every batch.
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// Epochs to train.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Global batch (split between the replicas).
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Seed for weights and shuffling.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let (x_train, y_train, x_test, y_test) = mnist()?;
    // strategy = tf.distribute.MirroredStrategy(); with strategy.scope(): model = ...
    let strategy = Arc::new(Mirrored::cpu(args.replicas)?);
    let mut model = reference_cnn(args.seed);
    model.set_backend(strategy)?;
    let mut model = compile_reference(model)?;
    let options = FitOptions::epochs(args.epochs)
        .batch_size(args.batch_size)
        .seed(args.seed)
        .verbose(Verbosity::EpochLine);
    let start = Instant::now();
    model.fit(&x_train, &y_train, options)?;
    let seconds = start.elapsed().as_secs_f64();
    let samples = x_train.shape.dims()[0] * args.epochs;
    let test = model.evaluate(&x_test, &y_test, 256)?;
    println!(
        "replicas {}: {:.0} samples/s ({samples} samples in {seconds:.1} s); test loss {:.4}, \
         test accuracy {:.4}",
        args.replicas,
        samples as f64 / seconds,
        test["loss"],
        test["accuracy"]
    );
    Ok(())
}

fn main() -> ExitCode {
    exit_code(run(&Args::parse()))
}
