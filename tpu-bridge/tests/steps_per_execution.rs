//! Several steps in one PJRT execution (`PjrtBackend::compile_steps`) against the same
//! steps run one by one on the CPU backend: per-step outputs and the final state, with a
//! step counter seeding a random draw, so the state must thread through the loop.

mod common;

use hasten_tensor::{grad, Backend, CpuBackend, DType, Graph, HostData, HostSlice, HostTensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const STEPS: usize = 5;

/// One SGD step on `mean((x·w ⊙ (u + 0.5))²)`, `u` drawn from the step counter.
fn step_graph() -> Graph {
    let mut g = Graph::new();
    let x = g.input("x", [4, 3], DType::F32).unwrap();
    let w = g.parameter("w", [3, 2], DType::F32).unwrap();
    let c = g.parameter("c", [], DType::I32).unwrap();
    let y = g.matmul(x, w).unwrap();
    let u = g.random_uniform(c, [4, 2]).unwrap();
    let half = g.scalar(0.5);
    let scale = g.add(u, half).unwrap();
    let z = g.mul(y, scale).unwrap();
    let z2 = g.mul(z, z).unwrap();
    let loss = g.mean_all(z2).unwrap();
    let dw = grad(&mut g, loss, &[w]).unwrap()[0];
    let step = g.scale(dw, 0.1).unwrap();
    let w_next = g.sub(w, step).unwrap();
    let one = g.constant(HostTensor::i32(Vec::<usize>::new(), vec![1]).unwrap());
    let c_next = g.add(c, one).unwrap();
    g.update(w, w_next).unwrap();
    g.update(c, c_next).unwrap();
    g.output("loss", loss).unwrap();
    g.output("y", y).unwrap();
    g
}

fn initial_w() -> Vec<f32> {
    vec![0.5, -0.25, 1.0, 0.75, -0.5, 0.125]
}

fn f32s(t: &HostTensor) -> Vec<f32> {
    t.as_f32().unwrap().to_vec()
}

#[test]
fn k_steps_in_one_execution_match_k_single_steps() {
    let Some(pjrt) = common::backend() else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(6);
    let batches: Vec<f32> = (0..STEPS * 12)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let g = step_graph();

    let mut cpu = CpuBackend::new().compile(&g).unwrap();
    cpu.write_state("w", HostSlice::F32(&initial_w())).unwrap();
    cpu.write_state("c", HostSlice::I32(&[7])).unwrap();
    let (mut losses, mut ys) = (Vec::new(), Vec::new());
    for batch in batches.chunks(12) {
        cpu.run(&[HostSlice::F32(batch)]).unwrap();
        losses.extend(f32s(&cpu.output("loss").unwrap()));
        ys.extend(f32s(&cpu.output("y").unwrap()));
    }

    let mut exe = pjrt.compile_steps(&g, STEPS).unwrap();
    exe.write_state("w", HostSlice::F32(&initial_w())).unwrap();
    exe.write_state("c", HostSlice::I32(&[7])).unwrap();
    exe.run(&[HostSlice::F32(&batches)]).unwrap();
    let loss = exe.output("loss").unwrap();
    assert_eq!(loss.shape.dims(), &[STEPS]);
    let want = |v: Vec<f32>, dims: &[usize]| HostTensor::f32(dims.to_vec(), v).unwrap();
    common::same(&loss, &want(losses, &[STEPS]), 1e-5).unwrap();
    common::same(&exe.output("y").unwrap(), &want(ys, &[STEPS, 4, 2]), 1e-5).unwrap();
    common::same(
        &exe.read_state("w").unwrap(),
        &cpu.read_state("w").unwrap(),
        1e-5,
    )
    .unwrap();
    assert_eq!(
        exe.read_state("c").unwrap().data,
        HostData::I32(vec![7 + STEPS as i32])
    );
}

#[test]
fn zero_steps_and_unstacked_inputs_are_refused() {
    let Some(pjrt) = common::backend() else {
        return;
    };
    let g = step_graph();
    let e = pjrt.compile_steps(&g, 0).err().unwrap().to_string();
    assert!(e.contains("at least one step"), "{e}");
    let mut exe = pjrt.compile_steps(&g, 3).unwrap();
    let e = exe
        .run(&[HostSlice::F32(&[0.0; 12])])
        .unwrap_err()
        .to_string();
    assert!(e.contains("x: expected f32 [3, 4, 3]"), "{e}");
}

/// `fit` with `steps_per_execution(k)` on the plugin (k steps in one `stablehlo.while`)
/// against one step per execution on the plugin: the history and the final state.
#[test]
fn fit_with_steps_per_execution_matches_one_step_per_execution() {
    use hasten_nn::prelude::*;
    let Some(path) = common::plugin_path() else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(9);
    let n = 8 * 16 + 5; // 8 full batches and a partial one
    let x: Vec<f32> = (0..n * 20).map(|_| rng.random_range(0.0..1.0)).collect();
    let y: Vec<i32> = (0..n).map(|_| rng.random_range(0..4)).collect();
    let (x, y) = (
        HostTensor::f32([n, 20], x).unwrap(),
        HostTensor::i32([n], y).unwrap(),
    );
    let train = |steps: usize| {
        let mut model = Sequential::new()
            .seed(2)
            .with(
                Dense::new(16)
                    .activation(Activation::Relu)
                    .input_shape([20]),
            )
            .with(Dense::new(4).activation(Activation::Softmax));
        let backend = hasten_tpu::PjrtBackend::new(Some(&path)).expect("the test plugin loads");
        hasten_testkit::models::compile_on(&mut model, std::sync::Arc::new(backend));
        let options = FitOptions::epochs(2)
            .batch_size(16)
            .verbose(Verbosity::Silent)
            .steps_per_execution(steps);
        let history = model.fit(&x, &y, options).unwrap();
        (
            history.get("loss").unwrap().to_vec(),
            model.get_state().unwrap(),
        )
    };
    let (one_loss, one_state) = train(1);
    let (k_loss, k_state) = train(4);
    for (a, b) in k_loss.iter().zip(&one_loss) {
        assert!((a - b).abs() <= 1e-5 * b.abs(), "loss {a} against {b}");
    }
    for (name, want) in &one_state {
        common::same(&k_state[name], want, 1e-5).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
