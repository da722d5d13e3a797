//! What the all-reduce benchmarks share: the message sizes, the memory bandwidth measured in
//! the same run, and the ring bound every all-reduce is compared with.

use std::time::Instant;

/// Message sizes in bytes: 4 KB to 64 MB, by factors of 4.
pub fn message_sizes() -> impl Iterator<Item = usize> {
    std::iter::successors(Some(4usize << 10), |b| Some(b * 4)).take_while(|&b| b <= 64 << 20)
}

/// How many times to time a message of `bytes`: more for small ones, at most 200.
pub fn repetitions(bytes: usize) -> usize {
    ((256 << 20) / bytes.max(1 << 20) + 4).min(200)
}

/// Bytes per second of one thread copying 64 MB (counting the read and the write).
pub fn memcpy_bandwidth() -> f64 {
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

/// Seconds a ring all-reduce of `bytes` over `ranks` needs at least: each rank sends and
/// receives `2(N−1)/N · S` bytes at `bandwidth` bytes per second.
pub fn ring_bound(ranks: usize, bytes: usize, bandwidth: f64) -> f64 {
    let n = ranks as f64;
    2.0 * (n - 1.0) / n * bytes as f64 / bandwidth
}

/// The median of `times` (which it sorts).
pub fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}
