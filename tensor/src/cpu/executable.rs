//! A compiled graph on the CPU: locations for every value, a list of steps (single kernels or
//! fused loops), one arena laid out by the memory plan, and the state buffers.

use super::buffer::AlignedBuf;
use super::conv_block::{self, BlockStep, Blocks};
use super::denormals::FlushDenormals;
use super::in_place;
use super::kernels::conv::{self, ConvGeometry};
use super::kernels::fused::{Arg, FusedKind, FusedLoop, FusedOp, FusedOutput};
use super::kernels::pool2d::{self, PoolGeometry};
use super::kernels::{elementwise as ew, layout, matmul, misc, random, reduce, Small, MAX_RANK};
use super::pool::{self, WorkerPool};
use super::profile::Profile;
use super::tiling::{self, Segment, Separable};
use super::CpuOptions;
use crate::backend::Executable;
use crate::collective::Communicator;
use crate::host::{HostData, HostSlice, HostTensor};
use crate::ir::{Graph, Node, NodeId, Op};
use crate::passes::affine::Affine;
use crate::passes::fusion::{self, FusionGroup};
use crate::passes::memory_plan::{self, StepBuffers};
use crate::passes::pipeline;
use crate::{DType, Error, Result};
use std::cell::RefCell;
use std::sync::Arc;

/// Where a node's value lives during a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loc {
    /// The caller's input slice `k`.
    Input(usize),
    /// The current value of state `s`.
    State(usize),
    /// The next value of state `s` (an update written in place).
    StateNext(usize),
    /// Constant buffer `c`.
    Const(usize),
    /// The arena, at a byte offset (set by the memory plan).
    Arena(usize),
    /// The same memory as another node.
    View(NodeId),
    /// Nowhere: a fused value that never leaves its loop.
    Nowhere,
}

enum Step {
    Node {
        id: NodeId,
        workspace: usize,
    },
    /// A fused convolution block (see `conv_block`).
    Block {
        step: BlockStep,
        workspace: usize,
    },
    Fused {
        lp: FusedLoop,
        inputs: Vec<NodeId>,
        outputs: Vec<NodeId>,
        in_ptrs: Vec<*const u8>,
        out_ptrs: Vec<*mut u8>,
    },
    /// A product with its bias (and ReLU) as the GEMM's epilogue (see `affine`).
    Affine(Affine),
}

/// What a step of the run loop executes.
enum Unit {
    /// One step over the whole batch.
    Step(usize),
    /// A tiled run of steps, with its per-thread workspace (arena offset and bytes per thread).
    Tiled {
        segment: Segment,
        workspace: usize,
        workspace_per_thread: usize,
    },
}

struct StateSlot {
    name: String,
    node: NodeId,
    cur: AlignedBuf,
    next: AlignedBuf,
    /// The value written back after a step, if the state is updated; `Some(v)` with
    /// `pinned == false` means it is copied from `v`'s memory into `next`.
    update: Option<NodeId>,
    pinned: bool,
    /// The update is computed straight into `cur` (see `in_place`), and nothing is swapped.
    in_place: bool,
}

/// A graph compiled for the CPU, holding its state between steps.
pub struct CpuExecutable {
    graph: Graph,
    steps: Vec<Step>,
    /// The steps in execution order: single steps and batch-tiled runs of them.
    units: Vec<Unit>,
    locs: Vec<Loc>,
    ptrs: Vec<*mut u8>,
    arena: AlignedBuf,
    /// The arena's first byte (its heap block never moves).
    arena_ptr: *mut u8,
    consts: Vec<AlignedBuf>,
    /// The codes buffers of fused convolution blocks, and their first bytes.
    _codes: Vec<Vec<u8>>,
    codes_ptrs: Vec<*mut u8>,
    state: Vec<StateSlot>,
    input_nodes: Vec<NodeId>,
    input_names: Vec<String>,
    output_nodes: Vec<NodeId>,
    output_names: Vec<String>,
    output_copies: Vec<Option<AlignedBuf>>,
    state_names: Vec<String>,
    plan: memory_plan::MemoryPlan,
    pool: &'static WorkerPool,
    profile: Option<Profile>,
    /// What all-reduce nodes call, and the first error one of them met in this step.
    communicator: Option<Arc<dyn Communicator>>,
    collective_error: RefCell<Option<Error>>,
}

// SAFETY: the raw pointers refer to memory the executable owns (or, during `run` only, to the
// caller's inputs); nothing is shared with other threads outside a `run`.
unsafe impl Send for CpuExecutable {}

fn bytes_of(node: &Node) -> usize {
    node.shape.numel() * node.dtype.size_in_bytes()
}

fn unsupported(what: String) -> Error {
    Error::Unsupported {
        backend: "cpu",
        what,
    }
}

/// Rejects an all-reduce without a communicator to run it.
fn check_communicator(graph: &Graph, attached: bool) -> Result<()> {
    let found = graph
        .nodes()
        .iter()
        .position(|n| matches!(n.op, Op::AllReduce { .. }));
    match found {
        Some(i) if !attached => Err(unsupported(format!(
            "all_reduce (node %{i}) without a communicator: a collective needs a replica group; \
             build the backend with `CpuBackend::with_communicator`, or compile through a \
             data-parallel strategy"
        ))),
        _ => Ok(()),
    }
}

/// Rejects what the CPU kernels do not implement, before anything runs.
fn check_supported(graph: &Graph) -> Result<()> {
    for (i, n) in graph.nodes().iter().enumerate() {
        if n.shape.rank() > MAX_RANK {
            return Err(unsupported(format!(
                "rank {} (node %{i}); the CPU kernels go up to rank {MAX_RANK}",
                n.shape.rank()
            )));
        }
        if matches!(n.dtype, DType::F16 | DType::BF16) {
            return Err(unsupported(format!(
                "{} values (node %{i}, {}); use f32 on the CPU",
                n.dtype,
                n.op.name()
            )));
        }
        let operand = |k: usize| graph.nodes()[n.inputs[k].0].dtype;
        let ok = match &n.op {
            Op::Compare(_) => matches!(operand(0), DType::F32 | DType::I32),
            Op::Select => n.dtype == DType::F32,
            _ => true,
        };
        if !ok {
            return Err(unsupported(format!(
                "{} on {} (node %{i})",
                n.op.name(),
                operand(n.inputs.len().saturating_sub(1))
            )));
        }
    }
    Ok(())
}

/// The leaves of a graph placed: where every node lives before the steps are known (inputs,
/// state, constants, views; everything else in the arena), the input order and the state
/// slots.
struct Leaves {
    locs: Vec<Loc>,
    input_nodes: Vec<NodeId>,
    input_names: Vec<String>,
    state: Vec<StateSlot>,
    consts: Vec<AlignedBuf>,
}

fn place_leaves(graph: &Graph) -> Leaves {
    let nodes = graph.nodes();
    let mut locs = vec![Loc::Nowhere; nodes.len()];
    let inputs = graph.inputs();
    let input_nodes: Vec<NodeId> = inputs.iter().map(|(_, id)| *id).collect();
    let input_names: Vec<String> = inputs.iter().map(|(s, _)| s.to_string()).collect();
    for (k, id) in input_nodes.iter().enumerate() {
        locs[id.0] = Loc::Input(k);
    }
    let mut state = Vec::new();
    for (s, (name, id)) in graph.parameters().into_iter().enumerate() {
        locs[id.0] = Loc::State(s);
        let bytes = bytes_of(&nodes[id.0]);
        state.push(StateSlot {
            name: name.to_string(),
            node: id,
            cur: AlignedBuf::zeroed(bytes),
            next: AlignedBuf::zeroed(bytes),
            update: None,
            pinned: false,
            in_place: false,
        });
    }
    let mut consts = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        match &node.op {
            Op::Constant(value) => {
                locs[i] = Loc::Const(consts.len());
                consts.push(AlignedBuf::from_bytes(value.data.as_slice().as_bytes()));
            }
            op if op.is_view() => locs[i] = Loc::View(node.inputs[0]),
            Op::Input { .. } | Op::Parameter { .. } => {}
            _ => locs[i] = Loc::Arena(0),
        }
    }
    Leaves {
        locs,
        input_nodes,
        input_names,
        state,
        consts,
    }
}

/// What the step list is built from: the graph and the patterns found in it.
struct StepInputs<'a> {
    graph: &'a Graph,
    blocks: &'a Blocks,
    block_of: &'a [Option<usize>],
    groups: &'a [FusionGroup],
    group_of: &'a [Option<usize>],
    affines: &'a [Option<Affine>],
    absorbed: &'a [bool],
}

/// The steps in node order (a block or group at its first member, an epilogue product at its
/// group's step) and the step that computes each node.
fn build_steps(p: &StepInputs<'_>) -> (Vec<Step>, Vec<Option<usize>>) {
    let StepInputs {
        graph,
        blocks,
        block_of,
        groups,
        group_of,
        affines,
        absorbed,
    } = *p;
    let nodes = graph.nodes();
    let n = nodes.len();
    let mut steps = Vec::new();
    let (mut node_step, mut block_step) = (vec![None; n], vec![None; blocks.steps.len()]);
    let mut group_step = vec![None; groups.len()];
    for (i, node) in nodes.iter().enumerate() {
        let computed = !node.inputs.is_empty() && !node.op.is_view();
        if !computed {
            continue;
        }
        if let Some(b) = block_of[i] {
            let step = &blocks.steps[b];
            if step.anchor().0 == i {
                block_step[b] = Some(steps.len());
                steps.push(Step::Block {
                    step: step.clone(),
                    workspace: 0,
                });
            }
            continue;
        }
        match group_of[i] {
            Some(g) if groups[g].members[0].0 == i => {
                group_step[g] = Some(steps.len());
                if let Some(a) = affines[g] {
                    node_step[a.matmul.0] = Some(steps.len());
                    steps.push(Step::Affine(a));
                } else {
                    steps.push(build_fused(graph, &groups[g], group_of, g));
                }
            }
            Some(_) => {}
            // A product absorbed into an epilogue runs at its group's step.
            None if absorbed[i] => {}
            None => {
                node_step[i] = Some(steps.len());
                steps.push(Step::Node {
                    id: NodeId(i),
                    workspace: 0,
                });
            }
        }
    }
    let step_of: Vec<Option<usize>> = (0..n)
        .map(|i| match (block_of[i], group_of[i]) {
            (Some(b), _) => block_step[b],
            (None, Some(g)) => group_step[g],
            (None, None) => node_step[i],
        })
        .collect();
    (steps, step_of)
}

impl CpuExecutable {
    /// Compiles `graph` with the given optimisations.
    pub fn compile(graph: &Graph, options: CpuOptions) -> Result<Self> {
        Self::compile_with(graph, options, None)
    }

    /// Compiles `graph` for one rank of a replica group: its all-reduce nodes call
    /// `communicator`; a graph with an all-reduce and no communicator is an error.
    pub fn compile_with(
        graph: &Graph,
        options: CpuOptions,
        communicator: Option<Arc<dyn Communicator>>,
    ) -> Result<Self> {
        check_communicator(graph, communicator.is_some())?;
        let mut prepared = pipeline::prepare(graph, options.simplify)?;
        check_supported(&prepared.graph)?;
        // Fused convolution blocks (the CPU's own pattern): their interior values live nowhere.
        let blocks = if options.fuse {
            conv_block::find(&prepared.graph, &|id| prepared.is_needed(id))
        } else {
            Blocks::default()
        };
        let mut block_of = vec![None; prepared.graph.nodes().len()];
        for (b, step) in blocks.steps.iter().enumerate() {
            for m in step.members() {
                block_of[m.0] = Some(b);
            }
        }
        prepared.fuse(options.fuse, &|id| block_of[id.0].is_some());
        let pipeline::Prepared {
            graph,
            groups,
            group_of,
            affines,
            absorbed,
            ..
        } = prepared;
        let nodes = graph.nodes();
        let n = nodes.len();

        // Leaves: inputs, state and constants, each where it lives.
        let Leaves {
            mut locs,
            input_nodes,
            input_names,
            mut state,
            consts,
        } = place_leaves(&graph);

        // Fusion groups and blocks: their interior values live nowhere; nor does a product
        // absorbed into an epilogue.
        let outputs = graph.outputs().to_vec();
        let updates = graph.updates().to_vec();
        for step in &blocks.steps {
            for m in step.interior() {
                locs[m.0] = Loc::Nowhere;
            }
        }
        for group in &groups {
            for m in &group.members {
                if !group.outputs.contains(m) {
                    locs[m.0] = Loc::Nowhere;
                }
            }
        }
        for a in affines.iter().flatten() {
            locs[a.matmul.0] = Loc::Nowhere;
        }

        // State updates computed by a kernel are written straight into the state's next buffer.
        for (p, v) in &updates {
            let Loc::State(s) = locs[p.0] else { continue };
            state[s].update = Some(*v);
            if matches!(locs[v.0], Loc::Arena(_)) {
                locs[v.0] = Loc::StateNext(s);
                state[s].pinned = true;
            }
        }

        // Steps, in node order; a fused group runs at its first member.
        let prepared_steps = StepInputs {
            graph: &graph,
            blocks: &blocks,
            block_of: &block_of,
            groups: &groups,
            group_of: &group_of,
            affines: &affines,
            absorbed: &absorbed,
        };
        let (mut steps, step_of) = build_steps(&prepared_steps);

        // Batch-tiled runs of steps.
        let threads = pool::global().threads();
        let segments = if options.tile_batch {
            let kernels: Vec<Option<Separable>> =
                steps.iter().map(|s| separable(&graph, &locs, s)).collect();
            tiling::segments(&kernels, threads)
        } else {
            Vec::new()
        };
        let mut units = Vec::new();
        let mut next = 0;
        for segment in segments {
            units.extend((next..segment.steps.start).map(Unit::Step));
            next = segment.steps.end;
            let per_thread = segment
                .steps
                .clone()
                .map(|s| match &steps[s] {
                    Step::Node { id, .. } => workspace_bytes(&graph, *id, Some(segment.tile)),
                    Step::Block { .. } | Step::Fused { .. } | Step::Affine(_) => 0,
                })
                .max()
                .unwrap_or(0);
            units.push(Unit::Tiled {
                segment,
                workspace: 0,
                workspace_per_thread: memory_plan::ALIGN * per_thread.div_ceil(memory_plan::ALIGN),
            });
        }
        units.extend((next..steps.len()).map(Unit::Step));

        // Updates that may overwrite their state (a kernel that reads each element before
        // writing it, after every other reader of the old value, outside any tiled run).
        let untiled: Vec<bool> = {
            let mut untiled = vec![true; steps.len()];
            for unit in &units {
                if let Unit::Tiled { segment, .. } = unit {
                    segment.steps.clone().for_each(|s| untiled[s] = false);
                }
            }
            untiled
        };
        let overwrites_safely = |s: usize| {
            untiled[s] && matches!(&steps[s], Step::Fused { lp, .. } if lp.may_overwrite_inputs())
        };
        for (s, slot) in state.iter_mut().enumerate() {
            let Some(v) = slot.update.filter(|_| slot.pinned) else {
                continue;
            };
            let root = |id: NodeId| root_of(&locs, id);
            if in_place::may_update_in_place(
                &graph,
                slot.node,
                v,
                &step_of,
                &root,
                &overwrites_safely,
            ) {
                locs[v.0] = Loc::State(s);
                slot.in_place = true;
            }
        }

        // Memory plan over the arena values; a tiled run is planned as one step, since its
        // kernels interleave.
        let root = |locs: &[Loc], id: NodeId| root_of(locs, id);
        let in_arena = |locs: &[Loc], id: NodeId| matches!(locs[id.0], Loc::Arena(_));
        let step_buffers: Vec<StepBuffers> = steps
            .iter()
            .map(|step| {
                let (defines, reads): (Vec<NodeId>, Vec<NodeId>) = match step {
                    Step::Node { id, .. } => (vec![*id], nodes[id.0].inputs.clone()),
                    Step::Block { step, .. } => (step.defines(), step.reads()),
                    Step::Fused {
                        inputs, outputs, ..
                    } => (outputs.clone(), inputs.clone()),
                    Step::Affine(a) => {
                        let mut reads = nodes[a.matmul.0].inputs.clone();
                        reads.push(a.bias);
                        (vec![a.out], reads)
                    }
                };
                StepBuffers {
                    defines: defines
                        .into_iter()
                        .filter(|&d| in_arena(&locs, d))
                        .map(|d| (d, bytes_of(&nodes[d.0])))
                        .collect(),
                    uses: reads
                        .into_iter()
                        .map(|r| root(&locs, r))
                        .filter(|&r| in_arena(&locs, r))
                        .collect(),
                    workspace: match step {
                        Step::Node { id, .. } => workspace_bytes(&graph, *id, None),
                        Step::Block { step, .. } => step.workspace_bytes(),
                        Step::Fused { .. } | Step::Affine(_) => 0,
                    },
                }
            })
            .collect();
        let buffers: Vec<StepBuffers> = units
            .iter()
            .map(|unit| match unit {
                Unit::Step(s) => step_buffers[*s].clone(),
                Unit::Tiled {
                    segment,
                    workspace_per_thread,
                    ..
                } => {
                    let mut merged = StepBuffers {
                        workspace: workspace_per_thread * threads,
                        ..StepBuffers::default()
                    };
                    for b in &step_buffers[segment.steps.clone()] {
                        merged.defines.extend(&b.defines);
                        merged.uses.extend(&b.uses);
                    }
                    merged
                }
            })
            .collect();
        let keep: Vec<NodeId> = outputs
            .iter()
            .map(|(_, o)| root(&locs, *o))
            .filter(|&r| in_arena(&locs, r))
            .collect();
        let plan = memory_plan::plan(n, &buffers, &keep, options.plan_memory);
        for (i, loc) in locs.iter_mut().enumerate() {
            if let (Loc::Arena(off), Some(o)) = (loc, plan.offsets[i]) {
                *off = o;
            }
        }
        for (unit, &offset) in units.iter_mut().zip(&plan.workspace_offsets) {
            match unit {
                Unit::Step(s) => {
                    if let Step::Node { workspace, .. } | Step::Block { workspace, .. } =
                        &mut steps[*s]
                    {
                        *workspace = offset;
                    }
                }
                Unit::Tiled { workspace, .. } => *workspace = offset,
            }
        }

        let output_copies = outputs
            .iter()
            .map(|(_, o)| {
                (!in_arena(&locs, root(&locs, *o)))
                    .then(|| AlignedBuf::zeroed(bytes_of(&nodes[o.0])))
            })
            .collect();
        let state_names = state.iter().map(|s| s.name.clone()).collect();
        let mut arena = AlignedBuf::zeroed(plan.arena_bytes);
        let arena_ptr = arena.ptr();
        let profile = Profile::from_env(|| {
            let label = |s: usize| step_label(&graph, &steps[s]);
            units
                .iter()
                .map(|unit| match unit {
                    Unit::Step(s) => (label(*s), Vec::new()),
                    Unit::Tiled { segment, .. } => {
                        let n = segment.steps.len();
                        let head = format!("{n} kernels tiled by {} samples", segment.tile);
                        (head, segment.steps.clone().map(label).collect())
                    }
                })
                .collect()
        });
        let mut codes: Vec<Vec<u8>> = blocks.codes_bytes.iter().map(|&b| vec![0; b]).collect();
        let codes_ptrs = codes.iter_mut().map(|c| c.as_mut_ptr()).collect();
        Ok(CpuExecutable {
            _codes: codes,
            codes_ptrs,
            steps,
            units,
            locs,
            ptrs: vec![std::ptr::null_mut(); n],
            arena,
            arena_ptr,
            consts,
            state,
            input_nodes,
            input_names,
            output_nodes: outputs.iter().map(|(_, o)| *o).collect(),
            output_names: outputs.iter().map(|(s, _)| s.clone()).collect(),
            output_copies,
            state_names,
            plan,
            pool: pool::global(),
            profile,
            graph,
            communicator,
            collective_error: RefCell::new(None),
        })
    }

    /// Bytes of the arena the memory plan laid out, and what the values would take without
    /// reuse.
    pub fn arena_bytes(&self) -> (usize, usize) {
        (self.plan.arena_bytes, self.plan.unplanned_bytes)
    }

    /// Number of batch-tiled runs of kernels (see the `tiling` module).
    pub fn tiled_runs(&self) -> usize {
        self.units
            .iter()
            .filter(|u| matches!(u, Unit::Tiled { .. }))
            .count()
    }

    /// Names of the states whose update is written over their own memory (see `in_place`),
    /// rather than into a second buffer swapped in after the step.
    pub fn states_updated_in_place(&self) -> Vec<&str> {
        self.state
            .iter()
            .filter(|s| s.in_place)
            .map(|s| s.name.as_str())
            .collect()
    }

    /// Number of kernel launches (single ops and fused loops) per step.
    pub fn kernel_count(&self) -> usize {
        self.steps.len()
    }

    /// What each step runs, in order, as the profile names it (`fused(mul,add,relu) [4, 5]`,
    /// `matmul(bias,relu) …`, `conv2d+bias+relu+max_pool2d`): for tests that must know which
    /// kernel a graph reached.
    pub fn step_labels(&self) -> Vec<String> {
        self.steps
            .iter()
            .map(|step| step_label(&self.graph, step))
            .collect()
    }

    /// The graph after the compile-time passes.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    fn check_inputs(&self, inputs: &[HostSlice<'_>]) -> Result<()> {
        if inputs.len() != self.input_nodes.len() {
            return Err(Error::InputCount {
                expected: self.input_nodes.len(),
                names: self.input_names.join(", "),
                found: inputs.len(),
            });
        }
        for (k, (x, id)) in inputs.iter().zip(&self.input_nodes).enumerate() {
            let node = &self.graph.nodes()[id.0];
            if x.dtype() != node.dtype || x.len() != node.shape.numel() {
                return Err(Error::BadData {
                    what: format!("input {:?}", self.input_names[k]),
                    expected_dtype: node.dtype,
                    expected_shape: node.shape.clone(),
                    found: format!("{} × {}", x.len(), x.dtype()),
                });
            }
        }
        Ok(())
    }

    fn refresh_ptrs(&mut self, inputs: &[HostSlice<'_>]) {
        let arena = self.arena.ptr();
        for i in 0..self.locs.len() {
            self.ptrs[i] = match self.locs[i] {
                Loc::Input(k) => inputs[k].as_bytes().as_ptr() as *mut u8,
                Loc::State(s) => self.state[s].cur.ptr(),
                Loc::StateNext(s) => self.state[s].next.ptr(),
                Loc::Const(c) => self.consts[c].ptr(),
                // SAFETY: the plan keeps every offset inside the arena.
                Loc::Arena(off) => unsafe { arena.add(off) },
                Loc::View(src) => self.ptrs[src.0],
                Loc::Nowhere => std::ptr::null_mut(),
            };
        }
    }

    /// Runs one kernel.
    ///
    /// # Safety
    /// `ptrs` must be fresh for this step.
    unsafe fn run_node(&self, id: NodeId, workspace: *mut u8) {
        let nodes = self.graph.nodes();
        let node = &nodes[id.0];
        let ptrs = &self.ptrs;
        let pool = self.pool;
        let operand = |k: usize| &nodes[node.inputs[k].0];
        let dims = |k: usize| operand(k).shape.dims();
        let f = |k: usize| f32s(ptrs[node.inputs[k].0], operand(k).shape.numel());
        let out_len = node.shape.numel();
        let out = ptrs[id.0];
        let y = || f32s_mut(out, out_len);
        let ws = |elems: usize| f32s_mut(workspace, elems);
        let elem = node.dtype.size_in_bytes();
        match &node.op {
            Op::Unary(u) => ew::unary_kernel(*u, f(0), y()),
            Op::Binary(b) if node.dtype == DType::I32 => {
                let i = |k: usize| typed::<i32>(ptrs[node.inputs[k].0], operand(k).shape.numel());
                let yi = std::slice::from_raw_parts_mut(out as *mut i32, out_len);
                let op = |x, z| ew::binary_i32(*b, x, z).unwrap_or_default();
                ew::binary_kernel(
                    op,
                    (i(0), dims(0)),
                    (i(1), dims(1)),
                    (yi, node.shape.dims()),
                );
            }
            Op::Binary(b) => ew::binary_kernel(
                |x, z| ew::binary(*b, x, z),
                (f(0), dims(0)),
                (f(1), dims(1)),
                (y(), node.shape.dims()),
            ),
            Op::Compare(c) => {
                let yb = std::slice::from_raw_parts_mut(out as *mut bool, out_len);
                let od = node.shape.dims();
                if operand(0).dtype == DType::I32 {
                    let i =
                        |k: usize| typed::<i32>(ptrs[node.inputs[k].0], operand(k).shape.numel());
                    ew::compare_kernel(*c, (i(0), dims(0)), (i(1), dims(1)), (yb, od));
                } else {
                    ew::compare_kernel(*c, (f(0), dims(0)), (f(1), dims(1)), (yb, od));
                }
            }
            Op::Select => {
                let c = typed::<bool>(ptrs[node.inputs[0].0], operand(0).shape.numel());
                ew::select_kernel(
                    (c, dims(0)),
                    (f(1), dims(1)),
                    (f(2), dims(2)),
                    (y(), node.shape.dims()),
                );
            }
            Op::MatMul { .. } => self.run_product(id, None, false, y()),
            // Convolution and pooling: the per-sample kernels, here on every sample.
            Op::Conv2d(_)
            | Op::Conv2dGradInput { .. }
            | Op::MaxPool2d(_)
            | Op::MaxPool2dGrad(_)
            | Op::AvgPool2d(_)
            | Op::AvgPool2dGrad { .. } => self.run_samples(id, 0, node.shape.dims()[0], workspace),
            Op::Conv2dGradFilter { attrs, .. } => {
                let g = ConvGeometry::new(dims(0), node.shape.dims(), dims(1), *attrs);
                conv::conv2d_grad_filter(&g, f(0), f(1), y(), ws(g.workspace_elements()), pool);
            }
            Op::Reduce { op, axes, .. } => reduce::reduce(*op, f(0), dims(0), axes, y(), pool),
            Op::Transpose { perm } => {
                layout::transpose(elem, ptrs[node.inputs[0].0], dims(0), perm, out)
            }
            Op::Broadcast { shape } => {
                layout::broadcast(elem, ptrs[node.inputs[0].0], dims(0), shape, out)
            }
            Op::Slice { starts, .. } => layout::slice(
                elem,
                ptrs[node.inputs[0].0],
                dims(0),
                starts,
                node.shape.dims(),
                out,
            ),
            Op::Pad { low, .. } => {
                std::ptr::write_bytes(out, 0, out_len * elem);
                layout::place(
                    elem,
                    ptrs[node.inputs[0].0],
                    dims(0),
                    low,
                    node.shape.dims(),
                    out,
                );
            }
            Op::Concat { axis } => {
                let mut starts = Small::<usize>::filled(node.shape.rank());
                for (k, x) in node.inputs.iter().enumerate() {
                    layout::place(elem, ptrs[x.0], dims(k), &starts, node.shape.dims(), out);
                    starts[*axis] += dims(k)[*axis];
                }
            }
            Op::OneHot { depth } => {
                let labels = typed::<i32>(ptrs[node.inputs[0].0], operand(0).shape.numel());
                misc::one_hot(labels, *depth, y());
            }
            Op::ArgMax { axis } => {
                let d = dims(0);
                let outer = d[..*axis].iter().product();
                let inner = d[axis + 1..].iter().product();
                let yi = std::slice::from_raw_parts_mut(out as *mut i32, out_len);
                misc::argmax(f(0), outer, d[*axis], inner, yi);
            }
            Op::Cast { to } => {
                let x = host_slice(
                    operand(0).dtype,
                    ptrs[node.inputs[0].0],
                    operand(0).shape.numel(),
                );
                misc::cast(x, *to, out, out_len);
            }
            Op::RandomUniform { .. } => {
                let seed = host_slice(operand(0).dtype, ptrs[node.inputs[0].0], 1);
                random::uniform(random::seed_of(seed), y(), pool);
            }
            Op::AllReduce { op } => {
                let out = y();
                out.copy_from_slice(f(0));
                let result = match &self.communicator {
                    Some(c) => c.all_reduce(out, *op),
                    None => Err(unsupported("all_reduce without a communicator".into())),
                };
                if let Err(e) = result {
                    self.collective_error.borrow_mut().get_or_insert(e);
                }
            }
            Op::Input { .. }
            | Op::Parameter { .. }
            | Op::Constant(_)
            | Op::Reshape { .. }
            | Op::StopGradient => {}
        }
    }
}

impl CpuExecutable {
    /// Points a fused step's operand lists at this run's memory.
    fn prepare_step(&mut self, s: usize) {
        if let Step::Fused {
            inputs,
            outputs,
            in_ptrs,
            out_ptrs,
            ..
        } = &mut self.steps[s]
        {
            for (p, x) in in_ptrs.iter_mut().zip(inputs.iter()) {
                *p = self.ptrs[x.0];
            }
            for (p, x) in out_ptrs.iter_mut().zip(outputs.iter()) {
                *p = self.ptrs[x.0];
            }
        }
    }

    /// Runs the product `id` into `out`, with `bias` added to its rows and then `relu`.
    ///
    /// # Safety
    /// `ptrs` must be fresh for this step and `out` must not overlap the operands.
    unsafe fn run_product(&self, id: NodeId, bias: Option<&[f32]>, relu: bool, out: &mut [f32]) {
        let nodes = self.graph.nodes();
        let Op::MatMul {
            transpose_a,
            transpose_b,
        } = nodes[id.0].op
        else {
            unreachable!("a product step runs a MatMul node")
        };
        let operand = |k: usize, transposed: bool| {
            let x = nodes[id.0].inputs[k];
            matmul::Operand {
                data: f32s(self.ptrs[x.0], nodes[x.0].shape.numel()),
                dims: nodes[x.0].shape.dims(),
                transposed,
            }
        };
        let (a, b) = (operand(0, transpose_a), operand(1, transpose_b));
        matmul::matmul_bias_relu(a, b, bias, relu, out, self.pool);
    }

    /// Runs step `s` over the whole batch.
    ///
    /// # Safety
    /// Pointers must be fresh for this run and the step prepared.
    unsafe fn run_step(&self, s: usize) {
        match &self.steps[s] {
            Step::Affine(a) => {
                let bias = f32s(
                    self.ptrs[a.bias.0],
                    self.graph.nodes()[a.bias.0].shape.numel(),
                );
                let out = f32s_mut(
                    self.ptrs[a.out.0],
                    self.graph.nodes()[a.out.0].shape.numel(),
                );
                self.run_product(a.matmul, Some(bias), a.relu, out);
            }
            Step::Node { id, workspace } => self.run_node(*id, self.arena_ptr.add(*workspace)),
            Step::Block { step, workspace } => step.run(
                &|id| self.ptrs[id.0],
                &self.codes_ptrs,
                self.arena_ptr.add(*workspace),
                self.pool,
            ),
            Step::Fused {
                lp,
                in_ptrs,
                out_ptrs,
                ..
            } => lp.run(in_ptrs, out_ptrs, self.pool),
        }
    }

    /// Runs a tiled segment: each thread takes a contiguous share of the tiles and runs every
    /// step of the segment on one tile before the next.
    ///
    /// # Safety
    /// As for [`CpuExecutable::run_step`], for every step of the segment.
    unsafe fn run_tiled(
        &self,
        unit: usize,
        segment: &Segment,
        workspace: usize,
        per_thread: usize,
    ) {
        struct Shared<'a>(&'a CpuExecutable);
        // SAFETY: threads read the executable and write disjoint sample ranges of its arena
        // values and their own workspaces.
        unsafe impl Sync for Shared<'_> {}
        let this = Shared(self);
        let (batch, tile) = (segment.batch, segment.tile);
        let tiles = batch.div_ceil(tile);
        let tasks = self.pool.threads().min(tiles);
        self.pool.run(tasks, &|t| {
            let this: &Shared<'_> = &this;
            let ws = this.0.arena_ptr.add(workspace + t * per_thread);
            for k in tiles * t / tasks..tiles * (t + 1) / tasks {
                let first = k * tile;
                let count = tile.min(batch - first);
                for (part, s) in segment.steps.clone().enumerate() {
                    let start = this.0.profile.as_ref().map(|_| std::time::Instant::now());
                    this.0.run_step_tile(s, batch, first, count, ws);
                    if let (Some(profile), Some(start)) = (&this.0.profile, start) {
                        profile.record_part(unit, part, start);
                    }
                }
            }
        });
    }

    /// Runs step `s` on samples `first..first + count` of a batch of `batch`. Kernels called
    /// here run on the calling thread (the pool is busy with the tiles).
    ///
    /// # Safety
    /// As for [`CpuExecutable::run_step`]; `workspace` is this thread's.
    unsafe fn run_step_tile(
        &self,
        s: usize,
        batch: usize,
        first: usize,
        count: usize,
        workspace: *mut u8,
    ) {
        match &self.steps[s] {
            Step::Node { id, .. } => self.run_samples(*id, first, count, workspace),
            Step::Block { .. } | Step::Affine(_) => {
                unreachable!("fused blocks and products with epilogues are never tiled")
            }
            Step::Fused {
                lp,
                in_ptrs,
                out_ptrs,
                ..
            } => {
                let per_sample = lp.len / batch;
                let (lo, hi) = (first * per_sample, (first + count) * per_sample);
                lp.run_range(lo, hi, in_ptrs, out_ptrs);
            }
        }
    }

    /// Runs a per-sample kernel (see [`batched_operands`]) on samples `first..first + count`
    /// (all of them outside tiled runs).
    ///
    /// # Safety
    /// As for [`CpuExecutable::run_step_tile`].
    unsafe fn run_samples(&self, id: NodeId, first: usize, count: usize, workspace: *mut u8) {
        let nodes = self.graph.nodes();
        let node = &nodes[id.0];
        let pool = self.pool;
        let tile_dims = |shape: &crate::Shape| {
            let mut d = Small::from_slice(shape.dims());
            d[0] = count;
            d
        };
        // A batched buffer's tile, or a whole shared one.
        let part = |x: NodeId, batched: bool| -> &[f32] {
            let shape = &nodes[x.0].shape;
            if batched {
                let per = shape.numel() / shape.dims()[0];
                f32s(self.ptrs[x.0].add(4 * first * per), count * per)
            } else {
                f32s(self.ptrs[x.0], shape.numel())
            }
        };
        let per_out = node.shape.numel() / node.shape.dims()[0];
        let y = f32s_mut(self.ptrs[id.0].add(4 * first * per_out), count * per_out);
        let out_dims = tile_dims(&node.shape);
        let dims = |k: usize| tile_dims(&nodes[node.inputs[k].0].shape);
        let batched = batched_operands(&node.op).unwrap_or(&[]);
        let x = |k: usize| part(node.inputs[k], batched.get(k).copied().unwrap_or(false));
        let ws = |elems: usize| f32s_mut(workspace, elems);
        match &node.op {
            Op::Conv2d(attrs) => {
                let w = nodes[node.inputs[1].0].shape.dims();
                let g = ConvGeometry::new(&dims(0), w, &out_dims, *attrs);
                conv::conv2d(&g, x(0), x(1), y, ws(g.workspace_elements()), pool);
            }
            Op::Conv2dGradInput { attrs, .. } => {
                let w = nodes[node.inputs[1].0].shape.dims();
                let g = ConvGeometry::new(&out_dims, w, &dims(0), *attrs);
                conv::conv2d_grad_input(&g, x(0), x(1), y, ws(g.workspace_elements()), pool);
            }
            Op::MaxPool2d(attrs) => {
                let g = PoolGeometry::new(&dims(0), &out_dims, *attrs);
                pool2d::max_pool(&g, x(0), y, pool);
            }
            Op::MaxPool2dGrad(attrs) => {
                let g = PoolGeometry::new(&dims(0), &dims(1), *attrs);
                pool2d::max_pool_grad(&g, x(0), x(1), y, pool);
            }
            Op::AvgPool2d(attrs) => {
                let g = PoolGeometry::new(&dims(0), &out_dims, *attrs);
                pool2d::avg_pool(&g, x(0), y, pool);
            }
            Op::AvgPool2dGrad { attrs, .. } => {
                let g = PoolGeometry::new(&out_dims, &dims(0), *attrs);
                pool2d::avg_pool_grad(&g, x(0), y, pool);
            }
            other => unreachable!("{} is not tiled", other.name()),
        }
    }
}

/// For ops that compute each sample from that sample alone: which operands carry the batch
/// as their leading dim (the others, weights, are read whole).
fn batched_operands(op: &Op) -> Option<&'static [bool]> {
    match op {
        Op::Conv2d(_) | Op::Conv2dGradInput { .. } => Some(&[true, false]),
        Op::MaxPool2d(_) | Op::AvgPool2d(_) | Op::AvgPool2dGrad { .. } => Some(&[true]),
        Op::MaxPool2dGrad(_) => Some(&[true, true]),
        _ => None,
    }
}

/// Whether (and how) a step can join a batch-tiled run.
fn separable(graph: &Graph, locs: &[Loc], step: &Step) -> Option<Separable> {
    let nodes = graph.nodes();
    let batch_of = |id: NodeId| nodes[id.0].shape.dims().first().copied();
    let bytes = |id: NodeId| bytes_of(&nodes[id.0]);
    let mut info = Separable {
        batch: 0,
        defines: Vec::new(),
        local: Vec::new(),
        shared: Vec::new(),
        bytes_per_sample: 0,
    };
    let add_local = |info: &mut Separable, id: NodeId, defines: bool| -> Option<()> {
        let per = bytes(id) / info.batch;
        (batch_of(id)? == info.batch && per * info.batch == bytes(id)).then_some(())?;
        info.bytes_per_sample += per;
        let root = root_of(locs, id);
        if defines {
            info.defines.push(root);
        } else {
            info.local.push(root);
        }
        Some(())
    };
    match step {
        Step::Block { .. } | Step::Affine(_) => return None,
        Step::Node { id, .. } => {
            let node = &nodes[id.0];
            let batched = batched_operands(&node.op)?;
            info.batch = batch_of(*id).filter(|&b| b > 0)?;
            add_local(&mut info, *id, true)?;
            for (x, &is_batched) in node.inputs.iter().zip(batched) {
                if is_batched {
                    add_local(&mut info, *x, false)?;
                } else {
                    info.shared.push(root_of(locs, *x));
                }
            }
        }
        Step::Fused {
            lp,
            inputs,
            outputs,
            ..
        } => {
            let shape = &nodes[outputs.first()?.0].shape;
            info.batch = shape.dims().first().copied().filter(|&b| b > 0)?;
            if shape.rank() < 2 || lp.len % info.batch != 0 {
                return None;
            }
            for o in outputs {
                add_local(&mut info, *o, true)?;
            }
            for x in inputs {
                if nodes[x.0].shape == *shape {
                    add_local(&mut info, *x, false)?;
                } else {
                    info.shared.push(root_of(locs, *x));
                }
            }
        }
    }
    Some(info)
}

/// The node whose memory `id` uses (following views).
fn root_of(locs: &[Loc], mut id: NodeId) -> NodeId {
    while let Loc::View(src) = locs[id.0] {
        id = src;
    }
    id
}

/// Workspace bytes a node's kernel needs, run on `samples` samples at a time (a tiled run)
/// or on the whole batch (`None`).
fn workspace_bytes(graph: &Graph, id: NodeId, samples: Option<usize>) -> usize {
    let nodes = graph.nodes();
    let node = &nodes[id.0];
    let batched = |shape: &crate::Shape| {
        let mut d = Small::from_slice(shape.dims());
        if let Some(n) = samples {
            d[0] = n;
        }
        d
    };
    let operand = |k: usize| &nodes[node.inputs[k].0].shape;
    let (x, y) = (batched(operand(0)), batched(&node.shape));
    let geometry = match &node.op {
        Op::Conv2d(a) => ConvGeometry::new(&x, operand(1).dims(), &y, *a),
        Op::Conv2dGradInput { attrs, .. } => ConvGeometry::new(&y, operand(1).dims(), &x, *attrs),
        Op::Conv2dGradFilter { attrs, .. } => {
            ConvGeometry::new(&x, node.shape.dims(), &batched(operand(1)), *attrs)
        }
        _ => return 0,
    };
    geometry.workspace_elements() * 4
}

/// What a step is, for the profile: the op (or the fused ops) and the shapes.
fn step_label(graph: &Graph, step: &Step) -> String {
    let nodes = graph.nodes();
    match step {
        Step::Block { step, .. } => step.label(),
        Step::Node { id, .. } => {
            let node = &nodes[id.0];
            let operands: Vec<String> = node
                .inputs
                .iter()
                .map(|x| nodes[x.0].shape.to_string())
                .collect();
            format!(
                "{} {} <- {}",
                node.op.name(),
                node.shape,
                operands.join(" ")
            )
        }
        Step::Affine(a) => {
            let operands: Vec<String> = nodes[a.matmul.0]
                .inputs
                .iter()
                .map(|x| nodes[x.0].shape.to_string())
                .collect();
            let relu = if a.relu { ",relu" } else { "" };
            let shape = &nodes[a.out.0].shape;
            format!("matmul(bias{relu}) {shape} <- {}", operands.join(" "))
        }
        Step::Fused { lp, outputs, .. } => {
            let ops: Vec<String> = lp.ops.iter().map(|op| op.kind.name()).collect();
            let shape = outputs.first().map(|o| nodes[o.0].shape.to_string());
            format!("fused({}) {}", ops.join(","), shape.unwrap_or_default())
        }
    }
}

impl Drop for CpuExecutable {
    fn drop(&mut self) {
        if let Some(profile) = self.profile.as_ref().filter(|p| p.runs() > 0) {
            eprint!("{}", profile.report());
        }
    }
}

/// Compiles one fusion group into a loop description.
fn build_fused(graph: &Graph, group: &FusionGroup, group_of: &[Option<usize>], g: usize) -> Step {
    let nodes = graph.nodes();
    let member_index = |id: NodeId| group.members.iter().position(|&m| m == id);
    let mut inputs: Vec<NodeId> = Vec::new();
    let ops = group
        .members
        .iter()
        .map(|&m| {
            let node = &nodes[m.0];
            let kind = match &node.op {
                Op::Unary(u) => FusedKind::Unary(*u),
                Op::Binary(b) => FusedKind::Binary(*b),
                Op::Compare(c) => FusedKind::Compare(*c),
                _ => FusedKind::Select,
            };
            let mut args = [Arg::Member(0); 3];
            for (k, x) in node.inputs.iter().enumerate() {
                args[k] = match (group_of[x.0] == Some(g))
                    .then(|| member_index(*x))
                    .flatten()
                {
                    Some(j) => Arg::Member(j),
                    None => {
                        let operand = &nodes[x.0];
                        let slot = inputs.iter().position(|i| i == x).unwrap_or_else(|| {
                            inputs.push(*x);
                            inputs.len() - 1
                        });
                        Arg::External {
                            slot,
                            // The fusion pass admitted only operands with an access pattern.
                            access: fusion::access(&operand.shape, &group.shape)
                                .unwrap_or(fusion::Access::Full),
                            is_bool: operand.dtype == DType::Bool,
                        }
                    }
                };
            }
            FusedOp { kind, args }
        })
        .collect();
    let outputs: Vec<FusedOutput> = group
        .outputs
        .iter()
        .enumerate()
        .filter_map(|(slot, o)| {
            Some(FusedOutput {
                member: member_index(*o)?,
                slot,
                is_bool: nodes[o.0].dtype == DType::Bool,
            })
        })
        .collect();
    let lp = FusedLoop::new(group.shape.numel(), ops, outputs);
    Step::Fused {
        lp,
        in_ptrs: vec![std::ptr::null(); inputs.len()],
        out_ptrs: vec![std::ptr::null_mut(); group.outputs.len()],
        inputs,
        outputs: group.outputs.clone(),
    }
}

unsafe fn typed<'a, T>(p: *mut u8, len: usize) -> &'a [T] {
    if len == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(p as *const T, len)
    }
}

unsafe fn f32s<'a>(p: *mut u8, len: usize) -> &'a [f32] {
    typed(p, len)
}

unsafe fn f32s_mut<'a>(p: *mut u8, len: usize) -> &'a mut [f32] {
    if len == 0 {
        &mut []
    } else {
        std::slice::from_raw_parts_mut(p as *mut f32, len)
    }
}

/// A typed view of `len` elements of `dtype` at `p`.
unsafe fn host_slice<'a>(dtype: DType, p: *const u8, len: usize) -> HostSlice<'a> {
    let p = p as *mut u8;
    match dtype {
        DType::I32 => HostSlice::I32(typed(p, len)),
        DType::U8 => HostSlice::U8(typed(p, len)),
        DType::Bool => HostSlice::Bool(typed(p, len)),
        _ => HostSlice::F32(typed(p, len)),
    }
}

impl Executable for CpuExecutable {
    fn input_names(&self) -> &[String] {
        &self.input_names
    }

    fn output_names(&self) -> &[String] {
        &self.output_names
    }

    fn state_names(&self) -> &[String] {
        &self.state_names
    }

    fn run(&mut self, inputs: &[HostSlice<'_>]) -> Result<()> {
        self.check_inputs(inputs)?;
        self.refresh_ptrs(inputs);
        let _flush = FlushDenormals::new();
        for u in 0..self.units.len() {
            let start = self.profile.is_some().then(std::time::Instant::now);
            let steps = match &self.units[u] {
                Unit::Step(s) => *s..*s + 1,
                Unit::Tiled { segment, .. } => segment.steps.clone(),
            };
            steps.clone().for_each(|s| self.prepare_step(s));
            // SAFETY: pointers were refreshed for this step; the memory plan guarantees each
            // kernel's output is disjoint from everything it reads (a tiled run's values all
            // live through the whole run).
            unsafe {
                match &self.units[u] {
                    Unit::Step(s) => self.run_step(*s),
                    Unit::Tiled {
                        segment,
                        workspace,
                        workspace_per_thread,
                    } => self.run_tiled(u, segment, *workspace, *workspace_per_thread),
                }
            }
            if let (Some(profile), Some(start)) = (&mut self.profile, start) {
                profile.record(u, start);
            }
            if let Some(e) = self.collective_error.get_mut().take() {
                return Err(e);
            }
        }
        if let Some(profile) = &mut self.profile {
            profile.finish_run();
        }
        // Outputs not kept in the arena are copied out before state moves on.
        for (k, copy) in self.output_copies.iter_mut().enumerate() {
            if let Some(buf) = copy {
                let id = self.output_nodes[k];
                let len = buf.bytes().len();
                // SAFETY: the node's memory holds `len` bytes for this step.
                let src = unsafe { std::slice::from_raw_parts(self.ptrs[id.0], len) };
                buf.bytes_mut().copy_from_slice(src);
            }
        }
        for slot in &mut self.state {
            let Some(v) = slot.update.filter(|_| !slot.in_place) else {
                continue;
            };
            if !slot.pinned {
                let len = slot.next.bytes().len();
                // SAFETY: as above.
                let src = unsafe { std::slice::from_raw_parts(self.ptrs[v.0], len) };
                slot.next.bytes_mut().copy_from_slice(src);
            }
            std::mem::swap(&mut slot.cur, &mut slot.next);
        }
        Ok(())
    }

    fn output_slice(&mut self, index: usize) -> Result<HostSlice<'_>> {
        let id = *self
            .output_nodes
            .get(index)
            .ok_or_else(|| Error::UnknownName {
                kind: "output",
                name: format!("#{index}"),
                known: self.output_names.join(", "),
            })?;
        let node = &self.graph.nodes()[id.0];
        let len = node.shape.numel();
        let ptr = match &mut self.output_copies[index] {
            Some(buf) => buf.ptr() as *const u8,
            None => {
                let Loc::Arena(off) = self.locs[root_of(&self.locs, id).0] else {
                    unreachable!("outputs outside the arena have copies")
                };
                // SAFETY: the plan keeps outputs alive in the arena after the step.
                unsafe { self.arena.ptr().add(off) as *const u8 }
            }
        };
        // SAFETY: the buffer holds `len` elements of the node's dtype.
        Ok(unsafe { host_slice(node.dtype, ptr, len) })
    }

    fn read_state(&mut self, name: &str) -> Result<HostTensor> {
        let s = self.state_index(name)?;
        let slot = &mut self.state[s];
        let node = &self.graph.nodes()[slot.node.0];
        let len = node.shape.numel();
        // SAFETY: the buffer holds `len` elements of the node's dtype.
        let data = unsafe { host_slice(node.dtype, slot.cur.ptr(), len) }.to_owned();
        HostTensor::new(node.shape.clone(), data)
    }

    fn write_state(&mut self, name: &str, value: HostSlice<'_>) -> Result<()> {
        let s = self.state_index(name)?;
        let node = &self.graph.nodes()[self.state[s].node.0];
        if value.dtype() != node.dtype || value.len() != node.shape.numel() {
            return Err(Error::BadData {
                what: format!("state {name:?}"),
                expected_dtype: node.dtype,
                expected_shape: node.shape.clone(),
                found: format!("{} × {}", value.len(), value.dtype()),
            });
        }
        self.state[s]
            .cur
            .bytes_mut()
            .copy_from_slice(value.as_bytes());
        Ok(())
    }

    fn output(&mut self, name: &str) -> Result<HostTensor> {
        let index = self.output_index(name)?;
        let shape = self.graph.nodes()[self.output_nodes[index].0].shape.clone();
        let data: HostData = self.output_slice(index)?.to_owned();
        HostTensor::new(shape, data)
    }
}

impl CpuExecutable {
    fn state_index(&self, name: &str) -> Result<usize> {
        self.state_names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| Error::UnknownName {
                kind: "state",
                name: name.to_string(),
                known: self.state_names.join(", "),
            })
    }
}
