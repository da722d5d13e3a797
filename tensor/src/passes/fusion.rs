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
/// whether a node's value is used beyond the graph's nodes (an output or a state update);
/// `taken(id)`, whether the backend computes a node inside a kernel of its own (such nodes
/// join no group).
pub fn elementwise_groups(
    graph: &Graph,
    needed_outside: &dyn Fn(NodeId) -> bool,
    taken: &dyn Fn(NodeId) -> bool,
) -> Vec<FusionGroup> {
    let nodes = graph.nodes();
    // Inputs, parameters and constants are ready before any step, whenever they were added.
    let is_leaf = |i: usize| nodes[i].inputs.is_empty();
    let mut group_of: Vec<Option<usize>> = vec![None; nodes.len()];
    let mut groups: Vec<FusionGroup> = Vec::new();
    // A group whose values another node has read is closed: a later op joining it would run
    // long before it is needed and have its value stored (the backward pass's ReLU mask would
    // be written in the forward pass) instead of being computed where it is used.
    let mut closed: Vec<bool> = Vec::new();
    let close_readers = |closed: &mut Vec<bool>, group_of: &[Option<usize>], i: usize| {
        for x in &nodes[i].inputs {
            if let Some(h) = group_of[x.0].filter(|&h| group_of[i] != Some(h)) {
                closed[h] = true;
            }
        }
    };
    for (i, node) in nodes.iter().enumerate() {
        let id = NodeId(i);
        if taken(id) || !fusible(graph, id) {
            close_readers(&mut closed, &group_of, i);
            continue;
        }
        // A producer's group, or else the latest group of the same shape (independent ops
        // over one shape, like an optimizer's updates, share a loop and its passes).
        let latest = groups.iter().rposition(|group| group.shape == node.shape);
        let producers = node.inputs.iter().filter_map(|x| group_of[x.0]);
        let candidate = producers.chain(latest).find(|&g| {
            let group = &groups[g];
            let first = group.members[0];
            !closed[g]
                && group.shape == node.shape
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
            closed.push(false);
            groups.len() - 1
        });
        groups[g].members.push(id);
        group_of[i] = Some(g);
        close_readers(&mut closed, &group_of, i);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::UnaryOp;

    fn groups_of(g: &Graph) -> Vec<FusionGroup> {
        elementwise_groups(g, &|_| false, &|_| false)
    }

    #[test]
    fn independent_updates_of_one_shape_share_a_group_even_with_late_constants() {
        // An Adam-like update: two blends of state with a gradient, each scale() adding its
        // constant after the group began.
        let mut g = Graph::new();
        let grad = g.input("grad", [4, 3], DType::F32).unwrap();
        let m = g.parameter("m", [4, 3], DType::F32).unwrap();
        let v = g.parameter("v", [4, 3], DType::F32).unwrap();
        let a = g.scale(m, 0.9).unwrap();
        let b = g.scale(grad, 0.1).unwrap();
        let m_new = g.add(a, b).unwrap();
        let g2 = g.mul(grad, grad).unwrap();
        let c = g.scale(v, 0.99).unwrap();
        let d = g.scale(g2, 0.01).unwrap();
        let v_new = g.add(c, d).unwrap();
        g.update(m, m_new).unwrap();
        g.update(v, v_new).unwrap();
        let groups = groups_of(&g);
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert_eq!(groups[0].members.len(), 7);
    }

    #[test]
    fn a_group_read_by_another_node_takes_no_later_members() {
        // relu's output feeds a matmul, then (as in a backward pass) a comparison of it.
        let mut g = Graph::new();
        let x = g.input("x", [4, 3], DType::F32).unwrap();
        let w = g.input("w", [3, 3], DType::F32).unwrap();
        let a = g.relu(x).unwrap();
        let y = g.matmul(a, w).unwrap();
        let zero = g.scalar(0.0);
        let mask = g.compare(crate::ir::CompareOp::Le, a, zero).unwrap();
        let back = g.select(mask, zero, y).unwrap();
        g.output("y", back).unwrap();
        let groups = groups_of(&g);
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert_eq!(groups[1].members, vec![mask, back]);
    }

    #[test]
    fn an_op_reading_a_value_computed_after_a_group_began_does_not_join_it() {
        let mut g = Graph::new();
        let x = g.input("x", [4, 3], DType::F32).unwrap();
        let w = g.input("w", [3, 3], DType::F32).unwrap();
        let early = g.unary(UnaryOp::Tanh, x).unwrap();
        let product = g.matmul(early, w).unwrap(); // not fusible, after the group's start
        let late = g.add(product, x).unwrap();
        g.output("y", late).unwrap();
        let groups = groups_of(&g);
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert!(groups.iter().all(|gr| gr.members.len() == 1));
    }
}
