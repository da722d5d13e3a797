//! A model trained by N processes over MPI (`MultiWorker`), on synthetic data, checked against
//! one device (`--model mlp|cnn|dropout|batchnorm`: the reference MLP and CNN, the MLP with
//! Dropout(0.5), a CNN with two BatchNormalization layers):
//!
//! ```sh
//! cargo build --release -p hasten-examples --features mpi --bin multi_worker_check
//! mpirun -n 2 target/release/multi_worker_check --check
//! ```
//!
//! Every rank holds the same data and takes its share of each global batch; rank 0 prints the
//! epochs, writes the checkpoint (`--checkpoint-dir`) and, with `--check`, also trains the
//! model on one CPU backend and compares every state tensor (within 1e-5 of its largest
//! magnitude). With `--checkpoint-dir` rank 0 saves a checkpoint after every epoch; `--resume`
//! continues from it (with the same number of ranks: another count is an error).
//!
//! Fault injection for the tests: `HASTEN_TEST_HANG_RANK=r` makes rank r hang before training,
//! to show the timeout ending the job; `HASTEN_TEST_KILL_RANK=r` makes rank r kill itself
//! (`SIGKILL`) after its fifth batch, to show a dead rank ending the job.

use clap::Parser;
use hasten::nn::callbacks::model_checkpoint::resume_epoch_for;
use hasten::nn::callbacks::{Callback, Control};
use hasten::parallel::MultiWorker;
use hasten::prelude::*;
use hasten_examples::{compile_reference, exit_code, reference_cnn, reference_mlp};
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
    /// Rank 0 saves a checkpoint here after every epoch.
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Resume from the checkpoint in `--checkpoint-dir`.
    #[arg(long, requires = "checkpoint_dir")]
    resume: bool,
    /// Rank 0 also trains on one CPU backend and compares the weights.
    #[arg(long)]
    check: bool,
    /// The model: `mlp`, `cnn`, `dropout` (MLP with Dropout(0.5)) or `batchnorm` (the
    /// data-parallel tests' CNN on 12×12 inputs with two BatchNormalization layers, trained with
    /// SGD and momentum).
    #[arg(long, default_value = "mlp")]
    model: String,
}

/// The model `--model` names, compiled, and the shape of one of its samples.
fn build(name: &str) -> Result<(Sequential, Vec<usize>), Box<dyn std::error::Error>> {
    let dense = |units| Dense::new(units).activation(Activation::Relu);
    let softmax = || Dense::new(10).activation(Activation::Softmax);
    Ok(match name {
        "mlp" => (compile_reference(reference_mlp(7))?, vec![784]),
        "cnn" => (compile_reference(reference_cnn(7))?, vec![28, 28]),
        "dropout" => {
            let model = Sequential::new()
                .seed(7)
                .with(dense(128).input_shape([784]))
                .with(Dropout::new(0.5))
                .with(softmax());
            (compile_reference(model)?, vec![784])
        }
        "batchnorm" => {
            let conv = Conv2D::new(8, [3, 3]).activation(Activation::Relu);
            let mut model = Sequential::new()
                .seed(7)
                .with(conv.input_shape([12, 12]))
                .with(BatchNormalization::new().momentum(0.9))
                .with(Flatten::new())
                .with(dense(16))
                .with(BatchNormalization::new())
                .with(softmax());
            // SGD: see docs/ARCHITECTURE.md ("Data parallel") for why not Adam with BN.
            let sgd = Sgd::new(0.01).momentum(0.9);
            model.compile(
                sgd,
                Loss::sparse_categorical_crossentropy(),
                &[Metric::Accuracy],
            )?;
            (model, vec![12, 12])
        }
        other => {
            return Err(format!("unknown --model {other:?}: mlp, cnn, dropout, batchnorm").into())
        }
    })
}

/// Deterministic inputs in [0, 1) of `n` samples of shape `sample`, and labels, the same on
/// every rank.
fn data(
    n: usize,
    sample: &[usize],
) -> Result<(HostTensor, HostTensor), Box<dyn std::error::Error>> {
    let x = (0..n * sample.iter().product::<usize>())
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let y = (0..n).map(|i| ((i * 31) % 10) as i32).collect();
    let shape = [&[n][..], sample].concat();
    Ok((HostTensor::f32(shape, x)?, HostTensor::i32([n], y)?))
}

/// Kills this process with `SIGKILL` after the given batch: a rank dying mid-fit.
struct KillAfter(usize);

impl Callback for KillAfter {
    fn on_batch_end(
        &mut self,
        batch: usize,
        _loss: f32,
        _ctx: &mut Control<'_>,
    ) -> hasten::nn::Result<()> {
        if batch + 1 == self.0 {
            let pid = std::process::id().to_string();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
            std::process::abort();
        }
        Ok(())
    }
}

/// Whether the fault-injection variable `var` names this rank.
fn injected(var: &str, rank: usize) -> bool {
    std::env::var(var).ok() == Some(rank.to_string())
}

/// Fits `args.epochs` epochs from `initial_epoch`; rank 0 (`chief`) prints and checkpoints.
fn train(
    model: &mut Sequential,
    data: &(HostTensor, HostTensor),
    args: &Args,
    initial_epoch: usize,
    rank: Option<usize>,
) -> hasten::nn::Result<()> {
    let chief = rank == Some(0);
    let verbosity = if chief {
        Verbosity::EpochLine
    } else {
        Verbosity::Silent
    };
    let mut options = FitOptions::epochs(args.epochs)
        .batch_size(args.batch_size)
        .initial_epoch(initial_epoch)
        .verbose(verbosity);
    if let (true, Some(dir)) = (chief, &args.checkpoint_dir) {
        options = options.callback(ModelCheckpoint::new(dir));
    }
    if rank.is_some_and(|r| injected("HASTEN_TEST_KILL_RANK", r)) {
        options = options.callback(KillAfter(5));
    }
    model.fit(&data.0, &data.1, options).map(|_| ())
}

/// The largest difference between the two models' state tensors, relative to the largest
/// magnitude of each, and the tensor it is in.
fn largest_difference(
    a: &mut Sequential,
    b: &mut Sequential,
) -> Result<(f32, String), hasten::nn::Error> {
    let (a, b) = (a.get_state()?, b.get_state()?);
    let mut worst = (0f32, String::new());
    for (name, x) in &a {
        if let (Ok(x), Ok(y)) = (x.as_f32(), b[name].as_f32()) {
            let scale = y.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
            let diff = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
            if diff / scale > worst.0 {
                worst = (diff / scale, name.clone());
            }
        }
    }
    Ok(worst)
}

/// This rank's model: the checkpoint's with `--resume`, else a fresh one; with the epoch to
/// start from.
fn model_on(
    worker: Arc<dyn Backend>,
    args: &Args,
) -> Result<(Sequential, usize), Box<dyn std::error::Error>> {
    match (&args.checkpoint_dir, args.resume) {
        (Some(dir), true) => {
            let mut model = Sequential::load(dir)?;
            model.set_backend(worker)?;
            let epoch = resume_epoch_for(dir, &model)?;
            Ok((model, epoch))
        }
        _ => {
            let mut model = build(&args.model)?.0;
            model.set_backend(worker)?;
            Ok((model, 0))
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let worker = MultiWorker::init(Duration::from_secs_f64(args.timeout_s))?;
    let (rank, size, chief) = (worker.rank(), worker.size(), worker.is_chief());
    if injected("HASTEN_TEST_HANG_RANK", rank) {
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let data = data(20 * args.batch_size, &build(&args.model)?.1)?;
    let (mut model, initial_epoch) = model_on(Arc::new(worker), args)?;
    train(&mut model, &data, args, initial_epoch, Some(rank))?;
    if args.check && chief {
        let mut reference = build(&args.model)?.0;
        train(&mut reference, &data, args, 0, None)?;
        let (worst, tensor) = largest_difference(&mut model, &mut reference)?;
        println!("{size} ranks vs one device: largest relative difference {worst:e} ({tensor})");
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
