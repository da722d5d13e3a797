//! One loop for a whole fusion group: the group's elements are processed in chunks that stay
//! in L1, each member op writing a chunk-sized scratch row that later members read, and only
//! the group's outputs reach memory.

use super::elementwise::{binary, compare, unary};
use crate::cpu::pool::WorkerPool;
use crate::ir::{BinaryOp, CompareOp, UnaryOp};
use crate::passes::fusion::{Access, MAX_GROUP_SIZE};

/// Elements per chunk.
const CHUNK: usize = 128;
/// Groups at least this long are split over the pool.
const PARALLEL_MIN_LEN: usize = 1 << 15;

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
    /// Runs the loop. `inputs[slot]` points at each external operand, `outputs[slot]` at each
    /// stored member's buffer.
    ///
    /// # Safety
    /// Every pointer must be valid for the group's access pattern and the outputs must not
    /// overlap the inputs or each other.
    pub unsafe fn run(&self, inputs: &[*const u8], outputs: &[*mut u8], pool: &WorkerPool) {
        let ptrs = Ptrs { inputs, outputs };
        let chunks = self.len.div_ceil(CHUNK);
        let tasks = if self.len >= PARALLEL_MIN_LEN {
            pool.threads().min(chunks)
        } else {
            1
        };
        let body = |t: usize| {
            let (lo, hi) = (chunks * t / tasks, chunks * (t + 1) / tasks);
            let mut scratch = [[0f32; CHUNK]; MAX_GROUP_SIZE];
            for c in lo..hi {
                let start = c * CHUNK;
                let n = CHUNK.min(self.len - start);
                self.chunk(start, n, &mut scratch, ptrs);
            }
        };
        if tasks == 1 {
            body(0);
        } else {
            pool.run(tasks, &body);
        }
    }

    unsafe fn chunk(
        &self,
        start: usize,
        n: usize,
        scratch: &mut [[f32; CHUNK]; MAX_GROUP_SIZE],
        ptrs: Ptrs<'_>,
    ) {
        let mut tmp = [[0f32; CHUNK]; 3];
        for (m, op) in self.ops.iter().enumerate() {
            let arity = match op.kind {
                FusedKind::Unary(_) => 1,
                FusedKind::Binary(_) | FusedKind::Compare(_) => 2,
                FusedKind::Select => 3,
            };
            for (k, arg) in op.args.iter().take(arity).enumerate() {
                if let Arg::External {
                    slot,
                    access,
                    is_bool,
                } = *arg
                {
                    load(ptrs.inputs[slot], access, is_bool, start, &mut tmp[k][..n]);
                }
            }
            let (before, rest) = scratch.split_at_mut(m);
            let out = &mut rest[0][..n];
            let arg = |k: usize| -> &[f32] {
                match op.args[k] {
                    Arg::Member(j) => &before[j][..n],
                    Arg::External { .. } => &tmp[k][..n],
                }
            };
            match op.kind {
                FusedKind::Unary(u) => {
                    for (o, &x) in out.iter_mut().zip(arg(0)) {
                        *o = unary(u, x);
                    }
                }
                FusedKind::Binary(b) => {
                    for ((o, &x), &y) in out.iter_mut().zip(arg(0)).zip(arg(1)) {
                        *o = binary(b, x, y);
                    }
                }
                FusedKind::Compare(c) => {
                    for ((o, &x), &y) in out.iter_mut().zip(arg(0)).zip(arg(1)) {
                        *o = if compare(c, x, y) { 1.0 } else { 0.0 };
                    }
                }
                FusedKind::Select => {
                    for (((o, &c), &t), &f) in out.iter_mut().zip(arg(0)).zip(arg(1)).zip(arg(2)) {
                        *o = if c != 0.0 { t } else { f };
                    }
                }
            }
        }
        for o in &self.outputs {
            let src = &scratch[o.member][..n];
            if o.is_bool {
                let dst = (ptrs.outputs[o.slot] as *mut bool).add(start);
                for (i, &v) in src.iter().enumerate() {
                    *dst.add(i) = v != 0.0;
                }
            } else {
                let dst = (ptrs.outputs[o.slot] as *mut f32).add(start);
                std::ptr::copy_nonoverlapping(src.as_ptr(), dst, n);
            }
        }
    }
}

/// Loads elements `start..start+dst.len()` of the group's index space from an operand.
#[inline]
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
        Access::Leading(inner) => dst
            .iter_mut()
            .enumerate()
            .for_each(|(i, d)| *d = get((start + i) / inner)),
    }
}
