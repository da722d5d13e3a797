//! # hasten
//!
//! Fast deep-learning training for Rust: one Keras-style model, compiled whole for each
//! backend. This facade re-exports the crates; `use hasten::prelude::*` brings in what a
//! training script needs.

pub use hasten_nn as nn;
pub use hasten_tensor as tensor;

/// Data-parallel strategies (feature `parallel`).
#[cfg(feature = "parallel")]
pub use hasten_parallel as parallel;

/// Everything a training script needs.
pub mod prelude {
    pub use hasten_nn::prelude::*;
    pub use hasten_tensor::{Backend, CpuBackend};

    #[cfg(feature = "parallel")]
    pub use hasten_parallel::Mirrored;
}
