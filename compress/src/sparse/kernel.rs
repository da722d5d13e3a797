//! `y = x · W` for a sparse `W` (`[features, units]`), kept in two forms: CSR by input
//! feature (zero inputs skipped, see [`super::by_feature`]) and CSR by output unit (see
//! [`super::by_unit`]). [`super::forward`] runs tiles of samples by unit; one sample runs in
//! whichever form costs less for its inputs ([`SparseMatrix::sample`]).

use super::by_feature::ByFeature;
use super::by_unit::ByUnit;
use super::forward::{forward, SparseLayer};
use hasten_nn::activations::Activation;

/// A `[features, units]` matrix, stored by its nonzeros.
#[derive(Clone, Debug)]
pub struct SparseMatrix {
    /// Input features.
    pub features: usize,
    /// Output units.
    pub units: usize,
    by_feature: ByFeature,
    by_unit: ByUnit,
}

impl SparseMatrix {
    /// The nonzeros of a dense row-major `[features, units]` kernel.
    pub fn from_dense(kernel: &[f32], features: usize, units: usize) -> SparseMatrix {
        SparseMatrix {
            features,
            units,
            by_feature: ByFeature::from_dense(kernel, features, units),
            by_unit: ByUnit::from_dense(kernel, features, units),
        }
    }

    /// Stored nonzeros.
    pub fn nnz(&self) -> usize {
        self.by_feature.nnz()
    }

    /// Fraction of the matrix stored.
    pub fn density(&self) -> f64 {
        self.nnz() as f64 / (self.features * self.units).max(1) as f64
    }

    /// `y = x · W (+ bias)` for `x` row-major `[samples, features]`, into `y`
    /// (`[samples, units]`).
    pub fn matmul(&self, x: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
        forward(&[Product { matrix: self, bias }], x, y);
    }

    /// `y = x · W (+ bias)` for one sample, by input feature (zero inputs skipped) or by
    /// unit (a dot product per unit), whichever [`by_feature_is_cheaper`] says. Both sum
    /// the same products, in a different order. `FMA` as in [`ByFeature::sample`].
    #[inline(always)]
    /// `masks` is scratch for the by-feature form's masks of nonzero inputs.
    pub(crate) fn sample<const FMA: bool>(
        &self,
        x: &[f32],
        bias: Option<&[f32]>,
        y: &mut [f32],
        masks: &mut Vec<u64>,
    ) {
        let rows = self.by_feature.rows_to_visit::<FMA>(x, masks);
        if by_feature_is_cheaper(rows, self.nnz(), self.features, self.units) {
            self.by_feature.sample::<FMA>(x, masks, bias, y);
        } else {
            self.by_unit.sample::<FMA>(x, bias, y);
        }
    }

    /// The form for one sample at a time.
    pub(crate) fn by_feature(&self) -> &ByFeature {
        &self.by_feature
    }

    /// The form for tiles of samples.
    pub(crate) fn by_unit(&self) -> &ByUnit {
        &self.by_unit
    }
}

/// Whether one sample's product costs less by input feature, visiting `rows` of a matrix
/// with `nnz` stored weights, than by unit. The costs, in units of one multiply-add of the
/// by-feature kernel (0.4 ns on the 2-core VM), were measured with the reference MLP's layers
/// and random ones (`features × units` 256 × 64, inputs half zero, 1-16 weights per row):
/// by feature, a visited row costs 20 plus one per stored weight in it (the loop over a row's
/// few weights ends at a different count each time, which the branch predictor misses); by
/// unit, a unit costs 10 and a stored weight 0.85. MNIST's first layer at 10 % density
/// (150 of 784 pixels nonzero) runs by feature, twice as fast; its second layer at 10 %
/// (one weight per row) runs by unit, three times as fast.
fn by_feature_is_cheaper(rows: usize, nnz: usize, features: usize, units: usize) -> bool {
    let per_row = nnz as f64 / features.max(1) as f64;
    let by_feature = rows as f64 * (20.0 + per_row);
    let by_unit = 10.0 * units as f64 + 0.85 * nnz as f64;
    by_feature < by_unit
}

/// The bare product, as a layer without activation.
struct Product<'a> {
    matrix: &'a SparseMatrix,
    bias: Option<&'a [f32]>,
}

impl SparseLayer for Product<'_> {
    fn matrix(&self) -> &SparseMatrix {
        self.matrix
    }

    fn bias(&self) -> Option<&[f32]> {
        self.bias
    }

    fn activation(&self) -> Activation {
        Activation::Linear
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values in [-1, 1), `density` of them nonzero, from a fixed xorshift sequence.
    fn sparse_values(len: usize, density: f64, mut state: u64) -> Vec<f32> {
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..len)
            .map(|_| {
                if next() < density {
                    (2.0 * next() - 1.0) as f32
                } else {
                    0.0
                }
            })
            .collect()
    }

    #[test]
    fn both_one_sample_forms_equal_the_written_out_product() {
        let (features, units) = (100, 37);
        let bias = sparse_values(units, 1.0, 1);
        for (k, density) in [0.01, 0.1, 0.5, 1.0].into_iter().enumerate() {
            let w = sparse_values(features * units, density, 2 + k as u64);
            let matrix = SparseMatrix::from_dense(&w, features, units);
            for input_density in [0.0, 0.3, 1.0] {
                let x = sparse_values(features, input_density, 9 + k as u64);
                let want: Vec<f64> = (0..units)
                    .map(|j| {
                        let dot: f64 = (0..features)
                            .map(|i| x[i] as f64 * w[i * units + j] as f64)
                            .sum();
                        dot + bias[j] as f64
                    })
                    .collect();
                let (mut by_feature, mut by_unit) = (vec![0.0; units], vec![0.0; units]);
                let mut masks = Vec::new();
                matrix.by_feature.rows_to_visit::<false>(&x, &mut masks);
                matrix
                    .by_feature
                    .sample::<false>(&x, &masks, Some(&bias), &mut by_feature);
                matrix
                    .by_unit
                    .sample::<false>(&x, Some(&bias), &mut by_unit);
                for (form, got) in [("by feature", by_feature), ("by unit", by_unit)] {
                    for (j, (&g, &e)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g as f64 - e).abs() <= 1e-5 * (1.0 + e.abs()),
                            "{form}, density {density}, inputs {input_density}, unit {j}: {g} vs {e}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_cost_model_picks_the_measured_winners() {
        // MNIST's first layer at 10 %: 150 of 784 pixels nonzero, 12.8 weights a row.
        assert!(by_feature_is_cheaper(150, 10_036, 784, 128));
        // Its second layer at 10 %: half of 128 ReLU outputs nonzero, one weight a row.
        assert!(!by_feature_is_cheaper(64, 128, 128, 10));
        // Nothing to visit costs nothing by feature.
        assert!(by_feature_is_cheaper(0, 10_036, 784, 128));
    }
}
