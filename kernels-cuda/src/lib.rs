//! # hasten-cuda
//!
//! The CUDA backend of hasten. A whole train step is lowered once into a [`KernelPlan`]:
//! cuBLASLt products (with bias and ReLU epilogues), one NVRTC-compiled kernel per
//! elementwise fusion group, and generated kernels for every other op, over one device arena
//! the shared memory plan lays out. [`CudaBackend`] loads the plan on a GPU; after the first
//! step the step is captured as a CUDA graph and replayed.
//!
//! The CUDA libraries are loaded at run time, so the crate builds without CUDA, and the code
//! generation ([`KernelPlan::build`], [`nvrtc::compile`]) runs without a GPU.

mod backend;
pub mod codegen;
mod device;
mod error;
mod executable;
mod host_io;
pub mod nvrtc;
mod options;
pub mod plan;
pub mod probe;

pub use backend::CudaBackend;
pub use error::{CudaError, CudaResult};
pub use executable::CudaExecutable;
pub use options::CudaOptions;
pub use plan::KernelPlan;
