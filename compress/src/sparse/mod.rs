//! Sparse storage (BSR, with CSR as its 1×1 case) and the sparse Dense kernel.

mod bsr;
pub mod kernel;

pub use bsr::Bsr;
pub use kernel::SparseMatrix;
