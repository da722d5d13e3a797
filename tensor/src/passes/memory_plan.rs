//! Liveness-based memory planning: every intermediate value gets an offset in one arena, and
//! values whose lifetimes do not overlap share bytes. A step then allocates nothing.

use crate::ir::NodeId;

/// Offsets are multiples of this, so every buffer is aligned for wide SIMD loads.
pub const ALIGN: usize = 64;

/// What one execution step needs from the arena.
#[derive(Clone, Debug, Default)]
pub struct StepBuffers {
    /// Buffers the step writes, with their sizes in bytes.
    pub defines: Vec<(NodeId, usize)>,
    /// Arena buffers the step reads (resolved to the node that owns the buffer).
    pub uses: Vec<NodeId>,
    /// Scratch bytes needed only while the step runs.
    pub workspace: usize,
}

/// Where everything lives.
#[derive(Clone, Debug)]
pub struct MemoryPlan {
    /// Byte offset of each defined buffer, by node id.
    pub offsets: Vec<Option<usize>>,
    /// Byte offset of each step's workspace.
    pub workspace_offsets: Vec<usize>,
    /// Total arena bytes.
    pub arena_bytes: usize,
    /// Bytes the same buffers would take without reuse.
    pub unplanned_bytes: usize,
}

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Plans `steps` over a graph of `num_nodes` nodes. Buffers in `keep` stay live to the end
/// (outputs read after the step). With `reuse == false` every buffer gets its own bytes, which
/// is the reference the planned layout is tested against.
pub fn plan(num_nodes: usize, steps: &[StepBuffers], keep: &[NodeId], reuse: bool) -> MemoryPlan {
    let mut last_use = vec![0usize; num_nodes];
    for (s, step) in steps.iter().enumerate() {
        for &(id, _) in &step.defines {
            last_use[id.0] = last_use[id.0].max(s);
        }
        for id in &step.uses {
            last_use[id.0] = last_use[id.0].max(s);
        }
    }
    for id in keep {
        last_use[id.0] = usize::MAX;
    }

    let mut offsets = vec![None; num_nodes];
    let mut workspace_offsets = vec![0; steps.len()];
    let mut live: Vec<(usize, usize, NodeId)> = Vec::new(); // (offset, size, owner), by offset
    let mut arena = 0usize;
    let mut unplanned = 0usize;
    let scratch_owner = NodeId(usize::MAX);

    for (s, step) in steps.iter().enumerate() {
        for &(id, bytes) in &step.defines {
            let size = align(bytes.max(1));
            unplanned += size;
            let offset = if reuse {
                place(&mut live, size, id)
            } else {
                unplanned - size
            };
            arena = arena.max(offset + size);
            offsets[id.0] = Some(offset);
        }
        if step.workspace > 0 {
            let size = align(step.workspace);
            unplanned += size;
            let offset = if reuse {
                place(&mut live, size, scratch_owner)
            } else {
                unplanned - size
            };
            arena = arena.max(offset + size);
            workspace_offsets[s] = offset;
            live.retain(|&(_, _, owner)| owner != scratch_owner);
        }
        // Buffers whose last reader was this step are free for the next steps.
        live.retain(|&(_, _, owner)| last_use[owner.0] > s);
    }
    MemoryPlan {
        offsets,
        workspace_offsets,
        arena_bytes: arena,
        unplanned_bytes: unplanned,
    }
}

/// First-fit placement among the live blocks (kept sorted by offset).
fn place(live: &mut Vec<(usize, usize, NodeId)>, size: usize, owner: NodeId) -> usize {
    let mut cursor = 0;
    let mut index = live.len();
    for (i, &(offset, len, _)) in live.iter().enumerate() {
        if offset >= cursor + size {
            index = i;
            break;
        }
        cursor = cursor.max(offset + len);
    }
    live.insert(index, (cursor, size, owner));
    cursor
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(defines: &[(usize, usize)], uses: &[usize]) -> StepBuffers {
        StepBuffers {
            defines: defines.iter().map(|&(i, b)| (NodeId(i), b)).collect(),
            uses: uses.iter().map(|&i| NodeId(i)).collect(),
            workspace: 0,
        }
    }

    #[test]
    fn dead_buffers_are_reused_and_live_ones_never_overlap() {
        // 0 -> 1 -> 2 -> 3, each read only by the next: two buffers alternate.
        let steps = [
            step(&[(0, 100)], &[]),
            step(&[(1, 100)], &[0]),
            step(&[(2, 100)], &[1]),
            step(&[(3, 100)], &[2]),
        ];
        let p = plan(4, &steps, &[NodeId(3)], true);
        assert_eq!(p.arena_bytes, 2 * 128);
        assert_eq!(p.unplanned_bytes, 4 * 128);
        for s in 1..4 {
            assert_ne!(
                p.offsets[s],
                p.offsets[s - 1],
                "step {s} overwrote its operand"
            );
        }
        let u = plan(4, &steps, &[NodeId(3)], false);
        assert_eq!(u.arena_bytes, 4 * 128);
    }

    #[test]
    fn kept_buffers_survive_to_the_end() {
        let steps = [
            step(&[(0, 64)], &[]),
            step(&[(1, 64)], &[]),
            step(&[(2, 64)], &[]),
        ];
        let p = plan(3, &steps, &[NodeId(0), NodeId(1), NodeId(2)], true);
        let mut offs: Vec<_> = p.offsets.iter().map(|o| o.unwrap()).collect();
        offs.sort();
        offs.dedup();
        assert_eq!(offs.len(), 3);
    }
}
