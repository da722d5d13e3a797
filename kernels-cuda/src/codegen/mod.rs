//! CUDA C generation: one file per op family, each turning a node (or a fusion group) into
//! the source of one kernel whose shapes are baked in as constants. Nothing here needs a
//! device: a [`Kernel`] is text plus its launch geometry.

mod conv;
mod elementwise;
mod epilogue;
mod index;
mod layout;
mod misc;
mod pool;
pub mod prelude;
mod random;
mod reduce;

pub use elementwise::{fused_group, group_inputs};
pub use epilogue::bias_relu;

use hasten_tensor::ir::{Graph, NodeId, Op};
use hasten_tensor::DType;

/// Threads per block of the one-thread-per-element kernels.
pub const BLOCK: u32 = 256;

/// One generated kernel: its `extern "C"` name, its source, and how it is launched. Its
/// parameters are device pointers, in the order of the step's operands then results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// The entry point's name.
    pub name: String,
    /// The CUDA C of the entry point (the prelude is shared by the whole module).
    pub source: String,
    /// Blocks.
    pub grid: u32,
    /// Threads per block.
    pub block: u32,
}

impl Kernel {
    /// A kernel with one thread per element of `n`.
    fn per_element(name: String, source: String, n: usize) -> Self {
        Kernel {
            name,
            source,
            grid: (n as u32).div_ceil(BLOCK).max(1),
            block: BLOCK,
        }
    }

    /// A kernel with one block of `block` threads per element of `n`.
    fn per_block(name: String, source: String, n: usize, block: u32) -> Self {
        Kernel {
            name,
            source,
            grid: (n as u32).max(1),
            block,
        }
    }
}

/// The C type of a stored element.
pub fn ctype(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "float",
        DType::I32 => "int",
        DType::U8 | DType::Bool => "u8",
        DType::F16 | DType::BF16 => "unsupported_half",
    }
}

/// The signature of a kernel over `inputs` (read-only) and `outputs`.
fn signature(name: &str, inputs: &[DType], outputs: &[DType]) -> String {
    let ins = inputs
        .iter()
        .enumerate()
        .map(|(k, d)| format!("const {}* __restrict__ in{k}", ctype(*d)));
    let outs = outputs
        .iter()
        .enumerate()
        .map(|(k, d)| format!("{}* __restrict__ out{k}", ctype(*d)));
    let params: Vec<String> = ins.chain(outs).collect();
    format!("extern \"C\" __global__ void {name}({})", params.join(", "))
}

/// The kernel computing node `id` on its own, or `None` for ops that are not kernels (leaves,
/// views, products, which go to cuBLASLt). `name` is the entry point's name.
pub fn node_kernel(graph: &Graph, id: NodeId, name: String) -> Option<Kernel> {
    let node = &graph.nodes()[id.0];
    match &node.op {
        Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Select => {
            Some(elementwise::single(graph, id, name))
        }
        Op::Reduce { .. } => Some(reduce::reduce(graph, id, name)),
        Op::Transpose { .. }
        | Op::Broadcast { .. }
        | Op::Slice { .. }
        | Op::Pad { .. }
        | Op::Concat { .. } => Some(layout::layout(graph, id, name)),
        Op::OneHot { .. } | Op::ArgMax { .. } | Op::Cast { .. } => {
            Some(misc::misc(graph, id, name))
        }
        Op::RandomUniform { .. } => Some(random::uniform(graph, id, name)),
        Op::Conv2d(_) | Op::Conv2dGradInput { .. } | Op::Conv2dGradFilter { .. } => {
            Some(conv::conv(graph, id, name))
        }
        Op::MaxPool2d(_) | Op::MaxPool2dGrad(_) | Op::AvgPool2d(_) | Op::AvgPool2dGrad { .. } => {
            Some(pool::pool(graph, id, name))
        }
        Op::Input { .. }
        | Op::Parameter { .. }
        | Op::Constant(_)
        | Op::Reshape { .. }
        | Op::StopGradient
        | Op::MatMul { .. }
        | Op::AllReduce { .. } => None,
    }
}

/// A whole module: the prelude, then every kernel.
pub fn module_source(kernels: &[Kernel]) -> String {
    let mut text = String::from(prelude::PRELUDE);
    for k in kernels {
        text.push('\n');
        text.push_str(&k.source);
    }
    text
}
