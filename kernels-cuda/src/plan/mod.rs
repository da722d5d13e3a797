//! Compiling a graph into a [`KernelPlan`]: the steps of a train step (generated kernels and
//! cuBLASLt products), the CUDA C of every kernel, and the byte layout of the one device arena
//! that holds every value. Nothing here touches a device, so the whole code generation runs
//! (and is tested through NVRTC) on a machine without a GPU.

mod arena;
mod gemm;
mod steps;

pub use arena::Layout;
pub use gemm::Gemm;

use crate::codegen::{self, Kernel};
use crate::error::{CudaError, CudaResult};
use hasten_tensor::ir::{Graph, NodeId, Op};
use hasten_tensor::passes::pipeline;
use hasten_tensor::DType;

/// One thing the step does on the device, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Launch generated kernel `kernel` on the buffers of `reads`, then `writes`.
    Kernel {
        /// Index into [`KernelPlan::kernels`].
        kernel: usize,
        /// Nodes whose buffers the kernel reads (its first parameters).
        reads: Vec<NodeId>,
        /// Nodes whose buffers it writes (its last parameters).
        writes: Vec<NodeId>,
    },
    /// One cuBLASLt product (with its epilogue).
    Gemm(Gemm),
}

/// A parameter: its name, node and size; `update` is the node whose value replaces it after
/// each step.
#[derive(Clone, Debug)]
pub struct StateSlot {
    /// The state's name.
    pub name: String,
    /// Its `Parameter` node.
    pub node: NodeId,
    /// Bytes.
    pub bytes: usize,
    /// The new value's node, if the graph updates it.
    pub update: Option<NodeId>,
}

/// A byte copy inside the arena, run after the step's kernels (state updates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Copy {
    /// Source offset.
    pub src: usize,
    /// Destination offset.
    pub dst: usize,
    /// Bytes.
    pub bytes: usize,
}

/// A graph compiled for the CUDA backend, short of a device.
#[derive(Clone, Debug)]
pub struct KernelPlan {
    /// The graph after the shared passes.
    pub graph: Graph,
    /// Every generated kernel.
    pub kernels: Vec<Kernel>,
    /// The step, in order.
    pub steps: Vec<Step>,
    /// Copies run after the steps, in order (state updates).
    pub copies: Vec<Copy>,
    /// Where every value lives in the arena.
    pub layout: Layout,
    /// Inputs, in the order a step takes them.
    pub inputs: Vec<(String, NodeId)>,
    /// Outputs, in declaration order.
    pub outputs: Vec<(String, NodeId)>,
    /// Parameters.
    pub states: Vec<StateSlot>,
}

impl KernelPlan {
    /// Lowers `graph`: the shared passes, one step per kernel or product, the arena layout.
    pub fn build(graph: &Graph) -> CudaResult<Self> {
        let mut prepared = pipeline::prepare(graph, true)?;
        check_supported(&prepared.graph)?;
        prepared.fuse(true, &|_| false);
        let (steps, kernels) = steps::lower(&prepared);
        let graph = prepared.graph;
        let states: Vec<StateSlot> = graph
            .parameters()
            .into_iter()
            .map(|(name, id)| StateSlot {
                name: name.to_string(),
                node: id,
                bytes: bytes_of(&graph, id),
                update: graph.updates().iter().find(|(p, _)| *p == id).map(|u| u.1),
            })
            .collect();
        let layout = Layout::new(&graph, &steps);
        let copies = layout.state_copies(&graph, &states);
        Ok(KernelPlan {
            inputs: graph
                .inputs()
                .iter()
                .map(|(s, id)| (s.to_string(), *id))
                .collect(),
            outputs: graph.outputs().to_vec(),
            states,
            kernels,
            steps,
            copies,
            layout,
            graph,
        })
    }

    /// The CUDA C of the whole module: the prelude and every kernel.
    pub fn source(&self) -> String {
        codegen::module_source(&self.kernels)
    }

    /// Number of device launches per step (kernels, products and copies).
    pub fn launches(&self) -> usize {
        self.steps.len() + self.copies.len()
    }
}

/// Bytes of a node's value.
pub fn bytes_of(graph: &Graph, id: NodeId) -> usize {
    let node = &graph.nodes()[id.0];
    node.shape.numel() * node.dtype.size_in_bytes()
}

/// Rejects what the kernels do not lower, before anything is generated.
fn check_supported(graph: &Graph) -> CudaResult<()> {
    for (i, n) in graph.nodes().iter().enumerate() {
        if matches!(n.dtype, DType::F16 | DType::BF16) {
            return Err(CudaError::Unsupported(format!(
                "{} values (node %{i}, {}); the CUDA backend computes in f32",
                n.dtype,
                n.op.name()
            )));
        }
        if n.shape.numel() >= 1 << 31 {
            return Err(CudaError::Unsupported(format!(
                "node %{i} has {} elements; kernels index with 32 bits",
                n.shape.numel()
            )));
        }
        if matches!(n.op, Op::AllReduce { .. }) {
            return Err(CudaError::Unsupported(format!(
                "all_reduce (node %{i}): collectives on the CUDA backend need NCCL, which is \
                 not wired yet; train data-parallel on the CPU backend for now"
            )));
        }
    }
    Ok(())
}
