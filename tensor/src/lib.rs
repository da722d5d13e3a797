//! # hasten-tensor
//!
//! The foundation of hasten: host tensors (candle-core's, re-exported), the IR that every model
//! is built in, reverse-mode autodiff on that IR, the graph passes, the [`Backend`] /
//! [`Executable`] traits, the CPU backend, and safetensors IO.
//!
//! ```
//! use hasten_tensor::{grad, Backend, CpuBackend, DType, Graph, HostSlice};
//! let mut g = Graph::new();
//! let x = g.input("x", [2, 3], DType::F32).unwrap();
//! let w = g.parameter("w", [3, 1], DType::F32).unwrap();
//! let y = g.matmul(x, w).unwrap();
//! let loss = g.mean_all(y).unwrap();
//! let dw = grad(&mut g, loss, &[w]).unwrap()[0];
//! g.output("loss", loss).unwrap();
//! g.output("dw", dw).unwrap();
//! let mut exe = CpuBackend::new().compile(&g).unwrap();
//! exe.write_state("w", HostSlice::F32(&[1.0, 2.0, 3.0])).unwrap();
//! exe.run(&[HostSlice::F32(&[1.0, 1.0, 1.0, 2.0, 2.0, 2.0])]).unwrap();
//! assert_eq!(exe.output("loss").unwrap().as_f32().unwrap(), &[9.0]);
//! ```

mod autodiff;
mod backend;
pub mod collective;
pub mod cpu;
mod dtype;
mod error;
pub mod host;
pub mod io;
pub mod ir;
pub mod passes;
pub mod repeat;
mod shape;
pub mod shard;

pub use autodiff::grad;
pub use backend::{check_inputs, check_value, Backend, Executable};
pub use candle_core;
pub use collective::{AllReduceOp, Communicator};
pub use cpu::{CpuBackend, CpuOptions};
pub use dtype::DType;
pub use error::{Error, Result};
pub use host::{HostData, HostSlice, HostTensor};
pub use ir::{Graph, NodeId};
pub use shape::Shape;
