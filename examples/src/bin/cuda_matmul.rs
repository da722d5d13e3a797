//! CUDA and cuBLAS(Lt) made real: opens GPU 0, runs an SGEMM of 4096³ through the CUDA
//! backend (one cuBLASLt product in a captured CUDA graph), checks it against the CPU
//! backend, and prints its TFLOP/s against the device's fp32 peak. Without a GPU it prints why
//! and exits non-zero.
//!
//! `--n` changes the size, `--reps` the timed replays, `--tf32` lets the product use TF32
//! tensor cores (then the check's tolerance is 1e-2 instead of 1e-4).

use clap::Parser;
use hasten::cuda::{CudaBackend, CudaOptions};
use hasten::prelude::*;
use hasten::tensor::{DType, Executable, Graph, HostTensor};
use std::process::ExitCode;

#[derive(Parser)]
struct Args {
    /// Rows, columns and contracted length.
    #[arg(long, default_value_t = 4096)]
    n: usize,
    /// Timed replays.
    #[arg(long, default_value_t = 20)]
    reps: usize,
    /// Use TF32 tensor cores.
    #[arg(long)]
    tf32: bool,
}

/// `c = a · b` over `n × n` inputs.
fn graph(n: usize) -> hasten::tensor::Result<Graph> {
    let mut g = Graph::new();
    let a = g.input("a", [n, n], DType::F32)?;
    let b = g.input("b", [n, n], DType::F32)?;
    let c = g.matmul(a, b)?;
    g.output("c", c)?;
    Ok(g)
}

/// Deterministic inputs in [-1, 1).
fn values(n: usize, salt: u32) -> HostTensor {
    let v = (0..n * n)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(salt) >> 8) as f32
                / (1 << 23) as f32
                - 1.0
        })
        .collect();
    HostTensor::f32([n, n], v).expect("n² values")
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let backend = CudaBackend::with_options(0, CudaOptions { tf32: args.tf32 })?;
    println!(
        "CUDA device: {} (sm_{}{})",
        backend.device_name()?,
        backend.compute_capability()?.0,
        backend.compute_capability()?.1
    );
    let g = graph(args.n)?;
    let (a, b) = (values(args.n, 1), values(args.n, 7));
    let inputs = [a.data.as_slice(), b.data.as_slice()];
    let mut gpu = backend.compile_cuda(&g)?;
    gpu.run(&inputs)?;
    let got = gpu.output("c")?;
    let mut cpu = CpuBackend::new().compile(&g)?;
    cpu.run(&inputs)?;
    let want = cpu.output("c")?;
    let tol = if args.tf32 { 1e-2 } else { 1e-4 };
    let worst = got
        .as_f32()?
        .iter()
        .zip(want.as_f32()?)
        .map(|(x, y)| f64::from((x - y).abs()) / f64::from(y.abs()).max(1.0))
        .fold(0.0, f64::max);
    println!("checked against the CPU backend: worst relative difference {worst:.2e} (tolerance {tol:e})");
    if worst > tol {
        return Err(format!("the GPU product differs from the CPU's by {worst:e}").into());
    }
    let seconds = gpu.time_replays(args.reps)?;
    let tflops = 2.0 * (args.n as f64).powi(3) / seconds / 1e12;
    let peak = backend.fp32_peak_tflops()?;
    println!("SGEMM {n}³: {ms:.3} ms, {tflops:.1} TFLOP/s = {pct:.0} % of the fp32 peak ({peak:.1} TFLOP/s without tensor cores)", n = args.n, ms = seconds * 1e3, pct = 100.0 * tflops / peak);
    Ok(())
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cuda_matmul: {e}");
            ExitCode::FAILURE
        }
    }
}
