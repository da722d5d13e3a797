//! A hand-written loop for the fused group that Adam's update of one parameter becomes.
//!
//! The generic fused loop writes every member to a scratch row and reads it back in the next
//! member; that costs about 0.13 ns per element and member on the reference machine, so the
//! twelve members of an Adam update took ~300 µs a step for the MLP's 784×128 kernel (half of
//! its batch-32 step). Here the same arithmetic runs in registers and only the three results
//! reach memory. The group is recognised by its structure, not by name: any graph computing
//!
//! ```text
//! m' = m·β₁ + g·c₁        v' = v·β₂ + (g·g)·c₂        p' = p − m' / (√v' + ε) · lr
//! ```
//!
//! (with `m, v, g, p` full-size and the rest scalars, operands of `+` and `·` in either order)
//! gets this loop. The operations and their order are those of the group, so the results are
//! bit-identical to the generic loop's (tested in `fused`).

use super::fused::{Arg, FusedKind, FusedOp, FusedOutput};
use crate::cpu::simd;
use crate::ir::{BinaryOp, UnaryOp};
use crate::passes::fusion::Access;

/// The operands of the update, as slots of the group's input and output pointer lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdamUpdate {
    /// Full-size inputs: first moment, gradient, second moment, parameter.
    m: usize,
    g: usize,
    v: usize,
    p: usize,
    /// Scalar inputs: β₁, c₁, β₂, c₂, ε, the step size.
    b1: usize,
    c1: usize,
    b2: usize,
    c2: usize,
    eps: usize,
    lr: usize,
    /// Output slots of m', v', p'.
    m_out: usize,
    v_out: usize,
    p_out: usize,
}

/// The shape of an expression the group must compute; variables bind input slots.
enum Pattern {
    /// A full-size input, bound to variable `.0`.
    Full(usize),
    /// A scalar input, bound to variable `.0`.
    Scalar(usize),
    Unary(UnaryOp, Box<Pattern>),
    Binary(BinaryOp, Box<Pattern>, Box<Pattern>),
}

// Variable numbers of the patterns.
const M: usize = 0;
const G: usize = 1;
const V: usize = 2;
const P: usize = 3;
const B1: usize = 4;
const C1: usize = 5;
const B2: usize = 6;
const C2: usize = 7;
const EPS: usize = 8;
const LR: usize = 9;
const VARS: usize = 10;

fn bin(op: BinaryOp, a: Pattern, b: Pattern) -> Pattern {
    Pattern::Binary(op, Box::new(a), Box::new(b))
}

fn m_new() -> Pattern {
    use Pattern::{Full, Scalar};
    bin(
        BinaryOp::Add,
        bin(BinaryOp::Mul, Full(M), Scalar(B1)),
        bin(BinaryOp::Mul, Full(G), Scalar(C1)),
    )
}

fn v_new() -> Pattern {
    use Pattern::{Full, Scalar};
    let g2 = bin(BinaryOp::Mul, Full(G), Full(G));
    bin(
        BinaryOp::Add,
        bin(BinaryOp::Mul, Full(V), Scalar(B2)),
        bin(BinaryOp::Mul, g2, Scalar(C2)),
    )
}

fn p_new() -> Pattern {
    use Pattern::{Full, Scalar};
    let root = Pattern::Unary(UnaryOp::Sqrt, Box::new(v_new()));
    let denom = bin(BinaryOp::Add, root, Scalar(EPS));
    let step = bin(
        BinaryOp::Mul,
        bin(BinaryOp::Div, m_new(), denom),
        Scalar(LR),
    );
    bin(BinaryOp::Sub, Full(P), step)
}

type Bindings = [Option<usize>; VARS];

/// Every way `arg` computes `pat` consistently with `binds` (`+` and `·` may match either
/// way round, so `m·β₁ + g·c₁` alone cannot tell `m` from `g`: the other outputs decide).
fn matches(ops: &[FusedOp], arg: Arg, pat: &Pattern, binds: Bindings) -> Vec<Bindings> {
    let bind = |var: usize, slot: usize| match binds[var] {
        Some(s) if s != slot => vec![],
        _ => {
            let mut b = binds;
            b[var] = Some(slot);
            vec![b]
        }
    };
    match (pat, arg) {
        (
            Pattern::Full(var),
            Arg::External {
                slot,
                access: Access::Full,
                is_bool: false,
            },
        ) => bind(*var, slot),
        (
            Pattern::Scalar(var),
            Arg::External {
                slot,
                access: Access::Scalar,
                is_bool: false,
            },
        ) => bind(*var, slot),
        (Pattern::Unary(u, x), Arg::Member(j)) => match ops[j].kind {
            FusedKind::Unary(k) if k == *u => matches(ops, ops[j].args[0], x, binds),
            _ => vec![],
        },
        (Pattern::Binary(b, x, y), Arg::Member(j)) => {
            let op = ops[j];
            if !matches!(op.kind, FusedKind::Binary(k) if k == *b) {
                return vec![];
            }
            let orders: &[(usize, usize)] = if matches!(b, BinaryOp::Add | BinaryOp::Mul) {
                &[(0, 1), (1, 0)]
            } else {
                &[(0, 1)]
            };
            let mut found = vec![];
            for &(i, k) in orders {
                for left in matches(ops, op.args[i], x, binds) {
                    found.extend(matches(ops, op.args[k], y, left));
                }
            }
            found
        }
        _ => vec![],
    }
}

/// A binding under which distinct outputs compute each of `roles`, with the output slot
/// chosen for each role.
fn assign(
    ops: &[FusedOp],
    outputs: &[FusedOutput],
    roles: &[Pattern],
    binds: Bindings,
    taken: &mut Vec<usize>,
) -> Option<(Bindings, Vec<usize>)> {
    let Some((first, rest)) = roles.split_first() else {
        return Some((binds, taken.clone()));
    };
    for o in outputs {
        if taken.contains(&o.slot) {
            continue;
        }
        for b in matches(ops, Arg::Member(o.member), first, binds) {
            taken.push(o.slot);
            if let Some(found) = assign(ops, outputs, rest, b, taken) {
                return Some(found);
            }
            taken.pop();
        }
    }
    None
}

impl AdamUpdate {
    /// The update if the group's members and outputs are exactly those of an Adam step.
    pub fn recognise(ops: &[FusedOp], outputs: &[FusedOutput]) -> Option<Self> {
        if ops.len() != 12 || outputs.len() != 3 || outputs.iter().any(|o| o.is_bool) {
            return None;
        }
        let roles = [m_new(), v_new(), p_new()];
        let (binds, out_slots) = assign(ops, outputs, &roles, [None; VARS], &mut vec![])?;
        let v = |var: usize| binds[var];
        Some(AdamUpdate {
            m: v(M)?,
            g: v(G)?,
            v: v(V)?,
            p: v(P)?,
            b1: v(B1)?,
            c1: v(C1)?,
            b2: v(B2)?,
            c2: v(C2)?,
            eps: v(EPS)?,
            lr: v(LR)?,
            m_out: out_slots[0],
            v_out: out_slots[1],
            p_out: out_slots[2],
        })
    }

    /// Updates elements `lo..hi`.
    ///
    /// # Safety
    /// As for `FusedLoop::run_range`: the pointers are valid for the group's length, the
    /// outputs do not overlap each other, and an output that overlaps an input is exactly a
    /// full-size input (each element's inputs are read before its results are stored);
    /// concurrent calls cover disjoint ranges.
    pub unsafe fn run_range(
        &self,
        lo: usize,
        hi: usize,
        inputs: &[*const u8],
        outputs: &[*mut u8],
    ) {
        let full = |slot: usize| (inputs[slot] as *const f32).add(lo);
        let scalar = |slot: usize| *(inputs[slot] as *const f32);
        let out = |slot: usize| (outputs[slot] as *mut f32).add(lo);
        let rows = Rows {
            len: hi - lo,
            m: full(self.m),
            g: full(self.g),
            v: full(self.v),
            p: full(self.p),
            m_out: out(self.m_out),
            v_out: out(self.v_out),
            p_out: out(self.p_out),
        };
        let k = Scalars {
            b1: scalar(self.b1),
            c1: scalar(self.c1),
            b2: scalar(self.b2),
            c2: scalar(self.c2),
            eps: scalar(self.eps),
            lr: scalar(self.lr),
        };
        simd::dispatch(
            #[inline(always)]
            || update(rows, k),
        );
    }
}

/// The update's rows. Each output may be the very memory of an input (the state updated in
/// place), so they are raw pointers, not slices.
struct Rows {
    len: usize,
    m: *const f32,
    g: *const f32,
    v: *const f32,
    p: *const f32,
    m_out: *mut f32,
    v_out: *mut f32,
    p_out: *mut f32,
}

#[derive(Clone, Copy)]
struct Scalars {
    b1: f32,
    c1: f32,
    b2: f32,
    c2: f32,
    eps: f32,
    lr: f32,
}

/// Elements loaded into registers before any of their results is stored.
const BLOCK: usize = 64;

/// The update itself, in the group's order of operations. A block of elements is read into
/// local arrays, computed and then stored, so that LLVM vectorises it whether or not the
/// outputs alias the inputs.
#[inline(always)]
unsafe fn update(r: Rows, k: Scalars) {
    let mut start = 0;
    while start < r.len {
        let n = BLOCK.min(r.len - start);
        let (mut m_new, mut v_new, mut p_new) = ([0f32; BLOCK], [0f32; BLOCK], [0f32; BLOCK]);
        {
            let row = |p: *const f32| std::slice::from_raw_parts(p.add(start), n);
            let (m, g, v, p) = (row(r.m), row(r.g), row(r.v), row(r.p));
            for i in 0..n {
                let gi = g[i];
                m_new[i] = m[i] * k.b1 + gi * k.c1;
                v_new[i] = v[i] * k.b2 + (gi * gi) * k.c2;
                let step = m_new[i] / (v_new[i].sqrt() + k.eps) * k.lr;
                p_new[i] = p[i] - step;
            }
        }
        // The input slices end above: from here only the outputs are touched.
        let store = |dst: *mut f32, src: &[f32; BLOCK]| {
            std::ptr::copy_nonoverlapping(src.as_ptr(), dst.add(start), n)
        };
        store(r.m_out, &m_new);
        store(r.v_out, &v_new);
        store(r.p_out, &p_new);
        start += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::kernels::fused::FusedLoop;
    use crate::cpu::pool::WorkerPool;

    fn full(slot: usize) -> Arg {
        Arg::External {
            slot,
            access: Access::Full,
            is_bool: false,
        }
    }

    fn scalar(slot: usize) -> Arg {
        Arg::External {
            slot,
            access: Access::Scalar,
            is_bool: false,
        }
    }

    fn op(kind: FusedKind, a: Arg, b: Arg) -> FusedOp {
        FusedOp {
            kind,
            args: [a, b, Arg::Member(0)],
        }
    }

    /// Adam's group as `nn` builds it; `swap` puts the operands of `+`/`·` the other way.
    /// Inputs: m, g, v, p, then β₁, c₁, β₂, c₂, ε, lr. Outputs: m', v', p'.
    fn adam_group(swap: bool, last: BinaryOp) -> (Vec<FusedOp>, Vec<FusedOutput>) {
        use BinaryOp::*;
        let b = |k, x, y| {
            let commutes = matches!(k, Add | Mul);
            if swap && commutes {
                op(FusedKind::Binary(k), y, x)
            } else {
                op(FusedKind::Binary(k), x, y)
            }
        };
        let ops = vec![
            b(Mul, full(0), scalar(4)),
            b(Mul, full(1), scalar(5)),
            b(Add, Arg::Member(0), Arg::Member(1)),
            b(Mul, full(1), full(1)),
            b(Mul, full(2), scalar(6)),
            b(Mul, Arg::Member(3), scalar(7)),
            b(Add, Arg::Member(4), Arg::Member(5)),
            op(
                FusedKind::Unary(UnaryOp::Sqrt),
                Arg::Member(6),
                Arg::Member(0),
            ),
            b(Add, Arg::Member(7), scalar(8)),
            b(Div, Arg::Member(2), Arg::Member(8)),
            b(Mul, Arg::Member(9), scalar(9)),
            b(last, full(3), Arg::Member(10)),
        ];
        let out = |member, slot| FusedOutput {
            member,
            slot,
            is_bool: false,
        };
        (ops, vec![out(2, 0), out(6, 1), out(11, 2)])
    }

    /// Runs `lp` over inputs derived from `seed` and returns the three outputs.
    fn run(lp: &FusedLoop, len: usize) -> Vec<Vec<f32>> {
        let wave = |k: f32| -> Vec<f32> {
            (0..len)
                .map(|i| ((i as f32 * 0.37 + k).sin() * 0.1) * if i % 7 == 0 { 0.0 } else { 1.0 })
                .collect()
        };
        let (m, g, v) = (wave(1.0), wave(2.0), wave(3.0));
        let v: Vec<f32> = v.iter().map(|x| x * x).collect();
        let p = wave(4.0);
        let scalars = [0.9f32, 0.1, 0.999, 0.001, 1e-7, 3e-3];
        let mut outs = vec![vec![f32::NAN; len]; 3];
        let mut inputs: Vec<*const u8> = vec![
            m.as_ptr() as _,
            g.as_ptr() as _,
            v.as_ptr() as _,
            p.as_ptr() as _,
        ];
        inputs.extend(scalars.iter().map(|s| s as *const f32 as *const u8));
        let outputs: Vec<*mut u8> = outs.iter_mut().map(|o| o.as_mut_ptr() as _).collect();
        // SAFETY: every pointer covers `len` elements (scalars one); outputs are separate.
        unsafe { lp.run(&inputs, &outputs, &WorkerPool::new(2)) };
        outs
    }

    #[test]
    fn adam_groups_get_the_special_loop_with_the_generic_loops_bits() {
        let len = 10_000 + 3; // parallel, with a ragged end
        for swap in [false, true] {
            let (ops, outputs) = adam_group(swap, BinaryOp::Sub);
            let special = FusedLoop::new(len, ops.clone(), outputs.clone());
            assert!(special.is_special(), "swap {swap}");
            let generic = FusedLoop::generic(len, ops, outputs);
            let (want, got) = (run(&generic, len), run(&special, len));
            for (k, (w, g)) in want.iter().zip(&got).enumerate() {
                let same = w.iter().zip(g).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "output {k} differs (swap {swap})");
            }
        }
    }

    #[test]
    fn near_misses_keep_the_generic_loop() {
        let (ops, outputs) = adam_group(false, BinaryOp::Add);
        assert!(!FusedLoop::new(8, ops, outputs).is_special());
        let (ops, mut outputs) = adam_group(false, BinaryOp::Sub);
        outputs[1].is_bool = true;
        assert!(!FusedLoop::new(8, ops, outputs).is_special());
        let (mut ops, outputs) = adam_group(false, BinaryOp::Sub);
        ops[3].args[1] = full(2); // g·v instead of g·g
        assert!(!FusedLoop::new(8, ops, outputs).is_special());
    }
}
