//! Reductions: one block per output element, its threads striding over the reduced elements
//! and combining in shared memory (sum, mean as the sum times `1/count`, NaN-propagating max).

use super::index::{coords, dot, strides};
use super::{ctype, signature, Kernel};
use hasten_tensor::ir::{Graph, NodeId, Op, ReduceOp};
use hasten_tensor::DType;

/// Threads per block for a reduction over `count` elements (a power of two, 32 to 256).
pub fn block_for(count: usize) -> u32 {
    (count.next_power_of_two() as u32).clamp(32, 256)
}

/// The shared-memory tree that combines `acc` across a block of `block` threads into
/// `result` (valid in thread 0), with `combine(a, b)` as the C expression template.
pub fn block_combine(ty: &str, block: u32, combine: &dyn Fn(&str, &str) -> String) -> String {
    let step = combine("s[threadIdx.x]", "s[threadIdx.x + w]");
    format!(
        " __shared__ {ty} s[{block}];\n s[threadIdx.x] = acc;\n __syncthreads();\n \
         for (u32 w = {half}u; w > 0; w >>= 1) {{\n  if (threadIdx.x < w) s[threadIdx.x] = {step};\n  __syncthreads();\n }}\n \
         {ty} result = s[0];\n",
        half = block / 2
    )
}

/// A `Reduce` node.
pub fn reduce(graph: &Graph, id: NodeId, name: String) -> Kernel {
    let nodes = graph.nodes();
    let node = &nodes[id.0];
    let Op::Reduce { op, axes, .. } = &node.op else {
        unreachable!("not a reduction")
    };
    let x = &nodes[node.inputs[0].0];
    let dims = x.shape.dims();
    let s = strides(dims);
    let kept: Vec<usize> = (0..dims.len()).filter(|d| !axes.contains(d)).collect();
    let kept_dims: Vec<usize> = kept.iter().map(|&d| dims[d]).collect();
    let kept_strides: Vec<usize> = kept.iter().map(|&d| s[d]).collect();
    let red_dims: Vec<usize> = axes.iter().map(|&d| dims[d]).collect();
    let red_strides: Vec<usize> = axes.iter().map(|&d| s[d]).collect();
    let count: usize = red_dims.iter().product();
    let outputs = node.shape.numel();
    let block = block_for(count);
    let ty = ctype(node.dtype);
    let int = node.dtype == DType::I32;
    let combine = |a: &str, b: &str| match (op, int) {
        (ReduceOp::Max, false) => format!("maximum({a}, {b})"),
        (ReduceOp::Max, true) => format!("imax({a}, {b})"),
        (_, true) => format!("wrap_add({a}, {b})"),
        (_, false) => format!("({a} + {b})"),
    };
    let init = match (op, int) {
        (ReduceOp::Max, false) => "-HASTEN_INF",
        (ReduceOp::Max, true) => "(int)0x80000000",
        (_, true) => "0",
        (_, false) => "0.0f",
    };
    let finish = match op {
        ReduceOp::Mean => format!("result * (1.0f / (float){count})"),
        _ => "result".to_string(),
    };
    let source = format!(
        "{sig} {{\n u32 o = blockIdx.x;\n{oc} u32 base = {ob};\n {ty} acc = {init};\n \
         for (u32 r = threadIdx.x; r < {count}u; r += {block}u) {{\n{rc}  acc = {step};\n }}\n{tree} \
         if (threadIdx.x == 0) out0[o] = {finish};\n}}\n",
        sig = signature(&name, &[x.dtype], &[node.dtype]),
        oc = coords("k", "o", &kept_dims),
        ob = dot("k", &kept_strides),
        rc = coords("q", "r", &red_dims),
        step = combine("acc", &format!("in0[base + {}]", dot("q", &red_strides))),
        tree = block_combine(ty, block, &combine),
    );
    Kernel::per_block(name, source, outputs, block)
}
