//! Reductions (sum, mean, NaN-propagating max) and argmax (the first maximal index, a NaN
//! counting as maximal, as NumPy and the CPU backend pick).

use super::builder::{Builder, Scalar, V};
use super::elementwise::maximal;
use hasten_tensor::ir::ReduceOp;
use hasten_tensor::AllReduceOp;
use hasten_tensor::DType;

/// The smallest value of `dtype`: the identity of `maximum`.
fn lowest(b: &mut Builder, dtype: DType) -> V {
    match dtype {
        DType::F32 => b.scalar(Scalar::F32(f32::NEG_INFINITY), dtype),
        DType::I32 => b.scalar(Scalar::I32(i32::MIN), dtype),
        _ => b.zero(dtype),
    }
}

/// Reduces `axes` of `x`; `dims` is the result's shape (with or without kept unit dims).
pub(crate) fn reduce(b: &mut Builder, op: ReduceOp, x: &V, axes: &[usize], dims: &[usize]) -> V {
    let r = match op {
        ReduceOp::Sum | ReduceOp::Mean => {
            let zero = b.zero(x.dtype);
            b.reduce(x, &zero, "add", axes)
        }
        ReduceOp::Max => {
            let init = lowest(b, x.dtype);
            b.reduce(x, &init, "maximum", axes)
        }
    };
    let r = if op == ReduceOp::Mean {
        let count: usize = axes.iter().map(|&a| x.dims[a]).product();
        let n = b.splat(Scalar::F32(count as f32), r.dtype, &r.dims);
        b.same("divide", &[&r, &n])
    } else {
        r
    };
    b.reshape(&r, dims)
}

/// The index of the first maximum along `axis`, as `I32`; the axis is removed.
pub(crate) fn argmax(b: &mut Builder, x: &V, axis: usize) -> V {
    let init = lowest(b, x.dtype);
    let m = b.reduce(x, &init, "maximum", &[axis]);
    let kept: Vec<usize> = (0..x.rank()).filter(|&i| i != axis).collect();
    let m = b.broadcast_in_dim(&m, &kept, &x.dims);
    let hit = maximal(b, x, &m);
    let index = b.iota(&x.dims, axis, DType::I32);
    let never = b.splat(Scalar::I32(i32::MAX), DType::I32, &x.dims);
    let candidates = b.select(&hit, &index, &never);
    let first = b.scalar(Scalar::I32(i32::MAX), DType::I32);
    b.reduce(&candidates, &first, "minimum", &[axis])
}

/// An all-reduce over the program's replicas: a sum or maximum across them (a mean divides
/// the sum by the replica count). With one replica it is the value itself.
pub(crate) fn all_reduce(b: &mut Builder, op: AllReduceOp, x: &V) -> V {
    if b.replicas == 1 {
        return x.clone();
    }
    match op {
        AllReduceOp::Sum => b.all_reduce(x, "add"),
        AllReduceOp::Max => b.all_reduce(x, "maximum"),
        AllReduceOp::Mean => {
            let sum = b.all_reduce(x, "add");
            let n = b.splat(Scalar::F32(b.replicas as f32), x.dtype, &x.dims);
            b.same("divide", &[&sum, &n])
        }
    }
}
