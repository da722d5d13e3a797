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
use hasten_examples::collective_timing::{
    median, memcpy_bandwidth, message_sizes, repetitions, ring_bound,
};
use hasten_examples::{compile_reference, exit_code, reference_cnn, train_throughput};
use std::sync::Arc;
use std::time::Instant;

/// Flags.
#[derive(Parser, Debug)]
struct Args {
    /// Ranks of the all-reduce.
    #[arg(long, default_value_t = 2)]
    ranks: usize,
    /// Skip timing the CNN (train steps on synthetic 28×28 data) on 1 and 2 replicas.
    #[arg(long)]
    no_cnn: bool,
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
    median(&mut times)
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
    for bytes in message_sizes() {
        let measured = time_all_reduce(&group, bytes / 4, repetitions(bytes));
        let bound = ring_bound(ranks, bytes, bandwidth);
        println!(
            "{bytes:>10} {:>12.1} {:>12.1} {:>8.2}",
            measured * 1e6,
            bound * 1e6,
            measured / bound
        );
    }
    Ok(())
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    all_reduce_table(args.ranks)?;
    if !args.no_cnn {
        let cnn = || compile_reference(reference_cnn(42));
        let one = train_throughput(
            cnn()?,
            Arc::new(CpuBackend::new()),
            args.batch_size,
            &[28, 28],
        )?;
        let two = train_throughput(
            cnn()?,
            Arc::new(Mirrored::cpu(2)?),
            args.batch_size,
            &[28, 28],
        )?;
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
