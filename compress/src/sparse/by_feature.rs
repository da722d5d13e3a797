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

    /// Fills `masks` with one bit per input of `x`, 64 inputs a word, set for the rows
    /// [`Self::sample`] visits: the nonzero inputs, or every input when zero inputs cannot be
    /// skipped; returns how many are set. `AVX` says whether AVX is available: pass `true`
    /// only inside code compiled for it.
    ///
    /// The masks are built without branches and their set bits visited in order, so the
    /// branch on each input's zeroness (mispredicted at every edge of a digit's strokes) is
    /// gone.
    #[inline(always)]
    pub fn rows_to_visit<const AVX: bool>(&self, x: &[f32], masks: &mut Vec<u64>) -> usize {
        masks.clear();
        masks.extend(x.chunks(64).map(|chunk| {
            if self.skip_zero_inputs {
                nonzero_mask::<AVX>(chunk)
            } else {
                u64::MAX >> (64 - chunk.len())
            }
        }));
        masks.iter().map(|m| m.count_ones() as usize).sum()
    }

    /// `y = x · W (+ bias)` for one sample, visiting the rows set in `masks` (from
    /// [`Self::rows_to_visit`] for this `x`). `FMA` says whether fused multiply-adds are
    /// available: call with `true` only inside code compiled for FMA.
    #[inline(always)]
    pub fn sample<const FMA: bool>(
        &self,
        x: &[f32],
        masks: &[u64],
        bias: Option<&[f32]>,
        y: &mut [f32],
    ) {
        match bias {
            Some(b) => y.copy_from_slice(b),
            None => y.fill(0.0),
        }
        for (c, &mask) in masks.iter().enumerate() {
            let mut mask = mask;
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

/// Bit `k` set where `chunk[k]` (at most 64 values) is not zero (NaN included).
#[inline(always)]
fn nonzero_mask<const AVX: bool>(chunk: &[f32]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if AVX && chunk.len() == 64 {
        // SAFETY: `AVX` is passed only inside code compiled for AVX, and the chunk holds the
        // 64 values read.
        return unsafe { x86::nonzero_mask(chunk.as_ptr()) };
    }
    let mut mask = 0u64;
    for (k, &v) in chunk.iter().enumerate() {
        mask |= u64::from(v != 0.0) << k;
    }
    mask
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// [`super::nonzero_mask`] of the 64 values at `x`: a compare and a move-mask per eight.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn nonzero_mask(x: *const f32) -> u64 {
        let zero = _mm256_setzero_ps();
        let mut mask = 0u64;
        for k in 0..8 {
            let v = _mm256_loadu_ps(x.add(8 * k));
            let nonzero = _mm256_cmp_ps::<_CMP_NEQ_UQ>(v, zero);
            mask |= u64::from(_mm256_movemask_ps(nonzero) as u8) << (8 * k);
        }
        mask
    }
}
