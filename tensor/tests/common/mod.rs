//! Helpers shared by the tests that check hasten's ops against candle-core (`ops_forward`,
//! `gradients`): random inputs from fixed seeds, elementwise comparison, and candle
//! formulations of the ops candle has no direct equivalent for. Each test binary includes this
//! module with `mod common;` and uses a subset of it.

#![allow(dead_code)]

use hasten_tensor::candle_core::{self as candle, DType as CDType, Tensor};
use hasten_tensor::ir::{BinaryOp, PaddingMode, ReduceOp, UnaryOp};
use hasten_tensor::{CpuOptions, Graph, HostData, HostTensor, NodeId, Shape};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------------------------------------
// Cases and checking
// ---------------------------------------------------------------------------------------------

/// Builds a case's `y` in hasten from its leaves `x0, x1, …`.
pub type Build = Box<dyn Fn(&mut Graph, &[NodeId]) -> hasten_tensor::Result<NodeId>>;
/// Computes a case's `y` in candle from the same values.
pub type Reference = Box<dyn Fn(&[Tensor]) -> candle::Result<Tensor>>;

/// The CPU backend settings every case runs under: all optimisations on, and the reference
/// options.
pub fn cpu_option_sets() -> [(&'static str, CpuOptions); 2] {
    [
        ("fast", CpuOptions::fast()),
        ("reference", CpuOptions::reference()),
    ]
}

/// A host tensor's elements as `f64` (booleans as 0 and 1).
pub fn host_values(t: &HostTensor) -> Vec<f64> {
    match &t.data {
        HostData::F32(v) => v.iter().map(|&x| x as f64).collect(),
        HostData::I32(v) => v.iter().map(|&x| x as f64).collect(),
        HostData::U8(v) => v.iter().map(|&x| x as f64).collect(),
        HostData::Bool(v) => v.iter().map(|&x| x as u8 as f64).collect(),
    }
}

/// A candle tensor's elements as `f64`, flattened.
pub fn candle_values(t: &Tensor) -> candle::Result<Vec<f64>> {
    t.to_dtype(CDType::F64)?.flatten_all()?.to_vec1::<f64>()
}

/// The multi-index of flat position `i` in `dims`.
pub fn unravel(mut i: usize, dims: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; dims.len()];
    for (k, &d) in dims.iter().enumerate().rev() {
        idx[k] = i % d.max(1);
        i /= d.max(1);
    }
    idx
}

/// Checks `got` against `want` elementwise: `|got - want| <= tol·|want| + tol/10·scale`, where
/// `scale` is the largest `|want|` but at least `floor`. NaN never matches; `dims` (the shape of
/// both) locates the first mismatch in the message.
pub fn compare(
    got: &[f64],
    want: &[f64],
    dims: &[usize],
    tol: f64,
    floor: f64,
) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{} elements, expected {}", got.len(), want.len()));
    }
    let scale = want.iter().fold(floor, |m, v| m.max(v.abs()));
    let bad: Vec<usize> = (0..want.len())
        .filter(|&i| {
            let (g, w) = (got[i], want[i]);
            let ok = (g - w).abs() <= tol * w.abs() + 0.1 * tol * scale;
            !ok // NaN fails too
        })
        .collect();
    match bad.first() {
        None => Ok(()),
        Some(&i) => Err(format!(
            "{} of {} elements differ; first at {:?}: got {}, expected {}",
            bad.len(),
            want.len(),
            unravel(i, dims),
            got[i],
            want[i]
        )),
    }
}

/// Fails, listing every failure, unless `failures` is empty; `total` counts the `what` (cases,
/// checks) that ran.
pub fn assert_no_failures(failures: &[String], total: usize, what: &str) {
    assert!(
        failures.is_empty(),
        "{} of {total} {what} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Random data
// ---------------------------------------------------------------------------------------------

/// A generator with a fixed seed.
pub fn seeded(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Values drawn uniformly from `lo..hi`.
pub fn uniform(rng: &mut StdRng, shape: &[usize], lo: f32, hi: f32) -> HostTensor {
    let n = shape.iter().product();
    let v = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    HostTensor::f32(shape.to_vec(), v).unwrap()
}

/// Values with `lo <= |x| < hi` and a random sign (away from a kink or pole at zero).
pub fn signed(rng: &mut StdRng, shape: &[usize], lo: f32, hi: f32) -> HostTensor {
    let n = shape.iter().product();
    let v = (0..n)
        .map(|_| {
            let m = rng.random_range(lo..hi);
            if rng.random_bool(0.5) {
                m
            } else {
                -m
            }
        })
        .collect();
    HostTensor::f32(shape.to_vec(), v).unwrap()
}

/// Values on the grid `step·k + offset` for whole `k` in `-steps..=steps`: few enough levels
/// that operands meet ties, or (with offsets half a step apart) never come close.
pub fn grid(rng: &mut StdRng, shape: &[usize], steps: i32, step: f32, offset: f32) -> HostTensor {
    let n = shape.iter().product();
    let v = (0..n)
        .map(|_| rng.random_range(-steps..=steps) as f32 * step + offset)
        .collect();
    HostTensor::f32(shape.to_vec(), v).unwrap()
}

/// Values for a unary op with `lo <= |x| < hi`: of random sign if `sign`, else drawn from
/// `lo..hi`.
pub fn unary_input(
    rng: &mut StdRng,
    shape: &[usize],
    (lo, hi): (f32, f32),
    sign: bool,
) -> HostTensor {
    if sign {
        signed(rng, shape, lo, hi)
    } else {
        uniform(rng, shape, lo, hi)
    }
}

/// Pairwise distinct values `step` apart (a shuffled ramp around zero), so maxima are unique.
pub fn distinct(rng: &mut StdRng, shape: &[usize], step: f32) -> HostTensor {
    let n: usize = shape.iter().product();
    let mut v: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * step).collect();
    v.shuffle(rng);
    HostTensor::f32(shape.to_vec(), v).unwrap()
}

/// `i32` values drawn uniformly from `lo..=hi`.
pub fn ints(rng: &mut StdRng, shape: &[usize], lo: i32, hi: i32) -> HostTensor {
    let n = shape.iter().product();
    let v = (0..n).map(|_| rng.random_range(lo..=hi)).collect();
    HostTensor::i32(shape.to_vec(), v).unwrap()
}

/// Fair random booleans.
pub fn bools(rng: &mut StdRng, shape: &[usize]) -> HostTensor {
    let n = shape.iter().product();
    let v = (0..n).map(|_| rng.random_bool(0.5)).collect();
    HostTensor::new(Shape::new(shape.to_vec()), HostData::Bool(v)).unwrap()
}

/// Broadcasting shape pairs every binary-op test covers: equal shapes, a trailing vector on
/// either side, an outer product, a column against rank 3, and a scalar.
pub const BROADCAST_PAIRS: [(&[usize], &[usize]); 6] = [
    (&[3, 4], &[3, 4]),
    (&[3, 4], &[4]),
    (&[4], &[3, 4]),
    (&[3, 1], &[1, 4]),
    (&[2, 3, 4], &[3, 1]),
    (&[], &[5]),
];

/// The numpy broadcast of several shapes (an independent check of hasten's inference).
pub fn broadcast_dims(shapes: &[&[usize]]) -> Vec<usize> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    (0..rank)
        .map(|i| {
            shapes
                .iter()
                .filter_map(|s| (i + s.len()).checked_sub(rank).map(|k| s[k]))
                .fold(1, |acc, d| if d == 1 { acc } else { d })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// candle references
// ---------------------------------------------------------------------------------------------

/// A unary op in candle.
pub type CandleUnary = fn(&Tensor) -> candle::Result<Tensor>;
/// A broadcasting binary op in candle.
pub type CandleBinary = fn(&Tensor, &Tensor) -> candle::Result<Tensor>;

/// The logistic function from candle ops that all have gradients.
pub fn candle_sigmoid(t: &Tensor) -> candle::Result<Tensor> {
    t.neg()?.exp()?.affine(1.0, 1.0)?.recip()
}

/// candle's equivalent of each unary op.
pub fn candle_unary(op: UnaryOp) -> CandleUnary {
    match op {
        UnaryOp::Neg => |t| t.neg(),
        UnaryOp::Exp => |t| t.exp(),
        UnaryOp::Log => |t| t.log(),
        UnaryOp::Sqrt => |t| t.sqrt(),
        UnaryOp::Rsqrt => |t| t.sqrt()?.recip(),
        UnaryOp::Relu => |t| t.relu(),
        UnaryOp::Sigmoid => candle_sigmoid,
        UnaryOp::Tanh => |t| t.tanh(),
        UnaryOp::Abs => |t| t.abs(),
        UnaryOp::Square => |t| t.sqr(),
        UnaryOp::Recip => |t| t.recip(),
    }
}

/// Every binary op.
pub const BINARY_OPS: [BinaryOp; 7] = [
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
    BinaryOp::Max,
    BinaryOp::Min,
    BinaryOp::Pow,
];

/// candle's equivalent of each binary op, broadcasting like hasten.
pub fn candle_binary(op: BinaryOp) -> CandleBinary {
    match op {
        BinaryOp::Add => |a, b| a.broadcast_add(b),
        BinaryOp::Sub => |a, b| a.broadcast_sub(b),
        BinaryOp::Mul => |a, b| a.broadcast_mul(b),
        BinaryOp::Div => |a, b| a.broadcast_div(b),
        BinaryOp::Max => |a, b| a.broadcast_maximum(b),
        BinaryOp::Min => |a, b| a.broadcast_minimum(b),
        BinaryOp::Pow => |a, b| a.broadcast_pow(b),
    }
}

/// The dims of a (batched) `rows × cols` matrix operand, stored transposed if `transposed`.
pub fn matrix_dims(batch: &[usize], rows: usize, cols: usize, transposed: bool) -> Vec<usize> {
    let mut d = batch.to_vec();
    d.extend(if transposed {
        [cols, rows]
    } else {
        [rows, cols]
    });
    d
}

/// A matmul size: batch dims, then `m`, `k` and `n` of an `m × k` by `k × n` product.
pub type MatmulSize<'a> = (&'a [usize], usize, usize, usize);

/// One matmul per size and per way of storing the operands (transposed or not): its name,
/// its operands (uniform in `-1..1`), and whether each is stored transposed.
pub fn matmul_variants(
    rng: &mut StdRng,
    sizes: &[MatmulSize<'_>],
) -> Vec<(String, Vec<HostTensor>, bool, bool)> {
    let mut out = Vec::new();
    for &(batch, m, k, n) in sizes {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let operands = vec![
                uniform(rng, &matrix_dims(batch, m, k, ta), -1.0, 1.0),
                uniform(rng, &matrix_dims(batch, k, n, tb), -1.0, 1.0),
            ];
            out.push((
                format!("matmul {batch:?} {m}x{k}x{n} ta={ta} tb={tb}"),
                operands,
                ta,
                tb,
            ));
        }
    }
    out
}

/// `op(a) · op(b)` in candle, where `op` transposes the last two dims when asked.
pub fn candle_matmul_t(a: &Tensor, b: &Tensor, ta: bool, tb: bool) -> candle::Result<Tensor> {
    let op = |t: &Tensor, tr: bool| {
        if tr {
            t.t()?.contiguous()
        } else {
            Ok(t.clone())
        }
    };
    op(a, ta)?.matmul(&op(b, tb)?)
}

/// `select(cond, on_true, on_false)` in candle, every operand broadcast to `out` first.
pub fn candle_select(
    cond: &Tensor,
    on_true: &Tensor,
    on_false: &Tensor,
    out: &[usize],
) -> candle::Result<Tensor> {
    let b = |t: &Tensor| t.broadcast_as(out)?.contiguous();
    b(cond)?.where_cond(&b(on_true)?, &b(on_false)?)
}

/// A reduction in candle over several axes (in any order), squeezing them unless `keep`.
pub fn candle_reduce(
    x: &Tensor,
    op: ReduceOp,
    axes: &[usize],
    keep: bool,
) -> candle::Result<Tensor> {
    let mut y = match op {
        ReduceOp::Sum => x.sum_keepdim(axes.to_vec())?,
        ReduceOp::Mean => x.mean_keepdim(axes.to_vec())?,
        ReduceOp::Max => axes.iter().try_fold(x.clone(), |t, &a| t.max_keepdim(a))?,
    };
    if !keep {
        let mut sorted = axes.to_vec();
        sorted.sort_unstable();
        for &a in sorted.iter().rev() {
            y = y.squeeze(a)?;
        }
    }
    Ok(y)
}

// ---------------------------------------------------------------------------------------------
// Convolution and pooling in candle
// ---------------------------------------------------------------------------------------------

/// TensorFlow's "same" padding of one spatial dim: `(before, after)`.
pub fn same_padding(size: usize, extent: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + extent).saturating_sub(size);
    (total / 2, total - total / 2)
}

/// The explicit `(top, bottom, left, right)` padding of a window of `extent` cells over an
/// `h × w` image.
pub fn resolve_pads(
    mode: PaddingMode,
    (h, w): (usize, usize),
    extent: [usize; 2],
    stride: [usize; 2],
) -> [usize; 4] {
    match mode {
        PaddingMode::Valid => [0; 4],
        PaddingMode::Explicit(p) => [p.top, p.bottom, p.left, p.right],
        PaddingMode::Same => {
            let (t, b) = same_padding(h, extent[0], stride[0]);
            let (l, r) = same_padding(w, extent[1], stride[1]);
            [t, b, l, r]
        }
    }
}

/// The cells a `kernel` dilated by `dilation` spans: `dilation·(kernel - 1) + 1` per axis.
pub fn dilated_extent(kernel: [usize; 2], dilation: [usize; 2]) -> [usize; 2] {
    [
        dilation[0] * (kernel[0] - 1) + 1,
        dilation[1] * (kernel[1] - 1) + 1,
    ]
}

/// A pooling case: NHWC input dims, window, stride and padding.
pub type PoolCase = ([usize; 4], [usize; 2], [usize; 2], PaddingMode);

/// Pads dims 2 and 3 of an NCHW tensor with `value` (from ops that all have gradients).
pub fn pad_spatial(x: &Tensor, [t, b, l, r]: [usize; 4], value: f32) -> candle::Result<Tensor> {
    let pad = |x: Tensor, dim: usize, lo: usize, hi: usize| -> candle::Result<Tensor> {
        let mut parts = Vec::new();
        for (len, is_pad) in [(lo, true), (x.dims()[dim], false), (hi, true)] {
            if !is_pad {
                parts.push(x.clone());
            } else if len > 0 {
                let mut dims = x.dims().to_vec();
                dims[dim] = len;
                parts.push(Tensor::full(value, dims, x.device())?);
            }
        }
        Tensor::cat(&parts, dim)
    };
    pad(pad(x.clone(), 2, t, b)?, 3, l, r)
}

/// NHWC to NCHW (contiguous).
pub fn nhwc_to_nchw(x: &Tensor) -> candle::Result<Tensor> {
    x.permute((0, 3, 1, 2))?.contiguous()
}

/// NCHW to NHWC (contiguous).
pub fn nchw_to_nhwc(x: &Tensor) -> candle::Result<Tensor> {
    x.permute((0, 2, 3, 1))?.contiguous()
}

/// Keeps every `stride`-th index of `axis`, from `offset` (`count` of them).
pub fn every(
    x: &Tensor,
    axis: usize,
    offset: usize,
    stride: usize,
    count: usize,
) -> candle::Result<Tensor> {
    let keep: Vec<u32> = (0..count).map(|i| (offset + i * stride) as u32).collect();
    x.contiguous()?
        .index_select(&Tensor::new(keep, x.device())?, axis)
}

/// Convolution of NHWC `x` with HWIO `w` in candle, padded by `pads`. Square images with one
/// stride and dilation for both axes use candle's convolution (and its backward) directly;
/// otherwise the kernel is dilated with zeros, convolved with stride 1, and rows and columns
/// are gathered.
pub fn candle_conv(
    x: &Tensor,
    w: &Tensor,
    pads: [usize; 4],
    stride: [usize; 2],
    dilation: [usize; 2],
) -> candle::Result<Tensor> {
    let xp = pad_spatial(&nhwc_to_nchw(x)?, pads, 0.0)?.contiguous()?;
    let mut k = w.permute((3, 2, 0, 1))?.contiguous()?;
    let (_, _, h, wd) = xp.dims4()?;
    if h == wd && stride[0] == stride[1] && dilation[0] == dilation[1] {
        return nchw_to_nhwc(&xp.conv2d(&k, 0, stride[0], dilation[0], 1)?);
    }
    for (axis, d) in [(2, dilation[0]), (3, dilation[1])] {
        let taps = k.dims()[axis];
        let mut parts = Vec::new();
        for t in 0..taps {
            parts.push(k.narrow(axis, t, 1)?);
            if t + 1 < taps && d > 1 {
                let mut dims = k.dims().to_vec();
                dims[axis] = d - 1;
                parts.push(Tensor::zeros(dims, k.dtype(), k.device())?);
            }
        }
        k = Tensor::cat(&parts, axis)?;
    }
    let mut y = xp.conv2d(&k.contiguous()?, 0, 1, 1, 1)?;
    for (axis, s) in [(2, stride[0]), (3, stride[1])] {
        let count = y.dims()[axis].div_ceil(s);
        y = every(&y, axis, 0, s, count)?;
    }
    nchw_to_nhwc(&y)
}
