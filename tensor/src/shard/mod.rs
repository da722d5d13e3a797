//! The data-parallel graph transform: one replica's share of a step built for the whole batch.
//!
//! The transform knows no layer. It follows the batch through the graph: every `Input` whose
//! leading dim is the global batch `B` is cut to this replica's rows, and each node computed
//! from such a value keeps the batch on one axis (tracked per node), with the sizes in its
//! attributes (reshape, broadcast, slice, gradient shapes) cut to match. Wherever the original
//! graph *combines* samples — a reduction over the batch axis, a product that contracts it
//! (the weight gradient `xᵀ·dy`), a filter gradient — the replica computes its partial result
//! and an [`Op::AllReduce`] completes it, so the value is the whole batch's again: the loss
//! and metrics (means over the batch), every parameter's gradient, and the batch moments of
//! batch normalisation. The graph's own constants (the `1/B` of a mean and of its gradient)
//! are kept, so the gradients are averaged over the global batch, and every replica applies
//! the same optimizer update to the same weights.
//!
//! A value computed without the batch but with a dim of size `B` on the batch axis (a random
//! draw such as dropout's mask, a broadcast zero in a gradient) is cut to this replica's rows
//! where it meets batched values, so random masks keep their one-device, index-keyed values.

mod bucket;
mod rows;
mod split;

pub use bucket::BUCKET_BYTES;
pub use rows::{check_lengths, input_splits, shard_inputs, InputSplit};
pub use split::{split_batch, Shard};

use crate::ir::{Node, Op, ReduceOp};
use crate::{AllReduceOp, Error, Graph, NodeId, Result};
use bucket::Bucket;
use std::collections::HashMap;

/// One replica's graph.
#[derive(Debug)]
pub struct Sharded {
    /// The graph to compile on the replica's backend.
    pub graph: Graph,
    /// For each output, in order: whether it holds this replica's rows (on axis 0), to be
    /// concatenated with the other replicas', rather than a value every replica shares.
    pub batched_outputs: Vec<bool>,
}

/// The global batch of `graph`: the leading dim of its first input of rank one or more.
pub fn global_batch(graph: &Graph) -> Option<usize> {
    graph
        .inputs()
        .iter()
        .find_map(|(_, id)| graph.shape(*id).ok()?.dims().first().copied())
}

/// This replica's share of `graph` (built for a global batch of `batch` rows): its rows are
/// `shard`.
pub fn shard_graph(graph: &Graph, batch: usize, shard: Shard) -> Result<Sharded> {
    let mut t = Transform {
        old: graph,
        new: Graph::new(),
        batch,
        shard,
        values: Vec::with_capacity(graph.nodes().len()),
        cut: HashMap::new(),
        bucket: Bucket::default(),
    };
    for (i, node) in graph.nodes().iter().enumerate() {
        if node.inputs.iter().any(|x| t.bucket.holds(x.0)) {
            t.flush()?;
        }
        let v = t.node(i, node)?;
        t.values.push(v);
        if t.bucket.is_full() {
            t.flush()?;
        }
    }
    t.finish()
}

/// A node's counterpart in the replica's graph, and the axis holding the replica's rows.
#[derive(Clone, Copy, Debug)]
struct Value {
    id: NodeId,
    axis: Option<usize>,
}

impl Value {
    fn shared(id: NodeId) -> Self {
        Value { id, axis: None }
    }
    fn rows(id: NodeId, axis: usize) -> Self {
        Value {
            id,
            axis: Some(axis),
        }
    }
}

struct Transform<'a> {
    old: &'a Graph,
    new: Graph,
    batch: usize,
    shard: Shard,
    values: Vec<Value>,
    /// Shared values cut to this replica's rows, by (node, axis).
    cut: HashMap<(usize, usize), NodeId>,
    /// Partial sums waiting for their all-reduce.
    bucket: Bucket,
}

fn refuse(i: usize, node: &Node, why: &str) -> Error {
    Error::InvalidArgument {
        op: "mirrored",
        detail: format!(
            "cannot split node %{i} ({}) between replicas: {why}",
            node.op.name()
        ),
    }
}

impl Transform<'_> {
    fn dims(&self, id: NodeId) -> &[usize] {
        self.old.nodes()[id.0].shape.dims()
    }

    fn node(&mut self, i: usize, node: &Node) -> Result<Value> {
        let (shape, dtype) = (node.shape.clone(), node.dtype);
        match &node.op {
            Op::Input { name } if shape.dims().first() == Some(&self.batch) => {
                let mut dims = shape.0.clone();
                dims[0] = self.shard.rows;
                Ok(Value::rows(self.new.input(name, dims, dtype)?, 0))
            }
            Op::Input { name } => Ok(Value::shared(self.new.input(name, shape, dtype)?)),
            Op::Parameter { name } => Ok(Value::shared(self.new.parameter(name, shape, dtype)?)),
            Op::Constant(c) => Ok(Value::shared(self.new.constant((**c).clone()))),
            op => {
                let operands: Vec<Value> = node.inputs.iter().map(|x| self.values[x.0]).collect();
                if operands.iter().all(|v| v.axis.is_none()) {
                    let ids: Vec<NodeId> = operands.iter().map(|v| v.id).collect();
                    return Ok(Value::shared(self.new.push(op.clone(), &ids)?));
                }
                self.batched(i, node, &operands)
            }
        }
    }

    /// A node with at least one operand holding this replica's rows.
    fn batched(&mut self, i: usize, node: &Node, ops: &[Value]) -> Result<Value> {
        let axis0 = ops.iter().find_map(|v| v.axis).unwrap_or(0);
        let rank = node.shape.rank();
        match &node.op {
            Op::Unary(_)
            | Op::Binary(_)
            | Op::Compare(_)
            | Op::Select
            | Op::Cast { .. }
            | Op::StopGradient => self.elementwise(i, node, ops),
            Op::Concat { axis } if *axis != axis0 => self.elementwise(i, node, ops),
            Op::Reshape { shape } => {
                let to = self.reshaped_axis(i, node, axis0, shape)?;
                let mut shape = shape.clone();
                shape[to] = self.shard.rows;
                self.push(Op::Reshape { shape }, &[ops[0].id], to)
            }
            Op::Transpose { perm } => {
                let to = perm.iter().position(|&p| p == axis0).unwrap_or(0);
                self.push(node.op.clone(), &[ops[0].id], to)
            }
            Op::Broadcast { shape } => {
                let to = axis0 + rank - self.dims(node.inputs[0]).len();
                let mut shape = shape.clone();
                shape[to] = self.shard.rows;
                self.push(Op::Broadcast { shape }, &[ops[0].id], to)
            }
            Op::Reduce {
                op,
                axes,
                keep_dims,
            } => self.reduce(i, node, ops[0], *op, axes, *keep_dims),
            Op::MatMul {
                transpose_a,
                transpose_b,
            } => self.matmul(i, node, ops, [*transpose_a, *transpose_b]),
            Op::Conv2d(_) | Op::MaxPool2d(_) | Op::AvgPool2d(_) => {
                let ids = self.along_rows(i, node, ops, &[true, false])?;
                self.push(node.op.clone(), &ids, 0)
            }
            Op::MaxPool2dGrad(_) => {
                let ids = self.along_rows(i, node, ops, &[true, true])?;
                self.push(node.op.clone(), &ids, 0)
            }
            Op::Conv2dGradInput { attrs, input_shape } => {
                let ids = self.along_rows(i, node, ops, &[true, false])?;
                let mut input_shape = input_shape.clone();
                input_shape[0] = self.shard.rows;
                let op = Op::Conv2dGradInput {
                    attrs: *attrs,
                    input_shape,
                };
                self.push(op, &ids, 0)
            }
            Op::AvgPool2dGrad { attrs, input_shape } => {
                let ids = self.along_rows(i, node, ops, &[true])?;
                let mut input_shape = input_shape.clone();
                input_shape[0] = self.shard.rows;
                let op = Op::AvgPool2dGrad {
                    attrs: *attrs,
                    input_shape,
                };
                self.push(op, &ids, 0)
            }
            Op::Conv2dGradFilter { .. } => {
                let ids = self.along_rows(i, node, ops, &[true, true])?;
                let partial = self.new.push(node.op.clone(), &ids)?;
                self.summed_later(i, partial)
            }
            Op::Slice { starts, ends } => {
                if starts[axis0] != 0 || ends[axis0] != self.batch {
                    return Err(refuse(i, node, "it slices the batch axis"));
                }
                let mut ends = ends.clone();
                ends[axis0] = self.shard.rows;
                let op = Op::Slice {
                    starts: starts.clone(),
                    ends,
                };
                self.push(op, &[ops[0].id], axis0)
            }
            Op::Pad { low, high } if low[axis0] == 0 && high[axis0] == 0 => {
                self.push(node.op.clone(), &[ops[0].id], axis0)
            }
            Op::OneHot { .. } => self.push(node.op.clone(), &[ops[0].id], axis0),
            Op::ArgMax { axis } if *axis != axis0 => {
                let to = axis0 - usize::from(*axis < axis0);
                self.push(node.op.clone(), &[ops[0].id], to)
            }
            _ => Err(refuse(i, node, "it mixes samples along the batch axis")),
        }
    }

    fn push(&mut self, op: Op, ids: &[NodeId], axis: usize) -> Result<Value> {
        Ok(Value::rows(self.new.push(op, ids)?, axis))
    }

    /// A replica's partial result, completed over the group now.
    fn completed(&mut self, partial: NodeId, op: AllReduceOp) -> Result<Value> {
        Ok(Value::shared(self.new.all_reduce(partial, op)?))
    }

    /// A replica's partial sum as the value of original node `i`, all-reduced with others in a
    /// bucket before anything reads it (until then the value is the partial sum).
    fn summed_later(&mut self, i: usize, partial: NodeId) -> Result<Value> {
        self.bucket.defer(&self.new, i, partial)?;
        Ok(Value::shared(partial))
    }

    /// All-reduces the bucket and points its members at their sums.
    fn flush(&mut self) -> Result<()> {
        for (i, id) in self.bucket.flush(&mut self.new)? {
            self.values[i] = Value::shared(id);
        }
        Ok(())
    }

    /// Elementwise ops (and concatenation off the batch axis): operands aligned from the
    /// right, shared operands with the full batch on the batch axis cut to this replica.
    fn elementwise(&mut self, i: usize, node: &Node, ops: &[Value]) -> Result<Value> {
        let rank = node.shape.rank();
        let mut axis = None;
        for (x, v) in node.inputs.iter().zip(ops) {
            if let Some(a) = v.axis {
                let at = a + rank - self.dims(*x).len();
                if axis.is_some_and(|b| b != at) {
                    return Err(refuse(
                        i,
                        node,
                        "its operands hold the batch on different axes",
                    ));
                }
                axis = Some(at);
            }
        }
        let axis = axis.unwrap_or(0);
        let mut ids = Vec::with_capacity(ops.len());
        for (x, v) in node.inputs.iter().zip(ops) {
            let lead = rank - self.dims(*x).len();
            let full = v.axis.is_none()
                && axis >= lead
                && self.dims(*x)[axis - lead] == self.batch
                && self.batch != 1;
            ids.push(if full {
                self.cut_rows(*x, axis - lead)?
            } else {
                v.id
            });
        }
        self.push(node.op.clone(), &ids, axis)
    }

    /// Operands that must hold the batch on axis 0 (`rows[k]`) or be shared.
    fn along_rows(
        &mut self,
        i: usize,
        node: &Node,
        ops: &[Value],
        rows: &[bool],
    ) -> Result<Vec<NodeId>> {
        let mut ids = Vec::with_capacity(ops.len());
        for ((x, v), &batched) in node.inputs.iter().zip(ops).zip(rows) {
            ids.push(match (v.axis, batched) {
                (Some(0), true) | (None, false) => v.id,
                (None, true) if self.dims(*x).first() == Some(&self.batch) => {
                    self.cut_rows(*x, 0)?
                }
                _ => return Err(refuse(i, node, "the batch is not the leading axis")),
            });
        }
        Ok(ids)
    }

    /// Where a reshape puts the batch axis `axis`: the output axis of size `B` with as many
    /// elements before it.
    fn reshaped_axis(&self, i: usize, node: &Node, axis: usize, to: &[usize]) -> Result<usize> {
        let before: usize = self.dims(node.inputs[0])[..axis].iter().product();
        let mut seen = 1;
        for (j, &d) in to.iter().enumerate() {
            if seen == before && d == self.batch {
                return Ok(j);
            }
            seen *= d;
        }
        Err(refuse(i, node, "it merges the batch axis with others"))
    }

    fn reduce(
        &mut self,
        i: usize,
        node: &Node,
        x: Value,
        op: ReduceOp,
        axes: &[usize],
        keep_dims: bool,
    ) -> Result<Value> {
        let axis = x.axis.unwrap_or(0);
        if !axes.contains(&axis) {
            let to = if keep_dims {
                axis
            } else {
                axis - axes.iter().filter(|&&a| a < axis).count()
            };
            return self.push(node.op.clone(), &[x.id], to);
        }
        // The batch is reduced: a partial sum (or maximum) here, completed over the group.
        let local = match op {
            ReduceOp::Sum | ReduceOp::Mean => ReduceOp::Sum,
            ReduceOp::Max => ReduceOp::Max,
        };
        let partial = self.new.reduce(local, x.id, axes, keep_dims)?;
        if op == ReduceOp::Sum {
            return self.summed_later(i, partial);
        }
        let collective = match op {
            ReduceOp::Max => AllReduceOp::Max,
            ReduceOp::Sum | ReduceOp::Mean => AllReduceOp::Sum,
        };
        let total = self.completed(partial, collective)?;
        if op != ReduceOp::Mean {
            return Ok(total);
        }
        let count: usize = axes.iter().map(|&a| self.dims(node.inputs[0])[a]).product();
        let count = self.new.scalar(count as f32);
        Ok(Value::shared(self.new.div(total.id, count)?))
    }

    /// `op(a) @ op(b)` with the batch on a row of `a`, a column of `b`, a leading dim of both,
    /// or contracted (then each replica holds a partial product, completed over the group).
    fn matmul(&mut self, i: usize, node: &Node, ops: &[Value], t: [bool; 2]) -> Result<Value> {
        let rank = node.shape.rank();
        // Per operand: (leading dims, its row/column axis kept in the output, its contracted axis).
        let axes = |k: usize, r: usize| {
            let (kept, contracted) = if (k == 0) != t[k] {
                (r - 2, r - 1)
            } else {
                (r - 1, r - 2)
            };
            (kept, contracted)
        };
        let (ra, rb) = (
            self.dims(node.inputs[0]).len(),
            self.dims(node.inputs[1]).len(),
        );
        let roles = [axes(0, ra), axes(1, rb)];
        let role = |k: usize| ops[k].axis.map(|a| (a, roles[k]));
        let op = node.op.clone();
        match (role(0), role(1)) {
            (Some((a, _)), _) | (_, Some((a, _))) if a + 2 < rank => {
                let ids = self.cut_all(node, ops, a)?;
                self.push(op, &ids, a)
            }
            (Some((a, (kept, _))), None) if a == kept => {
                self.push(op, &[ops[0].id, ops[1].id], rank - 2)
            }
            (None, Some((b, (kept, _)))) if b == kept => {
                self.push(op, &[ops[0].id, ops[1].id], rank - 1)
            }
            (Some((a, (_, ca))), Some((b, (_, cb)))) if a == ca && b == cb => {
                let partial = self.new.push(op, &[ops[0].id, ops[1].id])?;
                self.summed_later(i, partial)
            }
            (Some((a, (_, ca))), None) if a == ca => {
                let b = self.cut_rows(node.inputs[1], roles[1].1)?;
                let partial = self.new.push(op, &[ops[0].id, b])?;
                self.summed_later(i, partial)
            }
            (None, Some((b, (_, cb)))) if b == cb => {
                let a = self.cut_rows(node.inputs[0], roles[0].1)?;
                let partial = self.new.push(op, &[a, ops[1].id])?;
                self.summed_later(i, partial)
            }
            _ => Err(refuse(
                i,
                node,
                "both operands hold the batch on uncontracted axes",
            )),
        }
    }

    /// Every operand on batch axis `axis`, shared ones cut to this replica's rows.
    fn cut_all(&mut self, node: &Node, ops: &[Value], axis: usize) -> Result<Vec<NodeId>> {
        let mut ids = Vec::with_capacity(ops.len());
        for (x, v) in node.inputs.iter().zip(ops) {
            ids.push(match v.axis {
                Some(_) => v.id,
                None => self.cut_rows(*x, axis)?,
            });
        }
        Ok(ids)
    }

    /// This replica's rows (on `axis`) of a shared value that spans the whole batch: a
    /// broadcast along that axis is rebuilt at the replica's size, anything else is sliced.
    fn cut_rows(&mut self, x: NodeId, axis: usize) -> Result<NodeId> {
        if let Some(&id) = self.cut.get(&(x.0, axis)) {
            return Ok(id);
        }
        let node = &self.old.nodes()[x.0];
        let id = match &node.op {
            Op::Broadcast { shape } if self.broadcasts_along(node, axis) => {
                let mut shape = shape.clone();
                shape[axis] = self.shard.rows;
                let source = self.values[node.inputs[0].0].id;
                self.new.push(Op::Broadcast { shape }, &[source])?
            }
            _ => {
                let dims = node.shape.dims();
                let mut starts = vec![0; dims.len()];
                let mut ends = dims.to_vec();
                starts[axis] = self.shard.offset;
                ends[axis] = self.shard.offset + self.shard.rows;
                self.new.slice(self.values[x.0].id, &starts, &ends)?
            }
        };
        self.cut.insert((x.0, axis), id);
        Ok(id)
    }

    /// Whether a broadcast node creates its `axis` (its operand has no such dim, or size 1).
    fn broadcasts_along(&self, node: &Node, axis: usize) -> bool {
        let from = self.dims(node.inputs[0]);
        let lead = node.shape.rank() - from.len();
        axis < lead || from[axis - lead] == 1
    }

    fn finish(mut self) -> Result<Sharded> {
        self.flush()?;
        let mut batched_outputs = Vec::with_capacity(self.old.outputs().len());
        for (name, id) in self.old.outputs() {
            let v = self.values[id.0];
            match v.axis {
                None | Some(0) => batched_outputs.push(v.axis.is_some()),
                Some(a) => {
                    return Err(Error::InvalidArgument {
                        op: "mirrored",
                        detail: format!(
                            "output {name:?} holds the batch on axis {a}; replicas' outputs \
                             are joined along axis 0"
                        ),
                    })
                }
            }
            self.new.output(name, v.id)?;
        }
        for (p, value) in self.old.updates() {
            let v = self.values[value.0];
            if v.axis.is_some() {
                let name = match &self.old.nodes()[p.0].op {
                    Op::Parameter { name } => name.clone(),
                    _ => format!("{p}"),
                };
                return Err(Error::InvalidArgument {
                    op: "mirrored",
                    detail: format!(
                        "the new value of state {name:?} holds one value per sample; state \
                         must be the same on every replica"
                    ),
                });
            }
            self.new.update(self.values[p.0].id, v.id)?;
        }
        Ok(Sharded {
            graph: self.new,
            batched_outputs,
        })
    }
}
