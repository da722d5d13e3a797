//! A compiled graph on the CPU: locations for every value, a list of steps (single kernels or
//! fused loops), one arena laid out by the memory plan, and the state buffers.

use super::buffer::AlignedBuf;
use super::compile::{self, batched_operands, step_label, unsupported};
use super::conv_block::BlockStep;
use super::denormals::FlushDenormals;
use super::kernels::conv::{self, ConvGeometry};
use super::kernels::fused::FusedLoop;
use super::kernels::pool2d::{self, PoolGeometry};
use super::kernels::{elementwise as ew, layout, matmul, misc, random, reduce, Small};
use super::pool::{self, WorkerPool};
use super::profile::Profile;
use super::tiling::Segment;
use super::CpuOptions;
use crate::backend::{check_inputs, check_value, Executable};
use crate::collective::Communicator;
use crate::host::{HostData, HostSlice, HostTensor};
use crate::ir::{Graph, NodeId, Op};
use crate::passes::affine::Affine;
use crate::passes::memory_plan;
use crate::{DType, Error, Result};
use std::cell::RefCell;
use std::sync::Arc;

/// Where a node's value lives during a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Loc {
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

/// One step of the run loop: a kernel, a fused block or loop, or a product with its epilogue.
pub(super) enum Step {
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
pub(super) enum Unit {
    /// One step over the whole batch.
    Step(usize),
    /// A tiled run of steps, with its per-thread workspace (arena offset and bytes per thread).
    Tiled {
        segment: Segment,
        workspace: usize,
        workspace_per_thread: usize,
    },
}

/// A state value: its current and next buffers and how its update is written.
pub(super) struct StateSlot {
    pub name: String,
    pub node: NodeId,
    pub cur: AlignedBuf,
    pub next: AlignedBuf,
    /// The value written back after a step, if the state is updated; `Some(v)` with
    /// `pinned == false` means it is copied from `v`'s memory into `next`.
    pub update: Option<NodeId>,
    pub pinned: bool,
    /// The update is computed straight into `cur` (see `in_place`), and nothing is swapped.
    pub in_place: bool,
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
        compile::check_communicator(graph, communicator.is_some())?;
        let found = compile::find_patterns(graph, &options)?;
        let compile::Leaves {
            mut locs,
            input_nodes,
            input_names,
            mut state,
            consts,
        } = compile::place_leaves(&found.graph);
        compile::mark_interiors(&found, &mut locs);
        compile::route_updates(&found.graph, &mut locs, &mut state);
        let (mut steps, step_of) = compile::build_steps(&found);
        let threads = pool::global().threads();
        let mut units = compile::tile_units(&found.graph, &locs, &steps, &options, threads);
        compile::update_in_place(
            &found.graph,
            &mut locs,
            &mut state,
            &steps,
            &units,
            &step_of,
        );
        let graph = found.graph;
        let plan =
            compile::plan_arena(&graph, &mut locs, &mut steps, &mut units, threads, &options);
        let outputs = graph.outputs().to_vec();
        let output_copies = compile::output_copies(&graph, &locs);
        let profile = compile::profile(&graph, &steps, &units);
        let mut codes: Vec<Vec<u8>> = found
            .blocks
            .codes_bytes
            .iter()
            .map(|&b| vec![0; b])
            .collect();
        let codes_ptrs = codes.iter_mut().map(|c| c.as_mut_ptr()).collect();
        let mut arena = AlignedBuf::zeroed(plan.arena_bytes);
        Ok(CpuExecutable {
            _codes: codes,
            codes_ptrs,
            steps,
            units,
            ptrs: vec![std::ptr::null_mut(); locs.len()],
            locs,
            arena_ptr: arena.ptr(),
            arena,
            consts,
            state_names: state.iter().map(|s| s.name.clone()).collect(),
            state,
            input_nodes,
            input_names,
            output_nodes: outputs.iter().map(|(_, o)| *o).collect(),
            output_names: outputs.iter().map(|(s, _)| s.clone()).collect(),
            output_copies,
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

/// The node whose memory `id` uses (following views).
pub(super) fn root_of(locs: &[Loc], mut id: NodeId) -> NodeId {
    while let Loc::View(src) = locs[id.0] {
        id = src;
    }
    id
}

impl Drop for CpuExecutable {
    fn drop(&mut self) {
        if let Some(profile) = self.profile.as_ref().filter(|p| p.runs() > 0) {
            eprint!("{}", profile.report());
        }
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
        check_inputs(
            &self.graph,
            self.input_nodes.iter().copied(),
            &self.input_names,
            inputs,
        )?;
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
        check_value(
            &self.graph,
            self.state[s].node,
            || format!("state {name:?}"),
            value,
        )?;
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
