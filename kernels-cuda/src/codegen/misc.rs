//! Label and type conversions: one-hot, argmax and casts, one thread per output element.

use super::{signature, Kernel};
use hasten_tensor::ir::{Graph, NodeId, Op};
use hasten_tensor::DType;

/// The C expression converting `x` of `from` to `to` as the CPU's `cast` does (float to
/// integer truncates toward zero, saturating, NaN to zero; anything to bool is `x != 0`).
fn convert(from: DType, to: DType, x: &str) -> String {
    match (from, to) {
        (a, b) if a == b => x.to_string(),
        (_, DType::Bool) => format!("(u8)({x} != 0)"),
        (DType::F32, DType::I32) => format!("f32_to_i32({x})"),
        (DType::F32, DType::U8) => format!("f32_to_u8({x})"),
        (DType::I32, DType::U8) => format!("i32_to_u8({x})"),
        (_, DType::F32) => format!("(float){x}"),
        (_, DType::I32) => format!("(int){x}"),
        _ => format!("({x})"),
    }
}

/// A one-hot, argmax or cast node.
pub fn misc(graph: &Graph, id: NodeId, name: String) -> Kernel {
    let nodes = graph.nodes();
    let node = &nodes[id.0];
    let x = &nodes[node.inputs[0].0];
    let n = node.shape.numel();
    let body = match &node.op {
        Op::OneHot { depth } => format!(
            " int l = in0[i / {depth}u];\n out0[i] = (l >= 0 && (u32)l == i % {depth}u) ? 1.0f : 0.0f;\n"
        ),
        Op::ArgMax { axis } => {
            let dims = x.shape.dims();
            let len = dims[*axis];
            let inner: usize = dims[axis + 1..].iter().product();
            format!(
                " u32 base = (i / {inner}u) * {len}u * {inner}u + i % {inner}u;\n int best = 0;\n \
                 float best_v = in0[base];\n for (u32 k = 1; k < {len}u; ++k) {{\n  float v = in0[base + k * {inner}u];\n  \
                 if (ranks_above(v, best_v)) {{ best = (int)k; best_v = v; }}\n }}\n out0[i] = best;\n"
            )
        }
        Op::Cast { to } => format!(" out0[i] = {};\n", convert(x.dtype, *to, "in0[i]")),
        other => unreachable!("{} is not a conversion", other.name()),
    };
    let source = format!(
        "{sig} {{\n u32 i = blockIdx.x * blockDim.x + threadIdx.x;\n if (i >= {n}u) return;\n{body}}}\n",
        sig = signature(&name, &[x.dtype], &[node.dtype]),
    );
    Kernel::per_element(name, source, n)
}
