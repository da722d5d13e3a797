//! The one device arena: a fixed region (inputs, parameters, constants, staging for state
//! updates) followed by the region the shared memory plan lays out, where values whose
//! lifetimes do not overlap share bytes. Every buffer's offset is known at compile, so a step
//! allocates nothing and a captured CUDA graph can replay it with the same pointers.

use super::{bytes_of, Copy, StateSlot, Step};
use hasten_tensor::ir::{Graph, NodeId, Op};
use hasten_tensor::passes::memory_plan::{self, StepBuffers, ALIGN};

/// Where every value lives.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Byte offset of each node's buffer (a view's is its operand's); `None` for values that
    /// never leave a kernel.
    pub offsets: Vec<Option<usize>>,
    /// Bytes of the fixed region (inputs, parameters, constants, staging).
    pub fixed_bytes: usize,
    /// Total arena bytes.
    pub arena_bytes: usize,
    /// What the planned values would take without reuse.
    pub unplanned_bytes: usize,
    /// Constants to upload at compile: (offset, bytes).
    pub constants: Vec<(usize, Vec<u8>)>,
    /// Offset of the staging copy of each update whose value is another state's memory.
    staging: Vec<(NodeId, usize)>,
}

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// The node whose buffer a node's value is (views resolved).
pub fn root(graph: &Graph, mut id: NodeId) -> NodeId {
    while graph.nodes()[id.0].op.is_view() {
        id = graph.nodes()[id.0].inputs[0];
    }
    id
}

impl Layout {
    /// Lays out the leaves, then plans the buffers `steps` write.
    pub fn new(graph: &Graph, steps: &[Step]) -> Self {
        let nodes = graph.nodes();
        let n = nodes.len();
        let mut offsets = vec![None; n];
        let mut constants = Vec::new();
        let mut cursor = 0;
        for (i, node) in nodes.iter().enumerate() {
            let placed = match &node.op {
                Op::Constant(value) => {
                    constants.push((cursor, value.data.as_slice().as_bytes().to_vec()));
                    true
                }
                Op::Input { .. } | Op::Parameter { .. } => true,
                _ => false,
            };
            if placed {
                offsets[i] = Some(cursor);
                cursor += align(bytes_of(graph, NodeId(i)).max(1));
            }
        }
        let mut staging = Vec::new();
        for (_, v) in graph.updates() {
            let r = root(graph, *v);
            if matches!(nodes[r.0].op, Op::Parameter { .. }) {
                staging.push((*v, cursor));
                cursor += align(bytes_of(graph, *v).max(1));
            }
        }
        let fixed_bytes = cursor;
        let plan = plan_values(graph, steps);
        for (i, off) in plan.offsets.iter().enumerate() {
            if let Some(o) = off {
                offsets[i] = Some(fixed_bytes + o);
            }
        }
        for i in 0..n {
            if nodes[i].op.is_view() {
                offsets[i] = offsets[root(graph, NodeId(i)).0];
            }
        }
        Layout {
            offsets,
            fixed_bytes,
            arena_bytes: fixed_bytes + plan.arena_bytes,
            unplanned_bytes: plan.unplanned_bytes,
            constants,
            staging,
        }
    }

    /// The offset of a node's buffer (panics for a value that lives nowhere: a plan bug).
    pub fn offset(&self, id: NodeId) -> usize {
        self.offsets[id.0].unwrap_or_else(|| panic!("node %{} has no buffer", id.0))
    }

    /// The copies that replace each updated state with its new value after the step: first
    /// every new value that is another state's memory into staging, then all into place.
    pub fn state_copies(&self, graph: &Graph, states: &[StateSlot]) -> Vec<Copy> {
        let mut first = Vec::new();
        let mut second = Vec::new();
        for slot in states {
            let Some(v) = slot.update else { continue };
            let dst = self.offset(slot.node);
            let src = match self.staging.iter().find(|(s, _)| *s == v) {
                Some(&(_, at)) => {
                    first.push(Copy {
                        src: self.offset(root(graph, v)),
                        dst: at,
                        bytes: slot.bytes,
                    });
                    at
                }
                None => self.offset(root(graph, v)),
            };
            if src != dst {
                second.push(Copy {
                    src,
                    dst,
                    bytes: slot.bytes,
                });
            }
        }
        first.extend(second);
        first
    }
}

/// The shared memory plan over the values the steps write; outputs and new state values
/// stay live to the end of the step.
fn plan_values(graph: &Graph, steps: &[Step]) -> memory_plan::MemoryPlan {
    let nodes = graph.nodes();
    let computed = |id: NodeId| !nodes[id.0].inputs.is_empty();
    let buffers: Vec<StepBuffers> = steps
        .iter()
        .map(|step| {
            let (reads, writes) = match step {
                Step::Kernel { reads, writes, .. } => (reads.clone(), writes.clone()),
                Step::Gemm(g) => {
                    let mut reads = vec![g.a, g.b];
                    reads.extend(g.bias);
                    (reads, vec![g.out])
                }
            };
            StepBuffers {
                defines: writes.iter().map(|&w| (w, bytes_of(graph, w))).collect(),
                uses: reads
                    .iter()
                    .map(|&r| root(graph, r))
                    .filter(|&r| computed(r))
                    .collect(),
                workspace: 0,
            }
        })
        .collect();
    let keep: Vec<NodeId> = graph
        .outputs()
        .iter()
        .map(|(_, o)| *o)
        .chain(graph.updates().iter().map(|(_, v)| *v))
        .map(|id| root(graph, id))
        .filter(|&r| computed(r))
        .collect();
    memory_plan::plan(nodes.len(), &buffers, &keep, true)
}
