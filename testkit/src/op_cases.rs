//! One small graph per op of the IR's closed set, and per attribute and edge case that a
//! lowering can get wrong (broadcasts, transposed products, strides, padding modes, dilation,
//! ragged pooling windows, ties and NaN in maxima, out-of-range casts, wrapping integer
//! arithmetic, seeds). [`graph`] adds the gradient of `sum(y · w)` with respect to every
//! float input, so that every backward op (convolution and pooling gradients included) is
//! built too. The PJRT and CUDA backends' tests run all of them against the CPU backend.

use hasten_tensor::ir::{BinaryOp, CompareOp, Padding2d, PaddingMode, UnaryOp};
use hasten_tensor::{grad, DType, Graph, HostData, HostTensor, NodeId, Result, Shape};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Relative tolerance of elementwise results against the CPU backend.
pub const EW: f64 = 1e-5;
/// Relative tolerance where a backend may sum in another order (products, convolutions,
/// reductions).
pub const SUM: f64 = 1e-4;

type Build = Box<dyn Fn(&mut Graph, &[NodeId]) -> Result<NodeId>>;

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

/// A named op test: its inputs, how to build its output from them, the tolerance against
/// the CPU backend, and whether to differentiate it.
pub struct Case {
    /// Name for messages.
    pub name: String,
    /// Input values.
    pub inputs: Vec<HostTensor>,
    /// Builds `y` from the input nodes.
    pub build: Build,
    /// Relative tolerance against the CPU (0: exact).
    pub tol: f64,
    /// Whether [`graph`] adds the gradient (never for integer or random outputs).
    pub grad: bool,
}

fn case(
    name: impl Into<String>,
    inputs: Vec<HostTensor>,
    tol: f64,
    build: impl Fn(&mut Graph, &[NodeId]) -> Result<NodeId> + 'static,
) -> Case {
    Case {
        name: name.into(),
        inputs,
        build: Box::new(build),
        tol,
        grad: true,
    }
}

fn no_grad(mut c: Case) -> Case {
    c.grad = false;
    c
}

/// Uniform values in `[lo, hi)`.
pub fn uniform(rng: &mut StdRng, dims: &[usize], lo: f32, hi: f32) -> HostTensor {
    let n = dims.iter().product();
    let v = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    HostTensor::f32(dims.to_vec(), v).unwrap()
}

/// Values on a coarse grid (-2..=2), so that maxima tie.
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

/// `t` with every `every`-th value NaN.
fn with_nans(mut t: HostTensor, every: usize) -> HostTensor {
    if let HostData::F32(v) = &mut t.data {
        v.iter_mut().step_by(every).for_each(|x| *x = f32::NAN);
    }
    t
}

/// Every case, with fixed random inputs.
pub fn all() -> Vec<Case> {
    let mut rng = StdRng::seed_from_u64(15);
    let mut cases = Vec::new();
    unary(&mut rng, &mut cases);
    binary(&mut rng, &mut cases);
    compare_and_select(&mut rng, &mut cases);
    casts(&mut rng, &mut cases);
    products(&mut rng, &mut cases);
    convolutions(&mut rng, &mut cases);
    pools(&mut rng, &mut cases);
    reductions(&mut rng, &mut cases);
    indices(&mut rng, &mut cases);
    layout(&mut rng, &mut cases);
    random(&mut cases);
    cases
}

/// The case's graph (inputs `x0…`, output `y`, and `d{k}` for the gradient of `sum(y · w)`
/// with respect to float input `k`) and its inputs (`w` last, when there is a gradient).
pub fn graph(case: &Case) -> Result<(Graph, Vec<HostTensor>)> {
    let mut g = Graph::new();
    let mut inputs = case.inputs.clone();
    let xs: Vec<NodeId> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| g.input(&format!("x{i}"), t.shape.clone(), t.dtype()))
        .collect::<Result<_>>()?;
    let y = (case.build)(&mut g, &xs)?;
    g.output("y", y)?;
    let floats: Vec<NodeId> = xs
        .iter()
        .zip(&case.inputs)
        .filter(|(_, t)| t.dtype() == DType::F32)
        .map(|(&x, _)| x)
        .collect();
    if case.grad && g.dtype(y)? == DType::F32 && !floats.is_empty() {
        let dims = g.shape(y)?.dims().to_vec();
        inputs.push(uniform(&mut StdRng::seed_from_u64(61), &dims, -1.0, 1.0));
        let w = g.input("w", Shape::new(dims), DType::F32)?;
        let yw = g.mul(y, w)?;
        let all: Vec<usize> = (0..g.shape(yw)?.rank()).collect();
        let loss = g.sum(yw, &all, false)?;
        for (k, d) in grad(&mut g, loss, &floats)?.into_iter().enumerate() {
            g.output(&format!("d{k}"), d)?;
        }
    }
    Ok((g, inputs))
}

fn unary(rng: &mut StdRng, cases: &mut Vec<Case>) {
    use UnaryOp::*;
    for (op, lo, hi) in [
        (Neg, -3.0, 3.0),
        (Exp, -3.0, 3.0),
        (Log, 0.1, 4.0),
        (Sqrt, 0.1, 4.0),
        (Rsqrt, 0.1, 4.0),
        (Relu, -2.0, 2.0),
        (Sigmoid, -4.0, 4.0),
        (Tanh, -3.0, 3.0),
        (Abs, -2.0, 2.0),
        (Square, -2.0, 2.0),
        (Recip, 0.5, 3.0),
    ] {
        let x = uniform(rng, &[3, 5], lo, hi);
        cases.push(case(format!("{op:?}"), vec![x], EW, move |g, x| {
            g.unary(op, x[0])
        }));
    }
    let x = with_nans(uniform(rng, &[4, 5], -1.0, 1.0), 3);
    cases.push(case("Relu NaN", vec![x], EW, |g, x| g.unary(Relu, x[0])));
}

fn binary(rng: &mut StdRng, cases: &mut Vec<Case>) {
    use BinaryOp::*;
    let pairs: [(&[usize], &[usize]); 4] = [
        (&[3, 4], &[3, 4]),
        (&[3, 4], &[4]),
        (&[3, 1], &[1, 4]),
        (&[], &[2, 3]),
    ];
    for op in [Add, Sub, Mul, Div, Max, Min, Pow] {
        for (a, b) in pairs {
            let inputs = vec![uniform(rng, a, 0.5, 2.0), uniform(rng, b, 0.5, 2.0)];
            cases.push(case(
                format!("{op:?} {a:?} {b:?}"),
                inputs,
                EW,
                move |g, x| g.binary(op, x[0], x[1]),
            ));
        }
    }
    for op in [Max, Min] {
        let x = with_nans(ties(rng, &[4, 6]), 5);
        let y = with_nans(ties(rng, &[4, 6]), 7);
        cases.push(case(
            format!("{op:?} NaN ties"),
            vec![x, y],
            EW,
            move |g, x| g.binary(op, x[0], x[1]),
        ));
    }
    for op in [Add, Sub, Mul, Max, Min] {
        let x = ints(rng, &[4, 5], i32::MIN, i32::MAX);
        let y = ints(rng, &[5], i32::MIN, i32::MAX);
        cases.push(case(
            format!("i32 {op:?} wrapping"),
            vec![x, y],
            0.0,
            move |g, x| g.binary(op, x[0], x[1]),
        ));
    }
}

fn compare_and_select(rng: &mut StdRng, cases: &mut Vec<Case>) {
    use CompareOp::*;
    for op in [Eq, Ne, Lt, Le, Gt, Ge] {
        let x = with_nans(ties(rng, &[3, 4]), 5);
        let y = ties(rng, &[4]);
        cases.push(case(
            format!("compare {op:?}"),
            vec![x, y],
            0.0,
            move |g, x| g.compare(op, x[0], x[1]),
        ));
        let x = ints(rng, &[3, 4], -2, 2);
        let y = ints(rng, &[4], -2, 2);
        cases.push(case(
            format!("i32 compare {op:?}"),
            vec![x, y],
            0.0,
            move |g, x| {
                let c = g.compare(op, x[0], x[1])?;
                g.cast(c, DType::F32)
            },
        ));
        let x = uniform(rng, &[3, 4], -1.0, 1.0);
        let y = uniform(rng, &[3, 4], -1.0, 1.0);
        cases.push(case(
            format!("{op:?} then select"),
            vec![x, y],
            EW,
            move |g, x| {
                let c = g.compare(op, x[0], x[1])?;
                g.select(c, x[0], x[1])
            },
        ));
    }
    let c = ties(rng, &[3, 4]);
    let (x, y) = (
        uniform(rng, &[3, 4], -1.0, 1.0),
        uniform(rng, &[4], -1.0, 1.0),
    );
    cases.push(case("select broadcast", vec![c, x, y], EW, |g, x| {
        let zero = g.scalar(0.0);
        let cond = g.compare(Gt, x[0], zero)?;
        g.select(cond, x[1], x[2])
    }));
}

fn casts(rng: &mut StdRng, cases: &mut Vec<Case>) {
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
    let f = HostTensor::f32([specials.len()], specials).unwrap();
    for to in [DType::I32, DType::U8, DType::Bool, DType::F32] {
        cases.push(case(
            format!("cast f32 -> {to} -> f32"),
            vec![f.clone()],
            0.0,
            move |g, x| {
                let y = g.cast(x[0], to)?;
                g.cast(y, DType::F32)
            },
        ));
    }
    cases.push(case("cast f32 -> i32", vec![f], 0.0, |g, x| {
        g.cast(x[0], DType::I32)
    }));
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
        EW,
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
}

fn products(rng: &mut StdRng, cases: &mut Vec<Case>) {
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = if ta { [7, 5] } else { [5, 7] };
        let b = if tb { [3, 7] } else { [7, 3] };
        let inputs = vec![uniform(rng, &a, -1.0, 1.0), uniform(rng, &b, -1.0, 1.0)];
        cases.push(case(
            format!("matmul ta={ta} tb={tb}"),
            inputs,
            SUM,
            move |g, x| g.matmul_t(x[0], x[1], ta, tb),
        ));
    }
    let inputs = vec![
        uniform(rng, &[2, 4, 6], -1.0, 1.0),
        uniform(rng, &[2, 6, 3], -1.0, 1.0),
    ];
    cases.push(case("batched matmul", inputs, SUM, |g, x| {
        g.matmul(x[0], x[1])
    }));
    let inputs = vec![
        uniform(rng, &[4, 6], -1.0, 1.0),
        uniform(rng, &[6, 5], -1.0, 1.0),
        uniform(rng, &[5], -1.0, 1.0),
    ];
    cases.push(case("dense relu epilogue", inputs, SUM, |g, x| {
        let p = g.matmul(x[0], x[1])?;
        let s = g.add(p, x[2])?;
        g.relu(s)
    }));
}

fn convolutions(rng: &mut StdRng, cases: &mut Vec<Case>) {
    let one = [1, 1];
    let convs: [ConvSpec; 8] = [
        // More than 64 values per patch: lowered as a convolution, not as a product.
        (
            "wide patch",
            [2, 6, 7, 8],
            [3, 3, 8, 4],
            one,
            PaddingMode::Same,
            one,
        ),
        (
            "wide patch strided",
            [1, 9, 8, 8],
            [3, 3, 8, 3],
            [2, 2],
            PaddingMode::Valid,
            one,
        ),
        (
            "valid",
            [2, 7, 6, 3],
            [3, 3, 3, 4],
            one,
            PaddingMode::Valid,
            one,
        ),
        (
            "same stride 2",
            [2, 8, 7, 2],
            [3, 3, 2, 3],
            [2, 2],
            PaddingMode::Same,
            one,
        ),
        (
            "valid stride 2 ragged",
            [1, 8, 9, 2],
            [3, 2, 2, 2],
            [2, 3],
            PaddingMode::Valid,
            one,
        ),
        (
            "dilated",
            [2, 9, 9, 2],
            [3, 3, 2, 2],
            one,
            PaddingMode::Valid,
            [2, 2],
        ),
        (
            "1x1 same",
            [2, 5, 5, 4],
            [1, 1, 4, 3],
            one,
            PaddingMode::Same,
            one,
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
            one,
        ),
    ];
    for (name, xs, ws, stride, padding, dilation) in convs {
        let inputs = vec![uniform(rng, &xs, -1.0, 1.0), uniform(rng, &ws, -1.0, 1.0)];
        cases.push(case(format!("conv2d {name}"), inputs, SUM, move |g, x| {
            g.conv2d(x[0], x[1], stride, padding, dilation)
        }));
    }
}

fn pools(rng: &mut StdRng, cases: &mut Vec<Case>) {
    use PaddingMode::{Same, Valid};
    let pools: [PoolSpec; 6] = [
        ("2x2 tiled", [2, 6, 8, 3], [2, 2], [2, 2], Valid),
        ("2x2 tiled ragged", [1, 7, 5, 2], [2, 2], [2, 2], Valid),
        ("3x3 stride 2 same", [2, 7, 7, 2], [3, 3], [2, 2], Same),
        ("2x2 stride 1", [1, 5, 5, 2], [2, 2], [1, 1], Valid),
        ("3x3 stride 1 overlap", [2, 6, 6, 3], [3, 3], [1, 1], Valid),
        ("3x2 stride 1x2 same", [1, 5, 6, 2], [3, 2], [1, 2], Same),
    ];
    for (name, dims, window, stride, padding) in pools {
        let x = ties(rng, &dims);
        cases.push(case(
            format!("max_pool {name} ties"),
            vec![x],
            EW,
            move |g, x| g.max_pool2d(x[0], window, stride, padding),
        ));
        let x = with_nans(uniform(rng, &dims, -1.0, 1.0), 7);
        cases.push(case(
            format!("max_pool {name} NaN"),
            vec![x],
            EW,
            move |g, x| g.max_pool2d(x[0], window, stride, padding),
        ));
        let x = uniform(rng, &dims, -1.0, 1.0);
        cases.push(case(
            format!("avg_pool {name}"),
            vec![x],
            EW,
            move |g, x| g.avg_pool2d(x[0], window, stride, padding),
        ));
    }
}

fn reductions(rng: &mut StdRng, cases: &mut Vec<Case>) {
    let x = uniform(rng, &[2, 3, 4], -2.0, 2.0);
    for keep in [false, true] {
        for axes in [vec![0], vec![2], vec![1, 2], vec![0, 2], vec![0, 1, 2]] {
            let a = axes.clone();
            cases.push(case(
                format!("sum {axes:?} keep={keep}"),
                vec![x.clone()],
                SUM,
                move |g, x| g.sum(x[0], &a, keep),
            ));
            let a = axes.clone();
            cases.push(case(
                format!("mean {axes:?} keep={keep}"),
                vec![x.clone()],
                SUM,
                move |g, x| g.mean(x[0], &a, keep),
            ));
            let a = axes.clone();
            cases.push(case(
                format!("max {axes:?} keep={keep} ties"),
                vec![ties(rng, &[2, 3, 4])],
                EW,
                move |g, x| g.max(x[0], &a, keep),
            ));
        }
    }
    let n = with_nans(uniform(rng, &[3, 5], -1.0, 1.0), 4);
    cases.push(case("max NaN", vec![n], EW, |g, x| {
        g.max(x[0], &[1], false)
    }));
    let x = uniform(rng, &[3, 700], -1.0, 1.0);
    cases.push(case("sum of a long row", vec![x], SUM, |g, x| {
        g.sum(x[0], &[1], false)
    }));
    let x = uniform(rng, &[5, 7], -3.0, 3.0);
    cases.push(case("softmax", vec![x], SUM, |g, x| g.softmax(x[0])));
}

fn indices(rng: &mut StdRng, cases: &mut Vec<Case>) {
    let n = with_nans(uniform(rng, &[3, 5], -1.0, 1.0), 4);
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
    cases.push(case(
        "one_hot",
        vec![ints(rng, &[2, 5], -1, 6)],
        0.0,
        |g, x| g.one_hot(x[0], 5),
    ));
}

fn layout(rng: &mut StdRng, cases: &mut Vec<Case>) {
    let x = uniform(rng, &[2, 3, 4], -2.0, 2.0);
    cases.push(case("reshape", vec![x.clone()], EW, |g, x| {
        g.reshape(x[0], [4, 6])
    }));
    cases.push(case("transpose", vec![x.clone()], EW, |g, x| {
        g.transpose(x[0], &[2, 0, 1])
    }));
    let v = uniform(rng, &[3, 1], -1.0, 1.0);
    cases.push(case("broadcast", vec![v], EW, |g, x| {
        g.broadcast(x[0], [2, 3, 4])
    }));
    cases.push(case("slice", vec![x.clone()], EW, |g, x| {
        g.slice(x[0], &[1, 0, 1], &[2, 3, 3])
    }));
    cases.push(case("pad", vec![x.clone()], EW, |g, x| {
        g.pad(x[0], &[1, 0, 2], &[0, 2, 1])
    }));
    let y = uniform(rng, &[2, 2, 4], -1.0, 1.0);
    cases.push(case("concat", vec![x.clone(), y], EW, |g, x| {
        g.concat(&[x[0], x[1]], 1)
    }));
    cases.push(case("stop_gradient", vec![x.clone()], EW, |g, x| {
        let s = g.stop_gradient(x[0])?;
        g.mul(s, x[0])
    }));
    let c = HostTensor::f32([2, 3], vec![1.0, -2.5, 3.25, f32::NAN, 1e-30, -0.0]).unwrap();
    cases.push(case("constant", vec![x], SUM, move |g, x| {
        let k = g.constant(c.clone());
        let s = g.sum(x[0], &[2], false)?;
        g.add(s, k)
    }));
}

fn random(cases: &mut Vec<Case>) {
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
        cases.push(no_grad(case(
            format!("random f32 seed {seed}"),
            vec![s],
            0.0,
            |g, x| g.random_uniform(x[0], [5, 9]),
        )));
    }
}
