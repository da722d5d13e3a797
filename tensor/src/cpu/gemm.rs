//! Single-precision GEMM: packed panels, cache blocking, register-tiled microkernels compiled
//! for AVX-512, AVX2+FMA or plain Rust (chosen at run time), and work split over the pool.
//!
//! Each instruction set has a wide tile and a narrow one for products with few columns (a
//! Dense(10) layer's), which the wide tile would mostly pad with zeros. Operands are read in
//! place where packing them would not pay: B when C has few rows, A when few column panels
//! read it.
//!
//! Written here rather than taken from the `gemm` crate because that crate allocates its
//! packing buffers on every call; these live in per-thread buffers that grow once, so a step
//! stays allocation-free.

use super::pool::{SharedMut, WorkerPool};
use std::cell::RefCell;
use std::sync::OnceLock;

/// A strided view of a matrix: element `(i, j)` is at `ptr + i*rs + j*cs`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef {
    /// The first element.
    pub ptr: *const f32,
    /// Row stride in elements.
    pub rs: isize,
    /// Column stride in elements.
    pub cs: isize,
}

// SAFETY: a `MatRef` is a read-only view; the GEMM's caller guarantees the memory outlives it.
unsafe impl Send for MatRef {}
unsafe impl Sync for MatRef {}

impl MatRef {
    /// A row-major `rows × cols` matrix, read transposed if `transposed`.
    pub fn row_major(ptr: *const f32, cols: usize, transposed: bool) -> Self {
        if transposed {
            MatRef {
                ptr,
                rs: 1,
                cs: cols as isize,
            }
        } else {
            MatRef {
                ptr,
                rs: cols as isize,
                cs: 1,
            }
        }
    }

    unsafe fn at(&self, i: usize, j: usize) -> *const f32 {
        self.ptr.offset(i as isize * self.rs + j as isize * self.cs)
    }
}

/// Depth of one microkernel pass (and of a packed A block).
const KC: usize = 256;
/// Columns of a packed B block `KC` deep. Shallower products get wider blocks and narrower
/// ones deeper blocks: every block fills at most one buffer of `KC * NC` floats per thread.
const NC: usize = 2048;
/// Floats in each thread's packed-B buffer.
const PACK_B_LEN: usize = KC * NC;
/// Rows of C in one task's block, in tiles (fewer when that leaves threads idle).
const MC_TILES: usize = 8;
/// Up to this many rows of C, a row-major B is read in place instead of packed: with few rows
/// the packing costs as much as the multiplication it prepares (batch-1 inference).
const DIRECT_B_MAX_M: usize = 48;
/// Up to this many column panels, A is read in place instead of packed: packing copies A once
/// so that every panel reads it contiguously, which only pays when several panels read it
/// (a product with 10 columns has one).
const DIRECT_A_MAX_PANELS: usize = 2;
/// Below this many multiply-adds a GEMM runs on the calling thread alone.
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// One microkernel call: `kc` depth steps of A and of the panel `b` (packed, or read in place:
/// consecutive depth rows `b_rs` elements apart), into the `mr × nr` corner of the tile at `c`
/// (leading dimension `ldc`), adding to it when `accumulate`.
#[derive(Clone, Copy)]
struct TileCall {
    kc: usize,
    /// A's first element for this tile and depth range.
    a: *const f32,
    /// For a `columns` kernel, elements between the depth steps of A, each `MR` contiguous
    /// values (`MR` when packed); for a `rows` kernel, elements between the rows of A, whose
    /// depth steps are adjacent.
    a_stride: isize,
    b: *const f32,
    b_rs: usize,
    c: *mut f32,
    ldc: usize,
    mr: usize,
    nr: usize,
    accumulate: bool,
}

type Microkernel = unsafe fn(TileCall);

/// A register tile size and its microkernels, compiled for this CPU.
#[derive(Clone, Copy)]
struct Kernel {
    mr: usize,
    nr: usize,
    /// Reads A as `mr` contiguous values per depth step: packed, or a transposed A in place.
    columns: Microkernel,
    /// Reads A in place as `mr` rows of adjacent depth steps (a row-major A), where that beats
    /// packing A. (It does not for the AVX-512 wide tile, whose A loads LLVM gathers.)
    rows: Option<Microkernel>,
}

/// The tile for wide products and a narrower one for products with few columns (which the
/// wide tile would mostly pad with zeros).
#[derive(Clone, Copy)]
struct Kernels {
    wide: Kernel,
    narrow: Kernel,
}

/// The kernel sets this CPU runs, fastest first (the portable one last).
fn supported() -> impl Iterator<Item = Kernels> {
    #[cfg(target_arch = "x86_64")]
    let x86 = {
        use std::is_x86_feature_detected as has;
        [
            (has!("avx512f") && has!("fma")).then(|| Kernels {
                wide: x86::avx512_wide(),
                narrow: x86::avx512_narrow(),
            }),
            (has!("avx2") && has!("fma")).then(|| Kernels {
                wide: x86::avx2_wide(),
                narrow: x86::avx2_narrow(),
            }),
        ]
    };
    #[cfg(not(target_arch = "x86_64"))]
    let x86: [Option<Kernels>; 0] = [];
    x86.into_iter().flatten().chain(std::iter::once(Kernels {
        wide: portable(),
        narrow: portable(),
    }))
}

/// The fastest kernel set (in unit tests, the one a test forced on its thread).
fn kernels() -> Kernels {
    #[cfg(test)]
    if let Some(forced) = tests::FORCED_KERNELS.with(std::cell::Cell::get) {
        return forced;
    }
    static KERNELS: OnceLock<Kernels> = OnceLock::new();
    *KERNELS.get_or_init(|| {
        supported()
            .next()
            .expect("the portable kernels are always there")
    })
}

/// The tile for an `m × n` product: the narrow one where the wide one would pad it with
/// noticeably more zeros (a sixteenth more: on large products the two run alike, but where
/// loads are the limit the wide tile's fewer loads per multiply-add win).
fn kernel_for(m: usize, n: usize) -> Kernel {
    let Kernels { wide, narrow } = kernels();
    let padded = |k: Kernel| m.next_multiple_of(k.mr) * n.next_multiple_of(k.nr);
    if padded(narrow) * 16 <= padded(wide) * 15 {
        narrow
    } else {
        wide
    }
}

/// `c[m×n] = a[m×k] · b[k×n]`, plus the old `c` when `accumulate`. `c` is row-major with
/// leading dimension `ldc`.
///
/// # Safety
/// `a` and `b` must be valid for the strides and sizes given, and `c` valid for writes of
/// `m` rows of `ldc` elements (the first `n` of each used); `c` must not overlap `a` or `b`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef,
    b: MatRef,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    pool: &WorkerPool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                std::ptr::write_bytes(c.add(i * ldc), 0, n);
            }
        }
        return;
    }
    let kern = kernel_for(m, n);
    reserve_thread_buffers();
    PACK_B.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        let plan = Plan {
            m,
            n,
            k,
            a,
            b,
            c: SharedMut::new(c),
            ldc,
            accumulate,
            kern,
            threads: if m * n * k >= PARALLEL_MIN_WORK {
                pool.threads()
            } else {
                1
            },
            direct_b: b.cs == 1 && b.rs > 0 && m <= DIRECT_B_MAX_M,
            packed_b: SharedMut::new(buffer.as_mut_ptr()),
        };
        let nc_max = PACK_B_LEN / k.min(KC) / kern.nr * kern.nr;
        for jc in (0..n).step_by(nc_max) {
            let nc = nc_max.min(n - jc);
            let depth = PACK_B_LEN / nc.next_multiple_of(kern.nr);
            let kb = if depth >= k { k } else { depth / KC * KC };
            for pb in (0..k).step_by(kb) {
                plan.block(jc, nc, pb, kb.min(k - pb), pool);
            }
        }
    });
}

/// One `sgemm` call: its operands and the choices that hold for all its blocks.
struct Plan {
    m: usize,
    n: usize,
    k: usize,
    a: MatRef,
    b: MatRef,
    c: SharedMut,
    ldc: usize,
    accumulate: bool,
    kern: Kernel,
    threads: usize,
    /// B is row-major and read in place where a full tile row fits in the matrix.
    direct_b: bool,
    /// This thread's packed-B buffer.
    packed_b: SharedMut,
}

/// How the microkernels read A in one column block. In place, a last partial tile is still
/// packed: reading it whole could run past the matrix.
#[derive(Clone, Copy)]
enum AMode {
    /// From packed panels.
    Packed,
    /// In place, `mr` contiguous values per depth step (A transposed).
    Columns,
    /// In place, row by row (A row-major), with this microkernel.
    Rows(Microkernel),
}

impl Plan {
    /// The depth up to which B's tile columns `j0..j0 + nr` are read in place: all of it for
    /// a full panel of a direct B; for a partial one, the rows whose full-width read stays
    /// inside the matrix (the extra columns are read but never stored); none otherwise.
    fn b_in_place_until(&self, j0: usize) -> usize {
        if !self.direct_b {
            return 0;
        }
        let rs = self.b.rs as usize;
        let end = (self.k - 1) * rs + self.n;
        end.checked_sub(j0 + self.kern.nr)
            .map_or(0, |room| (room / rs + 1).min(self.k))
    }

    /// Columns `jc..jc + nc` over depth `pb..pb + kb`: packs B's panels where they are not
    /// read in place, then multiplies, both spread over the pool.
    unsafe fn block(&self, jc: usize, nc: usize, pb: usize, kb: usize, pool: &WorkerPool) {
        let Kernel { mr, nr, .. } = self.kern;
        let panels = nc.div_ceil(nr);
        // Depth (within the block) from which panel `p` is read from the packed buffer, where
        // it lies `kb * nr` floats per panel, depth-major.
        let packed_from = |p: usize| {
            self.b_in_place_until(jc + p * nr)
                .saturating_sub(pb)
                .min(kb)
        };
        let packed = |p: usize, d: usize| self.packed_b.at((p * kb + d) * nr);
        // Packing splits into KC-deep slices of panels, so that even one panel spreads out.
        let slices = kb.div_ceil(KC);
        let units = panels * slices;
        if (0..panels).any(|p| packed_from(p) < kb) {
            let tasks = self.threads.min(units);
            pool.run(tasks, &|t| {
                let (lo, hi) = split(units, tasks, t);
                for (p, s) in (lo..hi).map(|u| (u / slices, u % slices)) {
                    let d0 = (s * KC).max(packed_from(p));
                    let d1 = kb.min((s + 1) * KC);
                    if d0 < d1 {
                        let src = MatRef {
                            ptr: self.b.at(pb + d0, jc),
                            ..self.b
                        };
                        pack_b(d1 - d0, nc, p, nr, src, packed(p, d0));
                    }
                }
            });
        }
        let a_mode = match self.kern.rows {
            _ if panels > DIRECT_A_MAX_PANELS => AMode::Packed,
            _ if self.a.rs == 1 => AMode::Columns,
            Some(rows) if self.a.cs == 1 => AMode::Rows(rows),
            _ => AMode::Packed,
        };
        let (mc, n_split) = layout(self.m, mr, panels, self.threads);
        pool.run(self.m.div_ceil(mc) * n_split, &|task| {
            let (ic, part) = (task / n_split * mc, task % n_split);
            let mcb = mc.min(self.m - ic);
            let (p_lo, p_hi) = split(panels, n_split, part);
            PACK_A.with(|pa| {
                let mut pa = pa.borrow_mut();
                if pa.len() < mc * KC {
                    // Never in a step (threads reserve for this CPU's kernels): only for a
                    // kernel set that a test forced.
                    pa.resize(mc * KC, 0.0);
                }
                let pa = pa.as_mut_ptr();
                for pc in (0..kb).step_by(KC) {
                    let kc = KC.min(kb - pc);
                    let a_block = MatRef {
                        ptr: self.a.at(ic, pb + pc),
                        ..self.a
                    };
                    let full = mcb / mr * mr;
                    match a_mode {
                        AMode::Packed => pack_a(mcb, kc, mr, a_block, pa),
                        _ if full < mcb => {
                            let tail = MatRef {
                                ptr: a_block.at(full, 0),
                                ..a_block
                            };
                            pack_a(mcb - full, kc, mr, tail, pa);
                        }
                        _ => {}
                    }
                    for p in p_lo..p_hi {
                        let nrp = nr.min(nc - p * nr);
                        // B in place for depth pc..b_split, packed for b_split..pc + kc.
                        let b_split = packed_from(p).clamp(pc, pc + kc);
                        for ir in (0..mcb).step_by(mr) {
                            // A's pointer, stride, kernel and the stride of its depth steps.
                            let (a, a_stride, run, a_step) = match a_mode {
                                AMode::Columns if ir < full => {
                                    let cs = self.a.cs;
                                    (a_block.at(ir, 0), cs, self.kern.columns, cs)
                                }
                                AMode::Rows(rows) if ir < full => {
                                    (a_block.at(ir, 0), self.a.rs, rows, 1)
                                }
                                // Packed blocks, and the packed last tile of the others.
                                _ => {
                                    let at = if matches!(a_mode, AMode::Packed) {
                                        ir * kc
                                    } else {
                                        0
                                    };
                                    let mr = mr as isize;
                                    (pa.add(at) as *const f32, mr, self.kern.columns, mr)
                                }
                            };
                            let mut call = TileCall {
                                kc: 0,
                                a,
                                a_stride,
                                b: std::ptr::null(),
                                b_rs: 0,
                                c: self.c.at((ic + ir) * self.ldc + jc + p * nr),
                                ldc: self.ldc,
                                mr: mr.min(mcb - ir),
                                nr: nrp,
                                accumulate: self.accumulate || pb + pc > 0,
                            };
                            for (d0, d1) in [(pc, b_split), (b_split, pc + kc)] {
                                if d0 == d1 {
                                    continue;
                                }
                                (call.b, call.b_rs) = if d0 < b_split {
                                    (self.b.at(pb + d0, jc + p * nr), self.b.rs as usize)
                                } else {
                                    (packed(p, d0) as *const f32, nr)
                                };
                                call.kc = d1 - d0;
                                call.a = a.offset((d0 - pc) as isize * a_step);
                                run(call);
                                call.accumulate = true;
                            }
                        }
                    }
                }
            });
        });
    }
}

/// Rows of C per task (a multiple of `mr`) and the number of parts each row block's panels
/// split into, so that there are at least `threads` tasks where the product allows.
fn layout(m: usize, mr: usize, panels: usize, threads: usize) -> (usize, usize) {
    let mut mc = mr * MC_TILES;
    if m.div_ceil(mc) * panels.min(threads) < threads {
        mc = mr * m.div_ceil(mr).div_ceil(threads);
    }
    let n_split = if m.div_ceil(mc) >= threads {
        1
    } else {
        threads.min(panels)
    };
    (mc, n_split)
}

/// Sizes this thread's packing buffers for the largest block, once. Worker threads call it
/// when they start, so that no thread allocates in a later step, whichever tasks it happens to
/// claim.
pub fn reserve_thread_buffers() {
    let Kernels { wide, narrow } = kernels();
    let a = wide.mr.max(narrow.mr) * MC_TILES * KC;
    for (buffer, len) in [(&PACK_A, a), (&PACK_B, PACK_B_LEN)] {
        buffer.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < len {
                p.resize(len, 0.0);
            }
        });
    }
}

thread_local! {
    static PACK_A: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static PACK_B: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The `part`-th of `parts` near-equal ranges of `0..n`.
fn split(n: usize, parts: usize, part: usize) -> (usize, usize) {
    (n * part / parts, n * (part + 1) / parts)
}

/// Packs rows `0..mc`, depth `0..kc` of `a` into `mr`-row panels, depth-major, zero-padded.
unsafe fn pack_a(mc: usize, kc: usize, mr: usize, a: MatRef, dst: *mut f32) {
    for (panel, i0) in (0..mc).step_by(mr).enumerate() {
        let rows = mr.min(mc - i0);
        let out = dst.add(panel * mr * kc);
        if a.cs == 1 {
            // Row by row, so that a row-major A is read contiguously.
            for i in 0..rows {
                let src = a.at(i0 + i, 0);
                for p in 0..kc {
                    *out.add(p * mr + i) = *src.add(p);
                }
            }
        }
        for p in 0..kc {
            let o = out.add(p * mr);
            if a.cs != 1 {
                for i in 0..rows {
                    *o.add(i) = *a.at(i0 + i, p);
                }
            }
            for i in rows..mr {
                *o.add(i) = 0.0;
            }
        }
    }
}

/// Packs panel `panel` (columns `panel*nr..`) of the `kc × nc` block `b`, zero-padded.
unsafe fn pack_b(kc: usize, nc: usize, panel: usize, nr: usize, b: MatRef, dst: *mut f32) {
    let j0 = panel * nr;
    let cols = nr.min(nc - j0);
    for p in 0..kc {
        let o = dst.add(p * nr);
        if b.cs == 1 {
            std::ptr::copy_nonoverlapping(b.at(p, j0), o, cols);
        } else {
            for j in 0..cols {
                *o.add(j) = *b.at(p, j0 + j);
            }
        }
        for j in cols..nr {
            *o.add(j) = 0.0;
        }
    }
}

/// The register tile: `MR × NR` accumulators over `kc` depth steps, then a store of the valid
/// `mr × nr` corner (adding the old values when `accumulate`). `ROWS` picks how A is read
/// (see [`TileCall::a_stride`]).
#[inline(always)]
unsafe fn tile<
    const MR: usize,
    const NR: usize,
    const L: usize,
    const FMA: bool,
    const ROWS: bool,
>(
    t: TileCall,
) {
    let TileCall {
        kc,
        a: ap,
        a_stride,
        b: bp,
        b_rs,
        c,
        ldc,
        mr,
        nr,
        accumulate,
    } = t;
    let a_step = if ROWS { 1 } else { a_stride };
    let mut acc = [[0f32; NR]; MR];
    for p in 0..kc {
        let b: [f32; NR] = std::ptr::read_unaligned(bp.add(p * b_rs) as *const [f32; NR]);
        let ap = ap.offset(p as isize * a_step);
        let a: [f32; MR] = if ROWS {
            std::array::from_fn(|i| *ap.offset(i as isize * a_stride))
        } else {
            std::ptr::read_unaligned(ap as *const [f32; MR])
        };
        // The loop order only steers LLVM's vectoriser, which must vectorise along rows of C.
        // When a tile row is one vector, rows innermost keeps it from vectorising the row loop
        // instead (with gathers and scatters on AVX-512); for wider rows that order spills.
        if NR == L {
            for j in 0..NR {
                for i in 0..MR {
                    multiply_add::<FMA>(&mut acc[i][j], a[i], b[j]);
                }
            }
        } else {
            for i in 0..MR {
                for j in 0..NR {
                    multiply_add::<FMA>(&mut acc[i][j], a[i], b[j]);
                }
            }
        }
    }
    if mr == MR && nr == NR {
        for (i, row) in acc.iter().enumerate() {
            store_row(c.add(i * ldc), row, accumulate);
        }
    } else {
        // Copy out of the accumulators before indexing them dynamically, so that the loop's
        // accumulators stay in registers (dynamic indexing would force them to the stack on
        // every depth step).
        let acc: [[f32; NR]; MR] = std::hint::black_box(acc);
        for (i, row) in acc.iter().enumerate().take(mr) {
            if nr == NR {
                store_row(c.add(i * ldc), row, accumulate);
                continue;
            }
            for (j, &v) in row.iter().enumerate().take(nr) {
                let out = c.add(i * ldc + j);
                *out = if accumulate { *out + v } else { v };
            }
        }
    }
}

/// `acc += a * b`, fused when `FMA`.
#[inline(always)]
fn multiply_add<const FMA: bool>(acc: &mut f32, a: f32, b: f32) {
    *acc = if FMA {
        a.mul_add(b, *acc)
    } else {
        *acc + a * b
    };
}

/// Stores (or with `accumulate` adds) a full tile row at `out`.
#[inline(always)]
unsafe fn store_row<const NR: usize>(out: *mut f32, row: &[f32; NR], accumulate: bool) {
    let out = out as *mut [f32; NR];
    let mut v = *row;
    if accumulate {
        let old = std::ptr::read_unaligned(out);
        for j in 0..NR {
            v[j] += old[j];
        }
    }
    std::ptr::write_unaligned(out, v);
}

/// `$vis fn $name() -> Kernel`: the `$mr × $nr` tile for both ways of reading A (the rows one
/// offered only if `$rows`), each compiled with the attributes given (the target features).
macro_rules! kernel {
    ($(#[$attr:meta])* $vis:vis $name:ident: $mr:literal x $nr:literal, lanes = $lanes:literal, fma = $fma:literal, rows = $rows:literal) => {
        $vis fn $name() -> Kernel {
            $(#[$attr])*
            unsafe fn columns(t: TileCall) {
                tile::<$mr, $nr, $lanes, $fma, false>(t)
            }
            $(#[$attr])*
            unsafe fn rows(t: TileCall) {
                tile::<$mr, $nr, $lanes, $fma, true>(t)
            }
            Kernel {
                mr: $mr,
                nr: $nr,
                columns,
                rows: $rows.then_some(rows as Microkernel),
            }
        }
    };
}

kernel!(portable: 4 x 16, lanes = 4, fma = false, rows = false);

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{tile, Kernel, Microkernel, TileCall};

    kernel!(#[target_feature(enable = "avx512f,fma")] pub(super) avx512_wide: 12 x 32, lanes = 16, fma = true, rows = false);
    kernel!(#[target_feature(enable = "avx512f,fma")] pub(super) avx512_narrow: 16 x 16, lanes = 16, fma = true, rows = true);
    kernel!(#[target_feature(enable = "avx2,fma")] pub(super) avx2_wide: 6 x 16, lanes = 8, fma = true, rows = true);
    kernel!(#[target_feature(enable = "avx2,fma")] pub(super) avx2_narrow: 12 x 8, lanes = 8, fma = true, rows = true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// The kernel set that `sgemm` calls on this thread use instead of the fastest.
        pub(super) static FORCED_KERNELS: Cell<Option<Kernels>> = const { Cell::new(None) };
    }

    fn reference(
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        ta: bool,
        b: &[f32],
        tb: bool,
    ) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for p in 0..k {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] };
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    s += av as f64 * bv as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    /// Runs `sgemm` with every kernel set this CPU supports on deterministic operands, into a
    /// C with leading dimension `ldc` (filled with ones, kept when `accumulate`), and checks
    /// it against [`reference`].
    #[allow(clippy::too_many_arguments)]
    fn check(
        m: usize,
        n: usize,
        k: usize,
        ta: bool,
        tb: bool,
        ldc: usize,
        accumulate: bool,
        pool: &WorkerPool,
    ) {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0)
            .collect();
        let r = reference(m, n, k, &a, ta, &b, tb);
        let old = if accumulate { 1.0 } else { 0.0 };
        for kernels in supported() {
            FORCED_KERNELS.with(|f| f.set(Some(kernels)));
            let mut c = vec![1f32; m * ldc];
            unsafe {
                sgemm(
                    m,
                    n,
                    k,
                    MatRef::row_major(a.as_ptr(), if ta { m } else { k }, ta),
                    MatRef::row_major(b.as_ptr(), if tb { k } else { n }, tb),
                    c.as_mut_ptr(),
                    ldc,
                    accumulate,
                    pool,
                )
            };
            FORCED_KERNELS.with(|f| f.set(None));
            for i in 0..m {
                for j in 0..ldc {
                    let (x, y) = (c[i * ldc + j], if j < n { r[i * n + j] + old } else { 1.0 });
                    let tol = 1e-4 * (1.0 + y.abs()) * (1.0 + (k as f32).sqrt() / 8.0);
                    assert!(
                        (x - y).abs() <= tol,
                        "{m}x{n}x{k} ta={ta} tb={tb} ldc={ldc} acc={accumulate} threads={} \
                         tiles {}x{}/{}x{} at ({i}, {j}): {x} vs {y}",
                        pool.threads(),
                        kernels.wide.mr,
                        kernels.wide.nr,
                        kernels.narrow.mr,
                        kernels.narrow.nr,
                    );
                }
            }
        }
    }

    const TRANSPOSES: [(bool, bool); 4] =
        [(false, false), (true, false), (false, true), (true, true)];

    #[test]
    fn matches_a_naive_product_for_odd_sizes_and_transposes() {
        let pool = WorkerPool::new(2);
        for &(m, n, k) in &[
            (1, 1, 1),
            (13, 33, 7),
            (97, 70, 300),
            (32, 128, 784),
            (200, 3, 513),
        ] {
            for (ta, tb) in TRANSPOSES {
                check(m, n, k, ta, tb, n, false, &pool);
            }
        }
    }

    #[test]
    fn narrow_products_match_for_every_layout_and_pool_size() {
        // Few columns take the narrow tile and read A (and, for few rows, B) in place.
        for threads in [1, 2] {
            let pool = WorkerPool::new(threads);
            for n in [1, 5, 10, 15, 17] {
                for m in [1, 7, 33] {
                    for k in [1, 10, 5408] {
                        for (ta, tb) in TRANSPOSES {
                            check(m, n, k, ta, tb, n, false, &pool);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn tall_narrow_and_blocked_products_match() {
        let pool = WorkerPool::new(2);
        // Tall narrow products (several row blocks, A in place), products deeper than one
        // packed-B block, and wider than one column block.
        for &(m, n, k) in &[
            (300, 10, 700),
            (5408, 10, 32),
            (20, 300, 2000),
            (5, 2100, 300),
        ] {
            for (ta, tb) in TRANSPOSES {
                check(m, n, k, ta, tb, n, false, &pool);
            }
        }
    }

    #[test]
    fn accumulates_into_a_strided_c() {
        let pool = WorkerPool::new(2);
        for &(m, n, k) in &[(7, 10, 5408), (33, 5, 10), (50, 40, 300)] {
            for (ta, tb) in TRANSPOSES {
                check(m, n, k, ta, tb, n + 3, true, &pool);
            }
        }
    }
}
