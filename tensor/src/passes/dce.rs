//! Dead-node elimination.

use crate::ir::{Graph, NodeId, Op};

/// Removes nodes that no output or state update depends on. Inputs and parameters are always
/// kept, so the step's signature and its state stay the same. Returns the new graph and, for
/// each old node id, its new id if it was kept.
pub fn eliminate_dead_nodes(graph: &Graph) -> (Graph, Vec<Option<NodeId>>) {
    let nodes = graph.nodes();
    let mut live = vec![false; nodes.len()];
    for (_, id) in graph.outputs() {
        live[id.0] = true;
    }
    for (p, v) in graph.updates() {
        live[p.0] = true;
        live[v.0] = true;
    }
    for (i, n) in nodes.iter().enumerate() {
        if matches!(n.op, Op::Input { .. } | Op::Parameter { .. }) {
            live[i] = true;
        }
    }
    for i in (0..nodes.len()).rev() {
        if live[i] {
            for x in &nodes[i].inputs {
                live[x.0] = true;
            }
        }
    }
    let mut out = Graph::new();
    let mut map = vec![None; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        if live[i] {
            let mut node = n.clone();
            // Operands of a live node are live and earlier, so already mapped.
            node.inputs = node.inputs.iter().filter_map(|x| map[x.0]).collect();
            map[i] = Some(out.push_node(node));
        }
    }
    let remap = |id: &NodeId| map[id.0].unwrap_or(*id);
    let outputs = graph
        .outputs()
        .iter()
        .map(|(name, id)| (name.clone(), remap(id)))
        .collect();
    let updates = graph
        .updates()
        .iter()
        .map(|(p, v)| (remap(p), remap(v)))
        .collect();
    out.set_outputs_and_updates(outputs, updates);
    (out, map)
}
