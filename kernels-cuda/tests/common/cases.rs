//! One small graph per op of the IR's closed set (and per interesting attribute), each with
//! the gradient of `sum(y · w)` with respect to its float inputs, so that every backward op
//! (convolution and pooling gradients included) is generated too.

use hasten_tensor::ir::{BinaryOp, CompareOp, PaddingMode, UnaryOp};
use hasten_tensor::{grad, DType, Graph, HostTensor, NodeId, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A convolution case: name, input dims, filter dims, stride, padding, dilation.
type ConvSpec = (
    &'static str,
    [usize; 4],
    [usize; 4],
    [usize; 2],
    PaddingMode,
    [usize; 2],
);

type Build = Box<dyn Fn(&mut Graph, &[NodeId]) -> Result<NodeId>>;

/// A named op test: its inputs, how to build its output from them, and the tolerance
/// against the CPU backend (1e-5; 1e-4 where the summation order differs).
pub struct Case {
    /// Name for messages.
    pub name: String,
    /// Input values.
    pub inputs: Vec<HostTensor>,
    /// Builds `y` from the input nodes.
    pub build: Build,
    /// Relative tolerance against the CPU.
    pub tol: f64,
    /// Whether to differentiate.
    pub grad: bool,
}

const EW: f64 = 1e-5;
const SUM: f64 = 1e-4;

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

fn uniform(rng: &mut StdRng, dims: &[usize], lo: f32, hi: f32) -> HostTensor {
    let n = dims.iter().product();
    HostTensor::f32(
        dims.to_vec(),
        (0..n).map(|_| rng.random_range(lo..hi)).collect(),
    )
    .unwrap()
}

fn ints(rng: &mut StdRng, dims: &[usize], lo: i32, hi: i32) -> HostTensor {
    let n = dims.iter().product();
    HostTensor::i32(
        dims.to_vec(),
        (0..n).map(|_| rng.random_range(lo..=hi)).collect(),
    )
    .unwrap()
}

fn elementwise(rng: &mut StdRng, cases: &mut Vec<Case>) {
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
    let pairs: [(&[usize], &[usize]); 4] = [
        (&[3, 4], &[3, 4]),
        (&[3, 4], &[4]),
        (&[3, 1], &[1, 4]),
        (&[], &[2, 3]),
    ];
    for op in [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Pow,
    ] {
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
    for op in [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Max,
        BinaryOp::Min,
    ] {
        let inputs = vec![
            ints(rng, &[4, 5], i32::MIN, i32::MAX),
            ints(rng, &[5], i32::MIN, i32::MAX),
        ];
        cases.push(no_grad(case(
            format!("i32 {op:?}"),
            inputs,
            0.0,
            move |g, x| g.binary(op, x[0], x[1]),
        )));
    }
    for op in [
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Lt,
        CompareOp::Le,
        CompareOp::Gt,
        CompareOp::Ge,
    ] {
        let inputs = vec![ints(rng, &[3, 4], -2, 2), ints(rng, &[4], -2, 2)];
        cases.push(no_grad(case(
            format!("i32 {op:?}"),
            inputs,
            0.0,
            move |g, x| {
                let c = g.compare(op, x[0], x[1])?;
                g.cast(c, DType::F32)
            },
        )));
        let inputs = vec![
            uniform(rng, &[3, 4], -1.0, 1.0),
            uniform(rng, &[3, 4], -1.0, 1.0),
        ];
        cases.push(case(
            format!("{op:?} then select"),
            inputs,
            EW,
            move |g, x| {
                let c = g.compare(op, x[0], x[1])?;
                g.select(c, x[0], x[1])
            },
        ));
    }
}

fn products(rng: &mut StdRng, cases: &mut Vec<Case>) {
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = if ta { [6, 4] } else { [4, 6] };
        let b = if tb { [5, 6] } else { [6, 5] };
        let inputs = vec![uniform(rng, &a, -1.0, 1.0), uniform(rng, &b, -1.0, 1.0)];
        cases.push(case(
            format!("matmul ta={ta} tb={tb}"),
            inputs,
            SUM,
            move |g, x| g.matmul_t(x[0], x[1], ta, tb),
        ));
    }
    let inputs = vec![
        uniform(rng, &[2, 3, 4], -1.0, 1.0),
        uniform(rng, &[2, 4, 5], -1.0, 1.0),
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

fn spatial(rng: &mut StdRng, cases: &mut Vec<Case>) {
    let convs: [ConvSpec; 4] = [
        (
            "conv valid",
            [2, 6, 6, 3],
            [3, 3, 3, 4],
            [1, 1],
            PaddingMode::Valid,
            [1, 1],
        ),
        (
            "conv same stride 2",
            [2, 7, 7, 2],
            [3, 3, 2, 3],
            [2, 2],
            PaddingMode::Same,
            [1, 1],
        ),
        (
            "conv dilated",
            [1, 8, 8, 2],
            [3, 3, 2, 2],
            [1, 1],
            PaddingMode::Valid,
            [2, 2],
        ),
        (
            "conv 1x1 same",
            [2, 5, 5, 4],
            [1, 1, 4, 3],
            [1, 1],
            PaddingMode::Same,
            [1, 1],
        ),
    ];
    for (name, x, w, stride, padding, dilation) in convs {
        let inputs = vec![uniform(rng, &x, -1.0, 1.0), uniform(rng, &w, -1.0, 1.0)];
        cases.push(case(name, inputs, SUM, move |g, x| {
            g.conv2d(x[0], x[1], stride, padding, dilation)
        }));
    }
    let pools: [(&str, [usize; 2], [usize; 2], PaddingMode); 3] = [
        ("2x2", [2, 2], [2, 2], PaddingMode::Valid),
        ("3x3 s2 same", [3, 3], [2, 2], PaddingMode::Same),
        ("3x3 s1 overlap", [3, 3], [1, 1], PaddingMode::Valid),
    ];
    for (name, window, stride, padding) in pools {
        let x = uniform(rng, &[2, 6, 6, 3], -1.0, 1.0);
        cases.push(case(
            format!("max pool {name}"),
            vec![x.clone()],
            EW,
            move |g, x| g.max_pool2d(x[0], window, stride, padding),
        ));
        cases.push(case(
            format!("avg pool {name}"),
            vec![x],
            EW,
            move |g, x| g.avg_pool2d(x[0], window, stride, padding),
        ));
    }
}

fn reductions(rng: &mut StdRng, cases: &mut Vec<Case>) {
    let axes: [&[usize]; 5] = [&[0], &[1], &[2], &[0, 2], &[0, 1, 2]];
    for ax in axes {
        let x = uniform(rng, &[4, 5, 6], -1.0, 1.0);
        let a = ax.to_vec();
        cases.push(case(
            format!("sum {ax:?}"),
            vec![x.clone()],
            SUM,
            move |g, x| g.sum(x[0], &a, false),
        ));
        let a = ax.to_vec();
        cases.push(case(
            format!("mean {ax:?} keep"),
            vec![x.clone()],
            SUM,
            move |g, x| g.mean(x[0], &a, true),
        ));
        let a = ax.to_vec();
        cases.push(case(format!("max {ax:?}"), vec![x], EW, move |g, x| {
            g.max(x[0], &a, false)
        }));
    }
    let x = uniform(rng, &[3, 700], -1.0, 1.0);
    cases.push(case("sum of a long row", vec![x], SUM, |g, x| {
        g.sum(x[0], &[1], false)
    }));
    let x = uniform(rng, &[5, 7], -3.0, 3.0);
    cases.push(case("softmax", vec![x], EW, |g, x| g.softmax(x[0])));
}

fn layout(rng: &mut StdRng, cases: &mut Vec<Case>) {
    let x = uniform(rng, &[2, 3, 4], -1.0, 1.0);
    cases.push(case("reshape", vec![x.clone()], EW, |g, x| {
        g.reshape(x[0], [6, 4])
    }));
    cases.push(case("transpose", vec![x.clone()], EW, |g, x| {
        g.transpose(x[0], &[2, 0, 1])
    }));
    cases.push(case("slice", vec![x.clone()], EW, |g, x| {
        g.slice(x[0], &[0, 1, 1], &[2, 3, 3])
    }));
    cases.push(case("pad", vec![x.clone()], EW, |g, x| {
        g.pad(x[0], &[1, 0, 2], &[0, 1, 1])
    }));
    cases.push(case("stop_gradient", vec![x.clone()], EW, |g, x| {
        let s = g.stop_gradient(x[0])?;
        g.mul(s, x[0])
    }));
    let y = uniform(rng, &[2, 2, 4], -1.0, 1.0);
    cases.push(case("concat", vec![x, y], EW, |g, x| {
        g.concat(&[x[0], x[1]], 1)
    }));
    let b = uniform(rng, &[3, 1], -1.0, 1.0);
    cases.push(case("broadcast", vec![b], EW, |g, x| {
        g.broadcast(x[0], [2, 3, 4])
    }));
}

fn conversions(rng: &mut StdRng, cases: &mut Vec<Case>) {
    let labels = ints(rng, &[6], -1, 5);
    cases.push(no_grad(case("one_hot", vec![labels], 0.0, |g, x| {
        g.one_hot(x[0], 4)
    })));
    let x = HostTensor::f32(
        [3, 4],
        vec![
            1.0,
            3.0,
            3.0,
            0.0,
            f32::NAN,
            1.0,
            f32::NAN,
            2.0,
            -1.0,
            -1.0,
            -2.0,
            -1.0,
        ],
    )
    .unwrap();
    cases.push(no_grad(case(
        "argmax ties and NaN",
        vec![x.clone()],
        0.0,
        |g, x| g.argmax(x[0], 1),
    )));
    cases.push(no_grad(case("argmax axis 0", vec![x], 0.0, |g, x| {
        g.argmax(x[0], 0)
    })));
    let f = HostTensor::f32([6], vec![-3.7, 2.5, f32::NAN, 3e9, -3e9, 0.0]).unwrap();
    cases.push(no_grad(case(
        "cast f32 to i32",
        vec![f.clone()],
        0.0,
        |g, x| g.cast(x[0], DType::I32),
    )));
    cases.push(no_grad(case(
        "cast f32 to bool to f32",
        vec![f.clone()],
        0.0,
        |g, x| {
            let b = g.cast(x[0], DType::Bool)?;
            g.cast(b, DType::F32)
        },
    )));
    cases.push(no_grad(case(
        "cast f32 to u8 to f32",
        vec![f],
        0.0,
        |g, x| {
            let b = g.cast(x[0], DType::U8)?;
            g.cast(b, DType::F32)
        },
    )));
    let i = ints(rng, &[5], -1000, 1000);
    cases.push(no_grad(case("cast i32 to f32", vec![i], 0.0, |g, x| {
        g.cast(x[0], DType::F32)
    })));
    let seed = HostTensor::i32([], vec![-7]).unwrap();
    cases.push(no_grad(case(
        "random_uniform i32 seed",
        vec![seed],
        0.0,
        |g, x| g.random_uniform(x[0], [3, 1000]),
    )));
    let seed = HostTensor::f32([], vec![12.9]).unwrap();
    cases.push(no_grad(case(
        "random_uniform f32 seed",
        vec![seed],
        0.0,
        |g, x| g.random_uniform(x[0], [77]),
    )));
}

/// Every case, with fixed random inputs.
pub fn all() -> Vec<Case> {
    let mut rng = StdRng::seed_from_u64(16);
    let mut cases = Vec::new();
    elementwise(&mut rng, &mut cases);
    products(&mut rng, &mut cases);
    spatial(&mut rng, &mut cases);
    reductions(&mut rng, &mut cases);
    layout(&mut rng, &mut cases);
    conversions(&mut rng, &mut cases);
    cases
}

/// The case's graph (output `y`, and `d{k}` for the gradient of `sum(y · w)` with respect to
/// float input `k`) and its inputs (`w` last, when there is a gradient).
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
        let mut rng = StdRng::seed_from_u64(61);
        inputs.push(uniform(&mut rng, &dims, -1.0, 1.0));
        let w = g.input("w", dims, DType::F32)?;
        let yw = g.mul(y, w)?;
        let all: Vec<usize> = (0..dims_rank(&g, yw)?).collect();
        let loss = g.sum(yw, &all, false)?;
        for (k, d) in grad(&mut g, loss, &floats)?.into_iter().enumerate() {
            g.output(&format!("d{k}"), d)?;
        }
    }
    Ok((g, inputs))
}

fn dims_rank(g: &Graph, id: NodeId) -> Result<usize> {
    Ok(g.shape(id)?.rank())
}
