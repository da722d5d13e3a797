//! The generated kernels run on the host (see `common::emulator`): every op case and a few
//! training steps of the reference MLP and CNN against the CPU backend, with the GPU tests'
//! tolerances. This checks what the kernels compute, their launch geometry and the arena
//! layout without a GPU; what it cannot check is the CUDA API itself (the stream, graph
//! capture, cuBLASLt's descriptors), which the GPU tests do. Skips without a C++ compiler.

mod common;

use common::emulator::{self, Emulated, Library};
use common::{cases, models};
use hasten_cuda::KernelPlan;
use hasten_tensor::{Backend, CpuBackend, DType, Graph, HostData, HostTensor};
use rand::{Rng, SeedableRng};

fn compiler_or_skip(test: &str) -> bool {
    let ok = emulator::have_compiler();
    if !ok {
        eprintln!("skipped {test}: no C++ compiler (c++) to build the emulated kernels");
    }
    ok
}

/// The CPU's outputs for one step of `g` on `inputs` after writing `state`.
fn cpu_step(
    g: &Graph,
    inputs: &[HostTensor],
    state: &[(String, HostData)],
    steps: usize,
) -> (Vec<HostTensor>, Vec<HostTensor>) {
    let mut exe = CpuBackend::new().compile(g).unwrap();
    for (name, v) in state {
        exe.write_state(name, v.as_slice()).unwrap();
    }
    let slices: Vec<_> = inputs.iter().map(|t| t.data.as_slice()).collect();
    for _ in 0..steps {
        exe.run(&slices).unwrap();
    }
    let outs = exe
        .output_names()
        .to_vec()
        .iter()
        .map(|n| exe.output(n).unwrap())
        .collect();
    let states = state
        .iter()
        .map(|(n, _)| exe.read_state(n).unwrap())
        .collect();
    (outs, states)
}

/// The emulated plan's outputs and states after `steps` steps (with `fallback`, every
/// product's epilogue runs as its generated kernel, as on a device whose cuBLASLt refuses it).
fn emulated_step(
    plan: &KernelPlan,
    index: usize,
    lib: &Library,
    inputs: &[HostTensor],
    state: &[(String, HostData)],
    steps: usize,
    fallback: bool,
) -> (Vec<HostTensor>, Vec<HostTensor>) {
    let mut e = Emulated::new(plan, index, lib);
    e.fallback_epilogues = fallback;
    let node_of = |name: &str| plan.states.iter().find(|s| s.name == name).unwrap().node;
    for (name, v) in state {
        e.write(node_of(name), v);
    }
    for ((_, id), x) in plan.inputs.iter().zip(inputs) {
        e.write(*id, &x.data);
    }
    for _ in 0..steps {
        e.step();
    }
    let outs = plan.outputs.iter().map(|(_, id)| e.read(*id)).collect();
    let states = state.iter().map(|(n, _)| e.read(node_of(n))).collect();
    (outs, states)
}

#[test]
fn every_op_case_matches_the_cpu_when_emulated() {
    if !compiler_or_skip("every_op_case_matches_the_cpu_when_emulated") {
        return;
    }
    let all = cases::all();
    let built: Vec<(Graph, Vec<HostTensor>)> =
        all.iter().map(|c| cases::graph(c).unwrap()).collect();
    let plans: Vec<KernelPlan> = built
        .iter()
        .map(|(g, _)| KernelPlan::build(g).unwrap())
        .collect();
    let lib = Library::build(&plans.iter().collect::<Vec<_>>(), "ops");
    let mut failures = Vec::new();
    for (i, (case, (g, inputs))) in all.iter().zip(&built).enumerate() {
        let (want, _) = cpu_step(g, inputs, &[], 1);
        let (got, _) = emulated_step(&plans[i], i, &lib, inputs, &[], 1, false);
        for (k, (a, b)) in got.iter().zip(&want).enumerate() {
            if let Err(e) = common::same(a, b, case.tol) {
                failures.push(format!("{} output {}: {e}", case.name, g.outputs()[k].0));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Random initial state: floats in [0, 0.1) (positive, so Adam's second moments are valid),
/// integers zero.
fn random_state(g: &Graph) -> Vec<(String, HostData)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    g.parameters()
        .into_iter()
        .map(|(name, id)| {
            let node = &g.nodes()[id.0];
            let n = node.shape.numel();
            let data = match node.dtype {
                DType::F32 => HostData::F32((0..n).map(|_| rng.random_range(0.0..0.1)).collect()),
                other => HostData::zeros(other, n).unwrap(),
            };
            (name.to_string(), data)
        })
        .collect()
}

fn training_matches(
    test: &str,
    model: hasten_nn::prelude::Sequential,
    dims: &[usize],
    steps: usize,
    fallback: bool,
) {
    if !compiler_or_skip(test) {
        return;
    }
    let g = models::train_graphs(model, dims).remove(0);
    let plan = KernelPlan::build(&g).unwrap();
    let lib = Library::build(&[&plan], test);
    let data = models::batch(dims);
    let inputs: Vec<HostTensor> = plan
        .inputs
        .iter()
        .map(|(name, _)| match name.as_str() {
            "x" => data.0.clone(),
            "y" => data.1.clone(),
            other => panic!("unexpected input {other}"),
        })
        .collect();
    let state = random_state(&plan.graph);
    let (want_out, want_state) = cpu_step(&g, &inputs, &state, steps);
    let (got_out, got_state) = emulated_step(&plan, 0, &lib, &inputs, &state, steps, fallback);
    for (k, (a, b)) in got_out.iter().zip(&want_out).enumerate() {
        common::same(a, b, 1e-4).unwrap_or_else(|e| panic!("output {}: {e}", plan.outputs[k].0));
    }
    for (k, (a, b)) in got_state.iter().zip(&want_state).enumerate() {
        common::same(a, b, 1e-4).unwrap_or_else(|e| panic!("state {}: {e}", state[k].0));
    }
}

#[test]
fn mlp_train_steps_match_the_cpu_when_emulated() {
    training_matches(
        "mlp_emulated",
        models::mlp(),
        &[models::BATCH, 784],
        3,
        false,
    );
}

#[test]
fn mlp_train_steps_match_with_the_fallback_epilogue_kernels() {
    let dims = [models::BATCH, 784];
    training_matches("mlp_fallback", models::mlp(), &dims, 2, true);
}

#[test]
fn cnn_train_steps_match_the_cpu_when_emulated() {
    training_matches(
        "cnn_emulated",
        models::cnn(),
        &[models::BATCH, 28, 28],
        2,
        false,
    );
}
