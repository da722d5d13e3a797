//! The step list: in node order, each fusion group as one generated kernel at its first
//! member (or as its product's cuBLASLt epilogue, with a generated epilogue kernel as the
//! fallback), each other computed node as its own kernel or product; leaves and views are no
//! steps.

use super::{Gemm, Step};
use crate::codegen::{self, Kernel};
use hasten_tensor::ir::{NodeId, Op};
use hasten_tensor::passes::affine::Affine;
use hasten_tensor::passes::pipeline::Prepared;

/// Steps and the kernels they launch, built in order.
#[derive(Default)]
struct Lowered {
    steps: Vec<Step>,
    kernels: Vec<Kernel>,
}

impl Lowered {
    fn kernel(&mut self, kernel: Kernel, reads: Vec<NodeId>, writes: Vec<NodeId>) {
        self.steps.push(Step::Kernel {
            kernel: self.kernels.len(),
            reads,
            writes,
        });
        self.kernels.push(kernel);
    }

    fn affine(&mut self, prepared: &Prepared, a: Affine) {
        let graph = &prepared.graph;
        let mut gemm = Gemm::of(graph, a.matmul, a.out, Some(a.bias), a.relu);
        let name = format!("k{}_bias_relu", self.steps.len());
        let len = graph.nodes()[a.out.0].shape.numel();
        gemm.fallback = Some(self.kernels.len());
        self.kernels
            .push(codegen::bias_relu(len, gemm.m as usize, a.relu, name));
        self.steps.push(Step::Gemm(gemm));
    }
}

/// The steps and kernels of a prepared graph.
pub fn lower(prepared: &Prepared) -> (Vec<Step>, Vec<Kernel>) {
    let graph = &prepared.graph;
    let mut out = Lowered::default();
    for (i, node) in graph.nodes().iter().enumerate() {
        let id = NodeId(i);
        if node.inputs.is_empty() || node.op.is_view() || prepared.absorbed[i] {
            continue;
        }
        match prepared.group_of[i] {
            Some(g) if prepared.groups[g].members[0] == id => {
                let group = &prepared.groups[g];
                if let Some(a) = prepared.affines[g] {
                    out.affine(prepared, a);
                } else {
                    let name = format!("k{}_fused{}", out.steps.len(), group.members.len());
                    let kernel = codegen::fused_group(graph, group, name);
                    let reads = codegen::group_inputs(graph, group);
                    out.kernel(kernel, reads, group.outputs.clone());
                }
            }
            Some(_) => {}
            None if matches!(node.op, Op::MatMul { .. }) => {
                out.steps
                    .push(Step::Gemm(Gemm::of(graph, id, id, None, false)));
            }
            None => {
                let name = format!("k{}_{}", out.steps.len(), node.op.name());
                if let Some(kernel) = codegen::node_kernel(graph, id, name) {
                    out.kernel(kernel, node.inputs.clone(), vec![id]);
                }
            }
        }
    }
    (out.steps, out.kernels)
}
