//! Reverse-mode automatic differentiation on the IR: one rule per primitive op, so layers need
//! no backward code and backends only ever see primitive ops.

use crate::collective::AllReduceOp;
use crate::ir::{BinaryOp, CompareOp, Graph, NodeId, Op, ReduceOp, UnaryOp};
use crate::{Error, Result};
use std::collections::HashMap;

/// Appends to `graph` the gradients of the scalar `loss` with respect to each of `wrt`.
///
/// A `wrt` node the loss does not depend on gets a zero gradient. The loss must be a float
/// scalar; integer and boolean values carry no gradient.
pub fn grad(graph: &mut Graph, loss: NodeId, wrt: &[NodeId]) -> Result<Vec<NodeId>> {
    let loss_node = graph.node(loss)?;
    if loss_node.shape.numel() != 1 || !loss_node.dtype.is_float() {
        return Err(Error::invalid(
            "grad",
            format!(
                "the loss must be a float scalar, found {} {}",
                loss_node.dtype, loss_node.shape
            ),
        ));
    }
    for &w in wrt {
        graph.node(w)?;
    }
    let relevant = relevant_nodes(graph, loss, wrt);
    let mut grads: HashMap<NodeId, NodeId> = HashMap::new();
    let seed = graph.full(1.0, graph.shape(loss)?.clone())?;
    grads.insert(loss, seed);

    for id in (0..=loss.0).rev().map(NodeId) {
        if !relevant[id.0] {
            continue;
        }
        let Some(&g) = grads.get(&id) else { continue };
        let node = graph.node(id)?.clone();
        let contributions = rule(graph, id, &node.op, &node.inputs, g)?;
        for (input, dg) in node.inputs.iter().zip(contributions) {
            let Some(dg) = dg else { continue };
            if !relevant[input.0] {
                continue;
            }
            let total = match grads.get(input) {
                Some(&prev) => graph.add(prev, dg)?,
                None => dg,
            };
            grads.insert(*input, total);
        }
    }

    wrt.iter()
        .map(|&w| match grads.get(&w) {
            Some(&g) => Ok(g),
            None => {
                let shape = graph.shape(w)?.clone();
                graph.full(0.0, shape)
            }
        })
        .collect()
}

/// Nodes that lie on a path from one of `wrt` to `loss` (and carry floats).
fn relevant_nodes(graph: &Graph, loss: NodeId, wrt: &[NodeId]) -> Vec<bool> {
    let nodes = graph.nodes();
    let mut depends = vec![false; nodes.len()];
    for &w in wrt {
        depends[w.0] = true;
    }
    for (i, n) in nodes.iter().enumerate() {
        if !depends[i] && n.inputs.iter().any(|x| depends[x.0]) {
            depends[i] = n.dtype.is_float() && !matches!(n.op, Op::StopGradient);
        }
    }
    let mut needed = vec![false; nodes.len()];
    needed[loss.0] = true;
    for i in (0..=loss.0).rev() {
        if needed[i] && depends[i] {
            for x in &nodes[i].inputs {
                needed[x.0] = true;
            }
        }
    }
    (0..nodes.len()).map(|i| needed[i] && depends[i]).collect()
}

/// The gradient contribution to each operand of `node` given its output gradient `g`; `None`
/// for operands that carry no gradient.
fn rule(
    graph: &mut Graph,
    node: NodeId,
    op: &Op,
    inputs: &[NodeId],
    g: NodeId,
) -> Result<Vec<Option<NodeId>>> {
    let x = |i: usize| inputs[i];
    Ok(match op {
        Op::Input { .. } | Op::Parameter { .. } | Op::Constant(_) => vec![],
        Op::Unary(u) => vec![Some(unary_rule(graph, *u, x(0), node, g)?)],
        Op::Binary(b) => {
            let (da, db) = binary_rule(graph, *b, x(0), x(1), node, g)?;
            let sa = graph.shape(x(0))?.clone();
            let sb = graph.shape(x(1))?.clone();
            vec![Some(graph.sum_to(da, &sa)?), Some(graph.sum_to(db, &sb)?)]
        }
        Op::Compare(_)
        | Op::OneHot { .. }
        | Op::ArgMax { .. }
        | Op::StopGradient
        | Op::RandomUniform { .. } => {
            vec![None; inputs.len()]
        }
        Op::Select => {
            let zero = graph.scalar(0.0);
            let zeros = graph.broadcast(zero, graph.shape(g)?.clone())?;
            let dt = graph.select(x(0), g, zeros)?;
            let df = graph.select(x(0), zeros, g)?;
            let st = graph.shape(x(1))?.clone();
            let sf = graph.shape(x(2))?.clone();
            vec![
                None,
                Some(graph.sum_to(dt, &st)?),
                Some(graph.sum_to(df, &sf)?),
            ]
        }
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => {
            let (a, b) = (x(0), x(1));
            let (da, db) = match (transpose_a, transpose_b) {
                (false, false) => (
                    graph.matmul_t(g, b, false, true)?,
                    graph.matmul_t(a, g, true, false)?,
                ),
                (false, true) => (
                    graph.matmul_t(g, b, false, false)?,
                    graph.matmul_t(g, a, true, false)?,
                ),
                (true, false) => (
                    graph.matmul_t(b, g, false, true)?,
                    graph.matmul_t(a, g, false, false)?,
                ),
                (true, true) => (
                    graph.matmul_t(b, g, true, true)?,
                    graph.matmul_t(g, a, true, true)?,
                ),
            };
            vec![Some(da), Some(db)]
        }
        Op::Conv2d(attrs) => {
            let input_shape = graph.shape(x(0))?.0.clone();
            let filter_shape = graph.shape(x(1))?.0.clone();
            let dx = graph.push(
                Op::Conv2dGradInput {
                    attrs: *attrs,
                    input_shape,
                },
                &[g, x(1)],
            )?;
            let dw = graph.push(
                Op::Conv2dGradFilter {
                    attrs: *attrs,
                    filter_shape,
                },
                &[x(0), g],
            )?;
            vec![Some(dx), Some(dw)]
        }
        Op::MaxPool2d(attrs) => vec![Some(graph.push(Op::MaxPool2dGrad(*attrs), &[x(0), g])?)],
        Op::AvgPool2d(attrs) => {
            let input_shape = graph.shape(x(0))?.0.clone();
            let op = Op::AvgPool2dGrad {
                attrs: *attrs,
                input_shape,
            };
            vec![Some(graph.push(op, &[g])?)]
        }
        Op::Reduce {
            op: reduce,
            axes,
            keep_dims,
        } => vec![Some(reduce_rule(
            graph,
            *reduce,
            axes,
            *keep_dims,
            x(0),
            node,
            g,
        )?)],
        Op::Reshape { .. } => {
            let s = graph.shape(x(0))?.clone();
            vec![Some(graph.reshape(g, s)?)]
        }
        Op::Transpose { perm } => {
            let mut inverse = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i;
            }
            vec![Some(graph.transpose(g, &inverse)?)]
        }
        Op::Broadcast { .. } => {
            let s = graph.shape(x(0))?.clone();
            vec![Some(graph.sum_to(g, &s)?)]
        }
        Op::Slice { starts, ends } => {
            let dims = graph.shape(x(0))?.0.clone();
            let high: Vec<usize> = dims.iter().zip(ends).map(|(d, e)| d - e).collect();
            vec![Some(graph.pad(g, starts, &high)?)]
        }
        Op::Pad { low, .. } => {
            let dims = graph.shape(x(0))?.0.clone();
            let ends: Vec<usize> = low.iter().zip(&dims).map(|(l, d)| l + d).collect();
            vec![Some(graph.slice(g, low, &ends)?)]
        }
        Op::Concat { axis } => {
            let out = graph.shape(g)?.0.clone();
            let mut offset = 0;
            let mut grads = Vec::with_capacity(inputs.len());
            for &input in inputs {
                let len = graph.shape(input)?.dims()[*axis];
                let mut starts = vec![0; out.len()];
                let mut ends = out.clone();
                starts[*axis] = offset;
                ends[*axis] = offset + len;
                grads.push(Some(graph.slice(g, &starts, &ends)?));
                offset += len;
            }
            grads
        }
        Op::Cast { .. } => {
            let from = graph.dtype(x(0))?;
            vec![from.is_float().then(|| graph.cast(g, from)).transpose()?]
        }
        // Replica r's output is the sum of every replica's input, so each input's cotangent
        // is the sum of every replica's output cotangent: all-reduce-sum again (the mean's
        // 1/n weight carries over the same way).
        Op::AllReduce {
            op: op @ (AllReduceOp::Sum | AllReduceOp::Mean),
        } => vec![Some(graph.all_reduce(g, *op)?)],
        Op::AllReduce {
            op: AllReduceOp::Max,
        } => {
            return Err(Error::NotDifferentiable(
                "all_reduce max (it has no gradient rule)".into(),
            ))
        }
        Op::Conv2dGradInput { .. }
        | Op::Conv2dGradFilter { .. }
        | Op::MaxPool2dGrad(_)
        | Op::AvgPool2dGrad { .. } => {
            return Err(Error::NotDifferentiable(format!(
                "{} (second-order gradients of convolution and pooling are not implemented)",
                op.name()
            )))
        }
    })
}

fn unary_rule(graph: &mut Graph, op: UnaryOp, x: NodeId, y: NodeId, g: NodeId) -> Result<NodeId> {
    match op {
        UnaryOp::Neg => graph.neg(g),
        UnaryOp::Exp => graph.mul(g, y),
        UnaryOp::Log => graph.div(g, x),
        UnaryOp::Sqrt => {
            let two_y = graph.scale(y, 2.0)?;
            graph.div(g, two_y)
        }
        UnaryOp::Rsqrt => {
            // d/dx x^-1/2 = -1/2 x^-3/2 = -y³/2
            let y2 = graph.mul(y, y)?;
            let y3 = graph.mul(y2, y)?;
            let d = graph.scale(y3, -0.5)?;
            graph.mul(g, d)
        }
        UnaryOp::Relu => {
            // From the output (y ≤ 0 exactly where x ≤ 0), so that the pre-activation need not
            // be kept for the backward pass; the scalar zero is broadcast by the select itself.
            // As PyTorch's `threshold_backward`, the gradient passes where y is NaN.
            let zero = graph.scalar(0.0);
            let clamped = graph.compare(CompareOp::Le, y, zero)?;
            graph.select(clamped, zero, g)
        }
        UnaryOp::Sigmoid => {
            let one = graph.scalar(1.0);
            let one_minus = graph.sub(one, y)?;
            let d = graph.mul(y, one_minus)?;
            graph.mul(g, d)
        }
        UnaryOp::Tanh => {
            let one = graph.scalar(1.0);
            let y2 = graph.mul(y, y)?;
            let d = graph.sub(one, y2)?;
            graph.mul(g, d)
        }
        UnaryOp::Abs => {
            let zero = graph.scalar(0.0);
            let negative = graph.compare(CompareOp::Lt, x, zero)?;
            let ng = graph.neg(g)?;
            graph.select(negative, ng, g)
        }
        UnaryOp::Square => {
            let two_x = graph.scale(x, 2.0)?;
            graph.mul(g, two_x)
        }
        UnaryOp::Recip => {
            let y2 = graph.mul(y, y)?;
            let d = graph.mul(g, y2)?;
            graph.neg(d)
        }
    }
}

/// Gradients of a binary op at the broadcast output shape (summed down by the caller).
fn binary_rule(
    graph: &mut Graph,
    op: BinaryOp,
    a: NodeId,
    b: NodeId,
    y: NodeId,
    g: NodeId,
) -> Result<(NodeId, NodeId)> {
    let out_shape = graph.shape(y)?.clone();
    let full = |graph: &mut Graph, v: NodeId| graph.broadcast(v, out_shape.clone());
    Ok(match op {
        BinaryOp::Add => (g, g),
        BinaryOp::Sub => (g, graph.neg(g)?),
        BinaryOp::Mul => (graph.mul(g, b)?, graph.mul(g, a)?),
        BinaryOp::Div => {
            let da = graph.div(g, b)?;
            let gy = graph.mul(g, y)?;
            let gyb = graph.div(gy, b)?;
            (da, graph.neg(gyb)?)
        }
        BinaryOp::Max | BinaryOp::Min => {
            // Each side loses where the other strictly wins; a tie goes to `a`. Where either
            // is NaN neither comparison holds and both get the gradient, as in PyTorch.
            let (a_loses, b_loses) = if op == BinaryOp::Max {
                (CompareOp::Lt, CompareOp::Ge)
            } else {
                (CompareOp::Gt, CompareOp::Le)
            };
            let a_loses = graph.compare(a_loses, a, b)?;
            let b_loses = graph.compare(b_loses, a, b)?;
            let zero = graph.scalar(0.0);
            let zeros = full(graph, zero)?;
            let g = full(graph, g)?;
            (
                graph.select(a_loses, zeros, g)?,
                graph.select(b_loses, zeros, g)?,
            )
        }
        BinaryOp::Pow => {
            // d/da a^b = b·a^(b-1) = b·y/a;  d/db a^b = y·ln a
            let by = graph.mul(b, y)?;
            let bya = graph.div(by, a)?;
            let da = graph.mul(g, bya)?;
            let ln_a = graph.log(a)?;
            let y_ln_a = graph.mul(y, ln_a)?;
            (da, graph.mul(g, y_ln_a)?)
        }
    })
}

fn reduce_rule(
    graph: &mut Graph,
    op: ReduceOp,
    axes: &[usize],
    keep_dims: bool,
    x: NodeId,
    y: NodeId,
    g: NodeId,
) -> Result<NodeId> {
    let xs = graph.shape(x)?.clone();
    let kept: Vec<usize> = xs
        .dims()
        .iter()
        .enumerate()
        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
        .collect();
    let g_kept = if keep_dims {
        g
    } else {
        graph.reshape(g, kept.clone())?
    };
    let g_full = graph.broadcast(g_kept, xs.clone())?;
    match op {
        ReduceOp::Sum => Ok(g_full),
        ReduceOp::Mean => {
            let count: usize = axes.iter().map(|&a| xs.dims()[a]).product();
            graph.scale(g_full, 1.0 / count.max(1) as f32)
        }
        ReduceOp::Max => {
            let y_kept = if keep_dims {
                y
            } else {
                graph.reshape(y, kept)?
            };
            let y_full = graph.broadcast(y_kept, xs)?;
            // Where the maximum is NaN no element equals it and the gradient is 0, as with
            // PyTorch's `amax` and JAX's `max`: the loss is NaN already.
            let is_max = graph.compare(CompareOp::Eq, x, y_full)?;
            let zero = graph.scalar(0.0);
            let zeros = graph.broadcast(zero, graph.shape(g_full)?.clone())?;
            graph.select(is_max, g_full, zeros)
        }
    }
}
