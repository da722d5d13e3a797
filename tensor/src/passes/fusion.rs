//! Elementwise fusion: groups of elementwise ops over one shape that a backend can run as a
//! single loop (CPU), one generated kernel (CUDA) or one fusion (XLA does its own).

use crate::ir::{Graph, NodeId};
use crate::{DType, Shape};

/// Most ops in one group (bounds the per-chunk scratch a CPU loop keeps on its stack).
pub const MAX_GROUP_SIZE: usize = 24;

/// How an operand from outside a group is indexed by the group's flat element index `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Same shape as the group: element `i`.
    Full,
    /// One element, broadcast.
    Scalar,
    /// Equal to the group's trailing dims (a bias row): element `i % len`.
    Trailing(usize),
    /// Equal to the group's leading dims, trailing dims 1 (a per-row value): element `i / inner`.
    Leading(usize),
}

/// A set of elementwise nodes of one output shape, executed together at the position of the
/// first member. Every computed operand from outside the group is older than the first member
/// (leaves may be younger: they are ready before any step), so the group never waits on a
/// value computed between its members.
#[derive(Clone, Debug)]
pub struct FusionGroup {
    /// Members in topological order.
    pub members: Vec<NodeId>,
    /// Members whose value is needed outside the group (by other nodes, outputs or updates).
    pub outputs: Vec<NodeId>,
    /// The shape every member produces.
    pub shape: Shape,
}

/// How `operand` is read inside a loop over `shape`, if a fused loop can read it cheaply.
pub fn access(operand: &Shape, shape: &Shape) -> Option<Access> {
    if operand == shape {
        return Some(Access::Full);
    }
    let n = operand.numel();
    if n == 1 {
        return Some(Access::Scalar);
    }
    let dims = shape.dims();
    let od = operand.dims();
    // Strip leading ones of the operand, then compare with the group's trailing dims.
    let first = od.iter().position(|&d| d != 1).unwrap_or(od.len());
    let stripped = &od[first..];
    if stripped.len() <= dims.len() && stripped == &dims[dims.len() - stripped.len()..] {
        return Some(Access::Trailing(n));
    }
    // Leading: operand rank equals the group's, a prefix matches and the rest are ones.
    if od.len() == dims.len() {
        let last = od.iter().rposition(|&d| d != 1).map_or(0, |p| p + 1);
        if od[..last] == dims[..last] {
            return Some(Access::Leading(dims[last..].iter().product()));
        }
    }
    None
}

/// Whether a node can be a member of a fused loop.
fn fusible(graph: &Graph, id: NodeId) -> bool {
    let node = &graph.nodes()[id.0];
    if !node.op.is_elementwise() || !matches!(node.dtype, DType::F32 | DType::Bool) {
        return false;
    }
    node.inputs.iter().all(|x| {
        let operand = &graph.nodes()[x.0];
        matches!(operand.dtype, DType::F32 | DType::Bool)
            && access(&operand.shape, &node.shape).is_some()
    })
}

/// Partitions the fusible elementwise nodes of `graph` into groups. `needed_outside(id)` tells
/// whether a node's value is used beyond the graph's nodes (an output or a state update).
pub fn elementwise_groups(
    graph: &Graph,
    needed_outside: &dyn Fn(NodeId) -> bool,
) -> Vec<FusionGroup> {
    let nodes = graph.nodes();
    // Inputs, parameters and constants are ready before any step, whenever they were added.
    let is_leaf = |i: usize| nodes[i].inputs.is_empty();
    let mut group_of: Vec<Option<usize>> = vec![None; nodes.len()];
    let mut groups: Vec<FusionGroup> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let id = NodeId(i);
        if !fusible(graph, id) {
            continue;
        }
        // A producer's group, or else the latest group of the same shape (independent ops
        // over one shape, like an optimizer's updates, share a loop and its passes).
        let latest = groups.iter().rposition(|group| group.shape == node.shape);
        let producers = node.inputs.iter().filter_map(|x| group_of[x.0]);
        let candidate = producers.chain(latest).find(|&g| {
            let group = &groups[g];
            let first = group.members[0];
            group.shape == node.shape
                && group.members.len() < MAX_GROUP_SIZE
                && node
                    .inputs
                    .iter()
                    .all(|y| group_of[y.0] == Some(g) || y.0 < first.0 || is_leaf(y.0))
        });
        let g = candidate.unwrap_or_else(|| {
            groups.push(FusionGroup {
                members: Vec::new(),
                outputs: Vec::new(),
                shape: node.shape.clone(),
            });
            groups.len() - 1
        });
        groups[g].members.push(id);
        group_of[i] = Some(g);
    }
    // A member is an output of its group if anything outside the group reads it.
    let mut used_outside = vec![false; nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        for x in &node.inputs {
            if group_of[x.0].is_none() || group_of[x.0] != group_of[i] {
                used_outside[x.0] = true;
            }
        }
    }
    for group in &mut groups {
        group.outputs = group
            .members
            .iter()
            .copied()
            .filter(|&m| used_outside[m.0] || needed_outside(m))
            .collect();
    }
    groups
}
