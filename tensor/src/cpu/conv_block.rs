//! Finds the convolution blocks the fused kernels of `kernels::conv::pooled` compute:
//! `max_pool2d(relu(conv2d(x, w) + b))` (bias and ReLU optional, windows tiling the
//! convolution's output) and, in a training graph, the gradient nodes that autodiff made
//! for it: `max_pool2d_grad`, the ReLU's `select(r > 0, ·, 0)`, the bias's sum over the batch
//! and positions, and `conv2d_grad_filter`.
//!
//! A block is fused only when nothing else reads its interior values (the convolution's
//! output, the biased sums, the ReLU's output): those are then never stored. If the forward
//! values are read by a gradient that does not match the pattern, nothing is fused, so the
//! unfused kernels still see every value they need.

use super::kernels::conv::pooled::{self, PooledConv};
use super::kernels::conv::ConvGeometry;
use super::pool::WorkerPool;
use crate::host::HostSlice;
use crate::ir::{BinaryOp, CompareOp, Graph, NodeId, Op, ReduceOp, UnaryOp};
use crate::DType;

/// The forward half of a block.
#[derive(Clone, Debug)]
pub(crate) struct BlockForward {
    /// The convolution's input and filter, and the bias if there is one.
    pub x: NodeId,
    pub w: NodeId,
    pub bias: Option<NodeId>,
    /// The `max_pool2d` node: the block's output.
    pub pooled: NodeId,
    /// Convolution, bias add and ReLU: computed inside the kernel, stored nowhere.
    pub interior: Vec<NodeId>,
    pub geometry: PooledConv,
    /// The codes buffer this block's forward fills for its gradient (training graphs).
    pub codes: Option<usize>,
}

/// The gradient of a block.
#[derive(Clone, Debug)]
pub(crate) struct BlockBackward {
    pub x: NodeId,
    /// The gradient at the pooled output.
    pub dp: NodeId,
    /// The filter gradient (`conv2d_grad_filter`), the bias gradient (the sum), and the
    /// gradient at the convolution's output where other nodes read it.
    pub dw: NodeId,
    pub db: Option<NodeId>,
    pub dz: Option<NodeId>,
    /// `max_pool2d_grad`, the ReLU's mask and select: computed inside, stored nowhere.
    pub interior: Vec<NodeId>,
    pub geometry: PooledConv,
    /// The codes buffer the forward filled.
    pub codes: usize,
}

/// A fused block's step.
#[derive(Clone, Debug)]
pub(crate) enum BlockStep {
    Forward(BlockForward),
    Backward(BlockBackward),
}

/// The blocks of a graph and the codes buffers (bytes each) they share.
#[derive(Debug, Default)]
pub(crate) struct Blocks {
    pub steps: Vec<BlockStep>,
    pub codes_bytes: Vec<usize>,
}

impl BlockStep {
    /// Every node the step computes: its outputs and its interior.
    pub fn members(&self) -> Vec<NodeId> {
        let mut m = self.interior().to_vec();
        m.extend(self.defines());
        m
    }

    /// The nodes computed inside and stored nowhere.
    pub fn interior(&self) -> &[NodeId] {
        match self {
            BlockStep::Forward(f) => &f.interior,
            BlockStep::Backward(b) => &b.interior,
        }
    }

    /// The nodes the step writes.
    pub fn defines(&self) -> Vec<NodeId> {
        match self {
            BlockStep::Forward(f) => vec![f.pooled],
            BlockStep::Backward(b) => [Some(b.dw), b.db, b.dz].into_iter().flatten().collect(),
        }
    }

    /// The nodes the step reads.
    pub fn reads(&self) -> Vec<NodeId> {
        match self {
            BlockStep::Forward(f) => [Some(f.x), Some(f.w), f.bias]
                .into_iter()
                .flatten()
                .collect(),
            BlockStep::Backward(b) => vec![b.x, b.dp],
        }
    }

    /// The node at whose place the step runs: its first member (every operand is older).
    pub fn anchor(&self) -> NodeId {
        self.members().into_iter().min().unwrap_or(NodeId(0))
    }

    /// Workspace bytes.
    pub fn workspace_bytes(&self) -> usize {
        4 * match self {
            BlockStep::Forward(f) => f.geometry.forward_workspace(),
            BlockStep::Backward(b) => b.geometry.backward_workspace(),
        }
    }

    /// What the step computes, for profiles.
    pub fn label(&self) -> String {
        let g = match self {
            BlockStep::Forward(f) => &f.geometry,
            BlockStep::Backward(b) => &b.geometry,
        };
        let c = &g.conv;
        let what = match self {
            BlockStep::Forward(_) => "conv2d+bias+relu+max_pool2d",
            BlockStep::Backward(_) => "grad of conv2d+bias+relu+max_pool2d",
        };
        format!(
            "{what} [{}, {}, {}, {}] -> [{}, {}, {}, {}]",
            c.n, c.h, c.w, c.c, c.n, g.ph, g.pw, c.o
        )
    }

    /// Runs the step. `at(id)` is a node's memory, `codes[k]` codes buffer `k`.
    ///
    /// # Safety
    /// `at` must give valid, fresh memory of each node's size; outputs must not overlap
    /// inputs; `workspace` must hold [`BlockStep::workspace_bytes`].
    pub unsafe fn run(
        &self,
        at: &dyn Fn(NodeId) -> *mut u8,
        codes: &[*mut u8],
        workspace: *mut u8,
        pool: &WorkerPool,
    ) {
        let f = |id: NodeId, len: usize| std::slice::from_raw_parts(at(id) as *const f32, len);
        let f_mut =
            |id: NodeId, len: usize| std::slice::from_raw_parts_mut(at(id) as *mut f32, len);
        let ws = |bytes: usize| std::slice::from_raw_parts_mut(workspace as *mut f32, bytes / 4);
        let ws = ws(self.workspace_bytes());
        match self {
            BlockStep::Forward(b) => {
                let (g, c) = (&b.geometry, &b.geometry.conv);
                let codes = b
                    .codes
                    .map(|k| std::slice::from_raw_parts_mut(codes[k], g.pooled_len()));
                pooled::forward(
                    g,
                    f(b.x, c.n * c.h * c.w * c.c),
                    f(b.w, c.kh * c.kw * c.c * c.o),
                    b.bias.map(|id| f(id, c.o)),
                    f_mut(b.pooled, g.pooled_len()),
                    codes,
                    ws,
                    pool,
                );
            }
            BlockStep::Backward(b) => {
                let (g, c) = (&b.geometry, &b.geometry.conv);
                pooled::backward(
                    g,
                    f(b.x, c.n * c.h * c.w * c.c),
                    f(b.dp, g.pooled_len()),
                    std::slice::from_raw_parts(codes[b.codes], g.pooled_len()),
                    f_mut(b.dw, c.kh * c.kw * c.c * c.o),
                    b.db.map(|id| f_mut(id, c.o)),
                    b.dz.map(|id| f_mut(id, c.n * c.oh * c.ow * c.o)),
                    ws,
                    pool,
                );
            }
        }
    }
}

/// Finds the fusable blocks of `graph`; `needed(id)` tells whether a value is used outside
/// the graph's nodes (an output or a state update), which keeps it stored.
pub(crate) fn find(graph: &Graph, needed: &dyn Fn(NodeId) -> bool) -> Blocks {
    let nodes = graph.nodes();
    let mut readers: Vec<Vec<NodeId>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for x in &n.inputs {
            if !readers[x.0].contains(&NodeId(i)) {
                readers[x.0].push(NodeId(i));
            }
        }
    }
    let finder = Finder {
        graph,
        readers: &readers,
        needed,
    };
    let mut blocks = Blocks::default();
    for (i, node) in nodes.iter().enumerate() {
        if let Op::MaxPool2d(_) = node.op {
            if let Some(found) = finder.block(NodeId(i), blocks.codes_bytes.len()) {
                if let Some(BlockStep::Forward(f)) = found.first() {
                    if f.codes.is_some() {
                        blocks.codes_bytes.push(f.geometry.pooled_len());
                    }
                }
                blocks.steps.extend(found);
            }
        }
    }
    blocks
}

struct Finder<'a> {
    graph: &'a Graph,
    readers: &'a [Vec<NodeId>],
    needed: &'a dyn Fn(NodeId) -> bool,
}

impl Finder<'_> {
    fn op(&self, id: NodeId) -> &Op {
        &self.graph.nodes()[id.0].op
    }

    fn input(&self, id: NodeId, k: usize) -> Option<NodeId> {
        self.graph.nodes()[id.0].inputs.get(k).copied()
    }

    fn dims(&self, id: NodeId) -> &[usize] {
        self.graph.nodes()[id.0].shape.dims()
    }

    /// Read by exactly `reader` and by nothing outside the graph.
    fn only_read_by(&self, id: NodeId, reader: NodeId) -> bool {
        self.readers[id.0] == [reader] && !(self.needed)(id)
    }

    /// A scalar constant zero.
    fn is_zero(&self, id: NodeId) -> bool {
        match self.op(id) {
            Op::Constant(t) => matches!(t.data.as_slice(), HostSlice::F32([v]) if *v == 0.0),
            _ => false,
        }
    }

    /// The forward block ending in `pooled` (codes buffer `codes` if it trains) and its
    /// gradients, or nothing if any part does not fit.
    fn block(&self, pooled: NodeId, codes: usize) -> Option<Vec<BlockStep>> {
        let Op::MaxPool2d(attrs) = self.op(pooled) else {
            return None;
        };
        if attrs.window != attrs.stride || attrs.padding != Default::default() {
            return None;
        }
        // The pooled value `v`: relu(z), or z itself; z: conv + bias, or the conv itself.
        let v = self.input(pooled, 0)?;
        let (relu, z) = match self.op(v) {
            Op::Unary(UnaryOp::Relu) => (true, self.input(v, 0)?),
            _ => (false, v),
        };
        let (conv, bias) = match self.op(z) {
            Op::Binary(BinaryOp::Add) => {
                let (a, b) = (self.input(z, 0)?, self.input(z, 1)?);
                let (conv, bias) = if matches!(self.op(a), Op::Conv2d(_)) {
                    (a, b)
                } else {
                    (b, a)
                };
                (conv, Some(bias))
            }
            _ => (z, None),
        };
        let Op::Conv2d(conv_attrs) = self.op(conv) else {
            return None;
        };
        let (x, w) = (self.input(conv, 0)?, self.input(conv, 1)?);
        let o = *self.dims(w).get(3)?;
        let all_f32 = [x, w, conv, z, v, pooled]
            .iter()
            .chain(bias.iter())
            .all(|&id| self.graph.nodes()[id.0].dtype == DType::F32);
        if !all_f32 || self.dims(x).len() != 4 || bias.is_some_and(|b| self.dims(b) != [o]) {
            return None;
        }
        let geometry = ConvGeometry::new(self.dims(x), self.dims(w), self.dims(conv), *conv_attrs);
        let geometry = PooledConv::new(geometry, attrs.window, relu)?;
        // The chain's links are read by the next link only.
        let mut interior = vec![conv];
        let mut last = conv;
        for next in [z, v] {
            if next != last {
                if !self.only_read_by(last, next) {
                    return None;
                }
                interior.push(next);
                last = next;
            }
        }
        if (self.needed)(v) {
            return None;
        }
        // Everything else that reads `v` must be a gradient of the block that fits.
        let mut steps = Vec::new();
        for &reader in &self.readers[v.0] {
            match self.op(reader) {
                _ if reader == pooled => {}
                Op::MaxPool2dGrad(a) if a == attrs && self.input(reader, 0) == Some(v) => {
                    let back =
                        self.backward(reader, v, x, relu, bias.is_some(), geometry, codes)?;
                    steps.push(BlockStep::Backward(back));
                }
                // The ReLU masks of the gradients found above.
                Op::Compare(CompareOp::Le) if relu => {}
                _ => return None,
            }
        }
        // Every mask must belong to a matched gradient.
        let masks = self.readers[v.0]
            .iter()
            .filter(|&&r| matches!(self.op(r), Op::Compare(_)))
            .count();
        let matched = steps
            .iter()
            .map(|s| {
                s.interior()
                    .iter()
                    .filter(|&&id| matches!(self.op(id), Op::Compare(_)))
                    .count()
            })
            .sum::<usize>();
        if masks != matched {
            return None;
        }
        let forward = BlockForward {
            x,
            w,
            bias,
            pooled,
            interior,
            geometry,
            codes: (!steps.is_empty()).then_some(codes),
        };
        steps.insert(0, BlockStep::Forward(forward));
        Some(steps)
    }

    /// The gradient of the block behind `max_pool2d_grad` node `grad`.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        grad: NodeId,
        v: NodeId,
        x: NodeId,
        relu: bool,
        has_bias: bool,
        geometry: PooledConv,
        codes: usize,
    ) -> Option<BlockBackward> {
        let dp = self.input(grad, 1)?;
        let mut interior = Vec::new();
        // dz: the ReLU's select(v <= 0, 0, grad), or the pooling gradient itself.
        let dz = if relu {
            let [select] = self.readers[grad.0][..] else {
                return None;
            };
            let mask = self.input(select, 0)?;
            let fits = matches!(self.op(select), Op::Select)
                && self.input(select, 1).is_some_and(|z| self.is_zero(z))
                && self.input(select, 2) == Some(grad)
                && matches!(self.op(mask), Op::Compare(CompareOp::Le))
                && self.input(mask, 0) == Some(v)
                && self.input(mask, 1).is_some_and(|z| self.is_zero(z))
                && self.only_read_by(mask, select)
                && !(self.needed)(grad);
            if !fits {
                return None;
            }
            interior.extend([grad, mask]);
            select
        } else {
            grad
        };
        // Its readers: the filter gradient (exactly one), the bias gradient, and others for
        // which it is stored.
        let (mut dw, mut db, mut others) = (None, None, false);
        for &reader in &self.readers[dz.0] {
            match self.op(reader) {
                Op::Conv2dGradFilter { attrs, .. }
                    if *attrs == geometry.conv.attrs
                        && self.input(reader, 0) == Some(x)
                        && self.input(reader, 1) == Some(dz)
                        && dw.is_none() =>
                {
                    dw = Some(reader)
                }
                Op::Reduce {
                    op: ReduceOp::Sum,
                    axes,
                    ..
                } if has_bias
                    && axes == &[0, 1, 2]
                    && self.dims(reader).iter().product::<usize>() == geometry.conv.o
                    && db.is_none() =>
                {
                    db = Some(reader)
                }
                _ => others = true,
            }
        }
        let stored = others || (self.needed)(dz);
        if !stored {
            interior.push(dz);
        }
        Some(BlockBackward {
            x,
            dp,
            dw: dw?,
            db,
            dz: stored.then_some(dz),
            interior,
            geometry,
            codes,
        })
    }
}
