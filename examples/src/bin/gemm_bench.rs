//! hasten's SGEMM against the `gemm` crate (the kernel candle uses) on the reference models'
//! train-step shapes and on 1024³, in the same run: GFLOP/s of each (from its fastest call)
//! and their ratio.
//!
//! `--set` picks a group of shapes, `--shape MxNxK[:ta][:tb]` (repeatable) times exact ones
//! instead, `--no-gemm` skips the comparison (for profiling hasten's kernel alone).

use clap::{Parser, ValueEnum};
use hasten::tensor::cpu::gemm::{sgemm, Epilogue, MatRef};
use hasten::tensor::cpu::pool;
use std::time::Instant;

/// A GEMM to time: `c[m×n] = op(a)[m×k] · op(b)[k×n]`.
#[derive(Clone, Debug)]
struct Shape {
    name: String,
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
}

impl Shape {
    fn new(name: &str, m: usize, n: usize, k: usize, ta: bool, tb: bool) -> Self {
        let name = format!("{name:<10} {m}×{n}×{k}");
        Shape {
            name,
            m,
            n,
            k,
            ta,
            tb,
        }
    }

    /// Parses `MxNxK` with optional `:ta` / `:tb` suffixes.
    fn parse(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        let dims: Vec<usize> = parts
            .next()
            .unwrap_or_default()
            .split('x')
            .map(|d| d.parse().map_err(|e| format!("{s}: {e}")))
            .collect::<Result<_, _>>()?;
        let [m, n, k] = dims[..] else {
            return Err(format!("{s}: expected MxNxK"));
        };
        let (mut ta, mut tb) = (false, false);
        for flag in parts {
            match flag {
                "ta" => ta = true,
                "tb" => tb = true,
                _ => return Err(format!("{s}: unknown suffix :{flag} (ta, tb)")),
            }
        }
        let tag = format!(
            "{}{}",
            if ta { "ᵀ·" } else { "·" },
            if tb { "ᵀ" } else { "" }
        );
        Ok(Shape::new(&tag, m, n, k, ta, tb))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Set {
    /// The MLP's batch-32 train step.
    Mlp,
    /// The CNN's Dense(10) at batch 32 (train) and 256 (eval).
    Cnn,
    /// 1024³.
    Square,
    /// Skinny products over odd small n.
    SmallN,
    /// Mlp, cnn and square.
    All,
}

fn shapes(set: Set) -> Vec<Shape> {
    let s = Shape::new;
    match set {
        Set::Mlp => vec![
            s("x·W1", 32, 128, 784, false, false),
            s("h·W2", 32, 10, 128, false, false),
            s("hᵀ·dz", 128, 10, 32, true, false),
            s("dz·W2ᵀ", 32, 128, 10, false, true),
            s("xᵀ·dh", 784, 128, 32, true, false),
        ],
        Set::Cnn => vec![
            s("f·W", 32, 10, 5408, false, false),
            s("fᵀ·dz", 5408, 10, 32, true, false),
            s("dz·Wᵀ", 32, 5408, 10, false, true),
            s("eval f·W", 256, 10, 5408, false, false),
        ],
        Set::Square => vec![s("square", 1024, 1024, 1024, false, false)],
        Set::SmallN => [1, 5, 10, 15, 17, 24]
            .into_iter()
            .flat_map(|n| {
                [
                    s("·", 32, n, 5408, false, false),
                    s("ᵀ·", 5408, n, 32, true, false),
                ]
            })
            .collect(),
        Set::All => [Set::Mlp, Set::Cnn, Set::Square]
            .into_iter()
            .flat_map(shapes)
            .collect(),
    }
}

#[derive(Parser)]
struct Args {
    /// Which group of shapes to time.
    #[arg(long, value_enum, default_value_t = Set::All)]
    set: Set,
    /// Time these shapes instead (`MxNxK`, `:ta` / `:tb` to read A / B transposed).
    #[arg(long = "shape", value_parser = Shape::parse)]
    shapes: Vec<Shape>,
    /// Skip the `gemm` crate.
    #[arg(long)]
    no_gemm: bool,
    /// Read A from memory rather than cache, as inference over a data set does: each call
    /// takes the next of enough copies of A to fill 256 MiB.
    #[arg(long)]
    cold_a: bool,
}

/// Bytes the copies of A fill with `--cold-a`: far past any cache.
const COLD_BYTES: usize = 256 << 20;

/// Seconds of the fastest of about 0.2 GFLOP worth of calls (at least 20), each timed alone:
/// on a shared machine the fastest call is the one least disturbed by other work.
fn best_seconds(mut f: impl FnMut(), flops: f64) -> f64 {
    let calls = ((2e8 / flops) as usize).clamp(20, 100_000);
    f();
    (0..calls)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let args = Args::parse();
    let threads = pool::global().threads();
    let list = if args.shapes.is_empty() {
        shapes(args.set)
    } else {
        args.shapes
    };
    println!(
        "threads: {threads}, kernels: {}",
        hasten::tensor::cpu::gemm::kernel_set()
    );
    println!(
        "{:<28}{:>12}{:>9}{:>12}{:>8}",
        "shape", "hasten GF/s", "µs", "gemm GF/s", "ratio"
    );
    for Shape {
        name,
        m,
        n,
        k,
        ta,
        tb,
    } in list
    {
        let copies = if args.cold_a {
            (COLD_BYTES / (4 * m * k)).max(2)
        } else {
            1
        };
        let a: Vec<f32> = (0..copies * m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let mut next = 0;
        let mut a_ptr = || {
            next = (next + 1) % copies;
            a[next * m * k..].as_ptr()
        };
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut c = vec![0f32; m * n];
        let flops = 2.0 * (m * n * k) as f64;
        let ours = best_seconds(
            || unsafe {
                sgemm(
                    m,
                    n,
                    k,
                    MatRef::row_major(a_ptr(), if ta { m } else { k }, ta),
                    MatRef::row_major(b.as_ptr(), if tb { k } else { n }, tb),
                    c.as_mut_ptr(),
                    n,
                    false,
                    Epilogue::NONE,
                    pool::global(),
                )
            },
            flops,
        );
        let g_ours = flops / ours / 1e9;
        let us = ours * 1e6;
        if args.no_gemm {
            println!("{name:<28}{g_ours:>12.1}{us:>9.1}");
            continue;
        }
        let (a_rs, a_cs) = if ta { (1, m as isize) } else { (k as isize, 1) };
        let (b_rs, b_cs) = if tb { (1, k as isize) } else { (n as isize, 1) };
        let theirs = best_seconds(
            || unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    c.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a_ptr(),
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
        let g_theirs = flops / theirs / 1e9;
        println!(
            "{name:<28}{g_ours:>12.1}{us:>9.1}{g_theirs:>12.1}{:>8.2}",
            g_ours / g_theirs
        );
    }
}
