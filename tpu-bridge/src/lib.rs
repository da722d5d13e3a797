//! # hasten-tpu
//!
//! The PJRT backend of hasten: a binding of the PJRT C API loaded at run time from a plugin
//! (`libtpu.so` on a TPU VM, the CUDA or the CPU plugin of XLA), a StableHLO emitter that
//! turns a whole `ir::Graph` into one MLIR module, and [`PjrtBackend`], which compiles a train
//! step into one PJRT executable and keeps the state on the device between steps.

mod backend;
pub mod emit;
mod error;
mod executable;
pub mod pjrt;

pub use backend::PjrtBackend;
pub use error::{PjrtError, PjrtResult};
pub use executable::PjrtExecutable;
