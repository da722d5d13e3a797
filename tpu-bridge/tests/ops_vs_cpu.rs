//! Every op of the IR's closed set on the PJRT plugin against the CPU backend, on random
//! inputs: the forward value and, for float ops, the gradient of `sum(y · w)` (a random `w`)
//! with respect to every float input, which exercises each op's backward ops (conv and pool
//! gradients included). Tolerance: 1e-5 relative (1e-4 for products and convolutions,
//! whose sums XLA orders differently).

mod common;

use hasten_tensor::ir::{BinaryOp, CompareOp, Padding2d, PaddingMode, UnaryOp};
use hasten_tensor::{grad, CpuBackend, DType, Graph, HostData, HostTensor, NodeId, Shape};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const EW_TOL: f64 = 1e-5;
const SUM_TOL: f64 = 1e-4;

/// A convolution case: name, input dims, filter dims, stride, padding, dilation.
type ConvSpec = (
    &'static str,
    [usize; 4],
    [usize; 4],
    [usize; 2],
    PaddingMode,
    [usize; 2],
);
/// A pooling case: name, input dims, window, stride, padding.
type PoolSpec = (
    &'static str,
    [usize; 4],
    [usize; 2],
    [usize; 2],
    PaddingMode,
);

type Build = Box<dyn Fn(&mut Graph, &[NodeId]) -> hasten_tensor::Result<NodeId>>;

struct Case {
    name: String,
    inputs: Vec<HostTensor>,
    build: Build,
    tol: f64,
}

fn case(
    name: impl Into<String>,
    inputs: Vec<HostTensor>,
    tol: f64,
    build: impl Fn(&mut Graph, &[NodeId]) -> hasten_tensor::Result<NodeId> + 'static,
) -> Case {
    Case {
        name: name.into(),
        inputs,
        build: Box::new(build),
        tol,
    }
}

fn uniform(rng: &mut StdRng, dims: &[usize], lo: f32, hi: f32) -> HostTensor {
    let n = dims.iter().product();
    let v = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    HostTensor::f32(dims.to_vec(), v).unwrap()
}

/// Values on a coarse grid, so that maxima tie.
fn ties(rng: &mut StdRng, dims: &[usize]) -> HostTensor {
    let n = dims.iter().product();
    let v = (0..n).map(|_| rng.random_range(-2..=2) as f32).collect();
    HostTensor::f32(dims.to_vec(), v).unwrap()
}

fn ints(rng: &mut StdRng, dims: &[usize], lo: i32, hi: i32) -> HostTensor {
    let n = dims.iter().product();
    let v = (0..n).map(|_| rng.random_range(lo..=hi)).collect();
    HostTensor::i32(dims.to_vec(), v).unwrap()
}

fn with_nans(mut t: HostTensor, every: usize) -> HostTensor {
    if let HostData::F32(v) = &mut t.data {
        v.iter_mut().step_by(every).for_each(|x| *x = f32::NAN);
    }
    t
}

/// Builds the case's graph: inputs `x0…`, output `y`, and for a float `y` the gradient of
/// `sum(y · w)` with respect to each float input.
fn graph(case: &Case, rng: &mut StdRng) -> hasten_tensor::Result<(Graph, Vec<HostTensor>)> {
    let mut g = Graph::new();
    let mut inputs = case.inputs.clone();
    let xs: Vec<NodeId> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| g.input(&format!("x{i}"), t.shape.clone(), t.dtype()))
        .collect::<Result<_, _>>()?;
    let y = (case.build)(&mut g, &xs)?;
    g.output("y", y)?;
    let floats: Vec<NodeId> = xs
        .iter()
        .zip(&case.inputs)
        .filter(|(_, t)| t.dtype() == DType::F32)
        .map(|(&x, _)| x)
        .collect();
    let differentiable = !case.name.starts_with("random") && !case.name.starts_with("argmax");
    if g.dtype(y)? == DType::F32 && !floats.is_empty() && differentiable {
        let dims = g.shape(y)?.dims().to_vec();
        let w_value = uniform(rng, &dims, -1.0, 1.0);
        let w = g.input("w", Shape::new(dims), DType::F32)?;
        inputs.push(w_value);
        let yw = g.mul(y, w)?;
        let all: Vec<usize> = (0..g.shape(yw)?.rank()).collect();
        let loss = g.sum(yw, &all, false)?;
        for (k, d) in grad(&mut g, loss, &floats)?.into_iter().enumerate() {
            g.output(&format!("d{k}"), d)?;
        }
    }
    Ok((g, inputs))
}

fn elementwise_cases(rng: &mut StdRng) -> Vec<Case> {
    let mut cases = Vec::new();
    let unary = [
        (UnaryOp::Neg, -3.0, 3.0),
        (UnaryOp::Exp, -3.0, 3.0),
        (UnaryOp::Log, 0.1, 4.0),
        (UnaryOp::Sqrt, 0.1, 4.0),
        (UnaryOp::Rsqrt, 0.1, 4.0),
        (UnaryOp::Relu, -2.0, 2.0),
        (UnaryOp::Sigmoid, -4.0, 4.0),
        (UnaryOp::Tanh, -3.0, 3.0),
        (UnaryOp::Abs, -2.0, 2.0),
        (UnaryOp::Square, -2.0, 2.0),
        (UnaryOp::Recip, 0.5, 3.0),
    ];
    for (op, lo, hi) in unary {
        let x = uniform(rng, &[3, 5], lo, hi);
        cases.push(case(format!("{op:?}"), vec![x], EW_TOL, move |g, x| {
            g.unary(op, x[0])
        }));
    }
    cases.push(case(
        "Relu NaN",
        vec![with_nans(uniform(rng, &[4, 5], -1.0, 1.0), 3)],
        EW_TOL,
        |g, x| g.unary(UnaryOp::Relu, x[0]),
    ));
    let binary = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Pow,
    ];
    let pairs: [(&[usize], &[usize]); 4] = [
        (&[3, 4], &[3, 4]),
        (&[3, 4], &[4]),
        (&[3, 1], &[1, 4]),
        (&[], &[2, 3]),
    ];
    for op in binary {
        for (a, b) in pairs {
            let x = uniform(rng, a, 0.5, 2.0);
            let y = uniform(rng, b, 0.5, 2.0);
            cases.push(case(
                format!("{op:?} {a:?} {b:?}"),
                vec![x, y],
                EW_TOL,
                move |g, x| g.binary(op, x[0], x[1]),
            ));
        }
    }
    for op in [BinaryOp::Max, BinaryOp::Min] {
        let x = with_nans(ties(rng, &[4, 6]), 5);
        let y = with_nans(ties(rng, &[4, 6]), 7);
        cases.push(case(
            format!("{op:?} NaN ties"),
            vec![x, y],
            EW_TOL,
            move |g, x| g.binary(op, x[0], x[1]),
        ));
    }
    for op in [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Max,
        BinaryOp::Min,
    ] {
        let x = ints(rng, &[4, 5], i32::MIN, i32::MAX);
        let y = ints(rng, &[5], i32::MIN, i32::MAX);
        cases.push(case(
            format!("i32 {op:?} wrapping"),
            vec![x, y],
            0.0,
            move |g, x| g.binary(op, x[0], x[1]),
        ));
    }
    let compares = [
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Lt,
        CompareOp::Le,
        CompareOp::Gt,
        CompareOp::Ge,
    ];
    for op in compares {
        let x = with_nans(ties(rng, &[3, 4]), 5);
        let y = ties(rng, &[4]);
        cases.push(case(
            format!("compare {op:?}"),
            vec![x, y],
            0.0,
            move |g, x| g.compare(op, x[0], x[1]),
        ));
    }
    let (x, y) = (
        uniform(rng, &[3, 4], -1.0, 1.0),
        uniform(rng, &[4], -1.0, 1.0),
    );
    let c = ties(rng, &[3, 4]);
    cases.push(case("select", vec![c, x, y], EW_TOL, |g, x| {
        let zero = g.scalar(0.0);
        let cond = g.compare(CompareOp::Gt, x[0], zero)?;
        g.select(cond, x[1], x[2])
    }));
    cases
}

fn cast_cases(rng: &mut StdRng) -> Vec<Case> {
    let specials = vec![
        0.0,
        -0.0,
        0.7,
        -0.7,
        1.5,
        -2.5,
        254.9,
        255.5,
        300.0,
        -300.0,
        2.1e9,
        2.2e9,
        -2.2e9,
        3e9,
        -3e9,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    let n = specials.len();
    let f = HostTensor::f32([n], specials).unwrap();
    let mut cases = Vec::new();
    for to in [DType::I32, DType::U8, DType::Bool, DType::F32] {
        cases.push(case(
            format!("cast f32 -> {to}"),
            vec![f.clone()],
            0.0,
            move |g, x| {
                let y = g.cast(x[0], to)?;
                g.cast(y, DType::F32)
            },
        ));
    }
    let i = ints(rng, &[12], -400, 400);
    for to in [DType::F32, DType::U8, DType::Bool] {
        cases.push(case(
            format!("cast i32 -> {to}"),
            vec![i.clone()],
            0.0,
            move |g, x| g.cast(x[0], to),
        ));
    }
    let bytes = HostData::U8((0..12).map(|_| rng.random_range(0..=255)).collect());
    let u = HostTensor::new(Shape::new(vec![3, 4]), bytes).unwrap();
    cases.push(case("u8 input cast to f32, i32", vec![u], 0.0, |g, x| {
        let f = g.cast(x[0], DType::F32)?;
        let i = g.cast(x[0], DType::I32)?;
        let i = g.cast(i, DType::F32)?;
        g.add(f, i)
    }));
    let flags = HostData::Bool((0..8).map(|_| rng.random_bool(0.5)).collect());
    let flags = HostTensor::new(Shape::new(vec![2, 4]), flags).unwrap();
    let values = uniform(rng, &[2, 4], -1.0, 1.0);
    cases.push(case(
        "bool input selects",
        vec![flags, values],
        EW_TOL,
        |g, x| {
            let zero = g.scalar(0.0);
            g.select(x[0], x[1], zero)
        },
    ));
    cases.push(case(
        "cast bool -> f32, i32",
        vec![ties(rng, &[10])],
        0.0,
        |g, x| {
            let zero = g.scalar(0.0);
            let b = g.compare(CompareOp::Gt, x[0], zero)?;
            let i = g.cast(b, DType::I32)?;
            let f = g.cast(i, DType::F32)?;
            let f2 = g.cast(b, DType::F32)?;
            g.add(f, f2)
        },
    ));
    cases
}

fn linalg_cases(rng: &mut StdRng) -> Vec<Case> {
    let mut cases = Vec::new();
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = if ta { [7, 5] } else { [5, 7] };
        let b = if tb { [3, 7] } else { [7, 3] };
        let (x, y) = (uniform(rng, &a, -1.0, 1.0), uniform(rng, &b, -1.0, 1.0));
        cases.push(case(
            format!("matmul ta={ta} tb={tb}"),
            vec![x, y],
            SUM_TOL,
            move |g, x| g.matmul_t(x[0], x[1], ta, tb),
        ));
    }
    let (x, y) = (
        uniform(rng, &[2, 4, 6], -1.0, 1.0),
        uniform(rng, &[2, 6, 3], -1.0, 1.0),
    );
    cases.push(case("matmul batched", vec![x, y], SUM_TOL, |g, x| {
        g.matmul(x[0], x[1])
    }));
    let convs: [ConvSpec; 7] = [
        // More than 64 values per patch: lowered as a convolution, not as a product.
        (
            "wide patch",
            [2, 6, 7, 8],
            [3, 3, 8, 4],
            [1, 1],
            PaddingMode::Same,
            [1, 1],
        ),
        (
            "wide patch strided",
            [1, 9, 8, 8],
            [3, 3, 8, 3],
            [2, 2],
            PaddingMode::Valid,
            [1, 1],
        ),
        (
            "valid",
            [2, 7, 6, 3],
            [3, 3, 3, 4],
            [1, 1],
            PaddingMode::Valid,
            [1, 1],
        ),
        (
            "same stride 2",
            [2, 8, 7, 2],
            [3, 3, 2, 3],
            [2, 2],
            PaddingMode::Same,
            [1, 1],
        ),
        (
            "valid stride 2 ragged",
            [1, 8, 9, 2],
            [3, 2, 2, 2],
            [2, 3],
            PaddingMode::Valid,
            [1, 1],
        ),
        (
            "dilated",
            [2, 9, 9, 2],
            [3, 3, 2, 2],
            [1, 1],
            PaddingMode::Valid,
            [2, 2],
        ),
        (
            "explicit",
            [1, 6, 6, 3],
            [2, 3, 3, 2],
            [1, 2],
            PaddingMode::Explicit(Padding2d {
                top: 1,
                bottom: 0,
                left: 2,
                right: 1,
            }),
            [1, 1],
        ),
    ];
    for (name, xs, ws, stride, padding, dilation) in convs {
        let (x, w) = (uniform(rng, &xs, -1.0, 1.0), uniform(rng, &ws, -1.0, 1.0));
        cases.push(case(
            format!("conv2d {name}"),
            vec![x, w],
            SUM_TOL,
            move |g, x| g.conv2d(x[0], x[1], stride, padding, dilation),
        ));
    }
    cases
}

fn pool_cases(rng: &mut StdRng) -> Vec<Case> {
    let pools: [PoolSpec; 5] = [
        (
            "2x2 tiled",
            [2, 6, 8, 3],
            [2, 2],
            [2, 2],
            PaddingMode::Valid,
        ),
        (
            "2x2 tiled ragged",
            [1, 7, 5, 2],
            [2, 2],
            [2, 2],
            PaddingMode::Valid,
        ),
        (
            "3x3 stride 2 same",
            [2, 7, 7, 2],
            [3, 3],
            [2, 2],
            PaddingMode::Same,
        ),
        (
            "2x2 stride 1",
            [1, 5, 5, 2],
            [2, 2],
            [1, 1],
            PaddingMode::Valid,
        ),
        (
            "3x2 stride 1x2 same",
            [1, 5, 6, 2],
            [3, 2],
            [1, 2],
            PaddingMode::Same,
        ),
    ];
    let mut cases = Vec::new();
    for (name, dims, window, stride, padding) in pools {
        let x = ties(rng, &dims);
        cases.push(case(
            format!("max_pool {name} ties"),
            vec![x],
            EW_TOL,
            move |g, x| g.max_pool2d(x[0], window, stride, padding),
        ));
        let x = with_nans(uniform(rng, &dims, -1.0, 1.0), 7);
        cases.push(case(
            format!("max_pool {name} NaN"),
            vec![x],
            EW_TOL,
            move |g, x| g.max_pool2d(x[0], window, stride, padding),
        ));
        let x = uniform(rng, &dims, -1.0, 1.0);
        cases.push(case(
            format!("avg_pool {name}"),
            vec![x],
            EW_TOL,
            move |g, x| g.avg_pool2d(x[0], window, stride, padding),
        ));
    }
    cases
}

fn shape_cases(rng: &mut StdRng) -> Vec<Case> {
    let mut cases = Vec::new();
    let x = uniform(rng, &[2, 3, 4], -2.0, 2.0);
    for keep in [false, true] {
        for axes in [vec![0], vec![1, 2], vec![0, 1, 2]] {
            let a = axes.clone();
            cases.push(case(
                format!("sum {axes:?} keep={keep}"),
                vec![x.clone()],
                EW_TOL,
                move |g, x| g.sum(x[0], &a, keep),
            ));
            let a = axes.clone();
            cases.push(case(
                format!("mean {axes:?} keep={keep}"),
                vec![x.clone()],
                EW_TOL,
                move |g, x| g.mean(x[0], &a, keep),
            ));
            let a = axes.clone();
            let t = ties(rng, &[2, 3, 4]);
            cases.push(case(
                format!("max {axes:?} keep={keep}"),
                vec![t],
                EW_TOL,
                move |g, x| g.max(x[0], &a, keep),
            ));
        }
    }
    let n = with_nans(uniform(rng, &[3, 5], -1.0, 1.0), 4);
    cases.push(case("max NaN", vec![n.clone()], EW_TOL, |g, x| {
        g.max(x[0], &[1], false)
    }));
    for axis in [0, 1] {
        cases.push(case(
            format!("argmax ties {axis}"),
            vec![ties(rng, &[4, 6])],
            0.0,
            move |g, x| g.argmax(x[0], axis),
        ));
        cases.push(case(
            format!("argmax NaN {axis}"),
            vec![n.clone()],
            0.0,
            move |g, x| g.argmax(x[0], axis),
        ));
    }
    cases.push(case("reshape", vec![x.clone()], EW_TOL, |g, x| {
        g.reshape(x[0], [4, 6])
    }));
    cases.push(case("transpose", vec![x.clone()], EW_TOL, |g, x| {
        g.transpose(x[0], &[2, 0, 1])
    }));
    let v = uniform(rng, &[3, 1], -1.0, 1.0);
    cases.push(case("broadcast", vec![v], EW_TOL, |g, x| {
        g.broadcast(x[0], [2, 3, 4])
    }));
    cases.push(case("slice", vec![x.clone()], EW_TOL, |g, x| {
        g.slice(x[0], &[1, 0, 1], &[2, 3, 3])
    }));
    cases.push(case("pad", vec![x.clone()], EW_TOL, |g, x| {
        g.pad(x[0], &[1, 0, 2], &[0, 2, 1])
    }));
    let y = uniform(rng, &[2, 2, 4], -1.0, 1.0);
    cases.push(case("concat", vec![x.clone(), y], EW_TOL, |g, x| {
        g.concat(&[x[0], x[1]], 1)
    }));
    cases.push(case(
        "one_hot",
        vec![ints(rng, &[2, 5], -1, 6)],
        0.0,
        |g, x| g.one_hot(x[0], 5),
    ));
    cases.push(case("stop_gradient", vec![x.clone()], EW_TOL, |g, x| {
        let s = g.stop_gradient(x[0])?;
        g.mul(s, x[0])
    }));
    let c = HostTensor::f32([2, 3], vec![1.0, -2.5, 3.25, f32::NAN, 1e-30, -0.0]).unwrap();
    cases.push(case("constant", vec![x.clone()], EW_TOL, move |g, x| {
        let k = g.constant(c.clone());
        let s = g.sum(x[0], &[2], false)?;
        g.add(s, k)
    }));
    for seed in [0, 7, -3, i32::MAX] {
        let s = HostTensor::i32(Vec::<usize>::new(), vec![seed]).unwrap();
        cases.push(case(
            format!("random i32 seed {seed}"),
            vec![s],
            0.0,
            |g, x| g.random_uniform(x[0], [3, 700]),
        ));
    }
    for seed in [2.9f32, -1.5, 1e10, f32::NAN] {
        let s = HostTensor::f32(Vec::<usize>::new(), vec![seed]).unwrap();
        cases.push(case(
            format!("random f32 seed {seed}"),
            vec![s],
            0.0,
            |g, x| g.random_uniform(x[0], [5, 9]),
        ));
    }
    cases
}

#[test]
fn every_op_matches_the_cpu_backend() {
    let Some(pjrt) = common::backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    let mut rng = StdRng::seed_from_u64(15);
    let mut cases = elementwise_cases(&mut rng);
    cases.extend(cast_cases(&mut rng));
    cases.extend(linalg_cases(&mut rng));
    cases.extend(pool_cases(&mut rng));
    cases.extend(shape_cases(&mut rng));
    let mut failures = Vec::new();
    for case in &cases {
        let result = graph(case, &mut rng).and_then(|(g, inputs)| {
            let want = common::run(&cpu, &g, &inputs, &[])?;
            let got = common::run(&pjrt, &g, &inputs, &[])?;
            Ok(common::diff(&got, &want, case.tol))
        });
        match result {
            Ok(diffs) => failures.extend(diffs.into_iter().map(|d| format!("{}: {d}", case.name))),
            Err(e) => failures.push(format!("{}: {e}", case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} cases matched", cases.len());
}
