//! Single-precision GEMM: packed panels, cache blocking, a register-tiled microkernel compiled
//! for AVX-512, AVX2+FMA or plain Rust (chosen at run time), and work split over the pool.
//!
//! Written here rather than taken from the `gemm` crate because that crate allocates its
//! packing buffers on every call; these live in per-thread buffers that grow once, so a step
//! stays allocation-free.

use super::pool::WorkerPool;
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

const KC: usize = 256;
/// Up to this many rows of C, a row-major B is read in place instead of packed: with few rows
/// the packing costs as much as the multiplication it prepares (batch-1 inference).
const DIRECT_B_MAX_M: usize = 48;
const NC: usize = 2048;
/// Below this many multiply-adds a GEMM runs on the calling thread alone.
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// One microkernel call: `kc` depth steps over the packed panel `a` and the panel `b` (packed,
/// or read in place: consecutive depth rows `b_rs` elements apart), into the `mr × nr` corner
/// of the tile at `c` (leading dimension `ldc`), adding to it when `accumulate`.
#[derive(Clone, Copy)]
struct TileCall {
    kc: usize,
    a: *const f32,
    b: *const f32,
    b_rs: usize,
    c: *mut f32,
    ldc: usize,
    mr: usize,
    nr: usize,
    accumulate: bool,
}

type Microkernel = unsafe fn(TileCall);

/// The microkernel chosen for this CPU and its tile size.
#[derive(Clone, Copy)]
struct Kernel {
    mr: usize,
    nr: usize,
    run: Microkernel,
}

fn kernel() -> Kernel {
    static KERNEL: OnceLock<Kernel> = OnceLock::new();
    *KERNEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
                return Kernel {
                    mr: 12,
                    nr: 32,
                    run: x86::avx512,
                };
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Kernel {
                    mr: 6,
                    nr: 16,
                    run: x86::avx2,
                };
            }
        }
        Kernel {
            mr: 4,
            nr: 16,
            run: portable,
        }
    })
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
    let kern = kernel();
    let mc = kern.mr * 8;
    reserve_thread_buffers();
    let threads = if m * n * k >= PARALLEL_MIN_WORK {
        pool.threads()
    } else {
        1
    };
    PACK_B.with(|pb| {
        let mut pb = pb.borrow_mut();
        let need = KC * NC.div_ceil(kern.nr) * kern.nr;
        if pb.len() < need {
            pb.resize(need, 0.0);
        }
        let packed_b = SyncPtr(pb.as_mut_ptr());
        let c = SyncPtr(c);
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            let panels = nc.div_ceil(kern.nr);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                let acc = accumulate || pc > 0;
                let b_block = MatRef {
                    ptr: b.at(pc, jc),
                    ..b
                };
                // Pack B's panels, in parallel when there is enough of it; with few rows of C
                // and a row-major B, only a partial last panel is packed (full ones are read in
                // place, where reading NR columns cannot run past the matrix).
                let direct_b = b.cs == 1 && b.rs > 0 && m <= DIRECT_B_MAX_M;
                let packed = |p: usize| !direct_b || (p + 1) * kern.nr > nc;
                let pack_tasks = if threads > 1 { threads.min(panels) } else { 1 };
                pool.run(pack_tasks, &|t| {
                    let (lo, hi) = split(panels, pack_tasks, t);
                    for p in (lo..hi).filter(|&p| packed(p)) {
                        pack_b(
                            kc,
                            nc,
                            p,
                            kern.nr,
                            b_block,
                            packed_b.get().add(p * kc * kern.nr),
                        );
                    }
                });
                let m_blocks = m.div_ceil(mc);
                let n_split = if m_blocks >= threads {
                    1
                } else {
                    threads.min(panels)
                };
                pool.run(m_blocks * n_split, &|task| {
                    let (ib, part) = (task / n_split, task % n_split);
                    let ic = ib * mc;
                    let mcb = mc.min(m - ic);
                    let (p_lo, p_hi) = split(panels, n_split, part);
                    PACK_A.with(|pa| {
                        let mut pa = pa.borrow_mut();
                        let need = mc * KC;
                        if pa.len() < need {
                            pa.resize(need, 0.0);
                        }
                        let a_block = MatRef {
                            ptr: a.at(ic, pc),
                            ..a
                        };
                        pack_a(mcb, kc, kern.mr, a_block, pa.as_mut_ptr());
                        for p in p_lo..p_hi {
                            let (bp, b_rs) = if packed(p) {
                                (
                                    (packed_b.get() as *const f32).add(p * kc * kern.nr),
                                    kern.nr,
                                )
                            } else {
                                (b_block.at(0, p * kern.nr), b.rs as usize)
                            };
                            let nr = kern.nr.min(nc - p * kern.nr);
                            for ir in (0..mcb).step_by(kern.mr) {
                                let mr = kern.mr.min(mcb - ir);
                                let ap = pa.as_ptr().add(ir * kc);
                                let cp = c.get().add((ic + ir) * ldc + jc + p * kern.nr);
                                let call = TileCall {
                                    kc,
                                    a: ap,
                                    b: bp,
                                    b_rs,
                                    c: cp,
                                    ldc,
                                    mr,
                                    nr,
                                    accumulate: acc,
                                };
                                (kern.run)(call);
                            }
                        }
                    });
                });
            }
        }
    });
}

/// Sizes this thread's packing buffers for the largest block, once. Worker threads call it
/// when they start, so that no thread allocates in a later step, whichever tasks it happens to
/// claim.
pub fn reserve_thread_buffers() {
    let kern = kernel();
    let a = kern.mr * 8 * KC;
    let b = KC * NC.div_ceil(kern.nr) * kern.nr;
    PACK_A.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < a {
            p.resize(a, 0.0);
        }
    });
    PACK_B.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < b {
            p.resize(b, 0.0);
        }
    });
}

thread_local! {
    static PACK_A: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static PACK_B: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A raw pointer that tasks on other threads may use; the caller guarantees disjoint writes.
#[derive(Clone, Copy)]
struct SyncPtr(*mut f32);
// SAFETY: tasks write disjoint tiles of C and only read the packed B block.
unsafe impl Send for SyncPtr {}
unsafe impl Sync for SyncPtr {}
impl SyncPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
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
        for p in 0..kc {
            let o = out.add(p * mr);
            for i in 0..rows {
                *o.add(i) = *a.at(i0 + i, p);
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

/// The register tile: `MR × NR` accumulators over `kc` packed depth steps, then a store of the
/// valid `mr × nr` corner (adding the old values when `accumulate`).
#[inline(always)]
unsafe fn tile<const MR: usize, const NR: usize, const FMA: bool>(t: TileCall) {
    let TileCall {
        kc,
        a: ap,
        b: bp,
        b_rs,
        c,
        ldc,
        mr,
        nr,
        accumulate,
    } = t;
    let mut acc = [[0f32; NR]; MR];
    for p in 0..kc {
        let b: [f32; NR] = std::ptr::read_unaligned(bp.add(p * b_rs) as *const [f32; NR]);
        let a: [f32; MR] = std::ptr::read_unaligned(ap.add(p * MR) as *const [f32; MR]);
        for i in 0..MR {
            for j in 0..NR {
                acc[i][j] = if FMA {
                    a[i].mul_add(b[j], acc[i][j])
                } else {
                    acc[i][j] + a[i] * b[j]
                };
            }
        }
    }
    // Copy out of the accumulators before any dynamically indexed access, so that the loop's
    // accumulators stay in registers (indexing them dynamically below would force them to the
    // stack on every depth step).
    let acc: [[f32; NR]; MR] = std::hint::black_box(acc);
    if mr == MR && nr == NR {
        for (i, row) in acc.iter().enumerate() {
            let out = c.add(i * ldc) as *mut [f32; NR];
            let mut v = *row;
            if accumulate {
                let old = std::ptr::read_unaligned(out);
                for j in 0..NR {
                    v[j] += old[j];
                }
            }
            std::ptr::write_unaligned(out, v);
        }
    } else {
        for (i, row) in acc.iter().enumerate().take(mr) {
            for (j, &v) in row.iter().enumerate().take(nr) {
                let out = c.add(i * ldc + j);
                *out = if accumulate { *out + v } else { v };
            }
        }
    }
}

unsafe fn portable(t: TileCall) {
    tile::<4, 16, false>(t)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{tile, TileCall};

    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn avx512(t: TileCall) {
        tile::<12, 32, true>(t)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2(t: TileCall) {
        tile::<6, 16, true>(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a: Vec<f32> = (0..m * k)
                    .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
                    .collect();
                let b: Vec<f32> = (0..k * n)
                    .map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0)
                    .collect();
                let mut c = vec![1f32; m * n];
                unsafe {
                    sgemm(
                        m,
                        n,
                        k,
                        MatRef::row_major(a.as_ptr(), if ta { m } else { k }, ta),
                        MatRef::row_major(b.as_ptr(), if tb { k } else { n }, tb),
                        c.as_mut_ptr(),
                        n,
                        false,
                        &pool,
                    )
                };
                let r = reference(m, n, k, &a, ta, &b, tb);
                for (x, y) in c.iter().zip(&r) {
                    assert!(
                        (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                        "{m}x{n}x{k} {ta} {tb}: {x} vs {y}"
                    );
                }
            }
        }
    }
}
