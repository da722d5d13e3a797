//! `y = x · W` for a sparse `W` (`[features, units]`).
//!
//! `W` is kept in CSR by input feature: feature `i`'s nonzeros are the units it feeds and
//! their weights. Each sample starts from the bias and, for every input value that is not
//! zero, adds `x[i] · W[i, j]` to the units `j` of feature `i`'s row. The arithmetic is at
//! most `2 · nnz` per sample against the dense `2 · features · units`, and inputs that are
//! zero cost nothing: MNIST pixels (about 81 % zero) and ReLU outputs (about half) skip
//! their rows, which a dense GEMM cannot. Skipping is exact for finite weights (`0 · w = 0`);
//! a matrix holding ±∞ or NaN never skips, so `0 · ∞ = NaN` is kept. Large batches are split
//! over threads by samples.

use hasten_tensor::cpu::simd;
use rayon::prelude::*;

/// Samples per parallel task.
const SAMPLES_PER_TASK: usize = 16;

/// A `[features, units]` matrix in CSR by feature.
#[derive(Clone, Debug)]
pub struct SparseMatrix {
    /// Input features.
    pub features: usize,
    /// Output units.
    pub units: usize,
    offsets: Vec<u32>,
    columns: Vec<u32>,
    weights: Vec<f32>,
    /// Whether every weight is finite, so that zero inputs may be skipped.
    skip_zero_inputs: bool,
}

impl SparseMatrix {
    /// The nonzeros of a dense row-major `[features, units]` kernel.
    pub fn from_dense(kernel: &[f32], features: usize, units: usize) -> SparseMatrix {
        let mut offsets = Vec::with_capacity(features + 1);
        let (mut columns, mut weights) = (Vec::new(), Vec::new());
        offsets.push(0);
        for row in kernel.chunks(units.max(1)).take(features) {
            for (j, &w) in row.iter().enumerate() {
                if w != 0.0 {
                    columns.push(j as u32);
                    weights.push(w);
                }
            }
            offsets.push(columns.len() as u32);
        }
        let skip_zero_inputs = weights.iter().all(|w| w.is_finite());
        SparseMatrix {
            features,
            units,
            offsets,
            columns,
            weights,
            skip_zero_inputs,
        }
    }

    /// Stored nonzeros.
    pub fn nnz(&self) -> usize {
        self.weights.len()
    }

    /// Fraction of the matrix stored.
    pub fn density(&self) -> f64 {
        self.nnz() as f64 / (self.features * self.units).max(1) as f64
    }

    /// `y = x · W (+ bias)` for `x` row-major `[samples, features]`, into `y`
    /// (`[samples, units]`).
    pub fn matmul(&self, x: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
        let (features, units) = (self.features.max(1), self.units.max(1));
        let task = |(x, y): (&[f32], &mut [f32])| {
            simd::dispatch(
                #[inline(always)]
                || {
                    for (x, y) in x.chunks(features).zip(y.chunks_mut(units)) {
                        self.sample(x, bias, y);
                    }
                },
            )
        };
        let samples = x.len() / features;
        if samples > SAMPLES_PER_TASK && self.nnz() * samples > 1 << 18 {
            let xs = x.par_chunks(features * SAMPLES_PER_TASK);
            xs.zip(y.par_chunks_mut(units * SAMPLES_PER_TASK))
                .for_each(task);
        } else {
            task((x, y));
        }
    }

    #[inline(always)]
    fn sample(&self, x: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
        match bias {
            Some(b) => y.copy_from_slice(b),
            None => y.fill(0.0),
        }
        for (i, &xi) in x.iter().enumerate() {
            if xi == 0.0 && self.skip_zero_inputs {
                continue;
            }
            let (a, b) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
            for (&j, &w) in self.columns[a..b].iter().zip(&self.weights[a..b]) {
                y[j as usize] += xi * w;
            }
        }
    }
}
