//! Every kernel the backend generates, compiled by NVRTC to PTX for sm_90, on a machine
//! without a GPU: the reference MLP's and CNN's training graphs and every per-op case. A
//! source error in any generated kernel fails here (in CI, where NVRTC is installed from the
//! `nvidia-cuda-nvrtc` wheel; elsewhere the tests skip when NVRTC is missing).

mod common;

use common::{cases, models};
use hasten_cuda::{nvrtc, KernelPlan};
use hasten_tensor::Graph;

const ARCH: &str = "compute_90";

/// Compiles the plan of every graph; returns the number of kernels compiled.
fn compile_all(what: &str, graphs: &[Graph]) -> usize {
    let mut kernels = 0;
    for (i, g) in graphs.iter().enumerate() {
        let plan = KernelPlan::build(g).unwrap_or_else(|e| panic!("{what} graph {i}: {e}"));
        let ptx = nvrtc::compile(&plan.source(), ARCH)
            .unwrap_or_else(|e| panic!("{what} graph {i}: {e}\n{}", plan.source()));
        let text = nvrtc::ptx_text(&ptx);
        for k in &plan.kernels {
            assert!(
                text.contains(&k.name),
                "{what}: {} missing from the PTX",
                k.name
            );
        }
        kernels += plan.kernels.len();
    }
    kernels
}

#[test]
fn mlp_train_step_kernels_compile() {
    if !common::nvrtc_or_skip("mlp_train_step_kernels_compile") {
        return;
    }
    let graphs = models::train_graphs(models::mlp(), &[models::BATCH, 784]);
    let n = compile_all("mlp", &graphs);
    assert!(n > 0);
    eprintln!("mlp: {n} kernels over {} graphs compiled", graphs.len());
}

#[test]
fn cnn_train_step_kernels_compile() {
    if !common::nvrtc_or_skip("cnn_train_step_kernels_compile") {
        return;
    }
    let graphs = models::train_graphs(models::cnn(), &[models::BATCH, 28, 28]);
    let n = compile_all("cnn", &graphs);
    assert!(n > 0);
    eprintln!("cnn: {n} kernels over {} graphs compiled", graphs.len());
}

#[test]
fn every_op_case_kernels_compile() {
    if !common::nvrtc_or_skip("every_op_case_kernels_compile") {
        return;
    }
    let graphs: Vec<Graph> = cases::all()
        .iter()
        .map(|c| {
            cases::graph(c)
                .unwrap_or_else(|e| panic!("{}: {e}", c.name))
                .0
        })
        .collect();
    let n = compile_all("op cases", &graphs);
    eprintln!(
        "op cases: {n} kernels over {} graphs compiled",
        graphs.len()
    );
}

#[test]
fn a_broken_kernel_source_fails_with_the_compiler_log() {
    if !common::nvrtc_or_skip("a_broken_kernel_source_fails_with_the_compiler_log") {
        return;
    }
    let err = nvrtc::compile("extern \"C\" __global__ void k() { undeclared = 1; }", ARCH)
        .expect_err("the source is wrong");
    let text = err.to_string();
    assert!(text.contains("undeclared"), "{text}");
}
