//! Which state updates may be written straight over their state's own buffer, instead of into
//! a second buffer that is swapped in after the step.
//!
//! Double buffering keeps two copies of every updated state live in the caches: for the MLP
//! under Adam, the 784×128 kernel and both its moments, 2 × 1.2 MB on cores with 2 MB of L2
//! each. Updating in place halves that. It is safe when the kernel computing the update reads
//! each element before it writes that element, and every other kernel that reads the old value
//! has run before it.

use crate::ir::{Graph, NodeId};

/// Whether the update `update` of state `param` may overwrite `param`'s memory.
///
/// `step_of[i]` is the position in the run of the step that computes node `i` (`None` for
/// nodes no step computes), `root(i)` the node whose memory `i` is (through views), and
/// `overwrites_safely(s)` whether step `s` reads each element before writing it and runs on
/// its own (not interleaved with other steps by batch tiling).
pub(super) fn may_update_in_place(
    graph: &Graph,
    param: NodeId,
    update: NodeId,
    step_of: &[Option<usize>],
    root: &dyn Fn(NodeId) -> NodeId,
    overwrites_safely: &dyn Fn(usize) -> bool,
) -> bool {
    let Some(writer) = step_of[update.0] else {
        return false;
    };
    if !overwrites_safely(writer) || graph.outputs().iter().any(|(_, o)| root(*o) == param) {
        return false;
    }
    graph.nodes().iter().enumerate().all(|(i, node)| {
        let reads_old_value = !node.op.is_view() && node.inputs.iter().any(|&x| root(x) == param);
        !reads_old_value || step_of[i].is_some_and(|s| s <= writer)
    })
}
