//! Every op's forward output on the CPU backend — with all optimisations on and with the
//! reference options — against candle-core (or, where candle has no equivalent, a small loop
//! written here) on random inputs from fixed seeds.

mod common;

use common::{
    assert_no_failures, bools, broadcast_dims, candle_binary, candle_conv, candle_matmul_t,
    candle_reduce, candle_select, candle_sigmoid, candle_unary, candle_values, compare,
    cpu_option_sets, dilated_extent, distinct, grid, host_values, ints, matmul_variants,
    nchw_to_nhwc, nhwc_to_nchw, resolve_pads, seeded, signed, unary_input, uniform, Build,
    CandleBinary, MatmulSize, PoolCase, Reference, BINARY_OPS, BROADCAST_PAIRS,
};
use hasten_tensor::candle_core::{self as candle, DType as CDType, Device, Tensor};
use hasten_tensor::ir::{BinaryOp, CompareOp, Op, Padding2d, PaddingMode, ReduceOp, UnaryOp};
use hasten_tensor::{
    Backend, CpuBackend, CpuOptions, DType, Graph, HostData, HostTensor, NodeId, Shape,
};
use rand::rngs::StdRng;

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Elementwise ops are compared at this relative tolerance, GEMM-based ones at [`GEMM_TOL`].
const EW_TOL: f64 = 1e-5;
const GEMM_TOL: f64 = 1e-4;
/// The least scale of the absolute term of a comparison.
const SCALE_FLOOR: f64 = 1.0;
/// The spacing of [`distinct`] values.
const DISTINCT_STEP: f32 = 0.25;

/// One forward check: the graph `build` makes from inputs `x0, x1, …` must equal `reference`
/// applied to the same values as candle tensors.
struct Case {
    name: String,
    inputs: Vec<HostTensor>,
    build: Build,
    reference: Reference,
    tol: f64,
}

fn case(
    name: impl Into<String>,
    inputs: Vec<HostTensor>,
    tol: f64,
    build: impl Fn(&mut Graph, &[NodeId]) -> hasten_tensor::Result<NodeId> + 'static,
    reference: impl Fn(&[Tensor]) -> candle::Result<Tensor> + 'static,
) -> Case {
    Case {
        name: name.into(),
        inputs,
        build: Box::new(build),
        reference: Box::new(reference),
        tol,
    }
}

/// Builds, compiles and runs the case's graph, returning its only output.
fn run_hasten(case: &Case, options: CpuOptions) -> hasten_tensor::Result<HostTensor> {
    let mut g = Graph::new();
    let ids = case
        .inputs
        .iter()
        .enumerate()
        .map(|(i, t)| g.input(&format!("x{i}"), t.shape.clone(), t.dtype()))
        .collect::<hasten_tensor::Result<Vec<_>>>()?;
    let y = (case.build)(&mut g, &ids)?;
    g.output("y", y)?;
    let mut exe = CpuBackend::with_options(options).compile(&g)?;
    let slices: Vec<_> = case.inputs.iter().map(|t| t.data.as_slice()).collect();
    exe.run(&slices)?;
    exe.output("y")
}

/// Runs every case with both backend settings and fails with the list of all mismatches.
fn check(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in &cases {
        let inputs: Vec<Tensor> = case
            .inputs
            .iter()
            .map(|t| t.to_candle().expect("to_candle"))
            .collect();
        let want = match (case.reference)(&inputs).and_then(|t| Ok((candle_values(&t)?, t))) {
            Ok(w) => w,
            Err(e) => {
                failures.push(format!("{}: reference failed: {e}", case.name));
                continue;
            }
        };
        for (label, options) in cpu_option_sets() {
            let result = run_hasten(case, options)
                .map_err(|e| format!("hasten error: {e}"))
                .and_then(|got| {
                    if got.shape.dims() != want.1.dims() {
                        return Err(format!(
                            "shape {:?}, candle gives {:?}",
                            got.shape.dims(),
                            want.1.dims()
                        ));
                    }
                    compare(
                        &host_values(&got),
                        &want.0,
                        want.1.dims(),
                        case.tol,
                        SCALE_FLOOR,
                    )
                });
            if let Err(e) = result {
                failures.push(format!("{} [{label}]: {e}", case.name));
            }
        }
    }
    assert_no_failures(&failures, 2 * cases.len(), "checks");
}

// ---------------------------------------------------------------------------------------------
// Random data
// ---------------------------------------------------------------------------------------------

/// Values drawn from a few levels (multiples of 0.5 in `-1..=1`), so that comparisons meet ties.
fn levels(rng: &mut StdRng, shape: &[usize]) -> HostTensor {
    grid(rng, shape, 2, 0.5, 0.0)
}

// ---------------------------------------------------------------------------------------------
// Elementwise
// ---------------------------------------------------------------------------------------------

#[test]
fn unary_ops() {
    let mut rng = seeded(1);
    // (op, |x| range, random sign)
    let ops: [(UnaryOp, (f32, f32), bool); 11] = [
        (UnaryOp::Neg, (0.0, 3.0), true),
        (UnaryOp::Exp, (0.0, 4.0), true),
        (UnaryOp::Log, (0.01, 10.0), false),
        (UnaryOp::Sqrt, (0.0, 10.0), false),
        (UnaryOp::Rsqrt, (0.01, 10.0), false),
        (UnaryOp::Relu, (0.0, 3.0), true),
        (UnaryOp::Sigmoid, (0.0, 8.0), true),
        (UnaryOp::Tanh, (0.0, 4.0), true),
        (UnaryOp::Abs, (0.0, 3.0), true),
        (UnaryOp::Square, (0.0, 3.0), true),
        (UnaryOp::Recip, (0.1, 10.0), true),
    ];
    let shapes: [&[usize]; 4] = [&[4, 33], &[1], &[], &[200, 200]];
    let mut cases = Vec::new();
    for (op, range, sign) in ops {
        let reference = candle_unary(op);
        for shape in shapes {
            let x = unary_input(&mut rng, shape, range, sign);
            cases.push(case(
                format!("{op:?} {shape:?}"),
                vec![x],
                EW_TOL,
                move |g, x| g.unary(op, x[0]),
                move |x| reference(&x[0]),
            ));
        }
    }
    check(cases);
}

/// Broadcasting shape pairs shared by the binary and comparison tests: the common ones, more,
/// and last a large one.
fn pairs() -> Vec<(&'static [usize], &'static [usize])> {
    let more: [(&[usize], &[usize]); 5] = [
        (&[5], &[]),
        (&[1, 4], &[3, 1]),
        (&[1, 3], &[1, 3]),
        (&[1, 1, 3], &[2, 1, 1]),
        (&[64, 520], &[520]),
    ];
    BROADCAST_PAIRS.into_iter().chain(more).collect()
}

#[test]
fn binary_ops() {
    let mut rng = seeded(2);
    let mut cases = Vec::new();
    for op in BINARY_OPS {
        let reference = candle_binary(op);
        for (sa, sb) in pairs() {
            let (a, b) = match op {
                BinaryOp::Div => (
                    uniform(&mut rng, sa, -3.0, 3.0),
                    signed(&mut rng, sb, 0.2, 3.0),
                ),
                BinaryOp::Pow => (
                    uniform(&mut rng, sa, 0.1, 3.0),
                    uniform(&mut rng, sb, -2.0, 2.0),
                ),
                // Ties included: max/min of equal values is that value either way.
                BinaryOp::Max | BinaryOp::Min => (levels(&mut rng, sa), levels(&mut rng, sb)),
                _ => (
                    uniform(&mut rng, sa, -3.0, 3.0),
                    uniform(&mut rng, sb, -3.0, 3.0),
                ),
            };
            cases.push(case(
                format!("{op:?} {sa:?} {sb:?}"),
                vec![a, b],
                EW_TOL,
                move |g, x| g.binary(op, x[0], x[1]),
                move |x| reference(&x[0], &x[1]),
            ));
        }
    }
    // A chain that fuses into one loop, with row, column and scalar operands.
    let inputs = vec![
        uniform(&mut rng, &[6, 40], -2.0, 2.0),
        uniform(&mut rng, &[40], -2.0, 2.0),
        uniform(&mut rng, &[6, 1], -2.0, 2.0),
        uniform(&mut rng, &[], -1.0, 1.0),
    ];
    cases.push(case(
        "fused chain sigmoid(a*b+c)/(1+exp(-|a|)) - max(a,d)",
        inputs,
        EW_TOL,
        |g, x| {
            let ab = g.mul(x[0], x[1])?;
            let s = g.add(ab, x[2])?;
            let sg = g.unary(UnaryOp::Sigmoid, s)?;
            let abs = g.unary(UnaryOp::Abs, x[0])?;
            let na = g.neg(abs)?;
            let e = g.exp(na)?;
            let one = g.scalar(1.0);
            let den = g.add(one, e)?;
            let q = g.div(sg, den)?;
            let m = g.binary(BinaryOp::Max, x[0], x[3])?;
            g.sub(q, m)
        },
        |x| {
            let s = x[0].broadcast_mul(&x[1])?.broadcast_add(&x[2])?;
            let den = x[0].abs()?.neg()?.exp()?.affine(1.0, 1.0)?;
            let q = candle_sigmoid(&s)?.div(&den)?;
            q.sub(&x[0].broadcast_maximum(&x[3])?)
        },
    ));
    check(cases);
}

#[test]
fn compare_ops() {
    let mut rng = seeded(3);
    let ops: [(CompareOp, CandleBinary); 6] = [
        (CompareOp::Eq, |a, b| a.broadcast_eq(b)),
        (CompareOp::Ne, |a, b| a.broadcast_ne(b)),
        (CompareOp::Lt, |a, b| a.broadcast_lt(b)),
        (CompareOp::Le, |a, b| a.broadcast_le(b)),
        (CompareOp::Gt, |a, b| a.broadcast_gt(b)),
        (CompareOp::Ge, |a, b| a.broadcast_ge(b)),
    ];
    let mut cases = Vec::new();
    for (op, reference) in ops {
        for (sa, sb) in &pairs()[..10] {
            for int in [false, true] {
                let (a, b) = if int {
                    (ints(&mut rng, sa, -2, 2), ints(&mut rng, sb, -2, 2))
                } else {
                    (levels(&mut rng, sa), levels(&mut rng, sb))
                };
                let kind = if int { "i32" } else { "f32" };
                cases.push(case(
                    format!("{op:?} {kind} {sa:?} {sb:?}"),
                    vec![a, b],
                    0.0,
                    move |g, x| g.compare(op, x[0], x[1]),
                    // Compared as f32 so candle needs no integer comparison kernels.
                    move |x| {
                        let (a, b) = (x[0].to_dtype(CDType::F32)?, x[1].to_dtype(CDType::F32)?);
                        reference(&a, &b)
                    },
                ));
            }
        }
    }
    check(cases);
}

#[test]
fn select() {
    let mut rng = seeded(4);
    let triples: [(&[usize], &[usize], &[usize]); 6] = [
        (&[3, 4], &[3, 4], &[3, 4]),
        (&[3, 4], &[4], &[3, 1]),
        (&[3, 1], &[3, 4], &[]),
        (&[2, 3, 4], &[3, 1], &[4]),
        (&[1, 4], &[3, 1], &[3, 4]),
        (&[], &[2, 5], &[5]),
    ];
    let mut cases = Vec::new();
    for (sc, st, sf) in triples {
        let inputs = vec![
            bools(&mut rng, sc),
            uniform(&mut rng, st, -2.0, 2.0),
            uniform(&mut rng, sf, -2.0, 2.0),
        ];
        let out = broadcast_dims(&[sc, st, sf]);
        cases.push(case(
            format!("select {sc:?} {st:?} {sf:?}"),
            inputs,
            0.0,
            |g, x| g.select(x[0], x[1], x[2]),
            move |x| candle_select(&x[0], &x[1], &x[2], &out),
        ));
    }
    // Comparison and select fused into one loop.
    let inputs = vec![
        uniform(&mut rng, &[5, 8], -2.0, 2.0),
        uniform(&mut rng, &[8], -2.0, 2.0),
        uniform(&mut rng, &[5, 1], -2.0, 2.0),
    ];
    cases.push(case(
        "fused select(a > c, a*b, c)",
        inputs,
        EW_TOL,
        |g, x| {
            let cond = g.compare(CompareOp::Gt, x[0], x[2])?;
            let ab = g.mul(x[0], x[1])?;
            let c = g.broadcast(x[2], [5, 8])?;
            g.select(cond, ab, c)
        },
        |x| {
            let c = x[2].broadcast_as((5, 8))?.contiguous()?;
            let cond = x[0].gt(&c)?;
            cond.where_cond(&x[0].broadcast_mul(&x[1])?, &c)
        },
    ));
    check(cases);
}

// ---------------------------------------------------------------------------------------------
// Matrix multiplication and convolution
// ---------------------------------------------------------------------------------------------

#[test]
fn matmul() {
    let mut rng = seeded(5);
    // (batch dims, m, k, n)
    let sizes: [MatmulSize; 10] = [
        (&[], 5, 7, 3),
        (&[], 1, 9, 4),
        (&[], 6, 8, 1),
        (&[], 1, 5, 1),
        (&[], 4, 1, 6),
        (&[2], 5, 7, 3),
        (&[1], 4, 6, 5),
        (&[3], 33, 65, 17),
        (&[], 70, 300, 90),
        (&[], 3, 5, 2100),
    ];
    let mut cases = Vec::new();
    for (name, operands, ta, tb) in matmul_variants(&mut rng, &sizes) {
        cases.push(case(
            name,
            operands,
            GEMM_TOL,
            move |g, x| g.matmul_t(x[0], x[1], ta, tb),
            move |x| candle_matmul_t(&x[0], &x[1], ta, tb),
        ));
    }
    check(cases);
}

struct ConvCase {
    x: [usize; 4],
    kernel: [usize; 2],
    out: usize,
    stride: [usize; 2],
    padding: PaddingMode,
    dilation: [usize; 2],
}

#[test]
fn conv2d() {
    let mut rng = seeded(6);
    let c = |x, kernel, out, s: usize, padding, d: usize| ConvCase {
        x,
        kernel,
        out,
        stride: [s, s],
        padding,
        dilation: [d, d],
    };
    use PaddingMode::{Same, Valid};
    let explicit = PaddingMode::Explicit(Padding2d {
        top: 1,
        bottom: 2,
        left: 0,
        right: 1,
    });
    let convs = [
        c([2, 7, 7, 3], [3, 3], 4, 1, Valid, 1),
        c([2, 7, 7, 3], [3, 3], 4, 1, Same, 1),
        c([2, 8, 7, 3], [3, 3], 5, 2, Same, 1),
        c([2, 8, 8, 2], [3, 3], 3, 2, Valid, 1),
        c([1, 6, 6, 4], [2, 2], 3, 1, Same, 1),
        c([2, 9, 9, 3], [4, 4], 2, 2, Same, 1),
        c([2, 9, 8, 2], [3, 3], 3, 1, Valid, 2),
        c([1, 9, 9, 2], [3, 3], 4, 1, Same, 2),
        c([1, 10, 10, 1], [5, 5], 8, 2, Valid, 1),
        c([2, 12, 12, 16], [3, 3], 32, 1, Same, 1),
        c([4, 16, 16, 8], [3, 3], 16, 2, Same, 1),
        c([2, 5, 6, 7], [1, 1], 5, 1, Valid, 1),
        c([2, 7, 7, 3], [1, 1], 4, 2, Valid, 1),
        c([1, 6, 7, 3], [3, 2], 4, 1, explicit, 1),
        c([1, 1, 1, 3], [1, 1], 2, 1, Valid, 1),
        // Each image's patch matrix exceeds half the im2col bound: one image per slice.
        c([3, 48, 48, 40], [5, 5], 4, 1, Same, 1),
        // Per-axis strides and dilations.
        ConvCase {
            x: [2, 9, 8, 3],
            kernel: [3, 2],
            out: 4,
            stride: [2, 1],
            padding: Same,
            dilation: [1, 2],
        },
        ConvCase {
            x: [1, 7, 10, 2],
            kernel: [2, 3],
            out: 3,
            stride: [1, 3],
            padding: Valid,
            dilation: [2, 1],
        },
    ];
    let mut cases = Vec::new();
    for cc in convs {
        let [n, h, w, ch] = cc.x;
        let [kh, kw] = cc.kernel;
        let (s, d, mode) = (cc.stride, cc.dilation, cc.padding);
        let pads = resolve_pads(mode, (h, w), dilated_extent(cc.kernel, d), s);
        let inputs = vec![
            uniform(&mut rng, &[n, h, w, ch], -1.0, 1.0),
            uniform(&mut rng, &[kh, kw, ch, cc.out], -1.0, 1.0),
        ];
        cases.push(case(
            format!(
                "conv2d x{:?} k{kh}x{kw} o{} s{s:?} d{d:?} {mode:?} -> pads {pads:?}",
                cc.x, cc.out
            ),
            inputs,
            GEMM_TOL,
            move |g, x| g.conv2d(x[0], x[1], s, mode, d),
            move |x| candle_conv(&x[0], &x[1], pads, s, d),
        ));
    }
    check(cases);
}

// ---------------------------------------------------------------------------------------------
// Pooling
// ---------------------------------------------------------------------------------------------

/// Pooling over NHWC written as plain loops: padded cells never win a max and are not counted
/// in an average.
fn pool_loop(
    x: &Tensor,
    window: [usize; 2],
    stride: [usize; 2],
    [t, b, l, r]: [usize; 4],
    max: bool,
) -> candle::Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    let xv = x.flatten_all()?.to_vec1::<f32>()?;
    let oh = (h + t + b - window[0]) / stride[0] + 1;
    let ow = (w + l + r - window[1]) / stride[1] + 1;
    let mut y = Vec::with_capacity(n * oh * ow * c);
    for img in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let mut acc = if max { f32::NEG_INFINITY } else { 0.0 };
                    let mut count = 0;
                    for ky in 0..window[0] {
                        for kx in 0..window[1] {
                            let iy = (oy * stride[0] + ky) as isize - t as isize;
                            let ix = (ox * stride[1] + kx) as isize - l as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let v = xv[((img * h + iy as usize) * w + ix as usize) * c + ch];
                            acc = if max { acc.max(v) } else { acc + v };
                            count += 1;
                        }
                    }
                    y.push(if max { acc } else { acc / count as f32 });
                }
            }
        }
    }
    Tensor::from_vec(y, (n, oh, ow, c), &Device::Cpu)
}

#[test]
fn pool2d() {
    let mut rng = seeded(7);
    use PaddingMode::{Same, Valid};
    let explicit = PaddingMode::Explicit(Padding2d {
        top: 1,
        bottom: 0,
        left: 1,
        right: 1,
    });
    let pools: [PoolCase; 11] = [
        ([2, 6, 6, 3], [2, 2], [2, 2], Valid),
        ([2, 7, 7, 2], [3, 3], [1, 1], Valid),
        ([1, 9, 8, 4], [3, 3], [2, 2], Valid),
        ([2, 6, 7, 3], [2, 3], [1, 2], Valid),
        ([2, 7, 7, 3], [2, 2], [2, 2], Valid),
        ([1, 4, 4, 1], [4, 4], [1, 1], Valid),
        ([2, 7, 7, 3], [2, 2], [2, 2], Same),
        ([1, 6, 6, 2], [3, 3], [1, 1], Same),
        ([2, 8, 7, 3], [3, 3], [2, 2], Same),
        ([1, 5, 6, 2], [3, 3], [2, 2], explicit),
        ([3, 12, 12, 16], [3, 3], [2, 2], Same),
    ];
    let mut cases = Vec::new();
    for (dims, window, stride, mode) in pools {
        let pads = resolve_pads(mode, (dims[1], dims[2]), window, stride);
        for max in [true, false] {
            let x = uniform(&mut rng, &dims, -2.0, 2.0);
            let kind = if max { "max_pool2d" } else { "avg_pool2d" };
            let (kw, st) = ((window[0], window[1]), (stride[0], stride[1]));
            cases.push(case(
                format!("{kind} {dims:?} w{window:?} s{stride:?} {mode:?} -> pads {pads:?}"),
                vec![x],
                EW_TOL,
                move |g, x| {
                    if max {
                        g.max_pool2d(x[0], window, stride, mode)
                    } else {
                        g.avg_pool2d(x[0], window, stride, mode)
                    }
                },
                move |x| {
                    if pads != [0; 4] {
                        return pool_loop(&x[0], window, stride, pads, max);
                    }
                    let xc = nhwc_to_nchw(&x[0])?;
                    let y = if max {
                        xc.max_pool2d_with_stride(kw, st)?
                    } else {
                        xc.avg_pool2d_with_stride(kw, st)?
                    };
                    nchw_to_nhwc(&y)
                },
            ));
        }
    }
    check(cases);
}

// ---------------------------------------------------------------------------------------------
// Reductions
// ---------------------------------------------------------------------------------------------

#[test]
fn reduce() {
    let mut rng = seeded(8);
    let sets: [(&[usize], &[usize]); 14] = [
        (&[2, 3, 4], &[0]),
        (&[2, 3, 4], &[1]),
        (&[2, 3, 4], &[2]),
        (&[2, 3, 4], &[0, 1]),
        (&[2, 3, 4], &[2, 0]),
        (&[2, 3, 4], &[1, 2]),
        (&[2, 3, 4], &[0, 1, 2]),
        (&[3, 1, 5, 2], &[1]),
        (&[3, 1, 5, 2], &[1, 3]),
        (&[3, 1, 5, 2], &[0, 2]),
        (&[7], &[0]),
        (&[1, 6], &[0]),
        (&[40, 300], &[0]),
        (&[40, 300], &[1]),
    ];
    let mut cases = Vec::new();
    for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
        for (shape, axes) in sets {
            for keep in [false, true] {
                let x = uniform(&mut rng, shape, -2.0, 2.0);
                // Sums of many terms are compared like dot products.
                let tol = if op == ReduceOp::Max { 0.0 } else { GEMM_TOL };
                cases.push(case(
                    format!("{op:?} {shape:?} axes {axes:?} keep_dims={keep}"),
                    vec![x],
                    tol,
                    move |g, x| g.reduce(op, x[0], axes, keep),
                    move |x| candle_reduce(&x[0], op, axes, keep),
                ));
            }
        }
    }
    check(cases);
}

// ---------------------------------------------------------------------------------------------
// Layout
// ---------------------------------------------------------------------------------------------

/// An exact check of a layout op on one input of `shape`, uniform in `-2..2`.
fn layout_case(
    rng: &mut StdRng,
    shape: &[usize],
    name: impl Into<String>,
    build: impl Fn(&mut Graph, &[NodeId]) -> hasten_tensor::Result<NodeId> + 'static,
    reference: impl Fn(&[Tensor]) -> candle::Result<Tensor> + 'static,
) -> Case {
    case(
        name,
        vec![uniform(rng, shape, -2.0, 2.0)],
        0.0,
        build,
        reference,
    )
}

#[test]
fn reshape_transpose_broadcast() {
    let mut rng = seeded(9);
    let mut cases = Vec::new();
    let reshapes: [(&[usize], &[usize]); 4] = [
        (&[2, 3, 4], &[4, 6]),
        (&[2, 3, 4], &[24]),
        (&[6], &[1, 2, 3, 1]),
        (&[2, 3, 4], &[2, 12, 1]),
    ];
    for (from, to) in reshapes {
        cases.push(layout_case(
            &mut rng,
            from,
            format!("reshape {from:?} -> {to:?}"),
            move |g, x| g.reshape(x[0], to.to_vec()),
            move |x| x[0].reshape(to),
        ));
    }
    // A reshape of a computed value (a view of an arena buffer).
    cases.push(layout_case(
        &mut rng,
        &[3, 4],
        "reshape of neg [3,4] -> [2,6]",
        |g, x| {
            let n = g.neg(x[0])?;
            g.reshape(n, [2, 6])
        },
        |x| x[0].neg()?.reshape((2, 6)),
    ));

    let perms: [(&[usize], &[usize]); 14] = [
        (&[3, 5], &[1, 0]),
        (&[64, 129], &[1, 0]),
        (&[2, 3, 4], &[0, 2, 1]),
        (&[2, 3, 4], &[1, 0, 2]),
        (&[2, 3, 4], &[1, 2, 0]),
        (&[2, 3, 4], &[2, 0, 1]),
        (&[2, 3, 4], &[2, 1, 0]),
        (&[2, 3, 4], &[0, 1, 2]),
        (&[2, 3, 4, 5], &[0, 3, 1, 2]),
        (&[2, 3, 4, 5], &[0, 2, 3, 1]),
        (&[2, 3, 4, 5], &[3, 2, 1, 0]),
        (&[2, 3, 4, 5], &[1, 0, 3, 2]),
        (&[2, 3, 4, 5], &[0, 1, 3, 2]),
        (&[2, 3, 4, 5], &[2, 0, 3, 1]),
    ];
    for (shape, perm) in perms {
        cases.push(layout_case(
            &mut rng,
            shape,
            format!("transpose {shape:?} perm {perm:?}"),
            move |g, x| g.transpose(x[0], perm),
            move |x| x[0].permute(perm)?.contiguous(),
        ));
    }
    // Layout kernels move bytes of any width: an i32 transpose.
    cases.push(case(
        "transpose i32 [3, 4, 2] perm [2, 0, 1]",
        vec![ints(&mut rng, &[3, 4, 2], -100, 100)],
        0.0,
        |g, x| g.transpose(x[0], &[2, 0, 1]),
        |x| x[0].to_dtype(CDType::F32)?.permute((2, 0, 1))?.contiguous(),
    ));

    let broadcasts: [(&[usize], &[usize]); 7] = [
        (&[4], &[3, 4]),
        (&[3, 1], &[3, 5]),
        (&[], &[2, 3]),
        (&[2, 1, 4], &[3, 2, 5, 4]),
        (&[1], &[7]),
        (&[1, 1], &[2, 3]),
        (&[3, 1, 1], &[3, 2, 2]),
    ];
    for (from, to) in broadcasts {
        cases.push(layout_case(
            &mut rng,
            from,
            format!("broadcast {from:?} -> {to:?}"),
            move |g, x| g.broadcast(x[0], to.to_vec()),
            move |x| x[0].broadcast_as(to)?.contiguous(),
        ));
    }
    cases.push(case(
        "broadcast i32 [3, 1] -> [3, 4]",
        vec![ints(&mut rng, &[3, 1], -100, 100)],
        0.0,
        |g, x| g.broadcast(x[0], [3, 4]),
        |x| {
            x[0].to_dtype(CDType::F32)?
                .broadcast_as((3, 4))?
                .contiguous()
        },
    ));
    check(cases);
}

#[test]
fn slice_pad_concat() {
    let mut rng = seeded(10);
    let mut cases = Vec::new();
    let slices: [(&[usize], &[usize], &[usize]); 5] = [
        (&[5, 6], &[1, 2], &[4, 6]),
        (&[2, 3, 4], &[0, 1, 1], &[2, 3, 3]),
        (&[4, 5, 6, 3], &[1, 0, 2, 1], &[3, 5, 5, 2]),
        (&[7], &[2], &[5]),
        (&[3, 4], &[0, 0], &[3, 4]),
    ];
    for (shape, starts, ends) in slices {
        cases.push(layout_case(
            &mut rng,
            shape,
            format!("slice {shape:?} {starts:?}..{ends:?}"),
            move |g, x| g.slice(x[0], starts, ends),
            move |x| {
                (0..starts.len()).try_fold(x[0].clone(), |t, d| {
                    t.narrow(d, starts[d], ends[d] - starts[d])
                })
            },
        ));
    }
    let pads: [(&[usize], &[usize], &[usize]); 5] = [
        (&[3, 4], &[1, 0], &[2, 3]),
        (&[2, 3, 4], &[0, 1, 2], &[1, 0, 1]),
        (&[5], &[3], &[0]),
        (&[2, 3, 4, 5], &[0, 1, 1, 0], &[0, 1, 1, 0]),
        (&[2, 2], &[0, 0], &[0, 0]),
    ];
    for (shape, low, high) in pads {
        cases.push(layout_case(
            &mut rng,
            shape,
            format!("pad {shape:?} low {low:?} high {high:?}"),
            move |g, x| g.pad(x[0], low, high),
            move |x| {
                (0..low.len()).try_fold(x[0].clone(), |t, d| t.pad_with_zeros(d, low[d], high[d]))
            },
        ));
    }
    let concats: [([&[usize]; 3], usize); 5] = [
        ([&[2, 3, 4], &[1, 3, 4], &[3, 3, 4]], 0),
        ([&[2, 1, 4], &[2, 3, 4], &[2, 2, 4]], 1),
        ([&[2, 3, 1], &[2, 3, 5], &[2, 3, 2]], 2),
        ([&[3], &[1], &[4]], 0),
        ([&[1, 2, 2, 3], &[1, 2, 2, 1], &[1, 2, 2, 2]], 3),
    ];
    for (shapes, axis) in concats {
        let inputs = shapes
            .iter()
            .map(|s| uniform(&mut rng, s, -2.0, 2.0))
            .collect();
        cases.push(case(
            format!("concat {shapes:?} axis {axis}"),
            inputs,
            0.0,
            move |g, x| g.concat(x, axis),
            move |x| Tensor::cat(x, axis),
        ));
    }
    let inputs = [&[2, 2][..], &[2, 3], &[2, 1]]
        .iter()
        .map(|s| ints(&mut rng, s, -50, 50))
        .collect();
    cases.push(case(
        "concat i32 [2,2] [2,3] [2,1] axis 1",
        inputs,
        0.0,
        |g, x| g.concat(x, 1),
        |x| Tensor::cat(x, 1)?.to_dtype(CDType::F32),
    ));
    check(cases);
}

// ---------------------------------------------------------------------------------------------
// Labels, conversions and the softmax helpers
// ---------------------------------------------------------------------------------------------

#[test]
fn one_hot_argmax_cast() {
    let mut rng = seeded(11);
    let mut cases = Vec::new();
    let labels = [
        (HostTensor::i32([7], vec![0, 4, 2, -1, 5, 3, 1]).unwrap(), 5),
        (ints(&mut rng, &[2, 3], 0, 3), 4),
        (HostTensor::i32([1], vec![0]).unwrap(), 1),
        (ints(&mut rng, &[20], -2, 11), 10),
    ];
    for (l, depth) in labels {
        cases.push(case(
            format!("one_hot {:?} depth {depth}", l.shape.dims()),
            vec![l],
            0.0,
            move |g, x| g.one_hot(x[0], depth),
            move |x| {
                let classes = Tensor::arange(0f32, depth as f32, &Device::Cpu)?;
                x[0].to_dtype(CDType::F32)?
                    .unsqueeze(x[0].rank())?
                    .broadcast_eq(&classes)?
                    .to_dtype(CDType::F32)
            },
        ));
    }
    let argmaxes: [(&[usize], usize); 5] = [
        (&[3, 4, 5], 0),
        (&[3, 4, 5], 1),
        (&[3, 4, 5], 2),
        (&[1, 7], 1),
        (&[6], 0),
    ];
    for (shape, axis) in argmaxes {
        let x = distinct(&mut rng, shape, DISTINCT_STEP);
        cases.push(case(
            format!("argmax {shape:?} axis {axis}"),
            vec![x],
            0.0,
            move |g, x| g.argmax(x[0], axis),
            move |x| x[0].argmax_keepdim(axis)?.squeeze(axis),
        ));
    }
    // Ties go to the first maximum.
    cases.push(case(
        "argmax with ties",
        vec![HostTensor::f32(
            [3, 4],
            vec![1., 3., 3., 0., 2., 2., 2., 2., -1., 5., 0., 5.],
        )
        .unwrap()],
        0.0,
        |g, x| g.argmax(x[0], 1),
        |_| Tensor::new(&[1u32, 0, 1], &Device::Cpu),
    ));

    let casts: [(HostTensor, DType); 4] = [
        (uniform(&mut rng, &[4, 5], -5.0, 5.0), DType::I32),
        (ints(&mut rng, &[3, 4], -1000, 1000), DType::F32),
        (bools(&mut rng, &[2, 5]), DType::F32),
        (
            HostTensor::new(Shape::new([6]), HostData::U8(vec![0, 1, 7, 128, 200, 255])).unwrap(),
            DType::F32,
        ),
    ];
    for (x, to) in casts {
        let from = x.dtype();
        cases.push(case(
            format!("cast {from} -> {to}"),
            vec![x],
            0.0,
            // `Graph::cast` skips same-dtype casts; these all change the dtype.
            move |g, x| g.cast(x[0], to),
            move |x| {
                if to == DType::I32 {
                    // f32 -> i32 truncates toward zero.
                    let v: Vec<f32> = x[0]
                        .flatten_all()?
                        .to_vec1::<f32>()?
                        .iter()
                        .map(|v| v.trunc())
                        .collect();
                    Tensor::from_vec(v, x[0].dims(), &Device::Cpu)
                } else {
                    x[0].to_dtype(CDType::F32)
                }
            },
        ));
    }
    // A same-dtype cast node (only reachable through `Graph::push`) is the identity.
    cases.push(case(
        "cast f32 -> f32 node",
        vec![uniform(&mut rng, &[3, 3], -2.0, 2.0)],
        0.0,
        |g, x| g.push(Op::Cast { to: DType::F32 }, &[x[0]]),
        |x| Ok(x[0].clone()),
    ));
    check(cases);
}

/// Softmax over the last axis with candle ops.
fn candle_softmax(x: &Tensor, log: bool) -> candle::Result<Tensor> {
    let last = x.rank() - 1;
    let shifted = x.broadcast_sub(&x.max_keepdim(last)?)?;
    let sum = shifted.exp()?.sum_keepdim(last)?;
    if log {
        shifted.broadcast_sub(&sum.log()?)
    } else {
        shifted.exp()?.broadcast_div(&sum)
    }
}

#[test]
fn softmax_and_log_softmax() {
    let mut rng = seeded(12);
    let mut cases = Vec::new();
    let inputs: [(&[usize], f32); 5] = [
        (&[4, 10], 0.0),
        (&[2, 3, 7], 0.0),
        (&[1, 5], 0.0),
        (&[6], 0.0),
        (&[3, 8], 80.0),
    ];
    for (shape, offset) in inputs {
        for log in [false, true] {
            let x = uniform(&mut rng, shape, offset - 4.0, offset + 4.0);
            let name = if log { "log_softmax" } else { "softmax" };
            cases.push(case(
                format!("{name} {shape:?} around {offset}"),
                vec![x],
                EW_TOL,
                move |g, x| {
                    if log {
                        g.log_softmax(x[0])
                    } else {
                        g.softmax(x[0])
                    }
                },
                move |x| candle_softmax(&x[0], log),
            ));
        }
    }
    check(cases);
}
