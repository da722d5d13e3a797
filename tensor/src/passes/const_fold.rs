//! Constant folding: nodes computed from constants alone are evaluated once, at compile time,
//! by the CPU backend.

use crate::backend::Backend;
use crate::cpu::{CpuBackend, CpuOptions};
use crate::host::HostTensor;
use crate::ir::{Graph, Node, NodeId, Op};
use crate::Result;
use std::sync::Arc;

/// Folded values larger than this stay computed: a broadcast scalar is cheaper than a big
/// constant buffer.
const MAX_FOLDED_ELEMENTS: usize = 1 << 16;

/// Replaces every foldable node (all operands constant, not a broadcast, a random draw or a
/// collective, of bounded size) by a constant holding its value. Node ids are preserved; run dead-node
/// elimination afterwards to drop the constants that are no longer used.
pub fn fold_constants(graph: &Graph) -> Result<Graph> {
    let mut out = Graph::new();
    let cpu = CpuBackend::with_options(CpuOptions::reference());
    let mut is_const = vec![false; graph.nodes().len()];
    for (i, node) in graph.nodes().iter().enumerate() {
        let foldable = !node.inputs.is_empty()
            && node.inputs.iter().all(|x| is_const[x.0])
            && !matches!(
                node.op,
                Op::Broadcast { .. } | Op::RandomUniform { .. } | Op::AllReduce { .. }
            )
            && node.shape.numel() <= MAX_FOLDED_ELEMENTS;
        let new = if foldable {
            let value = evaluate(&cpu, &out, node)?;
            out.constant(value)
        } else {
            out.push_node(node.clone())
        };
        debug_assert_eq!(new, NodeId(i));
        is_const[i] = matches!(out.node(new)?.op, Op::Constant(_));
    }
    out.set_outputs_and_updates(graph.outputs().to_vec(), graph.updates().to_vec());
    Ok(out)
}

/// Evaluates one node whose operands are constants of `graph`.
fn evaluate(cpu: &CpuBackend, graph: &Graph, node: &Node) -> Result<HostTensor> {
    let mut g = Graph::new();
    let mut operands = Vec::with_capacity(node.inputs.len());
    for x in &node.inputs {
        let Op::Constant(value) = &graph.node(*x)?.op else {
            unreachable!("fold_constants only evaluates nodes with constant operands")
        };
        operands.push(g.constant(HostTensor::clone(Arc::as_ref(value))));
    }
    let y = g.push(node.op.clone(), &operands)?;
    g.output("value", y)?;
    let mut exe = cpu.compile(&g)?;
    exe.run(&[])?;
    exe.output("value")
}
