//! The CPU backend's compile, stage by stage: the shared pipeline's patterns plus the CPU's
//! own (fused convolution blocks), where every value lives, the step list, batch-tiled runs,
//! updates written in place, and the arena laid out by the memory plan.
//! `CpuExecutable::compile_with` calls these in order.

use super::buffer::AlignedBuf;
use super::conv_block::{self, Blocks};
use super::executable::{root_of, Loc, StateSlot, Step, Unit};
use super::in_place;
use super::kernels::conv::ConvGeometry;
use super::kernels::fused::{Arg, FusedKind, FusedLoop, FusedOp, FusedOutput};
use super::kernels::{Small, MAX_RANK};
use super::profile::Profile;
use super::tiling::{self, Separable};
use super::CpuOptions;
use crate::ir::{Graph, Node, NodeId, Op};
use crate::passes::affine::Affine;
use crate::passes::fusion::{self, FusionGroup};
use crate::passes::memory_plan::{self, MemoryPlan, StepBuffers};
use crate::passes::pipeline;
use crate::{DType, Error, Result};

/// The graph after the shared pipeline, with every pattern found in it: fusion groups, GEMM
/// epilogues (a product absorbed into its group), and the CPU's fused convolution blocks.
pub(super) struct Found {
    pub graph: Graph,
    pub blocks: Blocks,
    pub block_of: Vec<Option<usize>>,
    pub groups: Vec<FusionGroup>,
    pub group_of: Vec<Option<usize>>,
    pub affines: Vec<Option<Affine>>,
    pub absorbed: Vec<bool>,
}

/// Runs the shared pipeline on `graph` and finds the convolution blocks before fusing, so
/// that fusion leaves the blocks' members alone.
pub(super) fn find_patterns(graph: &Graph, options: &CpuOptions) -> Result<Found> {
    let mut prepared = pipeline::prepare(graph, options.simplify)?;
    check_supported(&prepared.graph)?;
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
    Ok(Found {
        graph: prepared.graph,
        blocks,
        block_of,
        groups: prepared.groups,
        group_of: prepared.group_of,
        affines: prepared.affines,
        absorbed: prepared.absorbed,
    })
}

/// Bytes of a node's value.
fn bytes_of(node: &Node) -> usize {
    node.shape.numel() * node.dtype.size_in_bytes()
}

pub(super) fn unsupported(what: String) -> Error {
    Error::Unsupported {
        backend: "cpu",
        what,
    }
}

/// Rejects an all-reduce without a communicator to run it.
pub(super) fn check_communicator(graph: &Graph, attached: bool) -> Result<()> {
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
pub(super) struct Leaves {
    pub locs: Vec<Loc>,
    pub input_nodes: Vec<NodeId>,
    pub input_names: Vec<String>,
    pub state: Vec<StateSlot>,
    pub consts: Vec<AlignedBuf>,
}

pub(super) fn place_leaves(graph: &Graph) -> Leaves {
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

/// The steps in node order (a block or group at its first member, an epilogue product at its
/// group's step) and the step that computes each node.
pub(super) fn build_steps(found: &Found) -> (Vec<Step>, Vec<Option<usize>>) {
    let Found {
        graph,
        blocks,
        block_of,
        groups,
        group_of,
        affines,
        absorbed,
    } = found;
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

/// Values that never leave a fused loop, a convolution block or a GEMM epilogue live nowhere.
pub(super) fn mark_interiors(found: &Found, locs: &mut [Loc]) {
    for step in &found.blocks.steps {
        for m in step.interior() {
            locs[m.0] = Loc::Nowhere;
        }
    }
    for group in &found.groups {
        for m in group.members.iter().filter(|m| !group.outputs.contains(m)) {
            locs[m.0] = Loc::Nowhere;
        }
    }
    for a in found.affines.iter().flatten() {
        locs[a.matmul.0] = Loc::Nowhere;
    }
}

/// State updates computed by a kernel are written straight into the state's next buffer.
pub(super) fn route_updates(graph: &Graph, locs: &mut [Loc], state: &mut [StateSlot]) {
    for (p, v) in graph.updates() {
        let Loc::State(s) = locs[p.0] else { continue };
        state[s].update = Some(*v);
        if matches!(locs[v.0], Loc::Arena(_)) {
            locs[v.0] = Loc::StateNext(s);
            state[s].pinned = true;
        }
    }
}

/// The steps in execution order: runs of steps that compute each sample from that sample
/// alone become batch-tiled runs (with their per-thread workspace), the rest run alone.
pub(super) fn tile_units(
    graph: &Graph,
    locs: &[Loc],
    steps: &[Step],
    options: &CpuOptions,
    threads: usize,
) -> Vec<Unit> {
    let segments = if options.tile_batch {
        let kernels: Vec<Option<Separable>> =
            steps.iter().map(|s| separable(graph, locs, s)).collect();
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
                Step::Node { id, .. } => workspace_bytes(graph, *id, Some(segment.tile)),
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
    units
}

/// Updates that may overwrite their state: a kernel that reads each element before writing
/// it, after every other reader of the old value, outside any tiled run.
pub(super) fn update_in_place(
    graph: &Graph,
    locs: &mut [Loc],
    state: &mut [StateSlot],
    steps: &[Step],
    units: &[Unit],
    step_of: &[Option<usize>],
) {
    let mut untiled = vec![true; steps.len()];
    for unit in units {
        if let Unit::Tiled { segment, .. } = unit {
            segment.steps.clone().for_each(|s| untiled[s] = false);
        }
    }
    let overwrites_safely = |s: usize| {
        untiled[s] && matches!(&steps[s], Step::Fused { lp, .. } if lp.may_overwrite_inputs())
    };
    for (s, slot) in state.iter_mut().enumerate() {
        let Some(v) = slot.update.filter(|_| slot.pinned) else {
            continue;
        };
        let root = |id: NodeId| root_of(locs, id);
        if in_place::may_update_in_place(graph, slot.node, v, step_of, &root, &overwrites_safely) {
            locs[v.0] = Loc::State(s);
            slot.in_place = true;
        }
    }
}

/// What one step defines and reads in the arena, and the workspace it needs.
fn step_buffers(graph: &Graph, locs: &[Loc], step: &Step) -> StepBuffers {
    let nodes = graph.nodes();
    let in_arena = |id: NodeId| matches!(locs[id.0], Loc::Arena(_));
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
            .filter(|&d| in_arena(d))
            .map(|d| (d, bytes_of(&nodes[d.0])))
            .collect(),
        uses: reads
            .into_iter()
            .map(|r| root_of(locs, r))
            .filter(|&r| in_arena(r))
            .collect(),
        workspace: match step {
            Step::Node { id, .. } => workspace_bytes(graph, *id, None),
            Step::Block { step, .. } => step.workspace_bytes(),
            Step::Fused { .. } | Step::Affine(_) => 0,
        },
    }
}

/// Lays out the arena with the memory plan (a tiled run is planned as one step, since its
/// kernels interleave) and writes the offsets into the locations, steps and units.
pub(super) fn plan_arena(
    graph: &Graph,
    locs: &mut [Loc],
    steps: &mut [Step],
    units: &mut [Unit],
    threads: usize,
    options: &CpuOptions,
) -> MemoryPlan {
    let per_step: Vec<StepBuffers> = steps.iter().map(|s| step_buffers(graph, locs, s)).collect();
    let buffers: Vec<StepBuffers> = units
        .iter()
        .map(|unit| match unit {
            Unit::Step(s) => per_step[*s].clone(),
            Unit::Tiled {
                segment,
                workspace_per_thread,
                ..
            } => {
                let mut merged = StepBuffers {
                    workspace: workspace_per_thread * threads,
                    ..StepBuffers::default()
                };
                for b in &per_step[segment.steps.clone()] {
                    merged.defines.extend(&b.defines);
                    merged.uses.extend(&b.uses);
                }
                merged
            }
        })
        .collect();
    let keep: Vec<NodeId> = graph
        .outputs()
        .iter()
        .map(|(_, o)| root_of(locs, *o))
        .filter(|&r| matches!(locs[r.0], Loc::Arena(_)))
        .collect();
    let plan = memory_plan::plan(locs.len(), &buffers, &keep, options.plan_memory);
    for (i, loc) in locs.iter_mut().enumerate() {
        if let (Loc::Arena(off), Some(o)) = (loc, plan.offsets[i]) {
            *off = o;
        }
    }
    for (unit, &offset) in units.iter_mut().zip(&plan.workspace_offsets) {
        match unit {
            Unit::Step(s) => {
                if let Step::Node { workspace, .. } | Step::Block { workspace, .. } = &mut steps[*s]
                {
                    *workspace = offset;
                }
            }
            Unit::Tiled { workspace, .. } => *workspace = offset,
        }
    }
    plan
}

/// A buffer for each output that does not live in the arena (an input, a state or a
/// constant returned as is), where it is copied after a step.
pub(super) fn output_copies(graph: &Graph, locs: &[Loc]) -> Vec<Option<AlignedBuf>> {
    let nodes = graph.nodes();
    graph
        .outputs()
        .iter()
        .map(|(_, o)| {
            (!matches!(locs[root_of(locs, *o).0], Loc::Arena(_)))
                .then(|| AlignedBuf::zeroed(bytes_of(&nodes[o.0])))
        })
        .collect()
}

/// The per-step profile, when `HASTEN_PROFILE` asks for one.
pub(super) fn profile(graph: &Graph, steps: &[Step], units: &[Unit]) -> Option<Profile> {
    Profile::from_env(|| {
        let label = |s: usize| step_label(graph, &steps[s]);
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
    })
}

/// For ops that compute each sample from that sample alone: which operands carry the batch
/// as their leading dim (the others, weights, are read whole).
pub(super) fn batched_operands(op: &Op) -> Option<&'static [bool]> {
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
pub(super) fn step_label(graph: &Graph, step: &Step) -> String {
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
