//! Elementwise ops: one node with numpy broadcasting, and a whole fusion group from the
//! fusion pass as one kernel (each member a local value, each group output stored once).

use super::index::{broadcast_strides, coords, dot};
use super::{ctype, signature, Kernel};
use hasten_tensor::ir::{BinaryOp, CompareOp, Graph, NodeId, Op, UnaryOp};
use hasten_tensor::passes::fusion::{access, Access, FusionGroup};
use hasten_tensor::DType;
use std::fmt::Write;

/// `op(x)` in CUDA C.
fn unary(op: UnaryOp, x: &str) -> String {
    match op {
        UnaryOp::Neg => format!("(-{x})"),
        UnaryOp::Exp => format!("expf({x})"),
        UnaryOp::Log => format!("logf({x})"),
        UnaryOp::Sqrt => format!("sqrtf({x})"),
        UnaryOp::Rsqrt => format!("(1.0f / sqrtf({x}))"),
        UnaryOp::Relu => format!("relu({x})"),
        UnaryOp::Sigmoid => format!("sigmoid({x})"),
        UnaryOp::Tanh => format!("tanhf({x})"),
        UnaryOp::Abs => format!("fabsf({x})"),
        UnaryOp::Square => format!("({x} * {x})"),
        UnaryOp::Recip => format!("(1.0f / {x})"),
    }
}

/// `op(a, b)` in CUDA C on `dtype` values (I32 arithmetic wraps).
fn binary(op: BinaryOp, dtype: DType, a: &str, b: &str) -> String {
    let int = dtype == DType::I32;
    match op {
        BinaryOp::Add if int => format!("wrap_add({a}, {b})"),
        BinaryOp::Sub if int => format!("wrap_sub({a}, {b})"),
        BinaryOp::Mul if int => format!("wrap_mul({a}, {b})"),
        BinaryOp::Max if int => format!("imax({a}, {b})"),
        BinaryOp::Min if int => format!("imin({a}, {b})"),
        BinaryOp::Add => format!("({a} + {b})"),
        BinaryOp::Sub => format!("({a} - {b})"),
        BinaryOp::Mul => format!("({a} * {b})"),
        BinaryOp::Div => format!("({a} / {b})"),
        BinaryOp::Max => format!("maximum({a}, {b})"),
        BinaryOp::Min => format!("minimum({a}, {b})"),
        BinaryOp::Pow => format!("powf({a}, {b})"),
    }
}

/// `a op b` in CUDA C, as 0 or 1.
fn compare(op: CompareOp, a: &str, b: &str) -> String {
    let sym = match op {
        CompareOp::Eq => "==",
        CompareOp::Ne => "!=",
        CompareOp::Lt => "<",
        CompareOp::Le => "<=",
        CompareOp::Gt => ">",
        CompareOp::Ge => ">=",
    };
    format!("(u8)({a} {sym} {b})")
}

/// The value of an elementwise node from its operands' expressions.
fn expression(graph: &Graph, id: NodeId, args: &[String]) -> String {
    let node = &graph.nodes()[id.0];
    let operand_dtype = graph.nodes()[node.inputs[0].0].dtype;
    match &node.op {
        Op::Unary(u) => unary(*u, &args[0]),
        Op::Binary(b) => binary(*b, node.dtype, &args[0], &args[1]),
        Op::Compare(c) => compare(*c, &args[0], &args[1]),
        Op::Select => format!("({} ? {} : {})", args[0], args[1], args[2]),
        other => unreachable!("{} is not elementwise ({operand_dtype})", other.name()),
    }
}

/// One elementwise node with general broadcasting: `out0[i] = op(in0[..], in1[..], …)`.
pub fn single(graph: &Graph, id: NodeId, name: String) -> Kernel {
    let nodes = graph.nodes();
    let node = &nodes[id.0];
    let dims = node.shape.dims();
    let n = node.shape.numel();
    let in_dtypes: Vec<DType> = node.inputs.iter().map(|x| nodes[x.0].dtype).collect();
    let mut body = coords("c", "i", dims);
    let args: Vec<String> = node
        .inputs
        .iter()
        .enumerate()
        .map(|(k, x)| {
            let s = broadcast_strides(nodes[x.0].shape.dims(), dims);
            let _ = writeln!(
                body,
                "{} a{k} = in{k}[{}];",
                ctype(in_dtypes[k]),
                dot("c", &s)
            );
            format!("a{k}")
        })
        .collect();
    let value = expression(graph, id, &args);
    let source = format!(
        "{sig} {{\n u32 i = blockIdx.x * blockDim.x + threadIdx.x;\n if (i >= {n}u) return;\n{body} out0[i] = {value};\n}}\n",
        sig = signature(&name, &in_dtypes, &[node.dtype]),
    );
    Kernel::per_element(name, source, n)
}

/// How an operand from outside the group is read at flat index `i`.
fn load(access: Access, k: usize) -> String {
    match access {
        Access::Full => format!("in{k}[i]"),
        Access::Scalar => format!("in{k}[0]"),
        Access::Trailing(len) => format!("in{k}[i % {len}u]"),
        Access::Leading(inner) => format!("in{k}[i / {inner}u]"),
    }
}

/// The operands a group reads from outside, in first-use order.
pub fn group_inputs(graph: &Graph, group: &FusionGroup) -> Vec<NodeId> {
    let mut inputs = Vec::new();
    for m in &group.members {
        for x in &graph.nodes()[m.0].inputs {
            if !group.members.contains(x) && !inputs.contains(x) {
                inputs.push(*x);
            }
        }
    }
    inputs
}

/// A fusion group as one kernel: parameters are [`group_inputs`] then the group's outputs.
pub fn fused_group(graph: &Graph, group: &FusionGroup, name: String) -> Kernel {
    let nodes = graph.nodes();
    let inputs = group_inputs(graph, group);
    let n = group.shape.numel();
    let mut body = String::new();
    for (k, x) in inputs.iter().enumerate() {
        let operand = &nodes[x.0];
        let how = access(&operand.shape, &group.shape).unwrap_or(Access::Full);
        let _ = writeln!(
            body,
            " {} v{} = {};",
            ctype(operand.dtype),
            x.0,
            load(how, k)
        );
    }
    for m in &group.members {
        let args: Vec<String> = nodes[m.0]
            .inputs
            .iter()
            .map(|x| format!("v{}", x.0))
            .collect();
        let value = expression(graph, *m, &args);
        let _ = writeln!(body, " {} v{} = {value};", ctype(nodes[m.0].dtype), m.0);
    }
    for (k, o) in group.outputs.iter().enumerate() {
        let _ = writeln!(body, " out{k}[i] = v{};", o.0);
    }
    let in_dtypes: Vec<DType> = inputs.iter().map(|x| nodes[x.0].dtype).collect();
    let out_dtypes: Vec<DType> = group.outputs.iter().map(|o| nodes[o.0].dtype).collect();
    let source = format!(
        "{sig} {{\n u32 i = blockIdx.x * blockDim.x + threadIdx.x;\n if (i >= {n}u) return;\n{body}}}\n",
        sig = signature(&name, &in_dtypes, &out_dtypes),
    );
    Kernel::per_element(name, source, n)
}
