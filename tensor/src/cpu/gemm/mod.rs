//! Single-precision GEMM: register-tiled microkernels written with explicit vectors (AVX-512,
//! AVX2+FMA or plain Rust, chosen at run time), cache blocking over depth, and work split over
//! the pool.
//!
//! A is always read in place (any strides). B is read in place when its rows are contiguous
//! and small enough to stay in cache, and packed into panels otherwise (transposed operands,
//! large products). Written here rather than taken from the `gemm` crate because that crate
//! allocates its packing buffers on every call; these live in per-thread buffers that grow
//! once, so a step stays allocation-free.

mod microkernel;
mod narrow;

use super::kernels::elementwise::relu;
use super::pool::{SharedMut, WorkerPool};
use microkernel::{Family, Kernels, Tile};
use std::cell::RefCell;
use std::ops::Range;
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

/// What is applied to each element of C as its final value is stored: `c[i][j] + bias[j]`,
/// then `max(·, 0)`; a Dense layer's bias and ReLU fused into its product, so that the
/// pre-activation never makes a trip through memory.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue {
    /// `n` values added to each row, or null.
    pub bias: *const f32,
    /// Clamp at zero, keeping NaN (as PyTorch's `relu` does).
    pub relu: bool,
}

// SAFETY: a read-only view, like `MatRef`.
unsafe impl Send for Epilogue {}
unsafe impl Sync for Epilogue {}

impl Epilogue {
    /// Nothing: C is the product.
    pub const NONE: Epilogue = Epilogue {
        bias: std::ptr::null(),
        relu: false,
    };

    /// Applies it to the stored `m × n` C in a separate pass (for the paths that do not apply
    /// it as they store).
    unsafe fn apply_over(&self, m: usize, n: usize, c: *mut f32, ldc: usize) {
        for i in 0..m {
            let row = std::slice::from_raw_parts_mut(c.add(i * ldc), n);
            if !self.bias.is_null() {
                let bias = std::slice::from_raw_parts(self.bias, n);
                row.iter_mut().zip(bias).for_each(|(x, b)| *x += b);
            }
            if self.relu {
                row.iter_mut().for_each(|x| *x = relu(*x));
            }
        }
    }
}

/// Depth of one pass over a tile (A's tile, `MR × KC`, stays in L1 across B's panels).
const KC: usize = 256;
/// Columns of a packed B block `KC` deep. Shallower products get wider blocks and narrower
/// ones deeper blocks: every block fills at most one buffer of `KC * NC` floats per thread.
const NC: usize = 2048;
/// Floats in each thread's packed-B buffer.
const PACK_B_LEN: usize = KC * NC;
/// Rows of C in one task's block, in tiles (fewer when that leaves threads idle).
const MC_TILES: usize = 8;
/// A row-major B is read in place when C has at most this many rows (packing would cost as
/// much as the product) or B has at most [`IN_PLACE_B_MAX`] elements (it stays in cache).
const IN_PLACE_B_MAX_M: usize = 48;
/// See [`IN_PLACE_B_MAX_M`]. 512 KiB, a quarter of a current core's L2: the MLP's 784×128
/// weight (100k elements) is read in place, which `gemm_bench --shape 256x128x784` measured at
/// 297–301 GFLOP/s against 243–247 packed (alternating runs of both builds).
const IN_PLACE_B_MAX: usize = 1 << 17;
/// Below this many multiply-adds a GEMM runs on the calling thread alone.
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// The kernel sets this CPU runs, fastest first (the portable one last).
fn supported() -> impl Iterator<Item = Kernels> {
    #[cfg(target_arch = "x86_64")]
    let x86 = {
        use std::is_x86_feature_detected as has;
        [
            (has!("avx512f") && has!("fma")).then(microkernel::avx512),
            (has!("avx2") && has!("fma")).then(microkernel::avx2),
        ]
    };
    #[cfg(not(target_arch = "x86_64"))]
    let x86: [Option<Kernels>; 0] = [];
    x86.into_iter()
        .flatten()
        .chain(std::iter::once(microkernel::portable()))
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

/// The instruction set the microkernels were compiled for on this CPU (`avx512`, `avx2` or
/// `portable`).
pub fn kernel_set() -> &'static str {
    kernels().name
}

/// `c[m×n] = a[m×k] · b[k×n]`, plus the old `c` when `accumulate`, then `epilogue` on each
/// element as it is stored. `c` is row-major with leading dimension `ldc`.
///
/// # Safety
/// `a` and `b` must be valid for the strides and sizes given, and `c` valid for writes of
/// `m` rows of `ldc` elements (the first `n` of each used); `c` must not overlap `a` or `b`.
/// A bias in `epilogue` must be valid for reads of `n` values.
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
    epilogue: Epilogue,
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
        epilogue.apply_over(m, n, c, ldc);
        return;
    }
    let kernels = kernels();
    if narrow::worth_transposing(m, n, &a, &kernels) {
        narrow::via_transpose(m, n, k, a, b, c, ldc, accumulate, pool);
        epilogue.apply_over(m, n, c, ldc);
        return;
    }
    let plan = Plan {
        m,
        a,
        c: SharedMut::new(c),
        ldc,
        epilogue,
        family: kernels.for_columns(n),
        threads: if m * n * k >= PARALLEL_MIN_WORK {
            pool.threads()
        } else {
            1
        },
    };
    let in_place = b.cs == 1 && (m <= IN_PLACE_B_MAX_M || k * n <= IN_PLACE_B_MAX);
    if in_place {
        let b = Panels::InPlace {
            b,
            rs: b.rs as usize,
        };
        plan.block(0..n, 0..k, b, accumulate, true, pool);
        return;
    }
    reserve_thread_buffers();
    PACK_B.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        let packed = SharedMut::new(buffer.as_mut_ptr());
        let nr = plan.family.nr;
        let nc_max = PACK_B_LEN / k.min(KC) / nr * nr;
        for jc in (0..n).step_by(nc_max) {
            let nc = nc_max.min(n - jc);
            let depth = PACK_B_LEN / nc.next_multiple_of(nr);
            let kb = if depth >= k { k } else { depth / KC * KC };
            for pb in (0..k).step_by(kb) {
                let kb = kb.min(k - pb);
                let src = MatRef {
                    ptr: b.at(pb, jc),
                    ..b
                };
                pack_b_block(src, kb, nc, nr, packed, plan.threads, pool);
                let b = Panels::Packed { packed, depth: kb };
                let last = pb + kb == k;
                plan.block(
                    jc..jc + nc,
                    pb..pb + kb,
                    b,
                    accumulate || pb > 0,
                    last,
                    pool,
                );
            }
        }
    });
}

/// Where a column block's B panels are read from.
#[derive(Clone, Copy)]
enum Panels {
    /// B itself, rows `rs` apart.
    InPlace { b: MatRef, rs: usize },
    /// The packed block: panel `p` at `p · depth · nr`, depth-major, rows `nr` apart.
    Packed { packed: SharedMut, depth: usize },
}

/// One `sgemm` call: its operands and the choices that hold for all its blocks.
struct Plan {
    m: usize,
    a: MatRef,
    c: SharedMut,
    ldc: usize,
    epilogue: Epilogue,
    family: Family,
    threads: usize,
}

impl Plan {
    /// Columns `cols` of C over depth `depth` from B's panels `b` (whose column 0 and depth 0
    /// are `cols.start` and `depth.start`), spread over the pool: each task takes a block of
    /// rows and a range of panels, and runs every depth pass of them. With `last` (the
    /// block reaches the full depth), the epilogue goes with the final pass's stores.
    unsafe fn block(
        &self,
        cols: Range<usize>,
        depth: Range<usize>,
        b: Panels,
        accumulate: bool,
        last: bool,
        pool: &WorkerPool,
    ) {
        let Family { mr, nr, .. } = self.family;
        let nc = cols.len();
        let panels = nc.div_ceil(nr);
        let (mc, n_split) = layout(self.m, mr, panels, self.threads);
        pool.run(self.m.div_ceil(mc) * n_split, &|task| {
            let (ic, part) = (task / n_split * mc, task % n_split);
            let rows = ic..self.m.min(ic + mc);
            let (p_lo, p_hi) = split(panels, n_split, part);
            // A's tile is kept in L1 across the panels of a pass; a task with one panel has
            // nothing to reuse it for, and runs the whole depth at once so that A's rows
            // stream through contiguously.
            let pass = if p_hi - p_lo > 1 { KC } else { depth.len() };
            for pc in depth.clone().step_by(pass) {
                let kc = pass.min(depth.end - pc);
                let d = pc - depth.start;
                let epilogue = if last && pc + kc == depth.end {
                    self.epilogue
                } else {
                    Epilogue::NONE
                };
                for ir in rows.clone().step_by(mr) {
                    let mrb = mr.min(rows.end - ir);
                    for p in p_lo..p_hi {
                        let j0 = p * nr;
                        let nrp = nr.min(nc - j0);
                        let (bp, b_rs) = match b {
                            Panels::InPlace { b, rs } => (b.at(d, cols.start + j0), rs),
                            Panels::Packed { packed, depth } => {
                                (packed.at((p * depth + d) * nr) as *const f32, nr)
                            }
                        };
                        let tile = Tile {
                            kc,
                            a: self.a.at(ir, pc),
                            a_rs: self.a.rs,
                            a_cs: self.a.cs,
                            b: bp,
                            b_rs,
                            c: self.c.at(ir * self.ldc + cols.start + j0),
                            ldc: self.ldc,
                            nr: nrp,
                            accumulate: accumulate || pc > depth.start,
                            bias: if epilogue.bias.is_null() {
                                epilogue.bias
                            } else {
                                epilogue.bias.add(cols.start + j0)
                            },
                            relu: epilogue.relu,
                        };
                        self.family.kernel(mrb, nrp)(&tile);
                    }
                }
            }
        });
    }
}

/// Packs the `kb × nc` block `b` into `nr`-column panels, depth-major, zero-padded, spread
/// over the pool.
unsafe fn pack_b_block(
    b: MatRef,
    kb: usize,
    nc: usize,
    nr: usize,
    packed: SharedMut,
    threads: usize,
    pool: &WorkerPool,
) {
    let panels = nc.div_ceil(nr);
    let tasks = threads.min(panels);
    pool.run(tasks, &|t| {
        let (lo, hi) = split(panels, tasks, t);
        for p in lo..hi {
            pack_b_panel(kb, nc, p, nr, b, packed.at(p * kb * nr));
        }
    });
}

/// Rows of C per task and the number of parts each row block's panels split into, so that
/// there are at least `threads` tasks where the product allows and every thread gets the same
/// share of rows.
///
/// Row blocks of at most `MC_TILES` tiles come in a multiple of `threads`, of equal height
/// (the last tile of a block may be partial): a 128-row product on 2 threads splits 64 + 64,
/// not 96 + 32, which left one thread idle for a third of the call. A product of a single
/// block splits B's panels instead, when it has enough of them.
fn layout(m: usize, mr: usize, panels: usize, threads: usize) -> (usize, usize) {
    let tiles = m.div_ceil(mr);
    let blocks = tiles.div_ceil(MC_TILES);
    if blocks == 1 && threads > 1 && panels >= threads {
        return (m, threads);
    }
    let blocks = blocks.next_multiple_of(threads).min(tiles);
    (m.div_ceil(blocks), 1)
}

/// Sizes this thread's packing buffer for the largest block, once. Worker threads call it
/// when they start, so that no thread allocates in a later step, whichever tasks it happens to
/// claim.
pub fn reserve_thread_buffers() {
    PACK_B.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < PACK_B_LEN {
            p.resize(PACK_B_LEN, 0.0);
        }
    });
}

thread_local! {
    static PACK_B: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The `part`-th of `parts` near-equal ranges of `0..n`.
fn split(n: usize, parts: usize, part: usize) -> (usize, usize) {
    (n * part / parts, n * (part + 1) / parts)
}

/// Packs panel `panel` (columns `panel*nr..`) of the `kc × nc` block `b`, zero-padded.
unsafe fn pack_b_panel(kc: usize, nc: usize, panel: usize, nr: usize, b: MatRef, dst: *mut f32) {
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

    /// Deterministic `m × k` and `k × n` operands with values of both signs.
    fn operands(m: usize, n: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
        let a = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0);
        let b = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0);
        (a.collect(), b.collect())
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
        let (a, b) = operands(m, n, k);
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
                    Epilogue::NONE,
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
                         kernels {} at ({i}, {j}): {x} vs {y}",
                        pool.threads(),
                        kernels.name,
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
            (100, 128, 784),
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
    fn every_row_count_and_partial_panel_has_its_kernel() {
        // Row counts 1..=17 reach every tile height of every kernel set (and a second tile),
        // column counts a masked last panel of either width.
        let pool = WorkerPool::new(1);
        for m in 1..=17 {
            for n in [3, 16, 21, 32, 45] {
                check(m, n, 19, false, false, n, false, &pool);
                check(m, n, 19, true, true, n, true, &pool);
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
    fn layout_gives_every_thread_the_same_rows() {
        // 128 rows of 12-row tiles on 2 threads: 64 + 64, not 96 + 32.
        assert_eq!(layout(128, 12, 4, 2), (64, 1));
        // Many rows: an even number of blocks of at most MC_TILES tiles.
        let (mc, split) = layout(784, 12, 4, 2);
        assert_eq!((784usize.div_ceil(mc) % 2, split), (0, 1));
        assert!(mc <= 12 * MC_TILES);
        // Too few rows for a block each: the panels split instead, unless there is only one.
        assert_eq!(layout(32, 12, 4, 2), (32, 2));
        assert_eq!(layout(32, 16, 1, 2), (16, 1));
        assert_eq!(layout(1, 12, 1, 2), (1, 1));
        // Two blocks on four threads: four row blocks rather than every row in each task.
        assert_eq!(layout(128, 12, 4, 4), (32, 1));
        // One thread: one task.
        assert_eq!(layout(32, 12, 4, 1), (32, 1));
    }

    #[test]
    fn the_epilogue_adds_the_bias_and_clamps_as_a_separate_pass_would() {
        // Wide and narrow tiles, masked panels, several packed depth blocks (k = 5000 on 200
        // columns), the transposed narrow path (5408x10:ta) and an empty depth.
        let pool = WorkerPool::new(2);
        for &(m, n, k, ta, tb) in &[
            (128, 128, 784, false, false),
            (33, 45, 19, false, true),
            (100, 10, 128, false, false),
            (20, 200, 5000, true, false),
            (5408, 10, 32, true, false),
            (7, 9, 0, false, false),
        ] {
            let (mut a, b) = operands(m, n, k);
            // A NaN and an infinity in the first rows' products: the ReLU must keep the NaN.
            if k > 0 {
                a[0] = f32::NAN;
                a[(m * k - 1).min(k + 1)] = f32::INFINITY;
            }
            let bias: Vec<f32> = (0..n).map(|j| (j % 7) as f32 - 3.0).collect();
            let a_ref = MatRef::row_major(a.as_ptr(), if ta { m } else { k }, ta);
            let b_ref = MatRef::row_major(b.as_ptr(), if tb { k } else { n }, tb);
            for relu in [false, true] {
                for kernels in supported() {
                    FORCED_KERNELS.with(|f| f.set(Some(kernels)));
                    let (mut fused, mut plain) = (vec![f32::NAN; m * n], vec![0f32; m * n]);
                    let epilogue = Epilogue {
                        bias: bias.as_ptr(),
                        relu,
                    };
                    unsafe {
                        let c = fused.as_mut_ptr();
                        sgemm(m, n, k, a_ref, b_ref, c, n, false, epilogue, &pool);
                        sgemm(
                            m,
                            n,
                            k,
                            a_ref,
                            b_ref,
                            plain.as_mut_ptr(),
                            n,
                            false,
                            Epilogue::NONE,
                            &pool,
                        );
                    }
                    FORCED_KERNELS.with(|f| f.set(None));
                    for (i, (&got, &product)) in fused.iter().zip(&plain).enumerate() {
                        let biased = product + bias[i % n];
                        let want = if relu { super::relu(biased) } else { biased };
                        assert!(
                            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                            "{m}x{n}x{k} ta={ta} tb={tb} relu={relu} kernels {} element {i}: {got} vs {want}",
                            kernels.name
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn accumulates_into_a_strided_c() {
        let pool = WorkerPool::new(2);
        for &(m, n, k) in &[(7, 10, 5408), (33, 5, 10), (50, 40, 300), (300, 10, 64)] {
            for (ta, tb) in TRANSPOSES {
                check(m, n, k, ta, tb, n + 3, true, &pool);
            }
        }
    }
}
