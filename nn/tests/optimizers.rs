//! Every optimizer's update, run in a compiled step on the CPU backend, against its recurrence
//! written out here in f64; and the learning-rate schedules against hand-computed values.

use hasten_nn::optimizers::schedules::{
    self, CosineDecay, ExponentialDecay, LearningRateSchedule, PiecewiseConstantDecay,
};
use hasten_nn::optimizers::{self, Adam, AdamW, Hyper, Optimizer, ParamGrad, RmsProp, Sgd};
use hasten_tensor::{grad, Backend, CpuBackend, DType, Graph, HostSlice, HostTensor};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The loss `Σ ½·a·p² + c·p`, whose gradient `a·p + c` is constant where `a = 0`.
const A: [f64; 6] = [0.0, 1.0, 2.0, 0.5, 1.0, 0.0];
const C: [f64; 6] = [1.0, -2.0, 0.5, 3.0, -2.0, 1e-3];
/// The fifth element starts at the minimum: its gradient is exactly zero. The sixth has a
/// gradient small enough (1e-3) for the place of `ε` to matter.
const P0: [f64; 6] = [0.5, -1.0, 2.0, 0.1, 2.0, 0.3];
const LR: f64 = 0.1;
const STEPS: usize = 3;

fn gradient(p: &[f64]) -> Vec<f64> {
    p.iter()
        .zip(A.iter().zip(&C))
        .map(|(p, (a, c))| a * p + c)
        .collect()
}

/// Runs `STEPS` compiled steps of `opt` on the loss above, returning `p` after each step.
fn run(opt: &dyn Optimizer) -> Result<Vec<Vec<f64>>, Box<dyn std::error::Error>> {
    let n = P0.len();
    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let mut g = Graph::new();
    let p = g.parameter("w", [n], DType::F32)?;
    let a = g.constant(HostTensor::f32([n], f32s(&A))?);
    let c = g.constant(HostTensor::f32([n], f32s(&C))?);
    let p2 = g.mul(p, p)?;
    let ap2 = g.mul(a, p2)?;
    let half = g.scale(ap2, 0.5)?;
    let cp = g.mul(c, p)?;
    let terms = g.add(half, cp)?;
    let loss = g.sum(terms, &[0], false)?;
    let dp = grad(&mut g, loss, &[p])?[0];
    let iterations = g.parameter("optimizer/iterations", [0usize; 0], DType::F32)?;
    let lr = g.parameter("optimizer/learning_rate", [0usize; 0], DType::F32)?;
    let one = g.scalar(1.0);
    let step = g.add(iterations, one)?;
    g.update(iterations, step)?;
    let params = [ParamGrad {
        name: "w".into(),
        param: p,
        grad: dp,
    }];
    opt.apply(
        &mut g,
        &params,
        Hyper {
            learning_rate: lr,
            step,
        },
    )?;
    g.output("loss", loss)?;
    let mut exe = CpuBackend::new().compile(&g)?;
    exe.write_state("w", HostSlice::F32(&f32s(&P0)))?;
    exe.write_state("optimizer/learning_rate", HostSlice::F32(&[LR as f32]))?;
    let mut out = Vec::new();
    for _ in 0..STEPS {
        exe.run(&[])?;
        let w = exe.read_state("w")?;
        out.push(w.as_f32()?.iter().map(|&x| x as f64).collect());
    }
    Ok(out)
}

/// Runs the hand recurrence `update(p, g, t)` (t from 1) for `STEPS` steps.
fn reference(mut update: impl FnMut(&mut [f64], &[f64], usize)) -> Vec<Vec<f64>> {
    let mut p = P0.to_vec();
    (1..=STEPS)
        .map(|t| {
            let g = gradient(&p);
            update(&mut p, &g, t);
            p.clone()
        })
        .collect()
}

fn assert_close(name: &str, got: &[Vec<f64>], want: &[Vec<f64>]) {
    for (t, (g, w)) in got.iter().zip(want).enumerate() {
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            assert!(
                (a - b).abs() <= 2e-6 + 2e-6 * b.abs(),
                "{name}: step {} element {i}: got {a}, want {b}\n got {g:?}\nwant {w:?}",
                t + 1
            );
        }
    }
    assert_eq!(got.len(), want.len());
}

#[test]
fn sgd_plain() -> TestResult {
    let want = reference(|p, g, _| {
        for i in 0..p.len() {
            p[i] -= LR * g[i];
        }
    });
    assert_close("sgd", &run(&Sgd::new(LR as f32))?, &want);
    Ok(())
}

/// SGD with momentum `mu` by hand (Keras's formulation): `v = μ·v - lr·g`, then `p += v`, or
/// with Nesterov's look-ahead `p += μ·v - lr·g`.
fn momentum_reference(mu: f64, nesterov: bool) -> Vec<Vec<f64>> {
    let mut v = vec![0.0; P0.len()];
    reference(|p, g, _| {
        for i in 0..p.len() {
            v[i] = mu * v[i] - LR * g[i];
            p[i] += if nesterov {
                mu * v[i] - LR * g[i]
            } else {
                v[i]
            };
        }
    })
}

#[test]
fn sgd_momentum() -> TestResult {
    let mu = 0.9;
    let want = momentum_reference(mu, false);
    assert_close(
        "sgd momentum",
        &run(&Sgd::new(LR as f32).momentum(mu as f32))?,
        &want,
    );
    Ok(())
}

#[test]
fn sgd_nesterov() -> TestResult {
    let mu = 0.9;
    let want = momentum_reference(mu, true);
    let opt = Sgd::new(LR as f32).momentum(mu as f32).nesterov(true);
    assert_close("sgd nesterov", &run(&opt)?, &want);
    Ok(())
}

/// Keras's Adam (and AdamW's step after the decay), in f64.
fn adam_reference(weight_decay: f64) -> Vec<Vec<f64>> {
    let (b1, b2, eps): (f64, f64, f64) = (0.9, 0.999, 1e-7);
    let (mut m, mut v) = (vec![0.0; P0.len()], vec![0.0; P0.len()]);
    reference(|p, g, t| {
        let t = t as i32;
        let alpha = LR * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t));
        for i in 0..p.len() {
            p[i] -= LR * weight_decay * p[i];
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            p[i] -= alpha * m[i] / (v[i].sqrt() + eps);
        }
    })
}

#[test]
fn adam() -> TestResult {
    assert_close("adam", &run(&Adam::new(LR as f32))?, &adam_reference(0.0));
    Ok(())
}

#[test]
fn adamw_decays_before_the_adam_step() -> TestResult {
    let opt = AdamW::new(LR as f32);
    assert_eq!(opt.weight_decay, 0.004);
    assert_close("adamw", &run(&opt)?, &adam_reference(0.004));
    // A large decay makes the difference from Adam plain.
    let opt = AdamW::new(LR as f32).weight_decay(0.5);
    assert_close("adamw 0.5", &run(&opt)?, &adam_reference(0.5));
    // No decay is Adam.
    let opt = AdamW::new(LR as f32).weight_decay(0.0);
    assert_close("adamw 0", &run(&opt)?, &adam_reference(0.0));
    Ok(())
}

/// Keras's RMSprop in f64: `ε` under the square root.
fn rmsprop_reference(momentum: f64, centered: bool) -> Vec<Vec<f64>> {
    let (rho, eps) = (0.9, 1e-7);
    let n = P0.len();
    let (mut vel, mut avg, mut mom) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    reference(|p, g, _| {
        for i in 0..p.len() {
            vel[i] = rho * vel[i] + (1.0 - rho) * g[i] * g[i];
            let denom = if centered {
                avg[i] = rho * avg[i] + (1.0 - rho) * g[i];
                vel[i] - avg[i] * avg[i] + eps
            } else {
                vel[i] + eps
            };
            let increment = LR * g[i] / denom.sqrt();
            if momentum > 0.0 {
                mom[i] = momentum * mom[i] + increment;
                p[i] -= mom[i];
            } else {
                p[i] -= increment;
            }
        }
    })
}

#[test]
fn rmsprop() -> TestResult {
    let opt = RmsProp::new(LR as f32);
    assert_eq!(
        (opt.rho, opt.momentum, opt.epsilon, opt.centered),
        (0.9, 0.0, 1e-7, false)
    );
    assert_close("rmsprop", &run(&opt)?, &rmsprop_reference(0.0, false));
    Ok(())
}

#[test]
fn rmsprop_momentum_and_centered() -> TestResult {
    let opt = RmsProp::new(LR as f32).momentum(0.5);
    assert_close(
        "rmsprop momentum",
        &run(&opt)?,
        &rmsprop_reference(0.5, false),
    );
    // Centered: the first step has v - a² = 0.09·g², so keep tolerances in mind (fine in f32).
    let opt = RmsProp::new(LR as f32).centered(true);
    assert_close(
        "rmsprop centered",
        &run(&opt)?,
        &rmsprop_reference(0.0, true),
    );
    Ok(())
}

#[test]
fn configs_round_trip_and_bad_settings_are_config_errors() -> TestResult {
    let all: Vec<Box<dyn Optimizer>> = vec![
        Box::new(Sgd::new(0.1).momentum(0.9)),
        Box::new(Adam::new(0.01)),
        Box::new(AdamW::new(0.01).weight_decay(0.1)),
        Box::new(RmsProp::new(0.02).momentum(0.3).centered(true)),
    ];
    for opt in &all {
        let back = optimizers::from_config(&opt.config())?;
        assert_eq!(back.name(), opt.name());
        assert_eq!(back.config(), opt.config());
        assert_eq!(back.learning_rate(), opt.learning_rate());
    }
    // Keras-style partial configs take the defaults.
    let rms = optimizers::from_config(&serde_json::json!({"name": "rmsprop"}))?;
    assert_eq!(rms.config(), RmsProp::default().config());
    let adamw =
        optimizers::from_config(&serde_json::json!({"name": "adamw", "learning_rate": 0.5}))?;
    assert_eq!(adamw.learning_rate(), 0.5);
    assert_eq!(adamw.config()["weight_decay"], serde_json::json!(0.004f32));

    let bad: Vec<Box<dyn Optimizer>> = vec![
        Box::new(RmsProp::new(0.1).rho(1.5)),
        Box::new(RmsProp::new(0.1).momentum(-0.1)),
        Box::new(RmsProp::new(0.1).epsilon(f32::NAN)),
        Box::new(AdamW::new(0.1).weight_decay(-1.0)),
    ];
    for opt in &bad {
        let err = run(opt.as_ref()).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("must be")),
            "{opt:?}: {err:?}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------------------------

fn assert_rate(schedule: &dyn LearningRateSchedule, step: u64, want: f64) {
    let got = schedule.rate(step) as f64;
    assert!(
        (got - want).abs() <= 1e-6 * want.abs().max(1e-3),
        "{schedule:?} at step {step}: got {got}, want {want}"
    );
}

#[test]
fn exponential_decay() -> TestResult {
    let s = ExponentialDecay::new(0.1, 10, 0.5)?;
    assert_rate(&s, 0, 0.1);
    assert_rate(&s, 5, 0.1 * 0.5f64.sqrt()); // 0.0707106781
    assert_rate(&s, 10, 0.05);
    assert_rate(&s, 25, 0.1 * 0.5f64.powf(2.5)); // 0.0176776695
    let s = s.staircase(true);
    assert_rate(&s, 0, 0.1);
    assert_rate(&s, 9, 0.1);
    assert_rate(&s, 10, 0.05);
    assert_rate(&s, 25, 0.025);
    assert_rate(&s, 30, 0.0125);
    assert!(ExponentialDecay::new(0.1, 0, 0.5).is_err());
    assert!(ExponentialDecay::new(0.1, 10, -0.5).is_err());
    Ok(())
}

#[test]
fn piecewise_constant_decay() -> TestResult {
    let s = PiecewiseConstantDecay::new(vec![100, 200], vec![1.0, 0.5, 0.1])?;
    for (step, want) in [
        (0, 1.0),
        (100, 1.0),
        (101, 0.5),
        (200, 0.5),
        (201, 0.1),
        (10_000, 0.1),
    ] {
        assert_rate(&s, step, want);
    }
    let constant = PiecewiseConstantDecay::new(vec![], vec![0.3])?;
    assert_rate(&constant, 12345, 0.3);
    assert!(PiecewiseConstantDecay::new(vec![100, 200], vec![1.0, 0.5]).is_err());
    assert!(PiecewiseConstantDecay::new(vec![200, 100], vec![1.0, 0.5, 0.1]).is_err());
    // Inconsistent public fields do not panic.
    let broken = PiecewiseConstantDecay {
        boundaries: vec![1, 2, 3],
        values: vec![0.7],
    };
    assert_rate(&broken, 10, 0.7);
    Ok(())
}

#[test]
fn cosine_decay() -> TestResult {
    let s = CosineDecay::new(0.2, 100)?;
    assert_rate(&s, 0, 0.2);
    assert_rate(&s, 25, 0.2 * 0.5 * (1.0 + 0.5f64.sqrt())); // 0.1707106781
    assert_rate(&s, 50, 0.1);
    assert_rate(&s, 75, 0.2 * 0.5 * (1.0 - 0.5f64.sqrt())); // 0.0292893219
    assert!(s.rate(100).abs() < 1e-9);
    assert!(s.rate(1000).abs() < 1e-9);
    let s = s.alpha(0.1);
    assert_rate(&s, 0, 0.2);
    assert_rate(&s, 50, 0.2 * (0.9 * 0.5 + 0.1)); // 0.11
    assert_rate(&s, 100, 0.02);
    assert_rate(&s, 500, 0.02);
    assert!(CosineDecay::new(0.1, 0).is_err());
    Ok(())
}

#[test]
fn schedule_configs_round_trip() -> TestResult {
    let all: Vec<Box<dyn LearningRateSchedule>> = vec![
        Box::new(ExponentialDecay::new(0.1, 10, 0.5)?.staircase(true)),
        Box::new(PiecewiseConstantDecay::new(vec![5], vec![0.1, 0.01])?),
        Box::new(CosineDecay::new(0.1, 10)?.alpha(0.2)),
    ];
    for s in &all {
        let back = schedules::from_config(&s.config())?;
        for step in [0, 3, 5, 6, 11, 100] {
            assert_eq!(back.rate(step), s.rate(step));
        }
        assert_eq!(back.config(), s.config());
    }
    assert!(schedules::from_config(&serde_json::json!({"name": "Nope"})).is_err());
    let zero_steps = serde_json::json!({"name": "CosineDecay", "initial": 0.1, "decay_steps": 0});
    assert!(schedules::from_config(&zero_steps).is_err());
    Ok(())
}
