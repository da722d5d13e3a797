//! On a GPU: 100 training steps of the reference MLP and CNN against the CPU backend from the
//! same initial weights and batch (every step's loss and the final weights and optimizer
//! slots within 1e-4 relative), and a warm step that allocates nothing on the device and
//! replays the captured CUDA graph. Skips with a message on a machine without a GPU.

mod common;

use common::models;
use hasten_cuda::CudaExecutable;
use hasten_tensor::{CpuBackend, Executable, HostData};
use std::sync::Arc;

const STEPS: usize = 100;
const TOL: f64 = 1e-4;

fn matches_cpu(test: &str, model: fn() -> hasten_nn::prelude::Sequential, dims: &[usize]) {
    let Some(gpu) = common::gpu_or_skip(test) else {
        return;
    };
    let data = models::batch(dims);
    let (cpu_loss, cpu_state) = models::train(model(), Arc::new(CpuBackend::new()), &data, STEPS);
    let (gpu_loss, gpu_state) = models::train(model(), Arc::new(gpu), &data, STEPS);
    for (step, (a, b)) in gpu_loss.iter().zip(&cpu_loss).enumerate() {
        assert!(
            (a - b).abs() <= TOL * b.abs().max(1.0),
            "step {step}: loss {a} vs {b}"
        );
    }
    for (name, want) in &cpu_state {
        common::same(&gpu_state[name], want, TOL).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn mlp_100_steps_match_the_cpu() {
    matches_cpu(
        "mlp_100_steps_match_the_cpu",
        models::mlp,
        &[models::BATCH, 784],
    );
}

#[test]
fn cnn_100_steps_match_the_cpu() {
    matches_cpu(
        "cnn_100_steps_match_the_cpu",
        models::cnn,
        &[models::BATCH, 28, 28],
    );
}

#[test]
fn a_warm_step_allocates_nothing_and_replays_the_captured_graph() {
    let Some(gpu) =
        common::gpu_or_skip("a_warm_step_allocates_nothing_and_replays_the_captured_graph")
    else {
        return;
    };
    let graph = models::train_graphs(models::mlp(), &[models::BATCH, 784]).remove(0);
    let mut exe = gpu.compile_cuda(&graph).unwrap();
    let data = models::batch(&[models::BATCH, 784]);
    let nodes: Vec<_> = graph.inputs().iter().map(|(_, id)| *id).collect();
    let others: Vec<HostData> = nodes
        .iter()
        .map(|id| {
            let node = &graph.nodes()[id.0];
            HostData::zeros(node.dtype, node.shape.numel()).unwrap()
        })
        .collect();
    let inputs: Vec<_> = exe
        .input_names()
        .iter()
        .zip(&others)
        .map(|(name, other)| match name.as_str() {
            "x" => data.0.data.as_slice(),
            "y" => data.1.data.as_slice(),
            _ => other.as_slice(),
        })
        .collect();
    exe.run(&inputs).unwrap();
    exe.run(&inputs).unwrap();
    assert!(exe.is_captured(), "the second step should be captured");
    let before = CudaExecutable::device_allocations();
    for _ in 0..10 {
        exe.run(&inputs).unwrap();
    }
    assert_eq!(
        CudaExecutable::device_allocations(),
        before,
        "a warm step allocated"
    );
}
