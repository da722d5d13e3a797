//! `y = x · W` for a sparse `W` (`[features, units]`), vectorised over samples.
//!
//! `W` is kept by output unit (its transpose in CSR): unit `j`'s nonzeros are the input
//! features it reads and their weights. One sample gathers `x[feature]` per nonzero; many
//! samples are taken 16 at a time, transposed so that one feature of the 16 samples is one
//! contiguous vector, and every nonzero is one fused multiply-add over that vector: the
//! memory traffic is the nonzeros once per 16 samples, and the arithmetic is exactly
//! `2 · nnz` per sample, against the dense `2 · features · units`.

use hasten_tensor::cpu::simd;
use rayon::prelude::*;

/// Samples per vector.
const LANES: usize = 16;

/// A `[features, units]` matrix stored by unit: `offsets[j]..offsets[j + 1]` index the
/// features and weights unit `j` reads.
#[derive(Clone, Debug)]
pub struct SparseMatrix {
    /// Input features.
    pub features: usize,
    /// Output units.
    pub units: usize,
    offsets: Vec<u32>,
    inputs: Vec<u32>,
    weights: Vec<f32>,
}

impl SparseMatrix {
    /// The nonzeros of a dense row-major `[features, units]` kernel.
    pub fn from_dense(kernel: &[f32], features: usize, units: usize) -> SparseMatrix {
        let mut offsets = Vec::with_capacity(units + 1);
        let (mut inputs, mut weights) = (Vec::new(), Vec::new());
        offsets.push(0);
        for j in 0..units {
            for i in 0..features {
                let w = kernel[i * units + j];
                if w != 0.0 {
                    inputs.push(i as u32);
                    weights.push(w);
                }
            }
            offsets.push(inputs.len() as u32);
        }
        SparseMatrix {
            features,
            units,
            offsets,
            inputs,
            weights,
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
        let samples = x.len() / self.features.max(1);
        let tiles = samples.div_ceil(LANES);
        let tile_out = LANES * self.units;
        let run = |(t, out): (usize, &mut [f32])| {
            let start = t * LANES;
            let n = LANES.min(samples - start);
            let rows = &x[start * self.features..(start + n) * self.features];
            simd::dispatch(
                #[inline(always)]
                || {
                    if n == 1 {
                        self.one_sample(rows, bias, out);
                    } else {
                        self.tile(rows, n, bias, out);
                    }
                },
            );
        };
        let work = self.nnz() * samples;
        if tiles > 1 && work > 1 << 16 {
            y.par_chunks_mut(tile_out).enumerate().for_each(run);
        } else {
            y.chunks_mut(tile_out).enumerate().for_each(run);
        }
    }

    #[inline(always)]
    fn unit(&self, j: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.offsets[j] as usize, self.offsets[j + 1] as usize);
        (&self.inputs[a..b], &self.weights[a..b])
    }

    #[inline(always)]
    fn one_sample(&self, x: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
        for (j, out) in y.iter_mut().enumerate() {
            let (inputs, weights) = self.unit(j);
            let mut acc = [0.0f32; 4];
            let mut k = 0;
            while k + 4 <= inputs.len() {
                for l in 0..4 {
                    acc[l] += weights[k + l] * x[inputs[k + l] as usize];
                }
                k += 4;
            }
            let mut sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
            for l in k..inputs.len() {
                sum += weights[l] * x[inputs[l] as usize];
            }
            *out = sum + bias.map_or(0.0, |b| b[j]);
        }
    }

    #[inline(always)]
    fn tile(&self, x: &[f32], n: usize, bias: Option<&[f32]>, y: &mut [f32]) {
        // xt[feature][lane]: one feature of the tile's samples per vector.
        let mut xt = vec![[0.0f32; LANES]; self.features];
        for (s, row) in x.chunks(self.features).enumerate() {
            for (f, &v) in row.iter().enumerate() {
                xt[f][s] = v;
            }
        }
        for j in 0..self.units {
            let (inputs, weights) = self.unit(j);
            let mut acc = [0.0f32; LANES];
            for (&i, &w) in inputs.iter().zip(weights) {
                let column = &xt[i as usize];
                for l in 0..LANES {
                    acc[l] += w * column[l];
                }
            }
            let b = bias.map_or(0.0, |b| b[j]);
            for (s, &a) in acc.iter().enumerate().take(n) {
                y[s * self.units + j] = a + b;
            }
        }
    }
}
