//! Shape and dtype inference: run when a node is added, so a bad graph fails at the line that
//! built it, with both shapes in the message.

use super::op::{Conv2dAttrs, Op, Pool2dAttrs};
use crate::{DType, Error, Result, Shape};

/// An operand's shape and dtype.
pub type Operand<'a> = (&'a Shape, DType);

/// Infers the output of `op` applied to `operands`, checking arity, dtypes and attributes.
pub fn infer(op: &Op, operands: &[Operand<'_>]) -> Result<(Shape, DType)> {
    let name = op.name();
    let arity = match op {
        Op::Input { .. } | Op::Parameter { .. } | Op::Constant(_) => 0,
        Op::Binary(_)
        | Op::Compare(_)
        | Op::MatMul { .. }
        | Op::Conv2d(_)
        | Op::Conv2dGradInput { .. }
        | Op::Conv2dGradFilter { .. }
        | Op::MaxPool2dGrad(_) => 2,
        Op::Select => 3,
        Op::Concat { .. } => operands.len().max(1),
        _ => 1,
    };
    if operands.len() != arity {
        return Err(Error::invalid(
            name,
            format!("expected {arity} operands, found {}", operands.len()),
        ));
    }
    match op {
        Op::Input { .. } | Op::Parameter { .. } | Op::Constant(_) => Err(Error::invalid(
            name,
            "leaf nodes are created with their own builder methods",
        )),
        Op::Unary(_) => {
            let (s, d) = operands[0];
            float(name, d)?;
            Ok((s.clone(), d))
        }
        Op::Binary(op) => {
            let ((a, da), (b, db)) = (operands[0], operands[1]);
            if !(da == DType::I32 && op.takes_integers()) {
                float(name, da)?;
            }
            same_dtype(name, da, db)?;
            Ok((a.broadcast(b, name)?, da))
        }
        Op::Compare(_) => {
            let ((a, da), (b, db)) = (operands[0], operands[1]);
            same_dtype(name, da, db)?;
            Ok((a.broadcast(b, name)?, DType::Bool))
        }
        Op::Select => {
            let ((c, dc), (t, dt), (f, df)) = (operands[0], operands[1], operands[2]);
            if dc != DType::Bool {
                return Err(Error::DTypeMismatch {
                    op: name,
                    expected: "bool condition".into(),
                    found: dc,
                });
            }
            same_dtype(name, dt, df)?;
            Ok((c.broadcast(&t.broadcast(f, name)?, name)?, dt))
        }
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => matmul(operands, *transpose_a, *transpose_b),
        Op::Conv2d(attrs) => {
            let ((x, dx), (w, dw)) = (operands[0], operands[1]);
            float(name, dx)?;
            same_dtype(name, dx, dw)?;
            if x.rank() != 4 || w.rank() != 4 {
                return Err(Error::shape(
                    name,
                    format!("expected NHWC input and HWIO filter (rank 4), found {x} and {w}"),
                ));
            }
            if x.dims()[3] != w.dims()[2] {
                return Err(Error::shape(
                    name,
                    format!(
                        "input has {} channels but the filter {w} expects {}",
                        x.dims()[3],
                        w.dims()[2]
                    ),
                ));
            }
            let (oh, ow) = conv_output_hw(name, x.dims(), [w.dims()[0], w.dims()[1]], attrs)?;
            Ok((Shape::new([x.dims()[0], oh, ow, w.dims()[3]]), dx))
        }
        Op::Conv2dGradInput { attrs, input_shape } => {
            let ((dy, ddy), (w, _)) = (operands[0], operands[1]);
            let x = Shape::new(input_shape.clone());
            expect_conv_output(name, &x, w, attrs, dy)?;
            Ok((x, ddy))
        }
        Op::Conv2dGradFilter {
            attrs,
            filter_shape,
        } => {
            let ((x, dx), (dy, _)) = (operands[0], operands[1]);
            let w = Shape::new(filter_shape.clone());
            expect_conv_output(name, x, &w, attrs, dy)?;
            Ok((w, dx))
        }
        Op::MaxPool2d(attrs) | Op::AvgPool2d(attrs) => {
            let (x, d) = operands[0];
            float(name, d)?;
            Ok((pool_output(name, x, attrs)?, d))
        }
        Op::MaxPool2dGrad(attrs) => {
            let ((x, d), (dy, _)) = (operands[0], operands[1]);
            expect_shape(name, &pool_output(name, x, attrs)?, dy)?;
            Ok((x.clone(), d))
        }
        Op::AvgPool2dGrad { attrs, input_shape } => {
            let (dy, d) = operands[0];
            let x = Shape::new(input_shape.clone());
            expect_shape(name, &pool_output(name, &x, attrs)?, dy)?;
            Ok((x, d))
        }
        Op::Reduce {
            axes, keep_dims, ..
        } => {
            let (x, d) = operands[0];
            check_axes(name, axes, x.rank())?;
            let dims = x
                .dims()
                .iter()
                .enumerate()
                .filter_map(|(i, &n)| match (axes.contains(&i), keep_dims) {
                    (false, _) => Some(n),
                    (true, true) => Some(1),
                    (true, false) => None,
                })
                .collect::<Vec<_>>();
            Ok((Shape::new(dims), d))
        }
        Op::Reshape { shape } => {
            let (x, d) = operands[0];
            let target = Shape::new(shape.clone());
            if target.numel() != x.numel() {
                return Err(Error::shape(
                    name,
                    format!(
                        "cannot reshape {x} ({} elements) to {target} ({} elements)",
                        x.numel(),
                        target.numel()
                    ),
                ));
            }
            Ok((target, d))
        }
        Op::Transpose { perm } => {
            let (x, d) = operands[0];
            let mut seen = vec![false; x.rank()];
            if perm.len() != x.rank()
                || perm
                    .iter()
                    .any(|&p| p >= x.rank() || std::mem::replace(&mut seen[p], true))
            {
                return Err(Error::invalid(
                    name,
                    format!(
                        "{perm:?} is not a permutation of the {} dims of {x}",
                        x.rank()
                    ),
                ));
            }
            Ok((
                Shape::new(perm.iter().map(|&p| x.dims()[p]).collect::<Vec<_>>()),
                d,
            ))
        }
        Op::Broadcast { shape } => {
            let (x, d) = operands[0];
            let target = Shape::new(shape.clone());
            if !x.broadcasts_to(&target) {
                return Err(Error::shape(
                    name,
                    format!("cannot broadcast {x} to {target}"),
                ));
            }
            Ok((target, d))
        }
        Op::Slice { starts, ends } => {
            let (x, d) = operands[0];
            if starts.len() != x.rank()
                || ends.len() != x.rank()
                || (0..x.rank()).any(|i| starts[i] > ends[i] || ends[i] > x.dims()[i])
            {
                return Err(Error::invalid(
                    name,
                    format!("bounds {starts:?}..{ends:?} do not fit {x}"),
                ));
            }
            Ok((
                Shape::new(
                    (0..x.rank())
                        .map(|i| ends[i] - starts[i])
                        .collect::<Vec<_>>(),
                ),
                d,
            ))
        }
        Op::Pad { low, high } => {
            let (x, d) = operands[0];
            if low.len() != x.rank() || high.len() != x.rank() {
                return Err(Error::invalid(
                    name,
                    format!("padding {low:?}/{high:?} does not match the rank of {x}"),
                ));
            }
            Ok((
                Shape::new(
                    (0..x.rank())
                        .map(|i| low[i] + x.dims()[i] + high[i])
                        .collect::<Vec<_>>(),
                ),
                d,
            ))
        }
        Op::Concat { axis } => {
            let (first, d) = operands[0];
            check_axes(name, &[*axis], first.rank())?;
            let mut dims = first.dims().to_vec();
            for &(s, ds) in &operands[1..] {
                same_dtype(name, d, ds)?;
                let compatible = s.rank() == first.rank()
                    && (0..s.rank()).all(|i| i == *axis || s.dims()[i] == first.dims()[i]);
                if !compatible {
                    return Err(Error::shape(
                        name,
                        format!("cannot concatenate {first} and {s} along axis {axis}"),
                    ));
                }
                dims[*axis] += s.dims()[*axis];
            }
            Ok((Shape::new(dims), d))
        }
        Op::OneHot { depth } => {
            let (x, d) = operands[0];
            if d != DType::I32 {
                return Err(Error::DTypeMismatch {
                    op: name,
                    expected: "i32 labels".into(),
                    found: d,
                });
            }
            if *depth == 0 {
                return Err(Error::invalid(name, "depth must be at least 1"));
            }
            let mut dims = x.dims().to_vec();
            dims.push(*depth);
            Ok((Shape::new(dims), DType::F32))
        }
        Op::ArgMax { axis } => {
            let (x, d) = operands[0];
            float(name, d)?;
            check_axes(name, &[*axis], x.rank())?;
            if x.dims()[*axis] == 0 {
                return Err(Error::invalid(name, "argmax over an empty axis"));
            }
            let mut dims = x.dims().to_vec();
            dims.remove(*axis);
            Ok((Shape::new(dims), DType::I32))
        }
        Op::Cast { to } => Ok((operands[0].0.clone(), *to)),
        Op::StopGradient => Ok((operands[0].0.clone(), operands[0].1)),
        Op::AllReduce { .. } => {
            let (x, d) = operands[0];
            if d != DType::F32 {
                return Err(Error::DTypeMismatch {
                    op: name,
                    expected: "f32 (collectives carry f32 values)".into(),
                    found: d,
                });
            }
            Ok((x.clone(), d))
        }
        Op::RandomUniform { shape } => {
            let (seed, d) = operands[0];
            if !matches!(d, DType::I32 | DType::F32) {
                return Err(Error::DTypeMismatch {
                    op: name,
                    expected: "an i32 or f32 seed".into(),
                    found: d,
                });
            }
            if seed.numel() != 1 {
                return Err(Error::shape(
                    name,
                    format!("the seed must be a scalar, found {seed}"),
                ));
            }
            Ok((Shape::new(shape.clone()), DType::F32))
        }
    }
}

fn float(op: &'static str, d: DType) -> Result<()> {
    if d.is_float() {
        Ok(())
    } else {
        Err(Error::DTypeMismatch {
            op,
            expected: "a float dtype".into(),
            found: d,
        })
    }
}

fn same_dtype(op: &'static str, a: DType, b: DType) -> Result<()> {
    if a == b {
        Ok(())
    } else {
        Err(Error::DTypeMismatch {
            op,
            expected: a.to_string(),
            found: b,
        })
    }
}

fn expect_shape(op: &'static str, expected: &Shape, found: &Shape) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::shape(
            op,
            format!("expected {expected}, found {found}"),
        ))
    }
}

fn check_axes(op: &'static str, axes: &[usize], rank: usize) -> Result<()> {
    let sorted = axes.windows(2).all(|w| w[0] < w[1]);
    if !sorted || axes.iter().any(|&a| a >= rank) {
        return Err(Error::invalid(
            op,
            format!("axes {axes:?} must be sorted, unique and below the rank {rank}"),
        ));
    }
    Ok(())
}

fn matmul(operands: &[Operand<'_>], ta: bool, tb: bool) -> Result<(Shape, DType)> {
    let ((a, da), (b, db)) = (operands[0], operands[1]);
    float("matmul", da)?;
    same_dtype("matmul", da, db)?;
    if a.rank() < 2 || a.rank() != b.rank() || a.dims()[..a.rank() - 2] != b.dims()[..b.rank() - 2]
    {
        return Err(Error::shape(
            "matmul",
            format!("operands {a} and {b} need rank ≥ 2 and equal batch dims"),
        ));
    }
    let r = a.rank();
    let (m, ka) = if ta {
        (a.dims()[r - 1], a.dims()[r - 2])
    } else {
        (a.dims()[r - 2], a.dims()[r - 1])
    };
    let (kb, n) = if tb {
        (b.dims()[r - 1], b.dims()[r - 2])
    } else {
        (b.dims()[r - 2], b.dims()[r - 1])
    };
    if ka != kb {
        return Err(Error::shape(
            "matmul",
            format!(
                "inner dims differ: {a}{} times {b}{} ({ka} vs {kb})",
                t(ta),
                t(tb)
            ),
        ));
    }
    let mut dims = a.dims()[..r - 2].to_vec();
    dims.extend([m, n]);
    Ok((Shape::new(dims), da))
}

fn t(transposed: bool) -> &'static str {
    if transposed {
        "ᵀ"
    } else {
        ""
    }
}

/// Output rows and columns of a convolution, or an error when the window does not fit.
pub fn conv_output_hw(
    op: &'static str,
    x: &[usize],
    kernel: [usize; 2],
    attrs: &Conv2dAttrs,
) -> Result<(usize, usize)> {
    let p = attrs.padding;
    let out = |size: usize, pad: usize, k: usize, stride: usize, dil: usize| {
        let extent = dil * (k - 1) + 1;
        (size + pad >= extent && stride > 0 && k > 0).then(|| (size + pad - extent) / stride + 1)
    };
    match (
        out(
            x[1],
            p.top + p.bottom,
            kernel[0],
            attrs.stride[0],
            attrs.dilation[0],
        ),
        out(
            x[2],
            p.left + p.right,
            kernel[1],
            attrs.stride[1],
            attrs.dilation[1],
        ),
    ) {
        (Some(h), Some(w)) if attrs.dilation.iter().all(|&d| d > 0) => Ok((h, w)),
        _ => Err(Error::shape(
            op,
            format!("a {kernel:?} window with {attrs:?} does not fit input {x:?}"),
        )),
    }
}

fn expect_conv_output(
    op: &'static str,
    x: &Shape,
    w: &Shape,
    attrs: &Conv2dAttrs,
    dy: &Shape,
) -> Result<()> {
    if x.rank() != 4 || w.rank() != 4 {
        return Err(Error::shape(op, format!("expected rank-4 {x} and {w}")));
    }
    let (oh, ow) = conv_output_hw(op, x.dims(), [w.dims()[0], w.dims()[1]], attrs)?;
    expect_shape(op, &Shape::new([x.dims()[0], oh, ow, w.dims()[3]]), dy)
}

/// The NHWC output shape of a pooling window over `x`.
pub fn pool_output(op: &'static str, x: &Shape, attrs: &Pool2dAttrs) -> Result<Shape> {
    if x.rank() != 4 {
        return Err(Error::shape(
            op,
            format!("expected NHWC input (rank 4), found {x}"),
        ));
    }
    let conv = Conv2dAttrs {
        stride: attrs.stride,
        dilation: [1, 1],
        padding: attrs.padding,
    };
    let (oh, ow) = conv_output_hw(op, x.dims(), attrs.window, &conv)?;
    Ok(Shape::new([x.dims()[0], oh, ow, x.dims()[3]]))
}
