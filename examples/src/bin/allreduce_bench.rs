//! All-reduce on the threads communicator against the ring bound, and CNN throughput for 1
//! and 2 replicas (not in CI; timings are printed, never asserted).
//!
//! For each message size S (4 KB to 64 MB of f32) and N ranks, the ring bound is
//! `2(N−1)/N · S / bandwidth`: the bytes a ring all-reduce must move per rank. The bandwidth
//! is measured in the same run as one thread's `memcpy` of a 64 MB buffer (read + write).
//! The threads communicator copies in, reduces a 1/N chunk of every rank's slot and copies the
//! result out, so it moves about 3·S per rank; the ratio printed is measured / bound.

use clap::Parser;
use hasten::parallel::ThreadGroup;
use hasten::prelude::*;
use hasten::tensor::AllReduceOp;
use hasten_examples::{compile_reference, exit_code};
use std::sync::Arc;
use std::time::Instant;

/// Flags.
#[derive(Parser, Debug)]
struct Args {
    /// Ranks of the all-reduce.
    #[arg(long, default_value_t = 2)]
    ranks: usize,
    /// Also time the CNN (train steps on random 28×28 data) on 1 and 2 replicas.
    #[arg(long, default_value_t = true)]
    cnn: bool,
    /// Global batch of the CNN run.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
}

/// Seconds per all-reduce of `len` f32 on every rank of `group`, the median of `reps`.
fn time_all_reduce(group: &Arc<ThreadGroup>, len: usize, reps: usize) -> f64 {
    let comms = group.communicators();
    let mut times: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = comms
            .iter()
            .map(|c| {
                s.spawn(move || {
                    let mut buf = vec![1.0f32; len];
                    let mut t = Vec::with_capacity(reps);
                    for _ in 0..reps {
                        let start = Instant::now();
                        c.all_reduce(&mut buf, AllReduceOp::Sum)
                            .expect("all-reduce");
                        t.push(start.elapsed().as_secs_f64());
                    }
                    t
                })
            })
            .collect();
        let all: Vec<Vec<f64>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        // A step ends when the slowest rank has its result.
        (0..reps)
            .map(|i| all.iter().map(|t| t[i]).fold(0.0, f64::max))
            .collect()
    });
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Bytes per second of one thread copying 64 MB (counting the read and the write).
fn memcpy_bandwidth() -> f64 {
    let len = 16 << 20;
    let src = vec![1.0f32; len];
    let mut dst = vec![0.0f32; len];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        dst.copy_from_slice(&src);
        best = best.min(start.elapsed().as_secs_f64());
    }
    std::hint::black_box(&dst);
    2.0 * (len * 4) as f64 / best
}

fn all_reduce_table(ranks: usize) -> Result<(), Box<dyn std::error::Error>> {
    let bandwidth = memcpy_bandwidth();
    println!(
        "memcpy bandwidth (one thread, read+write): {:.2} GB/s",
        bandwidth / 1e9
    );
    println!(
        "{:>10} {:>12} {:>12} {:>8}",
        "bytes", "measured µs", "ring µs", "ratio"
    );
    let group = ThreadGroup::new(ranks)?;
    let mut bytes = 4 << 10;
    while bytes <= 64 << 20 {
        let len = bytes / 4;
        let reps = (256 << 20) / bytes.max(1 << 20) + 4;
        let measured = time_all_reduce(&group, len, reps.min(200));
        let n = ranks as f64;
        let bound = 2.0 * (n - 1.0) / n * bytes as f64 / bandwidth;
        println!(
            "{bytes:>10} {:>12.1} {:>12.1} {:>8.2}",
            measured * 1e6,
            bound * 1e6,
            measured / bound
        );
        bytes *= 4;
    }
    Ok(())
}

/// Samples per second of CNN train steps on `replicas` replicas.
fn cnn_throughput(replicas: usize, batch: usize) -> Result<f64, Box<dyn std::error::Error>> {
    let n = batch * 50;
    let x: Vec<f32> = (0..n * 784).map(|i| (i % 255) as f32 / 255.0).collect();
    let y: Vec<i32> = (0..n).map(|i| (i % 10) as i32).collect();
    let (x, y) = (HostTensor::f32([n, 28, 28], x)?, HostTensor::i32([n], y)?);
    let mut model = Sequential::new();
    model.add(
        Conv2D::new(32, [3, 3])
            .activation(Activation::Relu)
            .input_shape([28, 28]),
    );
    model.add(MaxPooling2D::new([2, 2]));
    model.add(Flatten::new());
    model.add(Dense::new(10).activation(Activation::Softmax));
    let backend: Arc<dyn Backend> = if replicas == 1 {
        Arc::new(CpuBackend::new())
    } else {
        Arc::new(Mirrored::cpu(replicas)?)
    };
    model.set_backend(backend)?;
    let mut model = compile_reference(model)?;
    let options = || {
        FitOptions::epochs(1)
            .batch_size(batch)
            .verbose(Verbosity::Silent)
    };
    model.fit(&x, &y, options())?; // compile and warm up
    let start = Instant::now();
    model.fit(&x, &y, options())?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    all_reduce_table(args.ranks)?;
    if args.cnn {
        let one = cnn_throughput(1, args.batch_size)?;
        let two = cnn_throughput(2, args.batch_size)?;
        println!(
            "CNN, global batch {}: 1 device (CpuBackend) {one:.0} samples/s, Mirrored::cpu(2) \
             {two:.0} samples/s ({:.2}×), on {} hardware threads",
            args.batch_size,
            two / one,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    exit_code(run(&Args::parse()))
}
