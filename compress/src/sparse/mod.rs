//! Sparse storage (BSR, with CSR as its 1×1 case) and the sparse Dense kernels.

pub mod activation;
mod bsr;
pub mod by_feature;
pub mod by_unit;
pub mod forward;
pub mod kernel;
pub mod non_finite;
pub mod tile;
mod transpose;

pub use bsr::Bsr;
pub use by_unit::TILE;
pub use forward::{forward, SparseDense, SparseLayer, TILED_FROM};
pub use kernel::SparseMatrix;
