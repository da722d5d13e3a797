//! Elementwise ops: unary functions, binary arithmetic with numpy broadcasting (integer
//! add/sub/mul wrap, as StableHLO's do), comparisons, select and casts with the CPU
//! backend's conversion rules. Max and min propagate NaN, as ARCHITECTURE.md asks.

use super::builder::{Builder, Scalar, V};
use hasten_tensor::ir::{BinaryOp, CompareOp, UnaryOp};
use hasten_tensor::DType;

/// A unary function.
pub(crate) fn unary(b: &mut Builder, op: UnaryOp, x: &V) -> V {
    let name = match op {
        UnaryOp::Neg => "negate",
        UnaryOp::Exp => "exponential",
        UnaryOp::Log => "log",
        UnaryOp::Sqrt => "sqrt",
        UnaryOp::Rsqrt => "rsqrt",
        UnaryOp::Sigmoid => "logistic",
        UnaryOp::Tanh => "tanh",
        UnaryOp::Abs => "abs",
        UnaryOp::Relu => {
            let zero = b.zero(x.dtype);
            let zero = b.broadcast_to(&zero, &x.dims);
            return b.nan_extremum("maximum", x, &zero);
        }
        UnaryOp::Square => return b.same("multiply", &[x, x]),
        UnaryOp::Recip => {
            let one = b.splat(Scalar::F32(1.0), x.dtype, &x.dims);
            return b.same("divide", &[&one, x]);
        }
    };
    b.same(name, &[x])
}

/// A binary function, operands broadcast to `dims`.
pub(crate) fn binary(b: &mut Builder, op: BinaryOp, x: &V, y: &V, dims: &[usize]) -> V {
    let name = match op {
        BinaryOp::Add => "add",
        BinaryOp::Sub => "subtract",
        BinaryOp::Mul => "multiply",
        BinaryOp::Div => "divide",
        BinaryOp::Max => "maximum",
        BinaryOp::Min => "minimum",
        BinaryOp::Pow => "power",
    };
    let (x, y) = (b.broadcast_to(x, dims), b.broadcast_to(y, dims));
    match op {
        BinaryOp::Max | BinaryOp::Min => b.nan_extremum(name, &x, &y),
        _ => b.same(name, &[&x, &y]),
    }
}

/// A comparison, operands broadcast to `dims`.
pub(crate) fn compare(b: &mut Builder, op: CompareOp, x: &V, y: &V, dims: &[usize]) -> V {
    let direction = match op {
        CompareOp::Eq => "EQ",
        CompareOp::Ne => "NE",
        CompareOp::Lt => "LT",
        CompareOp::Le => "LE",
        CompareOp::Gt => "GT",
        CompareOp::Ge => "GE",
    };
    let (x, y) = (b.broadcast_to(x, dims), b.broadcast_to(y, dims));
    b.compare(direction, &x, &y)
}

/// `cond ? x : y`, all three broadcast to `dims`.
pub(crate) fn select(b: &mut Builder, cond: &V, x: &V, y: &V, dims: &[usize]) -> V {
    let cond = b.broadcast_to(cond, dims);
    let (x, y) = (b.broadcast_to(x, dims), b.broadcast_to(y, dims));
    b.select(&cond, &x, &y)
}

/// Whether each element is NaN.
pub(crate) fn is_nan(b: &mut Builder, x: &V) -> V {
    b.compare("NE", x, x)
}

/// Whether each element of `x` ranks as the maximum `m` (of the same dims) under NaN
/// propagation: equal to it, or NaN (the maximum is then NaN too).
pub(crate) fn maximal(b: &mut Builder, x: &V, m: &V) -> V {
    let eq = b.compare("EQ", x, m);
    let nan = is_nan(b, x);
    b.same("or", &[&eq, &nan])
}

/// Converts the element type as the CPU's `Cast` does: float to integer truncates toward
/// zero and saturates (NaN → 0), `I32` to `U8` clamps, anything to `Bool` is `!= 0`.
pub(crate) fn cast(b: &mut Builder, x: &V, to: DType) -> V {
    if x.dtype == to {
        return x.clone();
    }
    match (x.dtype, to) {
        (_, DType::Bool) => {
            let zero = b.zero(x.dtype);
            let zero = b.broadcast_to(&zero, &x.dims);
            b.compare("NE", x, &zero)
        }
        (DType::F32, DType::I32) => float_to_int(b, x, to, -2_147_483_648.0, 2_147_483_520.0),
        (DType::F32, DType::U8) => float_to_int(b, x, to, 0.0, 255.0),
        (DType::I32, DType::U8) => {
            let c = clamp(b, x, Scalar::I32(0), Scalar::I32(255));
            b.convert(&c, to)
        }
        _ => b.convert(x, to),
    }
}

/// `clamp(lo, x, hi)` with scalar bounds of `x`'s dtype.
fn clamp(b: &mut Builder, x: &V, lo: Scalar, hi: Scalar) -> V {
    let lo = b.splat(lo, x.dtype, &x.dims);
    let hi = b.splat(hi, x.dtype, &x.dims);
    b.same("clamp", &[&lo, x, &hi])
}

/// Saturating float → integer: clamped to `[lo, hi]` (the largest float below the integer
/// maximum, where `hi` is not exact) before converting, values at or above `2^31` giving the
/// maximum, NaN giving 0.
fn float_to_int(b: &mut Builder, x: &V, to: DType, lo: f32, hi: f32) -> V {
    let clamped = clamp(b, x, Scalar::F32(lo), Scalar::F32(hi));
    let mut y = b.convert(&clamped, to);
    if to == DType::I32 {
        let limit = b.splat(Scalar::F32(2_147_483_648.0), x.dtype, &x.dims);
        let over = b.compare("GE", x, &limit);
        let max = b.splat(Scalar::I32(i32::MAX), to, &x.dims);
        y = b.select(&over, &max, &y);
    }
    let nan = is_nan(b, x);
    let zero = b.zero(to);
    let zero = b.broadcast_to(&zero, &x.dims);
    b.select(&nan, &zero, &y)
}
