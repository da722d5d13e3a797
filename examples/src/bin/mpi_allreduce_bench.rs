//! All-reduce over MPI: hasten's communicator (what `MultiWorker`'s steps call) next to raw
//! `MPI_Allreduce` on the same buffers and the ring bound, 4 KB to 64 MB (not in CI; timings
//! are printed, never asserted):
//!
//! ```sh
//! cargo build --release -p hasten-examples --features mpi --bin mpi_allreduce_bench
//! mpirun -n 2 target/release/mpi_allreduce_bench
//! ```
//!
//! Each repetition starts after a barrier and lasts until the slowest rank has its result.
//! The bound is `2(N−1)/N · S / bandwidth` with the bandwidth of one thread's `memcpy`
//! measured in the same run: ranks on one machine exchange through shared memory.

use hasten::parallel::MultiWorker;
use hasten::tensor::AllReduceOp;
use hasten_examples::collective_timing::{
    median, memcpy_bandwidth, message_sizes, repetitions, ring_bound,
};
use hasten_examples::exit_code;
use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use std::time::{Duration, Instant};

/// Per repetition, the slowest rank's seconds for `op`, then their median.
fn time_on_all_ranks(world: &SimpleCommunicator, reps: usize, mut op: impl FnMut()) -> f64 {
    let mut mine = Vec::with_capacity(reps);
    op(); // warm up
    for _ in 0..reps {
        world.barrier();
        let start = Instant::now();
        op();
        mine.push(start.elapsed().as_secs_f64());
    }
    let mut slowest = vec![0.0f64; reps];
    world.all_reduce_into(&mine[..], &mut slowest[..], SystemOperation::max());
    median(&mut slowest)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let worker = MultiWorker::init(Duration::from_secs(600))?;
    let comm = worker.communicator();
    let world = SimpleCommunicator::world();
    let ranks = worker.size();
    let bandwidth = memcpy_bandwidth();
    if worker.is_chief() {
        println!(
            "{ranks} MPI ranks; memcpy bandwidth (one thread, read+write): {:.2} GB/s",
            bandwidth / 1e9
        );
        println!(
            "{:>10} {:>12} {:>12} {:>12} {:>9} {:>9}",
            "bytes", "hasten µs", "raw MPI µs", "ring µs", "hasten/b", "raw/b"
        );
    }
    for bytes in message_sizes() {
        let reps = repetitions(bytes);
        let mut buf = vec![1.0f32; bytes / 4];
        let ours = time_on_all_ranks(&world, reps, || {
            comm.all_reduce(&mut buf, AllReduceOp::Sum)
                .expect("all-reduce")
        });
        let send = vec![1.0f32; bytes / 4];
        let mut recv = vec![0.0f32; bytes / 4];
        let raw = time_on_all_ranks(&world, reps, || {
            world.all_reduce_into(&send[..], &mut recv[..], SystemOperation::sum())
        });
        let bound = ring_bound(ranks, bytes, bandwidth);
        if worker.is_chief() {
            println!(
                "{bytes:>10} {:>12.1} {:>12.1} {:>12.1} {:>9.2} {:>9.2}",
                ours * 1e6,
                raw * 1e6,
                bound * 1e6,
                ours / bound,
                raw / bound
            );
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    exit_code(run())
}
