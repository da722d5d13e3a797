//! The SSA graph: nodes are appended in topological order and never change, so a node id is
//! also a valid execution position.

use super::infer::infer;
use super::op::{
    BinaryOp, CompareOp, Conv2dAttrs, Op, Padding2d, PaddingMode, Pool2dAttrs, ReduceOp, UnaryOp,
};
use crate::collective::AllReduceOp;
use crate::host::HostTensor;
use crate::{DType, Error, Result, Shape};
use std::fmt;
use std::sync::Arc;

/// The id of a node in its graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// One SSA value: an op, its operands, and its inferred shape and dtype.
#[derive(Clone, Debug)]
pub struct Node {
    /// The operation.
    pub op: Op,
    /// Operand ids, all smaller than this node's id.
    pub inputs: Vec<NodeId>,
    /// Output shape.
    pub shape: Shape,
    /// Output dtype.
    pub dtype: DType,
}

/// A dataflow graph: one step of computation with named outputs and state updates.
///
/// A train step is one graph: forward, backward (from [`crate::grad`]) and the optimizer's new
/// state values, bound to their parameters with [`Graph::update`].
#[derive(Clone, Debug, Default)]
pub struct Graph {
    nodes: Vec<Node>,
    outputs: Vec<(String, NodeId)>,
    updates: Vec<(NodeId, NodeId)>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// All nodes, in topological order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// One node, or an error if the id is foreign.
    pub fn node(&self, id: NodeId) -> Result<&Node> {
        self.nodes.get(id.0).ok_or(Error::UnknownNode(id.0))
    }

    /// Named outputs, in the order they were declared.
    pub fn outputs(&self) -> &[(String, NodeId)] {
        &self.outputs
    }

    /// State updates as `(parameter, new value)` pairs.
    pub fn updates(&self) -> &[(NodeId, NodeId)] {
        &self.updates
    }

    /// The input nodes with their names, in creation order (the order a step takes them).
    pub fn inputs(&self) -> Vec<(&str, NodeId)> {
        self.leaves(|op| match op {
            Op::Input { name } => Some(name),
            _ => None,
        })
    }

    /// The parameter (state) nodes with their names, in creation order.
    pub fn parameters(&self) -> Vec<(&str, NodeId)> {
        self.leaves(|op| match op {
            Op::Parameter { name } => Some(name),
            _ => None,
        })
    }

    fn leaves<'a>(&'a self, pick: impl Fn(&'a Op) -> Option<&'a String>) -> Vec<(&'a str, NodeId)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| pick(&n.op).map(|name| (name.as_str(), NodeId(i))))
            .collect()
    }

    /// The shape of a node.
    pub fn shape(&self, id: NodeId) -> Result<&Shape> {
        Ok(&self.node(id)?.shape)
    }

    /// The dtype of a node.
    pub fn dtype(&self, id: NodeId) -> Result<DType> {
        Ok(self.node(id)?.dtype)
    }

    /// Appends a node after checking its operands and inferring its shape and dtype.
    pub fn push(&mut self, op: Op, inputs: &[NodeId]) -> Result<NodeId> {
        let mut operands = Vec::with_capacity(inputs.len());
        for &i in inputs {
            let n = self.node(i)?;
            operands.push((&n.shape, n.dtype));
        }
        let (shape, dtype) = infer(&op, &operands)?;
        Ok(self.push_unchecked(op, inputs.to_vec(), shape, dtype))
    }

    fn push_unchecked(
        &mut self,
        op: Op,
        inputs: Vec<NodeId>,
        shape: Shape,
        dtype: DType,
    ) -> NodeId {
        self.nodes.push(Node {
            op,
            inputs,
            shape,
            dtype,
        });
        NodeId(self.nodes.len() - 1)
    }

    fn check_unique(&self, kind: &'static str, name: &str) -> Result<()> {
        let taken = self.nodes.iter().any(|n| match &n.op {
            Op::Input { name: m } | Op::Parameter { name: m } => m == name,
            _ => false,
        });
        if taken {
            return Err(Error::DuplicateName {
                kind,
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// A value fed at every step.
    pub fn input(&mut self, name: &str, shape: impl Into<Shape>, dtype: DType) -> Result<NodeId> {
        self.check_unique("input", name)?;
        let op = Op::Input { name: name.into() };
        Ok(self.push_unchecked(op, vec![], shape.into(), dtype))
    }

    /// Persistent state (a weight or an optimizer slot), zero until written.
    pub fn parameter(
        &mut self,
        name: &str,
        shape: impl Into<Shape>,
        dtype: DType,
    ) -> Result<NodeId> {
        self.check_unique("parameter", name)?;
        let op = Op::Parameter { name: name.into() };
        Ok(self.push_unchecked(op, vec![], shape.into(), dtype))
    }

    /// A constant tensor.
    pub fn constant(&mut self, value: HostTensor) -> NodeId {
        let (shape, dtype) = (value.shape.clone(), value.dtype());
        self.push_unchecked(Op::Constant(Arc::new(value)), vec![], shape, dtype)
    }

    /// A scalar `f32` constant.
    pub fn scalar(&mut self, value: f32) -> NodeId {
        self.constant(HostTensor::scalar(value))
    }

    /// A tensor of one value, as a broadcast scalar.
    pub fn full(&mut self, value: f32, shape: impl Into<Shape>) -> Result<NodeId> {
        let s = self.scalar(value);
        self.broadcast(s, shape)
    }

    /// Declares a named output of the step.
    pub fn output(&mut self, name: &str, value: NodeId) -> Result<()> {
        self.node(value)?;
        if self.outputs.iter().any(|(n, _)| n == name) {
            return Err(Error::DuplicateName {
                kind: "output",
                name: name.into(),
            });
        }
        self.outputs.push((name.into(), value));
        Ok(())
    }

    /// Binds `value` as the new content of `parameter` after each step.
    pub fn update(&mut self, parameter: NodeId, value: NodeId) -> Result<()> {
        let p = self.node(parameter)?;
        let v = self.node(value)?;
        let Op::Parameter { name } = &p.op else {
            return Err(Error::invalid(
                "update",
                format!("{parameter} is a {}, not a parameter", p.op.name()),
            ));
        };
        if p.shape != v.shape || p.dtype != v.dtype {
            return Err(Error::shape(
                "update",
                format!(
                    "parameter {name:?} is {} {}, its new value is {} {}",
                    p.dtype, p.shape, v.dtype, v.shape
                ),
            ));
        }
        if self.updates.iter().any(|(q, _)| *q == parameter) {
            return Err(Error::DuplicateName {
                kind: "update of parameter",
                name: name.clone(),
            });
        }
        self.updates.push((parameter, value));
        Ok(())
    }

    /// The value bound to `parameter` by [`Graph::update`], if any.
    pub fn update_of(&self, parameter: NodeId) -> Option<NodeId> {
        self.updates
            .iter()
            .find(|(p, _)| *p == parameter)
            .map(|(_, v)| *v)
    }

    /// Rebinds the update of `parameter` to `value` (same shape and dtype): how a constraint
    /// applied after an optimizer's update (Keras's `kernel_constraint`) replaces it.
    pub fn replace_update(&mut self, parameter: NodeId, value: NodeId) -> Result<()> {
        let Some(index) = self.updates.iter().position(|(p, _)| *p == parameter) else {
            return self.update(parameter, value);
        };
        let removed = self.updates.remove(index);
        match self.update(parameter, value) {
            Ok(()) => {
                // Keep the update's place, so the step's signature does not move.
                let rebound = self.updates.remove(self.updates.len() - 1);
                self.updates.insert(index, rebound);
                Ok(())
            }
            Err(e) => {
                self.updates.insert(index, removed);
                Err(e)
            }
        }
    }

    pub(crate) fn set_outputs_and_updates(
        &mut self,
        outputs: Vec<(String, NodeId)>,
        updates: Vec<(NodeId, NodeId)>,
    ) {
        self.outputs = outputs;
        self.updates = updates;
    }

    pub(crate) fn push_node(&mut self, node: Node) -> NodeId {
        self.push_unchecked(node.op, node.inputs, node.shape, node.dtype)
    }

    /// Applies a unary function.
    pub fn unary(&mut self, op: UnaryOp, x: NodeId) -> Result<NodeId> {
        self.push(Op::Unary(op), &[x])
    }

    /// Applies a binary function with broadcasting.
    pub fn binary(&mut self, op: BinaryOp, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.push(Op::Binary(op), &[a, b])
    }

    /// Compares with broadcasting.
    pub fn compare(&mut self, op: CompareOp, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.push(Op::Compare(op), &[a, b])
    }

    /// `cond ? on_true : on_false`.
    pub fn select(&mut self, cond: NodeId, on_true: NodeId, on_false: NodeId) -> Result<NodeId> {
        self.push(Op::Select, &[cond, on_true, on_false])
    }

    /// `a + b`
    pub fn add(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Add, a, b)
    }

    /// `a - b`
    pub fn sub(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Sub, a, b)
    }

    /// `a * b`
    pub fn mul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Mul, a, b)
    }

    /// `a / b`
    pub fn div(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Div, a, b)
    }

    /// `x * c` for a scalar constant `c`.
    pub fn scale(&mut self, x: NodeId, c: f32) -> Result<NodeId> {
        let c = self.scalar(c);
        self.mul(x, c)
    }

    /// `-x`
    pub fn neg(&mut self, x: NodeId) -> Result<NodeId> {
        self.unary(UnaryOp::Neg, x)
    }

    /// `e^x`
    pub fn exp(&mut self, x: NodeId) -> Result<NodeId> {
        self.unary(UnaryOp::Exp, x)
    }

    /// `ln x`
    pub fn log(&mut self, x: NodeId) -> Result<NodeId> {
        self.unary(UnaryOp::Log, x)
    }

    /// `sqrt x`
    pub fn sqrt(&mut self, x: NodeId) -> Result<NodeId> {
        self.unary(UnaryOp::Sqrt, x)
    }

    /// `max(x, 0)`
    pub fn relu(&mut self, x: NodeId) -> Result<NodeId> {
        self.unary(UnaryOp::Relu, x)
    }

    /// `op(a) @ op(b)`.
    pub fn matmul_t(&mut self, a: NodeId, b: NodeId, ta: bool, tb: bool) -> Result<NodeId> {
        let op = Op::MatMul {
            transpose_a: ta,
            transpose_b: tb,
        };
        self.push(op, &[a, b])
    }

    /// `a @ b`.
    pub fn matmul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.matmul_t(a, b, false, false)
    }

    /// 2-D convolution of NHWC `x` with an HWIO filter.
    pub fn conv2d(
        &mut self,
        x: NodeId,
        filter: NodeId,
        stride: [usize; 2],
        padding: PaddingMode,
        dilation: [usize; 2],
    ) -> Result<NodeId> {
        let (xs, ws) = (self.shape(x)?.clone(), self.shape(filter)?.clone());
        if xs.rank() != 4 || ws.rank() != 4 {
            return Err(Error::shape(
                "conv2d",
                format!("expected NHWC input and HWIO filter (rank 4), found {xs} and {ws}"),
            ));
        }
        let extent = [
            dilation[0] * (ws.dims()[0].max(1) - 1) + 1,
            dilation[1] * (ws.dims()[1].max(1) - 1) + 1,
        ];
        let padding = resolve_padding(padding, &xs, extent, stride);
        let attrs = Conv2dAttrs {
            stride,
            dilation,
            padding,
        };
        self.push(Op::Conv2d(attrs), &[x, filter])
    }

    /// Max-pooling of NHWC `x`.
    pub fn max_pool2d(
        &mut self,
        x: NodeId,
        window: [usize; 2],
        stride: [usize; 2],
        padding: PaddingMode,
    ) -> Result<NodeId> {
        let attrs = self.pool_attrs(x, window, stride, padding)?;
        self.push(Op::MaxPool2d(attrs), &[x])
    }

    /// Average-pooling of NHWC `x`.
    pub fn avg_pool2d(
        &mut self,
        x: NodeId,
        window: [usize; 2],
        stride: [usize; 2],
        padding: PaddingMode,
    ) -> Result<NodeId> {
        let attrs = self.pool_attrs(x, window, stride, padding)?;
        self.push(Op::AvgPool2d(attrs), &[x])
    }

    fn pool_attrs(
        &self,
        x: NodeId,
        window: [usize; 2],
        stride: [usize; 2],
        padding: PaddingMode,
    ) -> Result<Pool2dAttrs> {
        let xs = self.shape(x)?;
        if xs.rank() != 4 {
            return Err(Error::shape(
                "pool2d",
                format!("expected NHWC input (rank 4), found {xs}"),
            ));
        }
        Ok(Pool2dAttrs {
            window,
            stride,
            padding: resolve_padding(padding, xs, window, stride),
        })
    }

    /// Reduces over `axes` (negative-free, any order; duplicates are an error).
    pub fn reduce(
        &mut self,
        op: ReduceOp,
        x: NodeId,
        axes: &[usize],
        keep_dims: bool,
    ) -> Result<NodeId> {
        let mut sorted = axes.to_vec();
        sorted.sort_unstable();
        let op = Op::Reduce {
            op,
            axes: sorted,
            keep_dims,
        };
        self.push(op, &[x])
    }

    /// Sum over `axes`.
    pub fn sum(&mut self, x: NodeId, axes: &[usize], keep_dims: bool) -> Result<NodeId> {
        self.reduce(ReduceOp::Sum, x, axes, keep_dims)
    }

    /// Mean over `axes`.
    pub fn mean(&mut self, x: NodeId, axes: &[usize], keep_dims: bool) -> Result<NodeId> {
        self.reduce(ReduceOp::Mean, x, axes, keep_dims)
    }

    /// Mean of all elements, as a scalar.
    pub fn mean_all(&mut self, x: NodeId) -> Result<NodeId> {
        let axes: Vec<usize> = (0..self.shape(x)?.rank()).collect();
        self.mean(x, &axes, false)
    }

    /// Maximum over `axes`.
    pub fn max(&mut self, x: NodeId, axes: &[usize], keep_dims: bool) -> Result<NodeId> {
        self.reduce(ReduceOp::Max, x, axes, keep_dims)
    }

    /// Same elements, new shape.
    pub fn reshape(&mut self, x: NodeId, shape: impl Into<Shape>) -> Result<NodeId> {
        let shape = shape.into().0;
        if self.shape(x)?.dims() == shape.as_slice() {
            return Ok(x);
        }
        self.push(Op::Reshape { shape }, &[x])
    }

    /// Permutes dims.
    pub fn transpose(&mut self, x: NodeId, perm: &[usize]) -> Result<NodeId> {
        self.push(
            Op::Transpose {
                perm: perm.to_vec(),
            },
            &[x],
        )
    }

    /// Broadcasts to `shape` (a no-op when the shape is already right).
    pub fn broadcast(&mut self, x: NodeId, shape: impl Into<Shape>) -> Result<NodeId> {
        let shape = shape.into().0;
        if self.shape(x)?.dims() == shape.as_slice() {
            return Ok(x);
        }
        self.push(Op::Broadcast { shape }, &[x])
    }

    /// The block `[starts, ends)`.
    pub fn slice(&mut self, x: NodeId, starts: &[usize], ends: &[usize]) -> Result<NodeId> {
        let op = Op::Slice {
            starts: starts.to_vec(),
            ends: ends.to_vec(),
        };
        self.push(op, &[x])
    }

    /// Zero padding.
    pub fn pad(&mut self, x: NodeId, low: &[usize], high: &[usize]) -> Result<NodeId> {
        let op = Op::Pad {
            low: low.to_vec(),
            high: high.to_vec(),
        };
        self.push(op, &[x])
    }

    /// Concatenation along `axis`.
    pub fn concat(&mut self, xs: &[NodeId], axis: usize) -> Result<NodeId> {
        self.push(Op::Concat { axis }, xs)
    }

    /// One-hot encoding of `i32` labels.
    pub fn one_hot(&mut self, labels: NodeId, depth: usize) -> Result<NodeId> {
        self.push(Op::OneHot { depth }, &[labels])
    }

    /// Index of the maximum along `axis`.
    pub fn argmax(&mut self, x: NodeId, axis: usize) -> Result<NodeId> {
        self.push(Op::ArgMax { axis }, &[x])
    }

    /// Converts the dtype (a no-op when it already matches).
    pub fn cast(&mut self, x: NodeId, to: DType) -> Result<NodeId> {
        if self.dtype(x)? == to {
            return Ok(x);
        }
        self.push(Op::Cast { to }, &[x])
    }

    /// Identity with a zero gradient.
    pub fn stop_gradient(&mut self, x: NodeId) -> Result<NodeId> {
        self.push(Op::StopGradient, &[x])
    }

    /// `F32` values uniform in `[0, 1)` of `shape`, determined by the scalar `seed` (`I32` or
    /// `F32`) and each element's index; feed a seed that changes every step (from state) for
    /// fresh values.
    pub fn random_uniform(&mut self, seed: NodeId, shape: impl Into<Shape>) -> Result<NodeId> {
        let shape = shape.into().0;
        self.push(Op::RandomUniform { shape }, &[seed])
    }

    /// Combines `x` (`F32`) across the replicas of the group the backend runs in.
    pub fn all_reduce(&mut self, x: NodeId, op: AllReduceOp) -> Result<NodeId> {
        self.push(Op::AllReduce { op }, &[x])
    }

    /// Numerically stable softmax over the last axis.
    pub fn softmax(&mut self, x: NodeId) -> Result<NodeId> {
        let last = self
            .shape(x)?
            .rank()
            .checked_sub(1)
            .ok_or_else(|| Error::invalid("softmax", "softmax needs at least one dimension"))?;
        let m = self.max(x, &[last], true)?;
        let m = self.stop_gradient(m)?;
        let shifted = self.sub(x, m)?;
        let e = self.exp(shifted)?;
        let s = self.sum(e, &[last], true)?;
        self.div(e, s)
    }

    /// Numerically stable log-softmax over the last axis.
    pub fn log_softmax(&mut self, x: NodeId) -> Result<NodeId> {
        let last = self.shape(x)?.rank().checked_sub(1).ok_or_else(|| {
            Error::invalid("log_softmax", "log_softmax needs at least one dimension")
        })?;
        let m = self.max(x, &[last], true)?;
        let m = self.stop_gradient(m)?;
        let shifted = self.sub(x, m)?;
        let e = self.exp(shifted)?;
        let s = self.sum(e, &[last], true)?;
        let ls = self.log(s)?;
        self.sub(shifted, ls)
    }

    /// Sums `x` down to `target` (the inverse of broadcasting), as gradients of broadcast
    /// operands need.
    pub fn sum_to(&mut self, x: NodeId, target: &Shape) -> Result<NodeId> {
        let xs = self.shape(x)?.clone();
        if &xs == target {
            return Ok(x);
        }
        if !target.broadcasts_to(&xs) {
            return Err(Error::shape(
                "sum_to",
                format!("{target} does not broadcast to {xs}"),
            ));
        }
        let lead = xs.rank() - target.rank();
        let axes: Vec<usize> = (0..xs.rank())
            .filter(|&i| i < lead || (target.dims()[i - lead] == 1 && xs.dims()[i] != 1))
            .collect();
        let summed = if axes.is_empty() {
            x
        } else {
            self.sum(x, &axes, false)?
        };
        self.reshape(summed, target.clone())
    }
}

/// Resolves Keras-style padding to explicit padding for a window of `extent` cells.
fn resolve_padding(
    mode: PaddingMode,
    x: &Shape,
    extent: [usize; 2],
    stride: [usize; 2],
) -> Padding2d {
    match mode {
        PaddingMode::Valid => Padding2d::default(),
        PaddingMode::Explicit(p) => p,
        PaddingMode::Same => {
            let total = |size: usize, k: usize, s: usize| {
                let s = s.max(1);
                let out = size.div_ceil(s);
                ((out.max(1) - 1) * s + k).saturating_sub(size)
            };
            let th = total(x.dims()[1], extent[0], stride[0]);
            let tw = total(x.dims()[2], extent[1], stride[1]);
            Padding2d {
                top: th / 2,
                bottom: th - th / 2,
                left: tw / 2,
                right: tw - tw / 2,
            }
        }
    }
}
