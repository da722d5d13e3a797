//! The step list: in node order, each fusion group as one generated kernel at its first
//! member (or as its product's cuBLASLt epilogue), each other computed node as its own kernel
//! or product; leaves and views are no steps.

use super::{Gemm, Step};
use crate::codegen::{self, Kernel};
use hasten_tensor::ir::{NodeId, Op};
use hasten_tensor::passes::pipeline::Prepared;

/// The steps and kernels of a prepared graph.
pub fn lower(prepared: &Prepared) -> (Vec<Step>, Vec<Kernel>) {
    let graph = &prepared.graph;
    let mut steps = Vec::new();
    let mut kernels: Vec<Kernel> = Vec::new();
    let mut push = |steps: &mut Vec<Step>, kernel: Kernel, reads: Vec<NodeId>, writes| {
        steps.push(Step::Kernel {
            kernel: kernels.len(),
            reads,
            writes,
        });
        kernels.push(kernel);
    };
    for (i, node) in graph.nodes().iter().enumerate() {
        let id = NodeId(i);
        if node.inputs.is_empty() || node.op.is_view() || prepared.absorbed[i] {
            continue;
        }
        let name = format!("k{}_{}", steps.len(), node.op.name());
        match prepared.group_of[i] {
            Some(g) if prepared.groups[g].members[0] == id => {
                let group = &prepared.groups[g];
                if let Some(a) = prepared.affines[g] {
                    steps.push(Step::Gemm(Gemm::of(
                        graph,
                        a.matmul,
                        a.out,
                        Some(a.bias),
                        a.relu,
                    )));
                } else {
                    let name = format!("k{}_fused{}", steps.len(), group.members.len());
                    let kernel = codegen::fused_group(graph, group, name);
                    let reads = codegen::group_inputs(graph, group);
                    push(&mut steps, kernel, reads, group.outputs.clone());
                }
            }
            Some(_) => {}
            None if matches!(node.op, Op::MatMul { .. }) => {
                steps.push(Step::Gemm(Gemm::of(graph, id, id, None, false)));
            }
            None => {
                if let Some(kernel) = codegen::node_kernel(graph, id, name) {
                    push(&mut steps, kernel, node.inputs.clone(), vec![id]);
                }
            }
        }
    }
    (steps, kernels)
}
