//! The one-sample sparse product: `W` in CSR by input feature (CSC of `W` seen as
//! `[units, features]`), scattering each input value into the units it feeds.
//!
//! The sample starts from the bias and, for every input value that is not zero, adds
//! `x[i] · W[i, j]` to the units `j` of feature `i`'s row. Inputs that are zero cost
//! nothing: MNIST pixels (about 81 % zero) and ReLU outputs (about half) skip their rows,
//! which neither a dense product nor the tiled kernel can. Skipping is exact for finite
//! weights (`0 · w = 0`); a matrix holding ±∞ or NaN never skips, so `0 · ∞ = NaN` is kept.

/// A `[features, units]` matrix in CSR by input feature.
#[derive(Clone, Debug)]
pub struct ByFeature {
    offsets: Vec<u32>,
    units: Vec<u32>,
    weights: Vec<f32>,
    /// Whether every weight is finite, so that zero inputs may be skipped.
    skip_zero_inputs: bool,
}

impl ByFeature {
    /// The nonzeros of a dense row-major `[features, units]` kernel, feature by feature.
    pub fn from_dense(kernel: &[f32], features: usize, units: usize) -> ByFeature {
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
        ByFeature {
            offsets,
            units: columns,
            weights,
            skip_zero_inputs,
        }
    }

    /// Stored nonzeros.
    pub fn nnz(&self) -> usize {
        self.weights.len()
    }

    /// The units that feature `i` has stored weights for, ascending.
    pub fn units_of(&self, i: usize) -> &[u32] {
        &self.units[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// `y = x · W (+ bias)` for one sample.
    #[inline(always)]
    pub fn sample(&self, x: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
        match bias {
            Some(b) => y.copy_from_slice(b),
            None => y.fill(0.0),
        }
        for (i, &xi) in x.iter().enumerate() {
            if xi == 0.0 && self.skip_zero_inputs {
                continue;
            }
            let (a, b) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
            for (&j, &w) in self.units[a..b].iter().zip(&self.weights[a..b]) {
                y[j as usize] += xi * w;
            }
        }
    }
}
