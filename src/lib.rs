//! # hasten
//!
//! Fast deep-learning training for Rust: one Keras-style model, compiled whole for each
//! backend. This facade re-exports the crates; `use hasten::prelude::*` brings in what a
//! training script needs.

/// Pruning while training, sparse export and sparse inference (feature `compress`).
#[cfg(feature = "compress")]
pub use hasten_compress as compress;
pub use hasten_nn as nn;
pub use hasten_tensor as tensor;
/// The PJRT backend: TPUs, GPUs or CPUs through a PJRT plugin (feature `tpu`).
#[cfg(feature = "tpu")]
pub use hasten_tpu as tpu;

/// The CUDA backend: NVIDIA GPUs through cuBLASLt and NVRTC-generated kernels (feature
/// `cuda`).
#[cfg(feature = "cuda")]
pub use hasten_cuda as cuda;

/// Data-parallel strategies (feature `parallel`).
#[cfg(feature = "parallel")]
pub use hasten_parallel as parallel;

/// Everything a training script needs.
pub mod prelude {
    pub use hasten_nn::prelude::*;
    pub use hasten_tensor::{Backend, CpuBackend};
    #[cfg(feature = "tpu")]
    pub use hasten_tpu::PjrtBackend;

    #[cfg(feature = "cuda")]
    pub use hasten_cuda::{CudaBackend, CudaOptions};

    #[cfg(feature = "parallel")]
    pub use hasten_parallel::Mirrored;
}
