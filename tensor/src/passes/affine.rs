//! Products whose bias add, and ReLU if there is one, run as the GEMM's epilogue: a Dense
//! layer's `relu(x·W + b)` as one kernel (the CPU's GEMM epilogue, cuBLASLt's `RELU_BIAS`).
//!
//! Fusion alone puts the bias add and the ReLU in one elementwise loop after the product, so
//! the pre-activation still goes to memory and back (at batch 128, 64 KB written by one pass
//! and read by the next, often on the other core). Applied as each tile of C is stored, the
//! bias and the clamp cost nothing beyond the product.

use crate::ir::{BinaryOp, Graph, NodeId, Op, UnaryOp};
use crate::passes::fusion::FusionGroup;
use crate::DType;

/// A product, its bias and whether a ReLU follows, computed by one GEMM into `out`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Affine {
    /// The `MatMul` node (whose own value is never stored).
    pub matmul: NodeId,
    /// The `[n]` bias added to every row.
    pub bias: NodeId,
    /// Whether the result is clamped at zero.
    pub relu: bool,
    /// The value stored: the bias add, or the ReLU after it.
    pub out: NodeId,
}

/// The [`Affine`] a fusion group and the product before it become, if the group is exactly
/// `matmul + bias` or `relu(matmul + bias)` and the product is used by nothing else.
/// `own_step(id)` says whether a node runs as a step of its own (not in a group or block),
/// `needed(id)` whether it is a graph output or state update.
pub fn find(
    graph: &Graph,
    group: &FusionGroup,
    own_step: &dyn Fn(NodeId) -> bool,
    needed: &dyn Fn(NodeId) -> bool,
) -> Option<Affine> {
    let nodes = graph.nodes();
    let (add, relu) = match group.members[..] {
        [add] => (add, false),
        [add, relu] => {
            let r = &nodes[relu.0];
            (matches!(r.op, Op::Unary(UnaryOp::Relu)) && r.inputs[..] == [add]).then_some(())?;
            (add, true)
        }
        _ => return None,
    };
    let out = *group.members.last()?;
    if group.outputs[..] != [out] || nodes[out.0].dtype != DType::F32 {
        return None;
    }
    let sum = &nodes[add.0];
    if !matches!(sum.op, Op::Binary(BinaryOp::Add)) {
        return None;
    }
    let n = *sum.shape.dims().last()?;
    let is_product = |id: NodeId| {
        let node = &nodes[id.0];
        matches!(node.op, Op::MatMul { .. })
            && node.shape == sum.shape
            && own_step(id)
            && !needed(id)
            && uses(graph, id) == 1
    };
    let is_bias = |id: NodeId| {
        let node = &nodes[id.0];
        node.shape.dims() == [n] && node.dtype == DType::F32
    };
    let (matmul, bias) = match sum.inputs[..] {
        [x, b] if is_product(x) && is_bias(b) => (x, b),
        [b, x] if is_product(x) && is_bias(b) => (x, b),
        _ => return None,
    };
    Some(Affine {
        matmul,
        bias,
        relu,
        out,
    })
}

/// How many operand slots of all nodes read `id`.
fn uses(graph: &Graph, id: NodeId) -> usize {
    graph
        .nodes()
        .iter()
        .map(|node| node.inputs.iter().filter(|&&x| x == id).count())
        .sum()
}
