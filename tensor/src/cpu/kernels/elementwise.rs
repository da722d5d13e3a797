//! Elementwise math: the scalar definitions every other path (fused loops, other backends'
//! references) agrees with, and the general broadcasting kernels.

use super::exp::exp;
use super::{advance, broadcast_strides, Small};
use crate::ir::{BinaryOp, CompareOp, UnaryOp};

/// `a` ranks above `b` in the order where NaN is the greatest value: `a > b`, or `a` is NaN
/// and `b` is not. A maximum that keeps its first candidate unless a later one ranks above it
/// is IEEE 754-2019's `maximum` (NaN wins, the first NaN of a scan is the one kept), which is
/// what PyTorch's and JAX's `max`, `relu`, max-pooling and `argmax` do.
#[inline(always)]
pub fn ranks_above(a: f32, b: f32) -> bool {
    a > b || (a.is_nan() && !b.is_nan())
}

/// IEEE 754-2019 `maximum`: NaN when either operand is (unlike `f32::max`, which drops it).
#[inline(always)]
pub fn maximum(a: f32, b: f32) -> f32 {
    if ranks_above(b, a) {
        b
    } else {
        a
    }
}

/// IEEE 754-2019 `minimum`: NaN when either operand is (unlike `f32::min`, which drops it).
#[inline(always)]
pub fn minimum(a: f32, b: f32) -> f32 {
    if b < a || (b.is_nan() && !a.is_nan()) {
        b
    } else {
        a
    }
}

/// `max(x, 0)` that keeps NaN, as PyTorch's `relu` does (`f32::max(x, 0.0)` maps NaN to 0).
#[inline(always)]
pub fn relu(x: f32) -> f32 {
    if x <= 0.0 {
        0.0
    } else {
        x
    }
}

/// `op(x)` for one element.
#[inline(always)]
pub fn unary(op: UnaryOp, x: f32) -> f32 {
    match op {
        UnaryOp::Neg => -x,
        UnaryOp::Exp => exp(x),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        UnaryOp::Relu => relu(x),
        UnaryOp::Sigmoid => 1.0 / (1.0 + exp(-x)),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Abs => x.abs(),
        UnaryOp::Square => x * x,
        UnaryOp::Recip => 1.0 / x,
    }
}

/// `op(a, b)` for one element.
#[inline(always)]
pub fn binary(op: BinaryOp, a: f32, b: f32) -> f32 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Max => maximum(a, b),
        BinaryOp::Min => minimum(a, b),
        BinaryOp::Pow => a.powf(b),
    }
}

/// `op(a, b)` for one element of any ordered type.
#[inline(always)]
pub fn compare<T: PartialOrd>(op: CompareOp, a: T, b: T) -> bool {
    match op {
        CompareOp::Eq => a == b,
        CompareOp::Ne => a != b,
        CompareOp::Lt => a < b,
        CompareOp::Le => a <= b,
        CompareOp::Gt => a > b,
        CompareOp::Ge => a >= b,
    }
}

/// Applies `f` to every output element of a broadcast over `out_dims`, given each operand's
/// dims; `f` receives the output index and each operand's element index.
pub fn for_each_broadcast<const N: usize>(
    out_dims: &[usize],
    operand_dims: [&[usize]; N],
    mut f: impl FnMut(usize, [usize; N]),
) {
    let total: usize = out_dims.iter().product();
    if total == 0 {
        return;
    }
    let strides: [Small<isize>; N] =
        std::array::from_fn(|k| broadcast_strides(operand_dims[k], out_dims));
    let stride_refs: [&[isize]; N] = std::array::from_fn(|k| &*strides[k]);
    let mut idx = Small::<usize>::filled(out_dims.len());
    let mut offsets = [0isize; N];
    for i in 0..total {
        f(i, std::array::from_fn(|k| offsets[k] as usize));
        advance(&mut idx, out_dims, &mut offsets, &stride_refs);
    }
}

/// General unary kernel.
pub fn unary_kernel(op: UnaryOp, x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = unary(op, x);
    }
}

/// `op(a, b)` on integers, wrapping on overflow; `None` for the float-only ops (which shape
/// inference refuses on `I32`, see [`BinaryOp::takes_integers`]).
#[inline]
pub fn binary_i32(op: BinaryOp, a: i32, b: i32) -> Option<i32> {
    Some(match op {
        BinaryOp::Add => a.wrapping_add(b),
        BinaryOp::Sub => a.wrapping_sub(b),
        BinaryOp::Mul => a.wrapping_mul(b),
        BinaryOp::Max => a.max(b),
        BinaryOp::Min => a.min(b),
        BinaryOp::Div | BinaryOp::Pow => return None,
    })
}

/// General broadcasting binary kernel: `y = f(a, b)` elementwise.
pub fn binary_kernel<T: Copy>(
    f: impl Fn(T, T) -> T,
    a: (&[T], &[usize]),
    b: (&[T], &[usize]),
    y: (&mut [T], &[usize]),
) {
    let (out, dims) = y;
    for_each_broadcast(dims, [a.1, b.1], |i, [ia, ib]| out[i] = f(a.0[ia], b.0[ib]));
}

/// General broadcasting comparison kernel.
pub fn compare_kernel<T: PartialOrd + Copy>(
    op: CompareOp,
    a: (&[T], &[usize]),
    b: (&[T], &[usize]),
    y: (&mut [bool], &[usize]),
) {
    let (out, dims) = y;
    for_each_broadcast(dims, [a.1, b.1], |i, [ia, ib]| {
        out[i] = compare(op, a.0[ia], b.0[ib])
    });
}

/// General broadcasting select kernel.
pub fn select_kernel(
    cond: (&[bool], &[usize]),
    on_true: (&[f32], &[usize]),
    on_false: (&[f32], &[usize]),
    y: (&mut [f32], &[usize]),
) {
    let (out, dims) = y;
    for_each_broadcast(dims, [cond.1, on_true.1, on_false.1], |i, [c, t, f]| {
        out[i] = if cond.0[c] {
            on_true.0[t]
        } else {
            on_false.0[f]
        };
    });
}
