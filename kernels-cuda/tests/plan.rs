//! The device-free half of the backend: lowering graphs to kernel plans, the arena layout,
//! the errors without a GPU. These run everywhere, NVRTC or not.

mod common;

use common::{cases, models};
use hasten_cuda::plan::{KernelPlan, Step};
use hasten_cuda::{CudaBackend, CudaError};
use hasten_tensor::ir::Op;
use hasten_tensor::{AllReduceOp, DType, Graph, NodeId};
use std::collections::BTreeSet;

#[test]
fn the_op_cases_cover_every_op_of_the_closed_set_and_all_lower() {
    let mut seen = BTreeSet::new();
    for c in cases::all() {
        let (g, _) = cases::graph(&c).unwrap();
        KernelPlan::build(&g).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        seen.extend(g.nodes().iter().map(|n| n.op.name()));
    }
    let all = [
        "input",
        "constant",
        "unary",
        "binary",
        "compare",
        "select",
        "matmul",
        "conv2d",
        "conv2d_grad_input",
        "conv2d_grad_filter",
        "max_pool2d",
        "max_pool2d_grad",
        "avg_pool2d",
        "avg_pool2d_grad",
        "reduce",
        "reshape",
        "transpose",
        "broadcast",
        "slice",
        "pad",
        "concat",
        "one_hot",
        "argmax",
        "cast",
        "stop_gradient",
        "random_uniform",
    ];
    let missing: Vec<_> = all.iter().filter(|op| !seen.contains(*op)).collect();
    assert!(missing.is_empty(), "ops without a case: {missing:?}");
}

#[test]
fn the_mlp_dense_layers_become_cublaslt_epilogues() {
    let graphs = models::train_graphs(models::mlp(), &[models::BATCH, 784]);
    let plan = KernelPlan::build(&graphs[0]).unwrap();
    let gemms: Vec<_> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Gemm(g) => Some(*g),
            Step::Kernel { .. } => None,
        })
        .collect();
    assert!(
        gemms.iter().any(|g| g.relu && g.bias.is_some()),
        "{gemms:?}"
    );
    // Forward 2 products, backward 3 (no input gradient for the first layer).
    assert!(gemms.len() >= 5, "{} products", gemms.len());
    eprintln!(
        "mlp train step: {} launches ({} kernels, {} products), arena {} bytes ({} without reuse)",
        plan.launches(),
        plan.kernels.len(),
        gemms.len(),
        plan.layout.arena_bytes,
        plan.layout.fixed_bytes + plan.layout.unplanned_bytes
    );
}

/// Byte range of a node's buffer.
fn range(plan: &KernelPlan, id: NodeId) -> std::ops::Range<usize> {
    let start = plan.layout.offset(id);
    start..start + hasten_cuda::plan::bytes_of(&plan.graph, id)
}

#[test]
fn no_step_writes_over_a_buffer_it_reads() {
    for graph in models::train_graphs(models::cnn(), &[models::BATCH, 28, 28]) {
        let plan = KernelPlan::build(&graph).unwrap();
        for step in &plan.steps {
            let (reads, writes) = match step {
                Step::Kernel { reads, writes, .. } => (reads.clone(), writes.clone()),
                Step::Gemm(g) => (
                    [vec![g.a, g.b], g.bias.into_iter().collect()].concat(),
                    vec![g.out],
                ),
            };
            for w in &writes {
                for r in &reads {
                    let (a, b) = (range(&plan, *w), range(&plan, *r));
                    assert!(
                        a.end <= b.start || b.end <= a.start,
                        "{step:?}: %{} over %{}",
                        w.0,
                        r.0
                    );
                }
            }
        }
        assert!(plan.layout.arena_bytes <= plan.layout.fixed_bytes + plan.layout.unplanned_bytes);
    }
}

#[test]
fn every_elementwise_group_is_one_kernel() {
    let graphs = models::train_graphs(models::mlp(), &[models::BATCH, 784]);
    let mut prepared = hasten_tensor::passes::pipeline::prepare(&graphs[0], true).unwrap();
    prepared.fuse(true, &|_| false);
    let plan = KernelPlan::build(&graphs[0]).unwrap();
    let fused = plan
        .kernels
        .iter()
        .filter(|k| k.name.contains("_fused"))
        .count();
    let epilogues = prepared.affines.iter().flatten().count();
    assert_eq!(fused + epilogues, prepared.groups.len());
}

#[test]
fn all_reduce_is_refused_with_a_clear_error() {
    let mut g = Graph::new();
    let x = g.input("x", [4], DType::F32).unwrap();
    let y = g.all_reduce(x, AllReduceOp::Sum).unwrap();
    g.output("y", y).unwrap();
    let err = KernelPlan::build(&g).expect_err("no NCCL yet");
    assert!(matches!(err, CudaError::Unsupported(_)));
    assert!(err.to_string().contains("NCCL"), "{err}");
}

#[test]
fn a_missing_gpu_is_an_error_not_a_panic() {
    match CudaBackend::new(0) {
        Ok(_) => {
            let err = CudaBackend::new(999)
                .err()
                .expect("no machine has 1000 GPUs");
            assert!(err.to_string().contains("device 999 requested"), "{err}");
        }
        Err(e) => {
            let text = e.to_string();
            let known = text.contains("no CUDA driver found")
                || text.contains("requested")
                || text.contains("NVRTC");
            assert!(known, "{text}");
        }
    }
}

#[test]
fn constants_are_uploaded_once_into_the_fixed_region() {
    let mut g = Graph::new();
    let x = g.input("x", [3], DType::F32).unwrap();
    let c = g.constant(hasten_tensor::HostTensor::f32([3], vec![1.0, 2.0, 3.0]).unwrap());
    let y = g.add(x, c).unwrap();
    let z = g.exp(y).unwrap();
    g.output("z", z).unwrap();
    let plan = KernelPlan::build(&g).unwrap();
    assert_eq!(plan.layout.constants.len(), 1);
    assert!(plan.layout.constants[0].0 < plan.layout.fixed_bytes);
    assert!(matches!(plan.graph.nodes()[0].op, Op::Input { .. }));
}
