//! The batched sparse product: `W` in CSR by output unit, activations in feature-major tiles.
//!
//! A tile holds [`TILE`] samples side by side: row `i` of the tile is feature `i` of each
//! sample (`[features][TILE]`). Unit `j`'s output row is the sum over `j`'s nonzeros `(i, w)`
//! of `w · tile[i]`, a vector multiply-add over the samples: each nonzero's index and weight
//! are read once per tile and used for all its samples, and the sums stay in registers (four
//! independent ones per unit, so that consecutive multiply-adds do not wait on each other).
//! Nothing is skipped, so NaN and ±∞ weights and inputs meet every stored weight as in the
//! dense product.

/// Samples per tile: one AVX-512 vector, two AVX2 vectors.
pub const TILE: usize = 16;

/// One feature (or unit) of a tile's samples.
pub type Lanes = [f32; TILE];

/// A `[features, units]` matrix in CSR by output unit.
#[derive(Clone, Debug)]
pub struct ByUnit {
    offsets: Vec<u32>,
    features: Vec<u32>,
    weights: Vec<f32>,
}

impl ByUnit {
    /// The nonzeros of a dense row-major `[features, units]` kernel, unit by unit.
    pub fn from_dense(kernel: &[f32], features: usize, units: usize) -> ByUnit {
        let mut offsets = Vec::with_capacity(units + 1);
        let (mut rows, mut weights) = (Vec::new(), Vec::new());
        offsets.push(0);
        for j in 0..units {
            for i in 0..features {
                let w = kernel[i * units + j];
                if w != 0.0 {
                    rows.push(i as u32);
                    weights.push(w);
                }
            }
            offsets.push(rows.len() as u32);
        }
        ByUnit {
            offsets,
            features: rows,
            weights,
        }
    }

    /// `out[j] = bias[j] + Σ w · tile[i]` over unit `j`'s nonzeros, for every unit, then
    /// ReLU'd in place if `relu` (NaN kept). `FMA` says whether fused multiply-adds are
    /// available: call with `true` only inside code compiled for FMA.
    #[inline(always)]
    pub fn tile<const FMA: bool>(
        &self,
        tile: &[Lanes],
        bias: Option<&[f32]>,
        relu: bool,
        out: &mut [Lanes],
    ) {
        for (j, out) in out.iter_mut().enumerate() {
            let (a, b) = (self.offsets[j] as usize, self.offsets[j + 1] as usize);
            let sum = unit_sum::<FMA>(&self.features[a..b], &self.weights[a..b], tile);
            let b = bias.map_or(0.0, |b| b[j]);
            for (o, s) in out.iter_mut().zip(sum) {
                let v = s + b;
                *o = if relu {
                    hasten_tensor::cpu::kernels::elementwise::relu(v)
                } else {
                    v
                };
            }
        }
    }
}

impl ByUnit {
    /// `y = x · W (+ bias)` for one sample: a dot product of each unit's nonzeros with the
    /// inputs they read, in four interleaved partial sums. No input is skipped.
    #[inline(always)]
    pub fn sample<const FMA: bool>(&self, x: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
        for (j, y) in y.iter_mut().enumerate() {
            let (a, b) = (self.offsets[j] as usize, self.offsets[j + 1] as usize);
            let (rows, weights) = (&self.features[a..b], &self.weights[a..b]);
            let mut acc = [0.0f32; 4];
            let mut rows4 = rows.chunks_exact(4);
            let mut weights4 = weights.chunks_exact(4);
            for (r, w) in (&mut rows4).zip(&mut weights4) {
                for k in 0..4 {
                    acc[k] = add_product::<FMA>(acc[k], w[k], x[r[k] as usize]);
                }
            }
            for (&r, &w) in rows4.remainder().iter().zip(weights4.remainder()) {
                acc[0] = add_product::<FMA>(acc[0], w, x[r as usize]);
            }
            let sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
            *y = sum + bias.map_or(0.0, |b| b[j]);
        }
    }
}

/// `acc + w · x`.
#[inline(always)]
fn add_product<const FMA: bool>(acc: f32, w: f32, x: f32) -> f32 {
    if FMA {
        w.mul_add(x, acc)
    } else {
        acc + w * x
    }
}

/// `Σ w · tile[i]` over one unit's nonzeros, in four interleaved partial sums.
#[inline(always)]
fn unit_sum<const FMA: bool>(rows: &[u32], weights: &[f32], tile: &[Lanes]) -> Lanes {
    let mut acc = [[0.0f32; TILE]; 4];
    let mut rows4 = rows.chunks_exact(4);
    let mut weights4 = weights.chunks_exact(4);
    for (r, w) in (&mut rows4).zip(&mut weights4) {
        for k in 0..4 {
            multiply_add::<FMA>(&mut acc[k], w[k], &tile[r[k] as usize]);
        }
    }
    for (&r, &w) in rows4.remainder().iter().zip(weights4.remainder()) {
        multiply_add::<FMA>(&mut acc[0], w, &tile[r as usize]);
    }
    let mut sum = [0.0f32; TILE];
    for (l, s) in sum.iter_mut().enumerate() {
        *s = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
    }
    sum
}

/// `acc += w · x`, lane by lane.
#[inline(always)]
fn multiply_add<const FMA: bool>(acc: &mut Lanes, w: f32, x: &Lanes) {
    for (a, &x) in acc.iter_mut().zip(x) {
        *a = if FMA { w.mul_add(x, *a) } else { *a + w * x };
    }
}
