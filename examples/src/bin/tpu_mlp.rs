//! The reference MLP on MNIST on a PJRT device (a TPU with `libtpu.so`, a GPU with the CUDA
//! plugin, or the CPU plugin): Dense(128, relu) → Dense(10, softmax), Adam, sparse
//! categorical cross-entropy, accuracy, 10 epochs. The plugin is `--plugin PATH`, else
//! `$HASTEN_PJRT_PLUGIN`. `--replicas N` runs each step on N devices of the plugin
//! (TensorFlow's `TPUStrategy`: each takes 1/N of the global batch, gradients all-reduced on
//! the devices); the CPU plugin is asked for N devices.

use clap::Parser;
use hasten::prelude::*;
use hasten_examples::{compile_reference, exit_code, mnist};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Flags of `tpu_mlp`.
#[derive(Parser, Debug)]
struct Args {
    /// The PJRT plugin (default: `$HASTEN_PJRT_PLUGIN`).
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// Epochs to train.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Samples per step (the global batch: split between the replicas).
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Devices each step runs on.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Train steps per call into the plugin (Keras's `steps_per_execution`).
    #[arg(long, default_value_t = 1)]
    steps_per_execution: usize,
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let backend = match args.replicas {
        1 => PjrtBackend::new(args.plugin.as_deref())?,
        n => PjrtBackend::replicated(args.plugin.as_deref(), n)?,
    };
    println!(
        "PJRT device: {} ({}, {} devices, steps on {})",
        backend.device_kind()?,
        backend.platform_name()?,
        backend.device_count(),
        backend.replicas()
    );
    let (x_train, y_train, x_test, y_test) = mnist()?;
    let x_train = x_train.reshape([60_000, 784])?;
    let x_test = x_test.reshape([10_000, 784])?;
    let mut model = Sequential::new();
    model.set_backend(Arc::new(backend))?;
    model.add(
        Dense::new(128)
            .activation(Activation::Relu)
            .input_shape([784]),
    );
    model.add(Dense::new(10).activation(Activation::Softmax));
    let mut model = compile_reference(model)?;
    let options = FitOptions::epochs(args.epochs)
        .batch_size(args.batch_size)
        .steps_per_execution(args.steps_per_execution)
        .verbose(Verbosity::EpochLine);
    let history = model.fit(&x_train, &y_train, options)?;
    let seconds: Vec<String> = history.seconds.iter().map(|s| format!("{s:.2}")).collect();
    println!("seconds per epoch: {}", seconds.join(" "));
    let test = model.evaluate(&x_test, &y_test, 256)?;
    let accuracy = test.get("accuracy").copied().unwrap_or(f64::NAN);
    println!("test accuracy {:.4}", accuracy);
    Ok(())
}

fn main() -> ExitCode {
    exit_code(run(&Args::parse()))
}
