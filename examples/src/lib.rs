//! Shared pieces of the example programs: the command-line flags every MNIST example takes,
//! the data loading, and the train–checkpoint–report loop.

pub mod collective_timing;
pub mod infer_timing;

use clap::{CommandFactory, FromArgMatches, Parser};
use hasten::nn::callbacks::model_checkpoint::resume_epoch_for;
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
    let mut model = match resume_from {
        Some(dir) => Sequential::load(dir)?,
        None => build()?,
    };
    model.set_backend(args.backend()?)?;
    let initial_epoch = match resume_from {
        Some(dir) => {
            let epoch = resume_epoch_for(dir, &model)?;
            println!("resuming from {} at epoch {}", dir.display(), epoch + 1);
            epoch
        }
        None => 0,
    };
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

/// The reference CNN (not compiled): Conv2D(32, 3×3, relu, input 28×28) → MaxPooling2D(2×2)
/// → Flatten → Dense(10, softmax), its weights drawn from `seed`.
pub fn reference_cnn(seed: u64) -> Sequential {
    let mut model = Sequential::new().seed(seed);
    model.add(
        Conv2D::new(32, [3, 3])
            .activation(Activation::Relu)
            .input_shape([28, 28]),
    );
    model.add(MaxPooling2D::new([2, 2]));
    model.add(Flatten::new());
    model.add(Dense::new(10).activation(Activation::Softmax));
    model
}

/// The reference MLP (not compiled): Dense(128, relu, input 784) → Dense(10, softmax), its
/// weights drawn from `seed`.
pub fn reference_mlp(seed: u64) -> Sequential {
    let mut model = Sequential::new().seed(seed);
    model.add(
        Dense::new(128)
            .activation(Activation::Relu)
            .input_shape([784]),
    );
    model.add(Dense::new(10).activation(Activation::Softmax));
    model
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

/// Samples per second of `model`'s train steps on `backend` at `batch`, over 50 steps on
/// synthetic MNIST-sized samples of shape `sample` (`[28, 28]` or `[784]`), after 50 steps
/// that compile and warm up.
pub fn train_throughput(
    mut model: Sequential,
    backend: std::sync::Arc<dyn Backend>,
    batch: usize,
    sample: &[usize],
) -> Result<f64, hasten::nn::Error> {
    let n = batch * 50;
    let x: Vec<f32> = (0..n * 784).map(|i| (i % 255) as f32 / 255.0).collect();
    let y: Vec<i32> = (0..n).map(|i| (i % 10) as i32).collect();
    let shape = [&[n][..], sample].concat();
    let (x, y) = (HostTensor::f32(shape, x)?, HostTensor::i32([n], y)?);
    model.set_backend(backend)?;
    let options = || {
        FitOptions::epochs(1)
            .batch_size(batch)
            .verbose(Verbosity::Silent)
    };
    model.fit(&x, &y, options())?;
    let start = std::time::Instant::now();
    model.fit(&x, &y, options())?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
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
