//! hasten's runner for the peer benchmark (`bench/peers/run`): trains a reference model and
//! prints one JSON line with the epoch times, test accuracy, peak memory and (with `--infer`)
//! inference times over the test set.

use clap::{Parser, ValueEnum};
use hasten::prelude::*;
use hasten_examples::infer_timing::time_inference;
use hasten_examples::mnist;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Model {
    Mlp,
    Cnn,
}

#[derive(Parser)]
struct Args {
    /// Which reference model.
    #[arg(long, value_enum)]
    model: Model,
    /// Samples per step.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Epochs (the first is reported separately as warm-up).
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// Also time prediction over the test set at batch 1 and 256.
    #[arg(long)]
    infer: bool,
    /// Train on only this many samples (smoke tests).
    #[arg(long)]
    limit: Option<usize>,
    /// Seed of the initial weights and of the shuffling (to see how much test accuracy
    /// varies with it); without it, the library's default seeds.
    #[arg(long)]
    seed: Option<u64>,
    /// Train on the samples in order, without shuffling (with --initial-weights-out, to replay
    /// the same run in another framework).
    #[arg(long)]
    no_shuffle: bool,
    /// Save the initial weights here (safetensors) before training.
    #[arg(long)]
    initial_weights_out: Option<std::path::PathBuf>,
}

fn build(model: Model) -> Sequential {
    let mut m = Sequential::new();
    match model {
        Model::Mlp => {
            m.add(
                Dense::new(128)
                    .activation(Activation::Relu)
                    .input_shape([784]),
            );
        }
        Model::Cnn => {
            m.add(
                Conv2D::new(32, [3, 3])
                    .activation(Activation::Relu)
                    .input_shape([28, 28, 1]),
            );
            m.add(MaxPooling2D::new([2, 2]));
            m.add(Flatten::new());
        }
    }
    m.add(Dense::new(10).activation(Activation::Softmax));
    m
}

/// Peak resident memory of this process in MiB (Linux), or 0 where unknown.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let (x, y, x_test, y_test) = mnist()?;
    let n = args.limit.unwrap_or(60_000).min(60_000);
    let dims: &[usize] = match args.model {
        Model::Mlp => &[784],
        Model::Cnn => &[28, 28, 1],
    };
    let with_batch = |rows: usize| [&[rows][..], dims].concat();
    let x = x.rows(0, n)?.reshape(with_batch(n))?;
    let y = y.rows(0, n)?;
    let x_test = x_test.reshape(with_batch(10_000))?;
    let mut model = build(args.model);
    if let Some(seed) = args.seed {
        model = model.seed(seed);
    }
    model.compile(
        Adam::default(),
        Loss::sparse_categorical_crossentropy(),
        &[Metric::Accuracy],
    )?;
    if let Some(path) = &args.initial_weights_out {
        model.save_weights(path)?;
    }
    let options = FitOptions::epochs(args.epochs)
        .batch_size(args.batch)
        .shuffle(!args.no_shuffle)
        .verbose(Verbosity::Silent);
    let options = match args.seed {
        Some(seed) => options.seed(seed),
        None => options,
    };
    let history = model.fit(&x, &y, options)?;
    let test = model.evaluate(&x_test, &y_test, 256)?;
    let (first, warm) = history
        .seconds
        .split_first()
        .map_or((0.0, &[][..]), |(f, w)| (*f, w));
    let mut sorted = warm.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(first);
    let mut infer = serde_json::Map::new();
    if args.infer {
        for batch in [1usize, 256] {
            let seconds = time_inference(|| model.predict(&x_test, batch).map(drop))?;
            infer.insert(batch.to_string(), seconds.into());
        }
    }
    let line = serde_json::json!({
        "framework": "hasten",
        "model": format!("{:?}", args.model).to_lowercase(),
        "batch": args.batch,
        "epoch_seconds": warm,
        "first_epoch_seconds": first,
        "samples_per_second": n as f64 / median,
        "test_accuracy": test.get("accuracy").copied().unwrap_or(f64::NAN),
        "peak_rss_mb": peak_rss_mb(),
        "infer_seconds": infer,
        "seed": args.seed,
    });
    println!("{line}");
    Ok(())
}
