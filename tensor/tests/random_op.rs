//! `Op::RandomUniform`: the Philox generator against its published answers, the statistics of a
//! draw, determinism in the seed, the optimised CPU path against the reference one, and the
//! op's place in the graph (no gradient, never folded).

use hasten_tensor::cpu::kernels::random::{philox2x32, uniform_at};
use hasten_tensor::ir::Op;
use hasten_tensor::{
    grad, Backend, CpuBackend, CpuOptions, DType, Graph, HostSlice, HostTensor, Result,
};

const N: usize = 100_000;

/// A graph drawing `shape` from a seed input of `dtype`.
fn draw_graph(dtype: DType, shape: &[usize]) -> Result<Graph> {
    let mut g = Graph::new();
    let seed = g.input("seed", [0usize; 0], dtype)?;
    let u = g.random_uniform(seed, shape.to_vec())?;
    g.output("u", u)?;
    Ok(g)
}

fn draw(options: CpuOptions, seed: HostSlice<'_>, shape: &[usize]) -> Result<Vec<f32>> {
    let g = draw_graph(seed.dtype(), shape)?;
    let mut exe = CpuBackend::with_options(options).compile(&g)?;
    exe.run(&[seed])?;
    Ok(exe.output("u")?.as_f32()?.to_vec())
}

#[test]
fn philox_matches_random123_known_answers() {
    // Random123's kat_vectors: "philox2x32 10 <ctr0> <ctr1> <key> -> <out0> <out1>".
    assert_eq!(philox2x32([0, 0], 0), [0xff1d_ae59, 0x6cd1_0df2]);
    assert_eq!(
        philox2x32([0xffff_ffff, 0xffff_ffff], 0xffff_ffff),
        [0x2c3f_628b, 0xab4f_d7ad]
    );
    assert_eq!(
        philox2x32([0x243f_6a88, 0x85a3_08d3], 0x1319_8a2e),
        [0xdd7c_e038, 0xf62a_4c12]
    );
}

#[test]
fn values_lie_in_unit_interval_with_uniform_moments() -> Result<()> {
    let u = draw(CpuOptions::fast(), HostSlice::I32(&[42]), &[N])?;
    assert_eq!(u.len(), N);
    assert!(
        u.iter().all(|&v| (0.0..1.0).contains(&v)),
        "a value left [0, 1)"
    );
    let n = N as f64;
    let mean = u.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = u.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    // Standard errors: 0.0009 for the mean, 0.0003 for the variance.
    assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
    assert!((var - 1.0 / 12.0).abs() < 0.002, "variance {var}");
    // Ten equal bins each hold about a tenth (standard error ≈ 0.001).
    let mut bins = [0usize; 10];
    for &v in &u {
        bins[(v * 10.0) as usize] += 1;
    }
    for (b, &count) in bins.iter().enumerate() {
        let share = count as f64 / n;
        assert!((share - 0.1).abs() < 0.006, "bin {b} holds {share}");
    }
    // Neighbouring elements are uncorrelated.
    let lag1 = u
        .windows(2)
        .map(|w| (w[0] as f64 - mean) * (w[1] as f64 - mean))
        .sum::<f64>()
        / (n - 1.0)
        / var;
    assert!(lag1.abs() < 0.02, "lag-1 correlation {lag1}");
    Ok(())
}

#[test]
fn the_seed_alone_determines_the_values() -> Result<()> {
    let shape = [7, 11, 13];
    let a = draw(CpuOptions::fast(), HostSlice::I32(&[1]), &shape)?;
    let a_again = draw(CpuOptions::fast(), HostSlice::I32(&[1]), &shape)?;
    let b = draw(CpuOptions::fast(), HostSlice::I32(&[2]), &shape)?;
    assert_eq!(a, a_again, "same seed, same values");
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    assert!(
        same < 5,
        "seeds 1 and 2 agree on {same} of {} values",
        a.len()
    );
    // An f32 seed is its integer value.
    let f = draw(CpuOptions::fast(), HostSlice::F32(&[1.0]), &shape)?;
    assert_eq!(a, f);
    let f = draw(CpuOptions::fast(), HostSlice::F32(&[1.75]), &shape)?;
    assert_eq!(a, f, "f32 seeds truncate toward zero");
    // Element i is uniform_at(key, i), whatever the shape.
    let flat = draw(CpuOptions::fast(), HostSlice::I32(&[-3]), &[1001])?;
    for (i, &v) in flat.iter().enumerate() {
        assert_eq!(v.to_bits(), uniform_at(-3i32 as u32, i as u64).to_bits());
    }
    let reshaped = draw(CpuOptions::fast(), HostSlice::I32(&[-3]), &[7, 11, 13])?;
    assert_eq!(flat[..], reshaped[..1001]);
    Ok(())
}

#[test]
fn optimised_equals_reference_bit_for_bit() -> Result<()> {
    // Large enough to be split over the worker pool.
    for (seed, shape) in [(0, vec![3, 5]), (9, vec![N]), (i32::MIN, vec![64, 1024])] {
        let fast = draw(CpuOptions::fast(), HostSlice::I32(&[seed]), &shape)?;
        let reference = draw(CpuOptions::reference(), HostSlice::I32(&[seed]), &shape)?;
        assert!(
            fast.iter()
                .zip(&reference)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "seed {seed}, shape {shape:?}"
        );
    }
    Ok(())
}

#[test]
fn a_constant_seed_is_not_folded_and_a_state_seed_advances() -> Result<()> {
    // Constant seed: the draw stays an op after simplification.
    let mut g = Graph::new();
    let seed = g.constant(HostTensor::i32(Vec::<usize>::new(), vec![5])?);
    let u = g.random_uniform(seed, [4, 4])?;
    g.output("u", u)?;
    let exe = CpuBackend::new().compile_cpu(&g)?;
    assert!(exe
        .graph()
        .nodes()
        .iter()
        .any(|n| matches!(n.op, Op::RandomUniform { .. })));

    // Seed from state, advanced by one per step: every step draws afresh, reproducibly.
    let mut g = Graph::new();
    let counter = g.parameter("counter", [0usize; 0], DType::F32)?;
    let u = g.random_uniform(counter, [256])?;
    let one = g.scalar(1.0);
    let next = g.add(counter, one)?;
    g.update(counter, next)?;
    g.output("u", u)?;
    let mut exe = CpuBackend::new().compile(&g)?;
    let mut steps = Vec::new();
    for _ in 0..3 {
        exe.run(&[])?;
        steps.push(exe.output("u")?.as_f32()?.to_vec());
    }
    assert_ne!(steps[0], steps[1]);
    assert_ne!(steps[1], steps[2]);
    assert_eq!(
        steps[2],
        draw(CpuOptions::fast(), HostSlice::I32(&[2]), &[256])?
    );
    // Resuming from saved state repeats the same draw.
    exe.write_state("counter", HostSlice::F32(&[1.0]))?;
    exe.run(&[])?;
    assert_eq!(exe.output("u")?.as_f32()?, &steps[1][..]);
    Ok(())
}

#[test]
fn the_draw_carries_no_gradient_and_checks_its_operand() -> Result<()> {
    let mut g = Graph::new();
    let seed = g.parameter("seed", [0usize; 0], DType::F32)?;
    let x = g.parameter("x", [8], DType::F32)?;
    let u = g.random_uniform(seed, [8])?;
    let y = g.mul(x, u)?;
    let loss = g.mean_all(y)?;
    let grads = grad(&mut g, loss, &[seed, x])?;
    g.output("dseed", grads[0])?;
    g.output("dx", grads[1])?;
    g.output("u", u)?;
    let mut exe = CpuBackend::new().compile(&g)?;
    exe.write_state("seed", HostSlice::F32(&[3.0]))?;
    exe.run(&[])?;
    assert_eq!(exe.output("dseed")?.as_f32()?, &[0.0]);
    let u = exe.output("u")?.as_f32()?.to_vec();
    let dx = exe.output("dx")?.as_f32()?.to_vec();
    for (d, v) in dx.iter().zip(&u) {
        assert!((d - v / 8.0).abs() < 1e-7);
    }

    // Bad operands fail when the node is built.
    let mut g = Graph::new();
    let vector_seed = g.input("s", [2], DType::I32)?;
    assert!(g.random_uniform(vector_seed, [3]).is_err());
    let bool_seed = g.input("b", [0usize; 0], DType::Bool)?;
    assert!(g.random_uniform(bool_seed, [3]).is_err());
    Ok(())
}
