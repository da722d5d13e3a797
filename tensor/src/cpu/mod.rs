//! The CPU backend: compiles a graph into a planned sequence of kernels over one arena, so
//! that after the first step a step allocates nothing.

mod buffer;
mod compile;
mod conv_block;
mod denormals;
mod executable;
pub mod gemm;
mod in_place;
pub mod kernels;
pub mod pool;
mod profile;
pub mod simd;
mod tiling;
pub(crate) mod vector;

pub use executable::CpuExecutable;

use crate::backend::{Backend, Executable};
use crate::collective::Communicator;
use crate::ir::Graph;
use crate::Result;
use std::sync::Arc;

/// Which optimisations the CPU backend applies; the reference setting turns them all off so
/// that tests can compare the two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuOptions {
    /// Constant folding and dead-node elimination.
    pub simplify: bool,
    /// Elementwise fusion into chunked loops.
    pub fuse: bool,
    /// Reuse of arena bytes between values with disjoint lifetimes.
    pub plan_memory: bool,
    /// Batch tiling of runs of per-sample kernels (see `tiling`).
    pub tile_batch: bool,
}

impl CpuOptions {
    /// Everything on (the default).
    pub fn fast() -> Self {
        CpuOptions {
            simplify: true,
            fuse: true,
            plan_memory: true,
            tile_batch: true,
        }
    }

    /// Everything off: one kernel per node, one buffer per value.
    pub fn reference() -> Self {
        CpuOptions {
            simplify: false,
            fuse: false,
            plan_memory: false,
            tile_batch: false,
        }
    }
}

impl Default for CpuOptions {
    fn default() -> Self {
        Self::fast()
    }
}

/// Runs graphs on the host's cores.
#[derive(Clone, Debug, Default)]
pub struct CpuBackend {
    options: CpuOptions,
    /// What its all-reduce nodes call; none outside a replica group.
    communicator: Option<Arc<dyn Communicator>>,
}

impl CpuBackend {
    /// The backend with every optimisation on.
    pub fn new() -> Self {
        Self::default()
    }

    /// The backend with chosen optimisations.
    pub fn with_options(options: CpuOptions) -> Self {
        CpuBackend {
            options,
            communicator: None,
        }
    }

    /// The same backend as one rank of a replica group: its executables' all-reduce nodes
    /// call `communicator`. Without one, compiling a graph with an all-reduce is an error.
    pub fn with_communicator(mut self, communicator: Arc<dyn Communicator>) -> Self {
        self.communicator = Some(communicator);
        self
    }

    /// Compiles to the concrete executable type (to inspect its memory plan, say).
    pub fn compile_cpu(&self, graph: &Graph) -> Result<CpuExecutable> {
        CpuExecutable::compile_with(graph, self.options, self.communicator.clone())
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn compile(&self, graph: &Graph) -> Result<Box<dyn Executable>> {
        Ok(Box::new(self.compile_cpu(graph)?))
    }

    fn uses_host_cores(&self) -> bool {
        true
    }
}
