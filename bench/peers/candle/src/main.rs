//! candle runner of hasten's peer benchmark: trains a reference model on MNIST with candle-nn on
//! the CPU and prints one JSON line (the schema of `bench/peers/README.md`).
//!
//! ```text
//! candle-peer --model mlp|cnn --batch 32 --epochs 4 [--infer] [--limit N]
//! ```
//!
//! The models are the Keras reference models written the candle-nn way: `Linear`/`Conv2d`
//! layers whose variables live in a `VarMap`, raw logits with `loss::cross_entropy`
//! (log-softmax + NLL, the same maths as softmax + sparse categorical cross-entropy), and
//! `AdamW` with `weight_decay: 0`, which is Adam (candle-nn ships no separate `Adam`).
//! Weights are glorot-uniform and biases zero as in Keras (candle-nn's own defaults would be
//! Kaiming-normal), the training set is reshuffled every epoch, and candle is held to 2 threads.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{loss, ops, Conv2d, Conv2dConfig, Init, Linear, Optimizer, VarBuilder, VarMap};
use flate2::read::GzDecoder;
use rand::seq::SliceRandom;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[path = "../../../../examples/src/infer_timing.rs"]
mod infer_timing;
use infer_timing::time_inference;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Mlp,
    Cnn,
}

struct Args {
    model: Kind,
    batch: usize,
    epochs: usize,
    infer: bool,
    limit: Option<usize>,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        model: Kind::Mlp,
        batch: 32,
        epochs: 4,
        infer: false,
        limit: None,
    };
    let mut model = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => {
                model = Some(match value()?.as_str() {
                    "mlp" => Kind::Mlp,
                    "cnn" => Kind::Cnn,
                    other => return Err(format!("unknown model {other:?}").into()),
                })
            }
            "--batch" => a.batch = value()?.parse()?,
            "--epochs" => a.epochs = value()?.parse()?,
            "--limit" => a.limit = Some(value()?.parse()?),
            "--infer" => a.infer = true,
            other => return Err(format!("unknown argument {other:?}; usage: --model mlp|cnn --batch N --epochs E [--infer] [--limit N]").into()),
        }
    }
    a.model = model.ok_or("--model mlp|cnn is required")?;
    if a.batch == 0 || a.epochs == 0 {
        return Err("--batch and --epochs must be positive".into());
    }
    Ok(a)
}

/// One gzipped IDX file of unsigned bytes: (dims, bytes).
fn idx(path: &Path) -> Res<(Vec<usize>, Vec<u8>)> {
    let mut raw = Vec::new();
    GzDecoder::new(std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?)
        .read_to_end(&mut raw)?;
    if raw.len() < 4 || raw[2] != 0x08 {
        return Err(format!("{}: not an unsigned-byte IDX file", path.display()).into());
    }
    let ndim = raw[3] as usize;
    let dims = (0..ndim)
        .map(|i| u32::from_be_bytes(raw[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    Ok((dims, raw[4 + 4 * ndim..].to_vec()))
}

/// (images as (N, 1, 28, 28) f32 in [0, 1], labels as (N,) u32) for one split.
fn split(dir: &Path, prefix: &str, limit: Option<usize>, dev: &Device) -> Res<(Tensor, Tensor)> {
    let (dims, px) = idx(&dir.join(format!("{prefix}-images-idx3-ubyte.gz")))?;
    let (_, lb) = idx(&dir.join(format!("{prefix}-labels-idx1-ubyte.gz")))?;
    let n = limit.unwrap_or(dims[0]).min(dims[0]);
    let px: Vec<f32> = px[..n * 784].iter().map(|&p| p as f32 / 255.0).collect();
    let lb: Vec<u32> = lb[..n].iter().map(|&l| l as u32).collect();
    Ok((
        Tensor::from_vec(px, (n, 1, 28, 28), dev)?,
        Tensor::from_vec(lb, n, dev)?,
    ))
}

fn glorot(fan_in: usize, fan_out: usize) -> Init {
    let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// Keras's `Dense`: glorot-uniform weight, zero bias.
fn dense(i: usize, o: usize, vb: VarBuilder) -> candle_core::Result<Linear> {
    let w = vb.get_with_hints((o, i), "weight", glorot(i, o))?;
    let b = vb.get_with_hints(o, "bias", Init::Const(0.0))?;
    Ok(Linear::new(w, Some(b)))
}

/// Keras's `Conv2D`: glorot-uniform kernel (fans times the receptive field), zero bias.
fn conv(i: usize, o: usize, k: usize, vb: VarBuilder) -> candle_core::Result<Conv2d> {
    let w = vb.get_with_hints((o, i, k, k), "weight", glorot(i * k * k, o * k * k))?;
    let b = vb.get_with_hints(o, "bias", Init::Const(0.0))?;
    Ok(Conv2d::new(w, Some(b), Conv2dConfig::default()))
}

enum Net {
    Mlp { fc1: Linear, fc2: Linear },
    Cnn { conv: Conv2d, fc: Linear },
}

impl Net {
    fn new(kind: Kind, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(match kind {
            Kind::Mlp => Net::Mlp {
                fc1: dense(784, 128, vb.pp("fc1"))?,
                fc2: dense(128, 10, vb.pp("fc2"))?,
            },
            Kind::Cnn => Net::Cnn {
                conv: conv(1, 32, 3, vb.pp("conv"))?,
                fc: dense(32 * 13 * 13, 10, vb.pp("fc"))?,
            },
        })
    }
}

impl Module for Net {
    /// Logits for a (B, 1, 28, 28) batch.
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Net::Mlp { fc1, fc2 } => xs.flatten_from(1)?.apply(fc1)?.relu()?.apply(fc2),
            Net::Cnn { conv, fc } => xs
                .apply(conv)?
                .relu()?
                .max_pool2d(2)?
                .flatten_from(1)?
                .apply(fc),
        }
    }
}

fn predict(net: &Net, x: &Tensor, batch: usize) -> candle_core::Result<Tensor> {
    let n = x.dim(0)?;
    let mut out = Vec::with_capacity(n.div_ceil(batch));
    for start in (0..n).step_by(batch) {
        let logits = net.forward(&x.narrow(0, start, batch.min(n - start))?)?;
        out.push(ops::softmax_last_dim(&logits)?);
    }
    Tensor::cat(&out, 0)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> Res<()> {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // The reference machine has 2 cores; every framework is pinned to them.
        std::env::set_var("RAYON_NUM_THREADS", "2");
    }
    let args = parse_args()?;
    let dev = Device::Cpu;
    let dir = std::env::var_os("HASTEN_MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../data/mnist"));
    let (x, y) = split(&dir, "train", args.limit, &dev)?;
    let (xt, yt) = split(&dir, "t10k", None, &dev)?;
    let n = x.dim(0)?;

    let varmap = VarMap::new();
    let net = Net::new(
        args.model,
        VarBuilder::from_varmap(&varmap, DType::F32, &dev),
    )?;
    let params = candle_nn::ParamsAdamW {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-7,
        weight_decay: 0.0,
    };
    let mut opt = candle_nn::AdamW::new(varmap.all_vars(), params)?;

    let mut rng = rand::rng();
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut seconds = Vec::with_capacity(args.epochs);
    for _ in 0..args.epochs {
        let started = Instant::now();
        order.shuffle(&mut rng);
        for chunk in order.chunks(args.batch) {
            let idx = Tensor::new(chunk, &dev)?;
            let logits = net.forward(&x.index_select(&idx, 0)?)?;
            let loss = loss::cross_entropy(&logits, &y.index_select(&idx, 0)?)?;
            opt.backward_step(&loss)?;
        }
        seconds.push(started.elapsed().as_secs_f64());
    }

    let hits = predict(&net, &xt, 1000)?
        .argmax(D::Minus1)?
        .eq(&yt)?
        .to_dtype(DType::F32)?;
    let accuracy = hits.mean_all()?.to_scalar::<f32>()? as f64;

    let mut infer = serde_json::Map::new();
    if args.infer {
        for b in [1usize, 256] {
            let seconds = time_inference(|| predict(&net, &xt, b).map(drop))?;
            infer.insert(b.to_string(), seconds.into());
        }
    }

    let (first, warm) = seconds
        .split_first()
        .map(|(f, w)| (*f, w.to_vec()))
        .unwrap();
    let mut sorted = warm.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(first);
    let line = serde_json::json!({
        "framework": "candle",
        "model": if args.model == Kind::Mlp { "mlp" } else { "cnn" },
        "batch": args.batch,
        "epoch_seconds": warm,
        "first_epoch_seconds": first,
        "samples_per_second": n as f64 / median,
        "test_accuracy": accuracy,
        "peak_rss_mb": peak_rss_mb(),
        "infer_seconds": infer,
    });
    println!("{line}");
    Ok(())
}
