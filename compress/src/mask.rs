//! Magnitude masks: which weights (or blocks, or m-of-n groups) survive at a sparsity.
//!
//! Exactly `round(units · (1 − sparsity))` units are kept, the largest scores first; among
//! equal scores the unit with the lower index (row-major order) wins. (tfmot keeps every
//! weight at or above the threshold, so its ties can keep more than that count; ours is the
//! exact count, and deterministic.)

use crate::params::{BlockPooling, PruningParams};
use crate::{Error, Result};
use std::cmp::Ordering;

/// A new mask (1 keeps, 0 prunes) and its threshold, the smallest kept score (`+∞` when
/// nothing is kept).
#[derive(Clone, Debug, PartialEq)]
pub struct Mask {
    /// One value per weight.
    pub values: Vec<f32>,
    /// The smallest score kept.
    pub threshold: f32,
}

/// The mask of `kernel` (dims `dims`) at `sparsity` under `params`' grouping.
pub fn magnitude_mask(
    kernel: &[f32],
    dims: &[usize],
    params: &PruningParams,
    sparsity: f32,
) -> Result<Mask> {
    if kernel.len() != dims.iter().product::<usize>() || dims.is_empty() {
        return Err(Error::config(format!(
            "a kernel of {} values does not have dims {dims:?}",
            kernel.len()
        )));
    }
    if let Some((m, n)) = params.sparsity_m_by_n {
        return m_by_n_mask(kernel, dims, m, n);
    }
    let cols = dims[dims.len() - 1];
    let rows = kernel.len() / cols.max(1);
    let blocks = BlockGrid::new(rows, cols, params.block_size);
    let scores = blocks.scores(kernel, params.block_pooling);
    let keep = (scores.len() as f32 * (1.0 - sparsity)).round() as usize;
    let (kept, threshold) = keep_largest(&scores, keep);
    Ok(Mask {
        values: blocks.expand(&kept),
        threshold,
    })
}

/// The kernel as a `[rows, cols]` matrix cut into blocks (edge blocks partial).
struct BlockGrid {
    rows: usize,
    cols: usize,
    block: (usize, usize),
    block_cols: usize,
}

impl BlockGrid {
    fn new(rows: usize, cols: usize, block: (usize, usize)) -> Self {
        BlockGrid {
            rows,
            cols,
            block,
            block_cols: cols.div_ceil(block.1),
        }
    }

    fn block_of(&self, i: usize) -> usize {
        let (r, c) = (i / self.cols, i % self.cols);
        (r / self.block.0) * self.block_cols + c / self.block.1
    }

    fn scores(&self, kernel: &[f32], pooling: BlockPooling) -> Vec<f32> {
        let units = self.rows.div_ceil(self.block.0) * self.block_cols;
        let mut scores = vec![0.0f32; units];
        let mut counts = vec![0u32; units];
        for (i, w) in kernel.iter().enumerate() {
            let b = self.block_of(i);
            match pooling {
                BlockPooling::Avg => scores[b] += w.abs(),
                BlockPooling::Max => scores[b] = scores[b].max(w.abs()),
            }
            counts[b] += 1;
        }
        if pooling == BlockPooling::Avg {
            for (s, &c) in scores.iter_mut().zip(&counts) {
                *s /= c.max(1) as f32;
            }
        }
        scores
    }

    fn expand(&self, kept: &[bool]) -> Vec<f32> {
        (0..self.rows * self.cols)
            .map(|i| f32::from(u8::from(kept[self.block_of(i)])))
            .collect()
    }
}

/// Marks the `keep` largest scores (ties to the lower index); returns the marks and the
/// smallest kept score.
fn keep_largest(scores: &[f32], keep: usize) -> (Vec<bool>, f32) {
    let mut kept = vec![false; scores.len()];
    if keep == 0 {
        return (kept, f32::INFINITY);
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    let rank =
        |&a: &usize, &b: &usize| -> Ordering { scores[b].total_cmp(&scores[a]).then(a.cmp(&b)) };
    let keep = keep.min(order.len());
    if keep < order.len() {
        order.select_nth_unstable_by(keep - 1, rank);
    }
    let mut threshold = f32::INFINITY;
    for &i in &order[..keep] {
        kept[i] = true;
        threshold = threshold.min(scores[i]);
    }
    (kept, threshold)
}

/// Keeps the `m` largest magnitudes of every `n` consecutive weights along the input axis
/// (the second-to-last dim: `in` of a Dense `[in, out]` or a Conv2D `[h, w, in, out]`).
fn m_by_n_mask(kernel: &[f32], dims: &[usize], m: usize, n: usize) -> Result<Mask> {
    let rank = dims.len();
    let axis = if rank >= 2 { dims[rank - 2] } else { dims[0] };
    if axis % n != 0 {
        return Err(Error::config(format!(
            "{m}:{n} sparsity needs the input axis to be a multiple of {n}, but the kernel \
             is {dims:?}"
        )));
    }
    let inner = if rank >= 2 { dims[rank - 1] } else { 1 };
    let mut values = vec![0.0; kernel.len()];
    let mut threshold = f32::INFINITY;
    let mut group = vec![0.0f32; n];
    for outer in 0..kernel.len() / (axis * inner) {
        for start in (0..axis).step_by(n) {
            for j in 0..inner {
                let at = |t: usize| (outer * axis + start + t) * inner + j;
                for (t, s) in group.iter_mut().enumerate() {
                    *s = kernel[at(t)].abs();
                }
                let (kept, smallest) = keep_largest(&group, m);
                threshold = threshold.min(smallest);
                for (t, &k) in kept.iter().enumerate() {
                    values[at(t)] = f32::from(u8::from(k));
                }
            }
        }
    }
    Ok(Mask { values, threshold })
}
