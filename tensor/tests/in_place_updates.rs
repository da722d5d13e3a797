//! Adam's update written over the state's own memory: only when no kernel reads the old
//! value after it, and with the same numbers as the recurrence written out in f64.

use hasten_tensor::{CpuBackend, DType, Executable, Graph, HostSlice, NodeId};

const N: usize = 1000;
const STEPS: usize = 3;
const B1: f32 = 0.9;
const B2: f32 = 0.999;
const EPS: f32 = 1e-7;
const LR: f32 = 0.01;

/// Adam's update of `p` (with moments `m`, `v`) for the gradient fed as input `g`, in the
/// form `nn` builds; with `late_reader`, a reduction of `p` placed after the update.
fn adam_step(late_reader: bool) -> Graph {
    let mut g = Graph::new();
    let build = |g: &mut Graph| -> hasten_tensor::Result<()> {
        let p = g.parameter("p", [N], DType::F32)?;
        let m = g.parameter("m", [N], DType::F32)?;
        let v = g.parameter("v", [N], DType::F32)?;
        let grad = g.input("g", [N], DType::F32)?;
        let s = |g: &mut Graph, x: f32| g.scalar(x);
        let (b1, c1, b2, c2) = (s(g, B1), s(g, 1.0 - B1), s(g, B2), s(g, 1.0 - B2));
        let (eps, lr) = (s(g, EPS), s(g, LR));
        let mb = g.mul(m, b1)?;
        let gc = g.mul(grad, c1)?;
        let m_new = g.add(mb, gc)?;
        let vb = g.mul(v, b2)?;
        let gg = g.mul(grad, grad)?;
        let ggc = g.mul(gg, c2)?;
        let v_new = g.add(vb, ggc)?;
        let root = g.sqrt(v_new)?;
        let denom = g.add(root, eps)?;
        let ratio = g.div(m_new, denom)?;
        let step = g.mul(ratio, lr)?;
        let p_new = g.sub(p, step)?;
        for (state, value) in [(m, m_new), (v, v_new), (p, p_new)] {
            g.update(state, value)?;
        }
        if late_reader {
            let sum: NodeId = g.sum(p, &[0], false)?;
            g.output("old_sum", sum)?;
        }
        Ok(())
    };
    build(&mut g).expect("a valid graph");
    g
}

fn p0() -> Vec<f32> {
    (0..N).map(|i| (i as f32 * 0.37).sin()).collect()
}

fn gradient(step: usize) -> Vec<f32> {
    (0..N)
        .map(|i| ((i * 7 + step * 13) % 23) as f32 / 11.0 - 1.0)
        .collect()
}

/// Runs the compiled step and checks `p` against the f64 recurrence after every step, and
/// the late reader (if any) against the parameter before the step.
fn check(exe: &mut dyn Executable, late_reader: bool) {
    exe.write_state("p", HostSlice::F32(&p0())).unwrap();
    let mut p: Vec<f64> = p0().iter().map(|&x| x as f64).collect();
    let (mut m, mut v) = (vec![0f64; N], vec![0f64; N]);
    for step in 0..STEPS {
        let g = gradient(step);
        exe.run(&[HostSlice::F32(&g)]).unwrap();
        if late_reader {
            let got = exe.output("old_sum").unwrap().as_f32().unwrap()[0] as f64;
            let want: f64 = p.iter().sum();
            assert!(
                (got - want).abs() < 1e-3,
                "step {step}: the late reader saw {got}, the old parameter sums to {want}"
            );
        }
        for i in 0..N {
            let gi = g[i] as f64;
            m[i] = m[i] * B1 as f64 + gi * (1.0 - B1 as f64);
            v[i] = v[i] * B2 as f64 + gi * gi * (1.0 - B2 as f64);
            p[i] -= m[i] / (v[i].sqrt() + EPS as f64) * LR as f64;
        }
        let got = exe.read_state("p").unwrap();
        for (i, (&a, &b)) in got.as_f32().unwrap().iter().zip(&p).enumerate() {
            assert!(
                (a as f64 - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "step {step}, element {i}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn adam_updates_its_states_in_place_and_matches_the_recurrence() {
    let mut exe = CpuBackend::new().compile_cpu(&adam_step(false)).unwrap();
    let mut in_place = exe.states_updated_in_place();
    in_place.sort_unstable();
    assert_eq!(in_place, ["m", "p", "v"]);
    check(&mut exe, false);
}

#[test]
fn a_reader_after_the_update_keeps_that_state_double_buffered() {
    let mut exe = CpuBackend::new().compile_cpu(&adam_step(true)).unwrap();
    let mut in_place = exe.states_updated_in_place();
    in_place.sort_unstable();
    assert_eq!(in_place, ["m", "v"], "only p is read after its update");
    check(&mut exe, true);
}
