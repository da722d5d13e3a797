//! `y = x · W` for a sparse `W` (`[features, units]`), kept in two forms: CSR by input
//! feature for one sample at a time (zero inputs skipped, see [`super::by_feature`]) and CSR
//! by output unit for tiles of samples (see [`super::by_unit`]). [`super::forward`] picks
//! one by batch size.

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

    /// The form for one sample at a time.
    pub(crate) fn by_feature(&self) -> &ByFeature {
        &self.by_feature
    }

    /// The form for tiles of samples.
    pub(crate) fn by_unit(&self) -> &ByUnit {
        &self.by_unit
    }
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
