//! `RandomUniform` with the CPU backend's bits: key from the seed (an `F32` seed truncated as
//! `Cast` does), `lo` of Philox-2×32-10 of counter `[i, i >> 32]`, value `(lo >> 8) · 2⁻²⁴`.

use super::{signature, Kernel};
use hasten_tensor::ir::{Graph, NodeId};
use hasten_tensor::DType;

/// A `RandomUniform` node (operand: the scalar seed).
pub fn uniform(graph: &Graph, id: NodeId, name: String) -> Kernel {
    let nodes = graph.nodes();
    let node = &nodes[id.0];
    let seed = nodes[node.inputs[0].0].dtype;
    let n = node.shape.numel();
    let key = match seed {
        DType::F32 => "(u32)f32_to_i32(in0[0])",
        _ => "(u32)in0[0]",
    };
    let source = format!(
        "{sig} {{\n u32 i = blockIdx.x * blockDim.x + threadIdx.x;\n if (i >= {n}u) return;\n \
         u32 lo = philox_lo(i, 0u, {key});\n out0[i] = (float)(lo >> 8) * (1.0f / 16777216.0f);\n}}\n",
        sig = signature(&name, &[seed], &[DType::F32]),
    );
    Kernel::per_element(name, source, n)
}
