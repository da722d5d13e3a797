//! The CUDA benchmark's hasten side (see `bench/cuda/`): seconds per epoch of the reference
//! MLP and CNN on 60 000 MNIST-shaped samples at batch 32 and 128 (random pixels: the time of
//! an epoch does not depend on the values), each timed on its second epoch so that compiling
//! and capturing the CUDA graph are left out, then the SGEMM 4096³ TFLOP/s. One line per
//! result, `hasten <model> b<batch> <seconds> s/epoch`, for `bench/cuda/run_on_device.sh`.

use clap::Parser;
use hasten::cuda::CudaBackend;
use hasten::prelude::*;
use hasten_examples::{compile_reference, reference_cnn, reference_mlp};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// Samples per epoch.
    #[arg(long, default_value_t = 60_000)]
    samples: usize,
    /// Batch sizes to time.
    #[arg(long, value_delimiter = ',', default_value = "32,128")]
    batches: Vec<usize>,
}

/// A benchmarked model: its name, how to build it from a seed, and one sample's shape.
type Bench = (&'static str, fn(u64) -> Sequential, &'static [usize]);

/// MNIST-shaped random data: `x` of `[samples, dims…]` in [0, 1), labels 0..10.
fn data(
    samples: usize,
    dims: &[usize],
) -> Result<(HostTensor, HostTensor), Box<dyn std::error::Error>> {
    let per: usize = dims.iter().product();
    let x = (0..samples * per)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 8) as f32 / (1 << 24) as f32)
        .collect();
    let y = (0..samples).map(|i| (i % 10) as i32).collect();
    let shape = [&[samples][..], dims].concat();
    Ok((HostTensor::f32(shape, x)?, HostTensor::i32([samples], y)?))
}

/// Seconds of the second epoch of `model` at `batch` on the GPU.
fn epoch_seconds(
    mut model: Sequential,
    data: &(HostTensor, HostTensor),
    batch: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    model.set_backend(Arc::new(CudaBackend::new(0)?))?;
    let mut model = compile_reference(model)?;
    let options = || {
        FitOptions::epochs(1)
            .batch_size(batch)
            .verbose(Verbosity::Silent)
    };
    model.fit(&data.0, &data.1, options())?;
    let start = Instant::now();
    model.fit(&data.0, &data.1, options())?;
    Ok(start.elapsed().as_secs_f64())
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let backend = CudaBackend::new(0)?;
    println!("device {}", backend.device_name()?);
    let models: [Bench; 2] = [
        ("mlp", reference_mlp, &[784]),
        ("cnn", reference_cnn, &[28, 28]),
    ];
    for (name, build, dims) in models {
        let d = data(args.samples, dims)?;
        for &batch in &args.batches {
            let s = epoch_seconds(build(1), &d, batch)?;
            println!("hasten {name} b{batch} {s:.3} s/epoch");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cuda_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
