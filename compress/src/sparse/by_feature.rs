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

    /// `y = x · W (+ bias)` for one sample. `FMA` says whether fused multiply-adds are
    /// available: call with `true` only inside code compiled for FMA.
    ///
    /// The inputs are taken 64 at a time: a mask of the nonzero ones is built without
    /// branches and its set bits visited in order, so the branch on each input's zeroness
    /// (mispredicted at every edge of a digit's strokes) is gone.
    #[inline(always)]
    pub fn sample<const FMA: bool>(&self, x: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
        match bias {
            Some(b) => y.copy_from_slice(b),
            None => y.fill(0.0),
        }
        for (c, chunk) in x.chunks(64).enumerate() {
            let mut mask = 0u64;
            for (k, &v) in chunk.iter().enumerate() {
                mask |= u64::from(v != 0.0 || !self.skip_zero_inputs) << k;
            }
            while mask != 0 {
                let i = c * 64 + mask.trailing_zeros() as usize;
                mask &= mask - 1;
                self.scatter::<FMA>(i, x[i], y);
            }
        }
    }

    /// `y[j] += xi · W[i, j]` for feature `i`'s stored weights, four at a time (the units
    /// of one feature are distinct, so the four updates are independent).
    #[inline(always)]
    fn scatter<const FMA: bool>(&self, i: usize, xi: f32, y: &mut [f32]) {
        let (a, b) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
        let mut units = self.units[a..b].chunks_exact(4);
        let mut weights = self.weights[a..b].chunks_exact(4);
        for (j, w) in (&mut units).zip(&mut weights) {
            for k in 0..4 {
                add_product::<FMA>(&mut y[j[k] as usize], xi, w[k]);
            }
        }
        for (&j, &w) in units.remainder().iter().zip(weights.remainder()) {
            add_product::<FMA>(&mut y[j as usize], xi, w);
        }
    }
}

/// `y += x · w`.
#[inline(always)]
fn add_product<const FMA: bool>(y: &mut f32, x: f32, w: f32) {
    *y = if FMA { x.mul_add(w, *y) } else { *y + x * w };
}
