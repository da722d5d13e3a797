//! Shared pieces of the example programs: the command-line flags every MNIST example takes,
//! the data loading, and the train–checkpoint–report loop.

pub mod infer_timing;

use clap::{CommandFactory, FromArgMatches, Parser};
use hasten::nn::callbacks::model_checkpoint::resume_epoch;
use hasten::prelude::*;
use std::path::PathBuf;

/// Flags shared by the MNIST examples.
#[derive(Parser, Debug, Clone)]
pub struct TrainArgs {
    /// Epochs to train.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Samples per step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Backend to train on: `cpu`, `cuda` (NVIDIA GPU 0) or `pjrt` (a PJRT plugin:
    /// `--plugin`, else `$HASTEN_PJRT_PLUGIN`).
    #[arg(long, default_value = "cpu")]
    pub backend: String,
    /// The PJRT plugin for `--backend pjrt` (`libtpu.so`, the CUDA or the CPU plugin).
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// Seed for weights and shuffling.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Save a checkpoint here after every epoch, and resume from it if one exists.
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Write a PNG plot of loss and accuracy per epoch here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// One line per epoch instead of a progress bar.
    #[arg(long)]
    pub epoch_lines: bool,
}

impl TrainArgs {
    /// The flags of this process, with `--epochs` defaulting to `epochs` instead of 10.
    pub fn parse_with_default_epochs(epochs: &'static str) -> Self {
        let command = Self::command().mut_arg("epochs", |a| a.default_value(epochs));
        Self::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit())
    }

    /// The backend named by `--backend`, or an error listing the available ones.
    pub fn backend(&self) -> Result<std::sync::Arc<dyn Backend>, String> {
        match self.backend.as_str() {
            "cpu" => Ok(std::sync::Arc::new(CpuBackend::new())),
            "pjrt" => {
                let backend =
                    PjrtBackend::new(self.plugin.as_deref()).map_err(|e| e.to_string())?;
                let kind = backend.device_kind().map_err(|e| e.to_string())?;
                println!("PJRT device: {kind}");
                Ok(std::sync::Arc::new(backend))
            }
            "cuda" => {
                let backend = CudaBackend::new(0).map_err(|e| e.to_string())?;
                let name = backend.device_name().map_err(|e| e.to_string())?;
                println!("CUDA device: {name}");
                Ok(std::sync::Arc::new(backend))
            }
            other => Err(format!(
                "unknown backend {other:?}; available: cpu, cuda, pjrt"
            )),
        }
    }
}

/// MNIST as tensors `(x_train, y_train, x_test, y_test)`, images `[n, 28, 28]` in [0, 1].
pub fn mnist() -> Result<(HostTensor, HostTensor, HostTensor, HostTensor), hasten::nn::Error> {
    let dir = Mnist::locate()?;
    let m = Mnist::load(&dir)?;
    let (train, test) = (m.train_len(), m.test_len());
    Ok((
        HostTensor::f32([train, 28, 28], m.train_images)?,
        HostTensor::i32([train], m.train_labels)?,
        HostTensor::f32([test, 28, 28], m.test_images)?,
        HostTensor::i32([test], m.test_labels)?,
    ))
}

/// Trains a model on MNIST as the flags say: builds and compiles it with `build` (or resumes
/// it from the checkpoint directory), fits with a NaN guard and per-epoch checkpoints, plots,
/// and prints the test loss and accuracy. `input` is the per-sample shape the data is given
/// in.
pub fn train_on_mnist(
    args: &TrainArgs,
    input: &[usize],
    build: impl FnOnce() -> Result<Sequential, hasten::nn::Error>,
) -> Result<(), Box<dyn std::error::Error>> {
    let (x_train, y_train, x_test, y_test) = mnist()?;
    let shape = |n: usize| [&[n][..], input].concat();
    let x_train = x_train.reshape(shape(60_000))?;
    let x_test = x_test.reshape(shape(10_000))?;
    let resume_from = args
        .checkpoint_dir
        .as_ref()
        .filter(|d| d.join("training.json").exists());
    let (mut model, initial_epoch) = match resume_from {
        Some(dir) => {
            let epoch = resume_epoch(dir)?;
            println!("resuming from {} at epoch {}", dir.display(), epoch + 1);
            (Sequential::load(dir)?, epoch)
        }
        None => (build()?, 0),
    };
    model.set_backend(args.backend()?)?;
    println!("{}", model.summary()?);
    let verbose = if args.epoch_lines {
        Verbosity::EpochLine
    } else {
        Verbosity::Auto
    };
    let nan_guard = TerminateOnNaN::new();
    let mut options = FitOptions::epochs(args.epochs)
        .batch_size(args.batch_size)
        .seed(args.seed)
        .verbose(verbose)
        .initial_epoch(initial_epoch)
        .callback(nan_guard.clone());
    if let Some(dir) = &args.checkpoint_dir {
        options = options.callback(ModelCheckpoint::new(dir));
    }
    let history = model.fit(&x_train, &y_train, options)?;
    if let Some((epoch, batch)) = nan_guard.terminated_at() {
        eprintln!(
            "training stopped: the loss became NaN at epoch {}, batch {batch}",
            epoch + 1
        );
    }
    if let Some(path) = &args.plot {
        history.save_plot(path)?;
        println!("plot written to {}", path.display());
    }
    let test = model.evaluate(&x_test, &y_test, 256)?;
    let seconds: Vec<String> = history.seconds.iter().map(|s| format!("{s:.2}")).collect();
    println!("seconds per epoch: {}", seconds.join(" "));
    let get = |k: &str| test.get(k).copied().unwrap_or(f64::NAN);
    println!(
        "test loss {:.4}, test accuracy {:.4}",
        get("loss"),
        get("accuracy")
    );
    Ok(())
}

/// Compiles `model` as the reference models are: Adam, sparse categorical cross-entropy,
/// accuracy.
pub fn compile_reference(mut model: Sequential) -> Result<Sequential, hasten::nn::Error> {
    model.compile(
        Adam::default(),
        Loss::sparse_categorical_crossentropy(),
        &[Metric::Accuracy],
    )?;
    Ok(model)
}

/// The process exit code for a program's result, printing the error if there is one.
pub fn exit_code(result: Result<(), Box<dyn std::error::Error>>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
