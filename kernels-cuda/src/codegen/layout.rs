//! Data movement: transpose, broadcast, slice, pad and concat, one thread per output element.

use super::index::{broadcast_strides, coords, dot, strides};
use super::{signature, Kernel};
use hasten_tensor::ir::{Graph, NodeId, Op};
use hasten_tensor::DType;
use std::fmt::Write;

/// A layout node.
pub fn layout(graph: &Graph, id: NodeId, name: String) -> Kernel {
    let nodes = graph.nodes();
    let node = &nodes[id.0];
    let dims = node.shape.dims();
    let n = node.shape.numel();
    let in_dims = |k: usize| nodes[node.inputs[k].0].shape.dims();
    let body = match &node.op {
        Op::Transpose { perm } => {
            let s = strides(in_dims(0));
            let permuted: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
            format!(" out0[i] = in0[{}];\n", dot("c", &permuted))
        }
        Op::Broadcast { .. } => {
            let s = broadcast_strides(in_dims(0), dims);
            format!(" out0[i] = in0[{}];\n", dot("c", &s))
        }
        Op::Slice { starts, .. } => {
            let s = strides(in_dims(0));
            let base: usize = starts.iter().zip(&s).map(|(a, b)| a * b).sum();
            format!(" out0[i] = in0[{base}u + {}];\n", dot("c", &s))
        }
        Op::Pad { low, .. } => pad(in_dims(0), low),
        Op::Concat { axis } => concat(
            &(0..node.inputs.len()).map(in_dims).collect::<Vec<_>>(),
            *axis,
        ),
        other => unreachable!("{} is not a layout op", other.name()),
    };
    let in_dtypes: Vec<DType> = node.inputs.iter().map(|x| nodes[x.0].dtype).collect();
    let source = format!(
        "{sig} {{\n u32 i = blockIdx.x * blockDim.x + threadIdx.x;\n if (i >= {n}u) return;\n{c}{body}}}\n",
        sig = signature(&name, &in_dtypes, &[node.dtype]),
        c = coords("c", "i", dims),
    );
    Kernel::per_element(name, source, n)
}

/// Zero padding: coordinates shifted by `low`, zero outside the operand.
fn pad(in_dims: &[usize], low: &[usize]) -> String {
    let s = strides(in_dims);
    let mut inside = Vec::new();
    let mut offset = Vec::new();
    for (j, (&d, &l)) in in_dims.iter().zip(low).enumerate() {
        inside.push(format!("(c{j} >= {l}u && c{j} < {}u)", l + d));
        offset.push(format!("(c{j} - {l}u) * {}u", s[j]));
    }
    let cond = if inside.is_empty() {
        "true".to_string()
    } else {
        inside.join(" && ")
    };
    let at = if offset.is_empty() {
        "0u".to_string()
    } else {
        offset.join(" + ")
    };
    format!(" out0[i] = {cond} ? in0[{at}] : 0;\n")
}

/// Concatenation: the operand whose range along `axis` holds the coordinate.
fn concat(operands: &[&[usize]], axis: usize) -> String {
    let mut out = String::new();
    let mut start = 0;
    for (k, dims) in operands.iter().enumerate() {
        let s = strides(dims);
        let end = start + dims[axis];
        let terms: Vec<String> = (0..dims.len())
            .map(|j| {
                if j == axis {
                    format!("(c{j} - {start}u) * {}u", s[j])
                } else {
                    format!("c{j} * {}u", s[j])
                }
            })
            .collect();
        let _ = writeln!(
            out,
            " if (c{axis} >= {start}u && c{axis} < {end}u) {{ out0[i] = in{k}[{}]; return; }}",
            terms.join(" + ")
        );
        start = end;
    }
    out
}
