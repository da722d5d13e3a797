//! hasten's SGEMM against the `gemm` crate (the kernel candle uses) on the reference MLP's
//! train-step shapes and on 1024³, in the same run: median GFLOP/s of each and their ratio.

use hasten::tensor::cpu::gemm::{sgemm, MatRef};
use hasten::tensor::cpu::pool;
use std::time::Instant;

/// `(name, m, n, k, a transposed, b transposed)`.
const SHAPES: [(&str, usize, usize, usize, bool, bool); 6] = [
    ("x·W1       32×128×784", 32, 128, 784, false, false),
    ("h·W2       32×10×128", 32, 10, 128, false, false),
    ("hᵀ·dz      128×10×32", 128, 10, 32, true, false),
    ("dz·W2ᵀ     32×128×10", 32, 128, 10, false, true),
    ("xᵀ·dh      784×128×32", 784, 128, 32, true, false),
    ("square     1024³", 1024, 1024, 1024, false, false),
];

fn median_seconds(mut f: impl FnMut(), flops: f64) -> f64 {
    let reps = ((2e8 / flops) as usize).clamp(3, 20_000);
    f();
    let mut times: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() / reps as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[3]
}

fn main() {
    let threads = pool::global().threads();
    println!("threads: {threads}");
    println!(
        "{:<24}{:>12}{:>12}{:>8}",
        "shape", "hasten GF/s", "gemm GF/s", "ratio"
    );
    for (name, m, n, k, ta, tb) in SHAPES {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut c = vec![0f32; m * n];
        let flops = 2.0 * (m * n * k) as f64;
        let ours = median_seconds(
            || unsafe {
                sgemm(
                    m,
                    n,
                    k,
                    MatRef::row_major(a.as_ptr(), if ta { m } else { k }, ta),
                    MatRef::row_major(b.as_ptr(), if tb { k } else { n }, tb),
                    c.as_mut_ptr(),
                    n,
                    false,
                    pool::global(),
                )
            },
            flops,
        );
        let (a_rs, a_cs) = if ta { (1, m as isize) } else { (k as isize, 1) };
        let (b_rs, b_cs) = if tb { (1, k as isize) } else { (n as isize, 1) };
        let theirs = median_seconds(
            || unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    c.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    a_cs,
                    a_rs,
                    b.as_ptr(),
                    b_cs,
                    b_rs,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(threads),
                )
            },
            flops,
        );
        let (g_ours, g_theirs) = (flops / ours / 1e9, flops / theirs / 1e9);
        println!(
            "{name:<24}{g_ours:>12.1}{g_theirs:>12.1}{:>8.2}",
            g_ours / g_theirs
        );
    }
}
