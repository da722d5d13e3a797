//! Every gradient rule of `hasten_tensor::grad`, run on the CPU backend (all optimisations on,
//! and the reference options), against candle-core's autograd and against central finite
//! differences of hasten's own forward graph.
//!
//! Each case is a function `y = f(x0, x1, …)`; its scalar loss is `sum(y · r)` for a fixed
//! random `r` of `y`'s shape, so every output element contributes to every gradient.

mod common;

use common::{
    assert_no_failures, bools, broadcast_dims, candle_binary, candle_conv, candle_matmul_t,
    candle_reduce, candle_select, candle_unary, candle_values, compare, cpu_option_sets,
    dilated_extent, distinct, every, grid, host_values, matmul_variants, nchw_to_nhwc,
    nhwc_to_nchw, pad_spatial, resolve_pads, seeded, signed, unary_input, uniform, Build,
    MatmulSize, PoolCase, Reference, BINARY_OPS, BROADCAST_PAIRS,
};
use hasten_tensor::candle_core::{self as candle, DType as CDType, Device, Tensor, Var};
use hasten_tensor::ir::{BinaryOp, Op, PaddingMode, ReduceOp, UnaryOp};
use hasten_tensor::{
    grad, Backend, CpuBackend, CpuOptions, DType, Executable, Graph, HostSlice, HostTensor, NodeId,
    Shape,
};
use rand::rngs::StdRng;
use rand::Rng;

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// hasten against candle (both analytic, both f32).
const CANDLE_TOL: f64 = 1e-4;
/// hasten against finite differences.
const FD_TOL: f64 = 2e-2;
/// The least scale of the absolute term of a comparison (gradients may all be tiny).
const SCALE_FLOOR: f64 = 1e-3;
/// The spacing of [`distinct`] values: far more than a finite-difference step, so maxima stay
/// unique under one.
const DISTINCT_STEP: f32 = 0.05;
/// The finite-difference step.
const EPS: f32 = 1e-2;

/// One gradient check: `build` (hasten) and `reference` (candle) compute the same `y` from the
/// differentiated values `wrt`.
struct Case {
    name: String,
    wrt: Vec<HostTensor>,
    build: Build,
    reference: Reference,
    /// The values are parameters (state) rather than inputs.
    params: bool,
    /// Whether finite differences apply (not for `stop_gradient`, whose forward does depend on
    /// the value).
    fd: bool,
    eps: f32,
}

fn case(
    name: impl Into<String>,
    wrt: Vec<HostTensor>,
    build: impl Fn(&mut Graph, &[NodeId]) -> hasten_tensor::Result<NodeId> + 'static,
    reference: impl Fn(&[Tensor]) -> candle::Result<Tensor> + 'static,
) -> Case {
    Case {
        name: name.into(),
        wrt,
        build: Box::new(build),
        reference: Box::new(reference),
        params: false,
        fd: true,
        eps: EPS,
    }
}

/// Finite differences see through `stop_gradient`: such cases are checked against candle only.
fn without_fd(mut case: Case) -> Case {
    case.fd = false;
    case
}

/// The leaves `x0, x1, …` holding the case's values.
fn leaves(g: &mut Graph, case: &Case) -> hasten_tensor::Result<Vec<NodeId>> {
    case.wrt
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let name = format!("x{i}");
            if case.params {
                g.parameter(&name, t.shape.clone(), t.dtype())
            } else {
                g.input(&name, t.shape.clone(), t.dtype())
            }
        })
        .collect()
}

/// Feeds `values` (as state or inputs) and runs one step.
fn feed_and_run(
    exe: &mut dyn Executable,
    params: bool,
    values: &[&[f32]],
) -> hasten_tensor::Result<()> {
    if params {
        for (i, v) in values.iter().enumerate() {
            exe.write_state(&format!("x{i}"), HostSlice::F32(v))?;
        }
        exe.run(&[])
    } else {
        let slices: Vec<_> = values.iter().map(|v| HostSlice::F32(v)).collect();
        exe.run(&slices)
    }
}

fn f32s(t: &HostTensor) -> &[f32] {
    t.as_f32().expect("f32 tensor")
}

/// hasten's gradients of `sum(y · r)`, from a graph compiled with `options`.
fn hasten_grads(
    case: &Case,
    r: &HostTensor,
    options: CpuOptions,
) -> hasten_tensor::Result<Vec<Vec<f64>>> {
    let mut g = Graph::new();
    let xs = leaves(&mut g, case)?;
    let y = (case.build)(&mut g, &xs)?;
    let rc = g.constant(r.clone());
    let weighted = g.mul(y, rc)?;
    let axes: Vec<usize> = (0..r.shape.rank()).collect();
    let loss = if axes.is_empty() {
        weighted
    } else {
        g.sum(weighted, &axes, false)?
    };
    let grads = grad(&mut g, loss, &xs)?;
    for (i, &d) in grads.iter().enumerate() {
        g.output(&format!("d{i}"), d)?;
    }
    let mut exe = CpuBackend::with_options(options).compile(&g)?;
    let values: Vec<&[f32]> = case.wrt.iter().map(f32s).collect();
    feed_and_run(exe.as_mut(), case.params, &values)?;
    (0..xs.len())
        .map(|i| {
            let d = exe.output(&format!("d{i}"))?;
            assert_eq!(
                d.shape, case.wrt[i].shape,
                "gradient {i} has the wrong shape"
            );
            Ok(host_values(&d))
        })
        .collect()
}

/// The forward graph of a case, compiled with the reference options, and `y`'s shape.
fn forward(case: &Case) -> hasten_tensor::Result<(Box<dyn Executable>, Shape)> {
    let mut g = Graph::new();
    let xs = leaves(&mut g, case)?;
    let y = (case.build)(&mut g, &xs)?;
    let shape = g.shape(y)?.clone();
    g.output("y", y)?;
    let exe = CpuBackend::with_options(CpuOptions::reference()).compile(&g)?;
    Ok((exe, shape))
}

/// Central differences of `sum(y · r)` (accumulated in f64) for every element of every value.
fn finite_differences(
    case: &Case,
    exe: &mut dyn Executable,
    r: &[f32],
) -> hasten_tensor::Result<Vec<Vec<f64>>> {
    let mut values: Vec<Vec<f32>> = case.wrt.iter().map(|t| f32s(t).to_vec()).collect();
    let mut loss = |values: &[Vec<f32>]| -> hasten_tensor::Result<f64> {
        let refs: Vec<&[f32]> = values.iter().map(|v| v.as_slice()).collect();
        feed_and_run(exe, case.params, &refs)?;
        let y = exe.output("y")?;
        Ok(f32s(&y)
            .iter()
            .zip(r)
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum())
    };
    let mut grads = Vec::new();
    for i in 0..values.len() {
        let mut gi = Vec::with_capacity(values[i].len());
        for j in 0..values[i].len() {
            let x = values[i][j];
            values[i][j] = x + case.eps;
            let up = loss(&values)?;
            values[i][j] = x - case.eps;
            let down = loss(&values)?;
            values[i][j] = x;
            // The step actually taken, after rounding to f32.
            let h = (x + case.eps) as f64 - (x - case.eps) as f64;
            gi.push((up - down) / h);
        }
        grads.push(gi);
    }
    Ok(grads)
}

/// candle's gradients of `sum(y · r)`.
fn candle_grads(case: &Case, r: &HostTensor) -> candle::Result<Vec<Vec<f64>>> {
    let vars = case
        .wrt
        .iter()
        .map(|t| Var::from_tensor(&t.to_candle().expect("to_candle")))
        .collect::<candle::Result<Vec<_>>>()?;
    let xs: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = (case.reference)(&xs)?;
    let rc = r.to_candle().expect("to_candle");
    if y.dims() != rc.dims() {
        candle::bail!("candle's y is {:?}, hasten's {:?}", y.dims(), rc.dims());
    }
    let store = y.mul(&rc)?.sum_all()?.backward()?;
    xs.iter()
        .map(|x| match store.get(x) {
            Some(d) => candle_values(d),
            None => Ok(vec![0.0; x.elem_count()]),
        })
        .collect()
}

/// Runs every case and fails with the list of all mismatches.
fn check(cases: Vec<Case>, rng: &mut StdRng) {
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(e) = check_case(case, rng) {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert_no_failures(&failures, cases.len(), "cases");
}

fn check_case(case: &Case, rng: &mut StdRng) -> Result<(), String> {
    let (mut exe, y_shape) = forward(case).map_err(|e| format!("hasten forward: {e}"))?;
    let r = uniform(rng, y_shape.dims(), -1.0, 1.0);
    let want = candle_grads(case, &r).map_err(|e| format!("candle: {e}"))?;
    let fd = if case.fd {
        Some(finite_differences(case, exe.as_mut(), f32s(&r)).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let mut errors = Vec::new();
    for (label, options) in cpu_option_sets() {
        let got = hasten_grads(case, &r, options).map_err(|e| format!("hasten grad: {e}"))?;
        for (i, gi) in got.iter().enumerate() {
            let dims = case.wrt[i].shape.dims();
            if let Err(e) = compare(gi, &want[i], dims, CANDLE_TOL, SCALE_FLOOR) {
                errors.push(format!("d/dx{i} [{label}] vs candle: {e}"));
            }
            if let Some(fd) = &fd {
                if let Err(e) = compare(gi, &fd[i], dims, FD_TOL, SCALE_FLOOR) {
                    errors.push(format!("d/dx{i} [{label}] vs finite differences: {e}"));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n    "))
    }
}

// ---------------------------------------------------------------------------------------------
// Elementwise
// ---------------------------------------------------------------------------------------------

#[test]
fn unary_ops() {
    let mut rng = seeded(101);
    // (op, |x| range, random sign)
    let ops: [(UnaryOp, (f32, f32), bool); 11] = [
        (UnaryOp::Neg, (0.0, 2.0), true),
        (UnaryOp::Exp, (0.0, 1.0), true),
        (UnaryOp::Log, (0.5, 2.0), false),
        (UnaryOp::Sqrt, (0.5, 2.0), false),
        (UnaryOp::Rsqrt, (0.5, 2.0), false),
        (UnaryOp::Relu, (0.2, 2.0), true),
        (UnaryOp::Sigmoid, (0.0, 3.0), true),
        (UnaryOp::Tanh, (0.0, 2.0), true),
        (UnaryOp::Abs, (0.2, 2.0), true),
        (UnaryOp::Square, (0.0, 2.0), true),
        (UnaryOp::Recip, (0.5, 2.0), true),
    ];
    let mut cases = Vec::new();
    for (op, range, sign) in ops {
        let reference = candle_unary(op);
        for shape in [&[3, 4][..], &[]] {
            let x = unary_input(&mut rng, shape, range, sign);
            cases.push(case(
                format!("{op:?} {shape:?}"),
                vec![x],
                move |g, x| g.unary(op, x[0]),
                move |x| reference(&x[0]),
            ));
        }
    }
    check(cases, &mut rng);
}

#[test]
fn binary_ops() {
    let mut rng = seeded(102);
    let pairs: Vec<_> = BROADCAST_PAIRS
        .into_iter()
        .chain([(&[1, 3][..], &[2, 1, 1][..])])
        .collect();
    let mut cases = Vec::new();
    for op in BINARY_OPS {
        let reference = candle_binary(op);
        for &(sa, sb) in &pairs {
            let (a, b) = match op {
                BinaryOp::Div => (
                    uniform(&mut rng, sa, -2.0, 2.0),
                    signed(&mut rng, sb, 0.5, 2.0),
                ),
                BinaryOp::Pow => (
                    uniform(&mut rng, sa, 0.5, 2.0),
                    uniform(&mut rng, sb, -1.5, 1.5),
                ),
                BinaryOp::Max | BinaryOp::Min => {
                    // Grids 0.1 apart offset by half a step: operands never come within 0.05
                    // of each other, far more than a finite-difference step.
                    (
                        grid(&mut rng, sa, 15, 0.1, 0.05),
                        grid(&mut rng, sb, 15, 0.1, 0.0),
                    )
                }
                _ => (
                    uniform(&mut rng, sa, -2.0, 2.0),
                    uniform(&mut rng, sb, -2.0, 2.0),
                ),
            };
            cases.push(case(
                format!("{op:?} {sa:?} {sb:?}"),
                vec![a, b],
                move |g, x| g.binary(op, x[0], x[1]),
                move |x| reference(&x[0], &x[1]),
            ));
        }
    }
    check(cases, &mut rng);
}

#[test]
fn select() {
    let mut rng = seeded(103);
    let triples: [(&[usize], &[usize], &[usize]); 4] = [
        (&[3, 4], &[3, 4], &[4]),
        (&[3, 1], &[1, 4], &[]),
        (&[2, 3, 4], &[3, 1], &[2, 1, 4]),
        (&[4], &[3, 4], &[3, 1]),
    ];
    let mut cases = Vec::new();
    for (sc, st, sf) in triples {
        let cond = bools(&mut rng, sc);
        let cond_candle = cond.to_candle().unwrap();
        let out = broadcast_dims(&[sc, st, sf]);
        let wrt = vec![
            uniform(&mut rng, st, -2.0, 2.0),
            uniform(&mut rng, sf, -2.0, 2.0),
        ];
        cases.push(case(
            format!("select {sc:?} {st:?} {sf:?}"),
            wrt,
            move |g, x| {
                let c = g.constant(cond.clone());
                g.select(c, x[0], x[1])
            },
            move |x| candle_select(&cond_candle, &x[0], &x[1], &out),
        ));
    }
    check(cases, &mut rng);
}

// ---------------------------------------------------------------------------------------------
// Matrix multiplication, convolution, pooling
// ---------------------------------------------------------------------------------------------

#[test]
fn matmul() {
    let mut rng = seeded(104);
    // (batch dims, m, k, n)
    let sizes: [MatmulSize; 3] = [(&[], 3, 4, 5), (&[2], 3, 4, 2), (&[], 1, 3, 1)];
    let mut cases = Vec::new();
    for (name, operands, ta, tb) in matmul_variants(&mut rng, &sizes) {
        cases.push(case(
            name,
            operands,
            move |g, x| g.matmul_t(x[0], x[1], ta, tb),
            move |x| candle_matmul_t(&x[0], &x[1], ta, tb),
        ));
    }
    check(cases, &mut rng);
}

/// A convolution gradient case: input dims, kernel, output channels, stride, padding and
/// dilation.
type ConvCase = (
    [usize; 4],
    [usize; 2],
    usize,
    [usize; 2],
    PaddingMode,
    [usize; 2],
);

#[test]
fn conv2d() {
    let mut rng = seeded(105);
    use PaddingMode::{Same, Valid};
    let convs: [ConvCase; 10] = [
        ([2, 7, 7, 2], [3, 3], 3, [2, 2], Valid, [1, 1]),
        ([2, 6, 6, 2], [3, 3], 3, [1, 1], Same, [1, 1]),
        ([1, 7, 7, 3], [3, 3], 2, [2, 2], Same, [1, 1]),
        ([2, 6, 6, 2], [2, 2], 2, [1, 1], Same, [1, 1]),
        ([1, 6, 6, 2], [4, 4], 2, [2, 2], Same, [1, 1]),
        ([1, 8, 8, 2], [3, 3], 2, [1, 1], Valid, [2, 2]),
        ([1, 7, 7, 2], [3, 3], 3, [1, 1], Same, [2, 2]),
        ([2, 5, 5, 3], [1, 1], 2, [1, 1], Valid, [1, 1]),
        ([1, 7, 6, 2], [3, 2], 3, [2, 1], Same, [1, 2]),
        ([2, 6, 8, 2], [2, 3], 2, [1, 2], Valid, [2, 1]),
    ];
    let mut cases = Vec::new();
    let conv_case = |rng: &mut StdRng, (x, [kh, kw], o, s, mode, d): ConvCase| {
        let p = resolve_pads(mode, (x[1], x[2]), dilated_extent([kh, kw], d), s);
        let wrt = vec![
            uniform(rng, &x, -1.0, 1.0),
            uniform(rng, &[kh, kw, x[3], o], -1.0, 1.0),
        ];
        case(
            format!("conv2d {x:?} k{kh}x{kw} o{o} s{s:?} d{d:?} {mode:?} pads {p:?}"),
            wrt,
            move |g, x| g.conv2d(x[0], x[1], s, mode, d),
            move |x| candle_conv(&x[0], &x[1], p, s, d),
        )
    };
    for c in convs {
        cases.push(conv_case(&mut rng, c));
    }
    // Large enough that the kernels process one image per im2col slice; too large for finite
    // differences.
    cases.push(without_fd(conv_case(
        &mut rng,
        ([3, 48, 48, 40], [5, 5], 4, [1, 1], Same, [1, 1]),
    )));
    check(cases, &mut rng);
}

/// Pooling of NCHW `x` from candle ops that all have gradients: each window tap is gathered
/// with `index_select`; padding never wins a max and is not counted in an average. (candle's
/// own `max_pool2d` backward divides each window's gradient by the window size, so it is not
/// used; its `avg_pool2d` is, where windows tile the image.)
fn candle_pool(
    x: &Tensor,
    window: [usize; 2],
    stride: [usize; 2],
    p: [usize; 4],
    max: bool,
) -> candle::Result<Tensor> {
    if !max && window == stride && p == [0; 4] {
        return x.avg_pool2d_with_stride((window[0], window[1]), (stride[0], stride[1]));
    }
    let (_, _, h, w) = x.dims4()?;
    let xp = pad_spatial(x, p, if max { -1e9 } else { 0.0 })?;
    let oh = (h + p[0] + p[1] - window[0]) / stride[0] + 1;
    let ow = (w + p[2] + p[3] - window[1]) / stride[1] + 1;
    let mut acc: Option<Tensor> = None;
    for ky in 0..window[0] {
        for kx in 0..window[1] {
            let tap = every(&every(&xp, 2, ky, stride[0], oh)?, 3, kx, stride[1], ow)?;
            acc = Some(match acc {
                None => tap,
                Some(a) if max => a.maximum(&tap)?,
                Some(a) => (a + tap)?,
            });
        }
    }
    let acc = acc.expect("a non-empty window");
    if max {
        return Ok(acc);
    }
    // Cells of each window inside the image.
    let inside = |o: usize, axis: usize, pad: usize, size: usize| {
        (0..window[axis])
            .filter(|k| (pad..pad + size).contains(&(o * stride[axis] + k)))
            .count()
    };
    let counts: Vec<f32> = (0..oh * ow)
        .map(|i| (inside(i / ow, 0, p[0], h) * inside(i % ow, 1, p[2], w)) as f32)
        .collect();
    acc.broadcast_div(&Tensor::from_vec(counts, (1, 1, oh, ow), x.device())?)
}

#[test]
fn pool2d() {
    let mut rng = seeded(106);
    use PaddingMode::{Same, Valid};
    let pools: [PoolCase; 8] = [
        ([2, 6, 6, 2], [2, 2], [2, 2], Valid),
        ([1, 5, 5, 2], [2, 2], [2, 2], Same),
        ([1, 6, 6, 2], [3, 3], [1, 1], Valid),
        ([1, 7, 7, 2], [3, 3], [2, 2], Same),
        ([2, 5, 5, 1], [3, 3], [1, 1], Same),
        ([1, 7, 7, 2], [3, 3], [2, 2], Valid),
        ([1, 5, 7, 2], [2, 3], [1, 2], Same),
        ([2, 6, 4, 1], [3, 2], [2, 1], Valid),
    ];
    let mut cases = Vec::new();
    for (dims, win, s, mode) in pools {
        let p = resolve_pads(mode, (dims[1], dims[2]), win, s);
        for max in [true, false] {
            let x = if max {
                distinct(&mut rng, &dims, DISTINCT_STEP)
            } else {
                uniform(&mut rng, &dims, -1.0, 1.0)
            };
            let kind = if max { "max_pool2d" } else { "avg_pool2d" };
            cases.push(case(
                format!("{kind} {dims:?} w{win:?} s{s:?} {mode:?} pads {p:?}"),
                vec![x],
                move |g, x| {
                    if max {
                        g.max_pool2d(x[0], win, s, mode)
                    } else {
                        g.avg_pool2d(x[0], win, s, mode)
                    }
                },
                move |x| nchw_to_nhwc(&candle_pool(&nhwc_to_nchw(&x[0])?, win, s, p, max)?),
            ));
        }
    }
    check(cases, &mut rng);
}

// ---------------------------------------------------------------------------------------------
// Reductions and layout
// ---------------------------------------------------------------------------------------------

#[test]
fn reduce() {
    let mut rng = seeded(107);
    let reductions: [(ReduceOp, &[usize], bool); 10] = [
        (ReduceOp::Sum, &[1], false),
        (ReduceOp::Sum, &[0, 2], true),
        (ReduceOp::Sum, &[0, 1, 2], false),
        (ReduceOp::Mean, &[2], false),
        (ReduceOp::Mean, &[0, 1], true),
        (ReduceOp::Mean, &[0, 1, 2], false),
        (ReduceOp::Max, &[1], false),
        (ReduceOp::Max, &[0, 2], true),
        (ReduceOp::Max, &[2], true),
        (ReduceOp::Max, &[0, 1, 2], false),
    ];
    let mut cases = Vec::new();
    for (op, axes, keep) in reductions {
        cases.push(case(
            format!("{op:?} [2,3,4] axes {axes:?} keep_dims={keep}"),
            vec![distinct(&mut rng, &[2, 3, 4], DISTINCT_STEP)],
            move |g, x| g.reduce(op, x[0], axes, keep),
            move |x| candle_reduce(&x[0], op, axes, keep),
        ));
    }
    check(cases, &mut rng);
}

#[test]
fn layout_ops() {
    let mut rng = seeded(108);
    let mut u = |shape: &[usize]| uniform(&mut rng, shape, -2.0, 2.0);
    let cases = vec![
        case(
            "reshape [2,3,4] -> [4,6]",
            vec![u(&[2, 3, 4])],
            |g, x| g.reshape(x[0], [4, 6]),
            |x| x[0].reshape((4, 6)),
        ),
        case(
            "transpose [2,3,4] perm [2,0,1]",
            vec![u(&[2, 3, 4])],
            |g, x| g.transpose(x[0], &[2, 0, 1]),
            |x| x[0].permute((2, 0, 1)),
        ),
        case(
            "transpose [2,3,4,5] perm [0,3,1,2]",
            vec![u(&[2, 3, 4, 5])],
            |g, x| g.transpose(x[0], &[0, 3, 1, 2]),
            |x| x[0].permute((0, 3, 1, 2)),
        ),
        case(
            "broadcast [4] -> [3,4]",
            vec![u(&[4])],
            |g, x| g.broadcast(x[0], [3, 4]),
            |x| x[0].broadcast_as((3, 4)),
        ),
        case(
            "broadcast [3,1] -> [2,3,5]",
            vec![u(&[3, 1])],
            |g, x| g.broadcast(x[0], [2, 3, 5]),
            |x| x[0].broadcast_as((2, 3, 5)),
        ),
        case(
            "broadcast [] -> [2,3]",
            vec![u(&[])],
            |g, x| g.broadcast(x[0], [2, 3]),
            |x| x[0].broadcast_as((2, 3)),
        ),
        case(
            "slice [5,6] [1,2]..[4,6]",
            vec![u(&[5, 6])],
            |g, x| g.slice(x[0], &[1, 2], &[4, 6]),
            |x| x[0].narrow(0, 1, 3)?.narrow(1, 2, 4),
        ),
        case(
            "slice [2,3,4] [0,1,1]..[2,3,3]",
            vec![u(&[2, 3, 4])],
            |g, x| g.slice(x[0], &[0, 1, 1], &[2, 3, 3]),
            |x| x[0].narrow(1, 1, 2)?.narrow(2, 1, 2),
        ),
        case(
            "pad [3,4] low [1,0] high [2,3]",
            vec![u(&[3, 4])],
            |g, x| g.pad(x[0], &[1, 0], &[2, 3]),
            |x| x[0].pad_with_zeros(0, 1, 2)?.pad_with_zeros(1, 0, 3),
        ),
        case(
            "pad [2,3,4] low [0,1,2] high [1,0,1]",
            vec![u(&[2, 3, 4])],
            |g, x| g.pad(x[0], &[0, 1, 2], &[1, 0, 1]),
            |x| {
                x[0].pad_with_zeros(0, 0, 1)?
                    .pad_with_zeros(1, 1, 0)?
                    .pad_with_zeros(2, 2, 1)
            },
        ),
        case(
            "concat [2,3] [1,3] [3,3] axis 0",
            vec![u(&[2, 3]), u(&[1, 3]), u(&[3, 3])],
            |g, x| g.concat(x, 0),
            |x| Tensor::cat(x, 0),
        ),
        case(
            "concat [2,1,4] [2,3,4] [2,2,4] axis 1",
            vec![u(&[2, 1, 4]), u(&[2, 3, 4]), u(&[2, 2, 4])],
            |g, x| g.concat(x, 1),
            |x| Tensor::cat(x, 1),
        ),
        case(
            "concat [2,3,1] [2,3,2] [2,3,3] axis 2",
            vec![u(&[2, 3, 1]), u(&[2, 3, 2]), u(&[2, 3, 3])],
            |g, x| g.concat(x, 2),
            |x| Tensor::cat(x, 2),
        ),
        // A value used twice: the contributions of both uses add up.
        case(
            "concat [x, x*x, x] axis 0",
            vec![u(&[2, 3])],
            |g, x| {
                let sq = g.mul(x[0], x[0])?;
                g.concat(&[x[0], sq, x[0]], 0)
            },
            |x| Tensor::cat(&[x[0].clone(), x[0].sqr()?, x[0].clone()], 0),
        ),
    ];
    check(cases, &mut rng);
}

#[test]
fn cast_and_stop_gradient() {
    let mut rng = seeded(109);
    // Values k + [0.2, 0.8): a finite-difference step never changes their integer part.
    let whole: Vec<f32> = (0..12)
        .map(|i| (i as f32 - 6.0) + rng.random_range(0.2..0.8))
        .collect();
    let cases = vec![
        case(
            "square(cast f32 -> f32)",
            vec![uniform(&mut rng, &[3, 4], -2.0, 2.0)],
            // `Graph::cast` skips same-dtype casts; the node itself needs `push`.
            |g, x| {
                let c = g.push(Op::Cast { to: DType::F32 }, &[x[0]])?;
                g.unary(UnaryOp::Square, c)
            },
            |x| x[0].sqr(),
        ),
        case(
            "x * cast(cast(x, i32), f32): no gradient through integers",
            vec![HostTensor::f32([3, 4], whole).unwrap()],
            |g, x| {
                let i = g.cast(x[0], DType::I32)?;
                let f = g.cast(i, DType::F32)?;
                g.mul(x[0], f)
            },
            |x| {
                let f = x[0].to_dtype(CDType::I64)?.to_dtype(CDType::F32)?;
                x[0].mul(&f.detach())
            },
        ),
        without_fd(case(
            "stop_gradient(x) * w + w",
            vec![
                uniform(&mut rng, &[3, 4], -2.0, 2.0),
                uniform(&mut rng, &[3, 4], -2.0, 2.0),
            ],
            |g, x| {
                let s = g.stop_gradient(x[0])?;
                let sw = g.mul(s, x[1])?;
                g.add(sw, x[1])
            },
            |x| x[0].detach().mul(&x[1])?.add(&x[1]),
        )),
        without_fd(case(
            "2 * stop_gradient(x): zero gradient",
            vec![uniform(&mut rng, &[2, 3], -2.0, 2.0)],
            |g, x| {
                let s = g.stop_gradient(x[0])?;
                g.scale(s, 2.0)
            },
            |x| x[0].detach().affine(2.0, 0.0),
        )),
    ];
    check(cases, &mut rng);
}

// ---------------------------------------------------------------------------------------------
// Composites: softmax, cross-entropy, a two-layer MLP
// ---------------------------------------------------------------------------------------------

fn candle_log_softmax(x: &Tensor) -> candle::Result<Tensor> {
    let last = x.rank() - 1;
    let shifted = x.broadcast_sub(&x.max_keepdim(last)?.detach())?;
    shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(last)?.log()?)
}

fn candle_one_hot(labels: &[i32], depth: usize) -> Tensor {
    let v: Vec<f32> = labels
        .iter()
        .flat_map(|&l| (0..depth).map(move |c| (c as i32 == l) as u8 as f32))
        .collect();
    Tensor::from_vec(v, (labels.len(), depth), &Device::Cpu).unwrap()
}

/// `-mean(sum(one_hot(labels) · log_softmax(logits), 1))` in hasten.
fn hasten_cross_entropy(
    g: &mut Graph,
    logits: NodeId,
    labels: &[i32],
) -> hasten_tensor::Result<NodeId> {
    let depth = g.shape(logits)?.dims()[1];
    let l = g.constant(HostTensor::i32([labels.len()], labels.to_vec())?);
    let oh = g.one_hot(l, depth)?;
    let ls = g.log_softmax(logits)?;
    let p = g.mul(oh, ls)?;
    let s = g.sum(p, &[1], false)?;
    let m = g.mean_all(s)?;
    g.neg(m)
}

fn candle_cross_entropy(logits: &Tensor, one_hot: &Tensor) -> candle::Result<Tensor> {
    candle_log_softmax(logits)?
        .mul(one_hot)?
        .sum(1)?
        .mean_all()?
        .neg()
}

#[test]
fn softmax_cross_entropy() {
    let mut rng = seeded(110);
    let mut cases = Vec::new();
    for shape in [&[2, 5][..], &[1, 4], &[2, 3, 6]] {
        for log in [false, true] {
            let name = if log { "log_softmax" } else { "softmax" };
            cases.push(case(
                format!("{name} {shape:?}"),
                vec![uniform(&mut rng, shape, -2.0, 2.0)],
                move |g, x| {
                    if log {
                        g.log_softmax(x[0])
                    } else {
                        g.softmax(x[0])
                    }
                },
                move |x| {
                    let ls = candle_log_softmax(&x[0])?;
                    if log {
                        Ok(ls)
                    } else {
                        ls.exp()
                    }
                },
            ));
        }
    }
    for batch in [1, 4] {
        let classes = 5;
        let labels: Vec<i32> = (0..batch)
            .map(|_| rng.random_range(0..classes as i32))
            .collect();
        let one_hot = candle_one_hot(&labels, classes);
        cases.push(case(
            format!("cross-entropy batch {batch} labels {labels:?}"),
            vec![uniform(&mut rng, &[batch, classes], -3.0, 3.0)],
            move |g, x| hasten_cross_entropy(g, x[0], &labels),
            move |x| candle_cross_entropy(&x[0], &one_hot),
        ));
    }
    check(cases, &mut rng);
}

#[test]
fn mlp() {
    let mut rng = seeded(111);
    let (features, hidden, classes) = (4, 8, 3);
    let mut cases = Vec::new();
    for batch in [1, 4] {
        let x = uniform(&mut rng, &[batch, features], -1.0, 1.0);
        let xc = x.to_candle().unwrap();
        let labels: Vec<i32> = (0..batch)
            .map(|_| rng.random_range(0..classes as i32))
            .collect();
        let one_hot = candle_one_hot(&labels, classes);
        let weights = vec![
            uniform(&mut rng, &[features, hidden], -1.0, 1.0),
            uniform(&mut rng, &[hidden], -0.5, 0.5),
            uniform(&mut rng, &[hidden, classes], -1.0, 1.0),
            uniform(&mut rng, &[classes], -0.5, 0.5),
        ];
        let mut c = case(
            format!("2-layer MLP batch {batch}"),
            weights,
            move |g, w| {
                let xn = g.constant(x.clone());
                let h = g.matmul(xn, w[0])?;
                let h = g.add(h, w[1])?;
                let h = g.relu(h)?;
                let logits = g.matmul(h, w[2])?;
                let logits = g.add(logits, w[3])?;
                hasten_cross_entropy(g, logits, &labels)
            },
            move |w| {
                let h = xc.matmul(&w[0])?.broadcast_add(&w[1])?.relu()?;
                let logits = h.matmul(&w[2])?.broadcast_add(&w[3])?;
                candle_cross_entropy(&logits, &one_hot)
            },
        );
        c.params = true;
        // Small enough that no hidden pre-activation crosses zero within a step.
        c.eps = 1e-3;
        cases.push(c);
    }
    check(cases, &mut rng);
}
