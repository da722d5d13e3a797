//! One loop for a whole fusion group: the group's elements are processed in chunks that stay
//! in L1, each member op writing a chunk-sized scratch row that later members read, and only
//! the group's outputs reach memory.

use super::adam_update::AdamUpdate;
use super::elementwise::{binary, maximum, minimum, relu, unary};
use crate::cpu::pool::WorkerPool;
use crate::cpu::simd;
use crate::ir::{BinaryOp, CompareOp, UnaryOp};
use crate::passes::fusion::{Access, MAX_GROUP_SIZE};

/// Elements per chunk.
const CHUNK: usize = 256;
/// Groups at least this long are split over the pool.
const PARALLEL_MIN_LEN: usize = 1 << 13;

/// A member's operation.
#[derive(Clone, Copy, Debug)]
pub enum FusedKind {
    /// Unary function.
    Unary(UnaryOp),
    /// Binary function.
    Binary(BinaryOp),
    /// Comparison (scratch holds 1.0 / 0.0).
    Compare(CompareOp),
    /// Select on a nonzero condition.
    Select,
}

impl FusedKind {
    /// A short lower-case name (`relu`, `mul`, `select`), for profiles.
    pub fn name(&self) -> String {
        let debug = match self {
            FusedKind::Unary(u) => format!("{u:?}"),
            FusedKind::Binary(b) => format!("{b:?}"),
            FusedKind::Compare(c) => format!("{c:?}"),
            FusedKind::Select => "select".to_string(),
        };
        debug.to_lowercase()
    }
}

/// Where a member reads an operand from.
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    /// The scratch row of an earlier member.
    Member(usize),
    /// Memory outside the group; `bool` marks a `Bool` buffer.
    External {
        /// Index into the externals pointer list given at run time.
        slot: usize,
        /// How the group's index maps to the operand's.
        access: Access,
        /// The operand holds `bool`s rather than `f32`s.
        is_bool: bool,
    },
}

/// One member of the loop.
#[derive(Clone, Copy, Debug)]
pub struct FusedOp {
    /// Its operation.
    pub kind: FusedKind,
    /// Its operands (the first `arity` are used).
    pub args: [Arg; 3],
}

/// A member whose value is stored: its index and whether it is stored as `bool`.
#[derive(Clone, Copy, Debug)]
pub struct FusedOutput {
    /// Member index.
    pub member: usize,
    /// Output slot in the pointer list given at run time.
    pub slot: usize,
    /// Stored as `bool`.
    pub is_bool: bool,
}

/// A compiled fused loop.
#[derive(Clone, Debug)]
pub struct FusedLoop {
    /// Elements in the group's shape.
    pub len: usize,
    /// Members in order (at most [`MAX_GROUP_SIZE`]).
    pub ops: Vec<FusedOp>,
    /// Members written to memory.
    pub outputs: Vec<FusedOutput>,
    /// For each member, the output slot it is computed straight into (`f32` outputs), so its
    /// value never passes through a scratch row.
    direct: Vec<Option<usize>>,
    /// A hand-written loop for this group's expression, if it has one.
    special: Option<AdamUpdate>,
}

#[derive(Clone, Copy)]
struct Ptrs<'a> {
    inputs: &'a [*const u8],
    outputs: &'a [*mut u8],
}
// SAFETY: tasks read shared operands and write disjoint ranges of the outputs.
unsafe impl Send for Ptrs<'_> {}
unsafe impl Sync for Ptrs<'_> {}

impl FusedLoop {
    /// A loop over `len` elements computing `ops` and storing `outputs`.
    pub fn new(len: usize, ops: Vec<FusedOp>, outputs: Vec<FusedOutput>) -> Self {
        let special = AdamUpdate::recognise(&ops, &outputs);
        FusedLoop {
            special,
            ..Self::generic(len, ops, outputs)
        }
    }

    /// As [`FusedLoop::new`], always running the generic member-by-member loop.
    pub fn generic(len: usize, ops: Vec<FusedOp>, outputs: Vec<FusedOutput>) -> Self {
        let mut direct = vec![None; ops.len()];
        for o in outputs.iter().filter(|o| !o.is_bool) {
            direct[o.member] = Some(o.slot);
        }
        FusedLoop {
            len,
            ops,
            outputs,
            direct,
            special: None,
        }
    }

    /// Whether a hand-written loop runs this group.
    pub fn is_special(&self) -> bool {
        self.special.is_some()
    }

    /// Whether an output may be given the very memory of one of the full-size inputs, so
    /// that a state is updated in place: true for the hand-written loop, which reads each
    /// element's inputs before it stores that element's results. (The generic loop may store
    /// a member before a later member reads an input in the same chunk.)
    pub fn may_overwrite_inputs(&self) -> bool {
        self.special.is_some()
    }

    /// Runs the loop. `inputs[slot]` points at each external operand, `outputs[slot]` at each
    /// stored member's buffer.
    ///
    /// # Safety
    /// Every pointer must be valid for the group's access pattern and the outputs must not
    /// overlap each other or the inputs, except that where [`FusedLoop::may_overwrite_inputs`]
    /// holds an output may be exactly a full-size input.
    pub unsafe fn run(&self, inputs: &[*const u8], outputs: &[*mut u8], pool: &WorkerPool) {
        let ptrs = Ptrs { inputs, outputs };
        let chunks = self.len.div_ceil(CHUNK);
        let tasks = if self.len >= PARALLEL_MIN_LEN {
            pool.threads().min(chunks)
        } else {
            1
        };
        let body = |t: usize| {
            let ptrs: Ptrs<'_> = ptrs; // the whole (Sync) struct, not its fields
            let (lo, hi) = (chunks * t / tasks, chunks * (t + 1) / tasks);
            let (lo, hi) = (lo * CHUNK, (hi * CHUNK).min(self.len));
            self.run_range(lo, hi, ptrs.inputs, ptrs.outputs);
        };
        if tasks == 1 {
            body(0);
        } else {
            pool.run(tasks, &body);
        }
    }

    /// Runs elements `lo..hi` on the calling thread (pointers as for [`FusedLoop::run`]).
    /// Elements are independent, so ranges may run in any order, on any threads.
    ///
    /// # Safety
    /// As for [`FusedLoop::run`]; concurrent calls must cover disjoint ranges.
    pub unsafe fn run_range(
        &self,
        lo: usize,
        hi: usize,
        inputs: &[*const u8],
        outputs: &[*mut u8],
    ) {
        if let Some(special) = &self.special {
            special.run_range(lo, hi, inputs, outputs);
            return;
        }
        let ptrs = Ptrs { inputs, outputs };
        SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            simd::dispatch(
                #[inline(always)]
                || {
                    let mut start = lo;
                    while start < hi {
                        let n = CHUNK.min(hi - start);
                        self.chunk(start, n, &mut scratch, ptrs);
                        start += n;
                    }
                },
            );
        });
    }

    #[inline(always)]
    unsafe fn chunk(&self, start: usize, n: usize, scratch: &mut Scratch, ptrs: Ptrs<'_>) {
        let Scratch {
            rows: scratch,
            tmp,
            splat,
        } = scratch;
        for (m, op) in self.ops.iter().enumerate() {
            let arity = match op.kind {
                FusedKind::Unary(_) => 1,
                FusedKind::Binary(_) | FusedKind::Compare(_) => 2,
                FusedKind::Select => 3,
            };
            // Operands that are neither earlier members, full-size f32 memory nor scalars are
            // gathered into a temporary row.
            for (k, arg) in op.args.iter().take(arity).enumerate() {
                if let Arg::External {
                    slot,
                    access,
                    is_bool,
                } = *arg
                {
                    if is_bool || matches!(access, Access::Trailing(_) | Access::Leading(_)) {
                        load(ptrs.inputs[slot], access, is_bool, start, &mut tmp[k][..n]);
                    }
                }
            }
            // Comparisons and selects run as row loops: scalar operands become rows first.
            let rows_only = matches!(op.kind, FusedKind::Compare(_) | FusedKind::Select);
            if rows_only {
                for (k, arg) in op.args.iter().take(arity).enumerate() {
                    if let Arg::External {
                        slot,
                        access: Access::Scalar,
                        is_bool: false,
                    } = *arg
                    {
                        tmp[k][..n].fill(*(ptrs.inputs[slot] as *const f32));
                    }
                }
            }
            let (before, rest) = scratch.split_at_mut(m);
            let out: &mut [f32] = match self.direct[m] {
                Some(slot) => {
                    std::slice::from_raw_parts_mut((ptrs.outputs[slot] as *mut f32).add(start), n)
                }
                None => &mut rest[0][..n],
            };
            let arg = |k: usize| -> Operand<'_> {
                match op.args[k] {
                    Arg::Member(j) => match self.direct[j] {
                        Some(slot) => Operand::Row(std::slice::from_raw_parts(
                            (ptrs.outputs[slot] as *const f32).add(start),
                            n,
                        )),
                        None => Operand::Row(&before[j][..n]),
                    },
                    Arg::External {
                        slot,
                        access,
                        is_bool: false,
                    } if matches!(access, Access::Full | Access::Scalar) => {
                        let p = ptrs.inputs[slot] as *const f32;
                        if access == Access::Scalar && rows_only {
                            Operand::Row(&tmp[k][..n])
                        } else if access == Access::Scalar {
                            Operand::Scalar(*p)
                        } else {
                            Operand::Row(std::slice::from_raw_parts(p.add(start), n))
                        }
                    }
                    Arg::External { .. } => Operand::Row(&tmp[k][..n]),
                }
            };
            match op.kind {
                FusedKind::Unary(u) => unary_row(u, arg(0).row(&mut splat[..n]), out),
                FusedKind::Binary(b) => binary_row(b, arg(0), arg(1), out),
                FusedKind::Compare(c) => compare_row(c, arg(0).rows(), arg(1).rows(), out),
                FusedKind::Select => {
                    let (c, t, f) = (arg(0).rows(), arg(1).rows(), arg(2).rows());
                    for (((o, &c), &t), &f) in out.iter_mut().zip(c).zip(t).zip(f) {
                        *o = if c != 0.0 { t } else { f };
                    }
                }
            }
        }
        for o in self.outputs.iter().filter(|o| o.is_bool) {
            let dst = (ptrs.outputs[o.slot] as *mut bool).add(start);
            for (i, &v) in scratch[o.member][..n].iter().enumerate() {
                *dst.add(i) = v != 0.0;
            }
        }
    }
}

/// Per-thread rows a fused loop computes into: one per member, three for gathered operands
/// and one for a broadcast scalar. Kept per thread (prepared once, never zeroed per call),
/// because a fresh stack array would be cleared on every call, which cost more than the
/// arithmetic of small groups.
pub struct Scratch {
    rows: [[f32; CHUNK]; MAX_GROUP_SIZE],
    tmp: [[f32; CHUNK]; 3],
    splat: [f32; CHUNK],
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Box<Scratch>> = std::cell::RefCell::new(Box::new(Scratch {
        rows: [[0.0; CHUNK]; MAX_GROUP_SIZE],
        tmp: [[0.0; CHUNK]; 3],
        splat: [0.0; CHUNK],
    }));
}

/// Creates this thread's scratch now rather than in some later step.
pub fn reserve_thread_scratch() {
    SCRATCH.with(|_| {});
}

/// A member's operand within one chunk: a row of values or one broadcast value.
#[derive(Clone, Copy)]
enum Operand<'a> {
    Row(&'a [f32]),
    Scalar(f32),
}

impl<'a> Operand<'a> {
    /// The row of an operand that was made a row before (comparisons and selects).
    fn rows(self) -> &'a [f32] {
        match self {
            Operand::Row(r) => r,
            Operand::Scalar(_) => &[],
        }
    }

    /// The operand as a row, filling `buf` for a scalar.
    fn row(self, buf: &'a mut [f32]) -> &'a [f32] {
        match self {
            Operand::Row(r) => r,
            Operand::Scalar(v) => {
                buf.fill(v);
                buf
            }
        }
    }
}

/// `out = op(x)`, one tight loop per function so the compiler vectorises each.
#[inline(always)]
fn unary_row(op: UnaryOp, x: &[f32], out: &mut [f32]) {
    macro_rules! each {
        ($f:expr) => {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = $f(v);
            }
        };
    }
    match op {
        UnaryOp::Neg => each!(|v: f32| -v),
        UnaryOp::Exp => each!(super::exp::exp),
        UnaryOp::Relu => each!(relu),
        UnaryOp::Sqrt => each!(|v: f32| v.sqrt()),
        UnaryOp::Rsqrt => each!(|v: f32| 1.0 / v.sqrt()),
        UnaryOp::Abs => each!(|v: f32| v.abs()),
        UnaryOp::Square => each!(|v: f32| v * v),
        UnaryOp::Recip => each!(|v: f32| 1.0 / v),
        other => each!(|v: f32| unary(other, v)),
    }
}

/// `out = (a op b) ? 1 : 0`, one tight loop per comparison.
#[inline(always)]
fn compare_row(op: CompareOp, a: &[f32], b: &[f32], out: &mut [f32]) {
    macro_rules! each {
        ($f:expr) => {
            for ((o, &u), &v) in out.iter_mut().zip(a).zip(b) {
                *o = if $f(u, v) { 1.0 } else { 0.0 };
            }
        };
    }
    match op {
        CompareOp::Eq => each!(|u: f32, v: f32| u == v),
        CompareOp::Ne => each!(|u: f32, v: f32| u != v),
        CompareOp::Lt => each!(|u: f32, v: f32| u < v),
        CompareOp::Le => each!(|u: f32, v: f32| u <= v),
        CompareOp::Gt => each!(|u: f32, v: f32| u > v),
        CompareOp::Ge => each!(|u: f32, v: f32| u >= v),
    }
}

/// `out = op(a, b)` with either side possibly a scalar, one tight loop per case.
#[inline(always)]
fn binary_row(op: BinaryOp, a: Operand<'_>, b: Operand<'_>, out: &mut [f32]) {
    macro_rules! each {
        ($f:expr) => {
            match (a, b) {
                (Operand::Row(x), Operand::Row(y)) => {
                    for ((o, &u), &v) in out.iter_mut().zip(x).zip(y) {
                        *o = $f(u, v);
                    }
                }
                (Operand::Row(x), Operand::Scalar(v)) => {
                    for (o, &u) in out.iter_mut().zip(x) {
                        *o = $f(u, v);
                    }
                }
                (Operand::Scalar(u), Operand::Row(y)) => {
                    for (o, &v) in out.iter_mut().zip(y) {
                        *o = $f(u, v);
                    }
                }
                (Operand::Scalar(u), Operand::Scalar(v)) => out.fill($f(u, v)),
            }
        };
    }
    match op {
        BinaryOp::Add => each!(|u: f32, v: f32| u + v),
        BinaryOp::Sub => each!(|u: f32, v: f32| u - v),
        BinaryOp::Mul => each!(|u: f32, v: f32| u * v),
        BinaryOp::Div => each!(|u: f32, v: f32| u / v),
        BinaryOp::Max => each!(maximum),
        BinaryOp::Min => each!(minimum),
        BinaryOp::Pow => each!(|u: f32, v: f32| binary(op, u, v)),
    }
}

/// Loads elements `start..start+dst.len()` of the group's index space from an operand.
#[inline(always)]
unsafe fn load(ptr: *const u8, access: Access, is_bool: bool, start: usize, dst: &mut [f32]) {
    let get = |i: usize| -> f32 {
        if is_bool {
            (*(ptr as *const bool).add(i)) as u8 as f32
        } else {
            *(ptr as *const f32).add(i)
        }
    };
    match access {
        Access::Full if !is_bool => {
            std::ptr::copy_nonoverlapping(
                (ptr as *const f32).add(start),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
        Access::Full => dst
            .iter_mut()
            .enumerate()
            .for_each(|(i, d)| *d = get(start + i)),
        Access::Scalar => dst.fill(get(0)),
        Access::Trailing(len) if !is_bool => {
            // Copy whole runs of the repeating row.
            let src = ptr as *const f32;
            let (mut j, mut i) = (start % len, 0);
            while i < dst.len() {
                let run = (len - j).min(dst.len() - i);
                std::ptr::copy_nonoverlapping(src.add(j), dst.as_mut_ptr().add(i), run);
                i += run;
                j = 0;
            }
        }
        Access::Trailing(len) => {
            let mut j = start % len;
            for d in dst.iter_mut() {
                *d = get(j);
                j += 1;
                if j == len {
                    j = 0;
                }
            }
        }
        Access::Leading(inner) => {
            // Runs of one repeated value; one division per chunk, not per element.
            let (mut row, mut j, mut i) = (start / inner, start % inner, 0);
            while i < dst.len() {
                let run = (inner - j).min(dst.len() - i);
                dst[i..i + run].fill(get(row));
                i += run;
                row += 1;
                j = 0;
            }
        }
    }
}
