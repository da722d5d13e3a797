//! Reductions over any set of axes.

use super::elementwise::maximum;
use super::Small;
use crate::cpu::pool::{SharedMut, WorkerPool};
use crate::cpu::simd;
use crate::ir::ReduceOp;

/// Below this many elements a reduction over leading axes runs on the calling thread alone.
const PARALLEL_MIN_LEN: usize = 1 << 14;
/// Floats of per-task partial rows, kept on the stack, when a reduction over leading axes is
/// split by rows; rows too wide for that are split by columns instead.
const PARTIAL_LEN: usize = 2048;

/// Reduces `x` (dims `dims`) over `axes` into `y` (the kept dims, row-major). Reductions over
/// leading axes (a bias gradient) are vectorised and spread over `pool`.
pub fn reduce(
    op: ReduceOp,
    x: &[f32],
    dims: &[usize],
    axes: &[usize],
    y: &mut [f32],
    pool: &WorkerPool,
) {
    // Merge neighbouring dims that are both reduced or both kept, skipping dims of size 1:
    // the loops below then run over at most a handful of long dims.
    let mut merged = Small::<(usize, bool)>::filled(0);
    for (d, &n) in dims.iter().enumerate().filter(|&(_, &n)| n != 1) {
        let r = axes.contains(&d);
        match merged.last_mut() {
            Some((len, reduced)) if *reduced == r => *len *= n,
            _ => merged.push((n, r)),
        }
    }
    let init = match op {
        ReduceOp::Max => f32::NEG_INFINITY,
        _ => 0.0,
    };
    y.fill(init);
    if x.is_empty() {
        return;
    }
    if let [(rows, true), (cols, false)] = *merged {
        match op {
            ReduceOp::Max => leading(x, rows, cols, y, pool, maximum),
            _ => leading(x, rows, cols, y, pool, |a, b| a + b),
        }
    } else {
        strided(op, x, &merged, y);
    }
    if op == ReduceOp::Mean {
        let count: usize = axes.iter().map(|&a| dims[a]).product();
        let scale = 1.0 / count.max(1) as f32;
        y.iter_mut().for_each(|v| *v *= scale);
    }
}

/// Any reduction, over the `merged` dims (length, reduced), one innermost row at a time.
fn strided(op: ReduceOp, x: &[f32], merged: &[(usize, bool)], y: &mut [f32]) {
    // Output strides of the merged dims (0 on reduced ones), innermost last.
    let mut out_strides = Small::<usize>::filled(merged.len());
    let mut s = 1;
    for (i, &(len, reduced)) in merged.iter().enumerate().rev() {
        if !reduced {
            out_strides[i] = s;
            s *= len;
        }
    }
    let (inner, inner_reduced) = *merged.last().unwrap_or(&(1, false));
    let mut outer = Small::<usize>::filled(0);
    for m in &merged[..merged.len().saturating_sub(1)] {
        outer.push(m.0);
    }
    let combine = |a: f32, b: f32| {
        if op == ReduceOp::Max {
            maximum(a, b)
        } else {
            a + b
        }
    };
    let mut idx = Small::<usize>::filled(outer.len());
    let mut xo = 0;
    loop {
        let yo: usize = idx.iter().zip(out_strides.iter()).map(|(i, s)| i * s).sum();
        let row = &x[xo..xo + inner];
        if inner_reduced {
            y[yo] = row.iter().fold(y[yo], |a, &b| combine(a, b));
        } else {
            for (o, &v) in y[yo..yo + inner].iter_mut().zip(row) {
                *o = combine(*o, v);
            }
        }
        xo += inner;
        let mut d = outer.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < outer[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

/// Folds the `rows` rows of the row-major `rows × cols` matrix `x` into `y` (holding the
/// fold's initial value) with `f`. Large inputs are split over the pool: by row blocks, whose
/// partial rows are then folded in task order (so the result depends only on the pool's size),
/// or by column ranges where the partial rows would not fit on the stack.
fn leading(
    x: &[f32],
    rows: usize,
    cols: usize,
    y: &mut [f32],
    pool: &WorkerPool,
    f: impl Fn(f32, f32) -> f32 + Copy + Sync,
) {
    let threads = if x.len() >= PARALLEL_MIN_LEN {
        pool.threads()
    } else {
        1
    };
    let out = SharedMut::new(y.as_mut_ptr());
    if threads > 1 && (threads - 1) * cols > PARTIAL_LEN {
        // Column ranges, in whole cache lines.
        let lines = cols.div_ceil(16);
        let tasks = threads.min(lines);
        pool.run(tasks, &|t| {
            let (c0, c1) = (
                (lines * t / tasks * 16).min(cols),
                (lines * (t + 1) / tasks * 16).min(cols),
            );
            // SAFETY: tasks write disjoint column ranges of `y`.
            let y = unsafe { out.slice(c0, c1 - c0) };
            simd::dispatch(
                #[inline(always)]
                || fold_rows(x, cols, c0..c1, y, f),
            );
        });
        return;
    }
    let tasks = threads.min(rows);
    if tasks <= 1 {
        simd::dispatch(
            #[inline(always)]
            || fold_rows(x, cols, 0..cols, y, f),
        );
        return;
    }
    // Task 0 folds into `y`, task t > 0 into partial row t - 1.
    let init = y[0];
    let mut partials = [init; PARTIAL_LEN];
    let part = SharedMut::new(partials.as_mut_ptr());
    pool.run(tasks, &|t| {
        let (r0, r1) = (rows * t / tasks, rows * (t + 1) / tasks);
        // SAFETY: each task writes its own row: `y`, or a disjoint range of `partials`.
        let acc = unsafe {
            if t == 0 {
                out.slice(0, cols)
            } else {
                part.slice((t - 1) * cols, cols)
            }
        };
        simd::dispatch(
            #[inline(always)]
            || fold_rows(&x[r0 * cols..r1 * cols], cols, 0..cols, acc, f),
        );
    });
    simd::dispatch(
        #[inline(always)]
        || {
            for partial in partials.chunks_exact(cols).take(tasks - 1) {
                for (o, &p) in y.iter_mut().zip(partial) {
                    *o = f(*o, p);
                }
            }
        },
    );
}

/// Folds columns `range` of every row of the row-major `x` (rows `cols` long) into `acc`,
/// four rows at a time so that consecutive folds of one column do not wait on each other.
#[inline(always)]
fn fold_rows(
    x: &[f32],
    cols: usize,
    range: std::ops::Range<usize>,
    acc: &mut [f32],
    f: impl Fn(f32, f32) -> f32 + Copy,
) {
    let (lo, hi) = (range.start, range.end);
    let mut quads = x.chunks_exact(4 * cols);
    for quad in &mut quads {
        let row = move |i: usize| &quad[i * cols + lo..i * cols + hi];
        let rows = acc
            .iter_mut()
            .zip(row(0))
            .zip(row(1))
            .zip(row(2))
            .zip(row(3));
        for ((((o, &a), &b), &c), &d) in rows {
            *o = f(*o, f(f(a, b), f(c, d)));
        }
    }
    for r in quads.remainder().chunks_exact(cols) {
        for (o, &v) in acc.iter_mut().zip(&r[lo..hi]) {
            *o = f(*o, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `op` over the leading axis of a `rows × cols` matrix, in f64.
    fn reference(op: ReduceOp, x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..cols)
            .map(|c| {
                let column = (0..rows).map(|r| x[r * cols + c] as f64);
                match op {
                    ReduceOp::Max => column.fold(f64::NEG_INFINITY, |a, b| {
                        if a.is_nan() || b.is_nan() {
                            f64::NAN
                        } else {
                            a.max(b)
                        }
                    }) as f32,
                    ReduceOp::Sum => column.sum::<f64>() as f32,
                    ReduceOp::Mean => (column.sum::<f64>() / rows as f64) as f32,
                }
            })
            .collect()
    }

    #[test]
    fn sums_over_leading_axes_match_for_odd_shapes_and_pools() {
        for threads in [1, 2] {
            let pool = WorkerPool::new(threads);
            for rows in [1, 3, 1000] {
                for cols in [1, 10, 33, 3000] {
                    let x: Vec<f32> = (0..rows * cols)
                        .map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 101.0)
                        .collect();
                    // As [rows/… , …, cols] with the leading axes reduced: split rows in two
                    // axes where they allow, to check that the axes merge.
                    let (d0, d1) = if rows % 2 == 0 {
                        (2, rows / 2)
                    } else {
                        (1, rows)
                    };
                    for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
                        let mut y = vec![f32::NAN; cols];
                        reduce(op, &x, &[d0, d1, cols], &[0, 1], &mut y, &pool);
                        let r = reference(op, &x, rows, cols);
                        for (c, (a, b)) in y.iter().zip(&r).enumerate() {
                            let tol = 1e-5 * (1.0 + b.abs()) * (rows as f32).sqrt();
                            assert!(
                                (a - b).abs() <= tol,
                                "{op:?} {rows}x{cols} threads={threads} col {c}: {a} vs {b}"
                            );
                        }
                        let mut again = vec![0.0; cols];
                        reduce(op, &x, &[d0, d1, cols], &[0, 1], &mut again, &pool);
                        assert_eq!(
                            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                            again.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                            "{op:?} {rows}x{cols} threads={threads}: not deterministic"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn other_axes_still_reduce() {
        let pool = WorkerPool::new(2);
        // [2, 3, 4] over the last axis and over the middle one.
        let x: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let mut y = vec![0.0; 6];
        reduce(ReduceOp::Sum, &x, &[2, 3, 4], &[2], &mut y, &pool);
        assert_eq!(y, [6.0, 22.0, 38.0, 54.0, 70.0, 86.0]);
        let mut y = vec![0.0; 8];
        reduce(ReduceOp::Max, &x, &[2, 3, 4], &[1], &mut y, &pool);
        assert_eq!(y, [8.0, 9.0, 10.0, 11.0, 20.0, 21.0, 22.0, 23.0]);
    }
}
