//! Direct convolution for small patches: no patch matrix and no GEMM packing.
//!
//! The output is walked in *runs*: consecutive output pixels of one row that see the same
//! filter taps, at input positions a fixed step apart. The pixels whose every tap lies inside
//! the image form one run per row and share one tap list (offsets from the pixel's first tap);
//! each pixel near a padded border is a run of its own, listing only its taps inside the image
//! (at absolute offsets), so padding costs nothing. The kernels keep small tiles of sums in
//! registers: the forward pass a few pixels × [`LANES`] output channels, the filter gradient a
//! few taps × [`LANES`] output channels.
//!
//! Both tiles spell their vectors out through [`Simd`] (as the GEMM microkernels do) and
//! multiply-add with FMA: written as `[f32; L]` loops, LLVM kept the sums in registers but
//! issued a separate multiply and add per product and a bounds check per input value, and ran
//! at about a quarter of the FMA rate. As with the GEMM, a CPU without FMA (the baseline
//! level) rounds each product separately, so its results differ in the last bits.

use super::{ConvGeometry, DIRECT_MAX_PATCH};
use crate::cpu::pool::{SharedMut, WorkerPool};
use crate::cpu::simd;
use crate::cpu::vector::{with_vectors, Simd};
use std::ops::Range;

/// Output channels in one block of a tile (one AVX-512 vector); the filter (forward) and
/// the partial sums (gradient) have their rows padded to a multiple of it. Forward tiles
/// take two blocks where there is room.
pub(super) const LANES: usize = 16;
/// Vector registers a tile's block of output channels may take (`2·LANES` floats in the
/// narrowest vectors).
pub(super) const MAX_VECTORS: usize = 4;
/// Output pixels a forward tile computes together.
const PIXELS: usize = 8;
/// Partial sums of the filter gradient, one per task. A fixed count rather than one per
/// thread, so that the order of the sum, and its rounding, does not depend on the pool.
const GRAD_PARTS: usize = 16;
/// Forward tasks per pool thread, for balance when cores are shared.
const TASKS_PER_THREAD: usize = 4;

/// A row of `[patch, O]` matrices padded to whole blocks.
pub(super) fn padded_out(g: &ConvGeometry) -> usize {
    g.o.next_multiple_of(LANES)
}

/// Output rows (`img·OH + oy`) in the batch.
fn rows(g: &ConvGeometry) -> usize {
    g.n * g.oh
}

/// Partial sums of the filter gradient.
fn grad_parts(g: &ConvGeometry) -> usize {
    GRAD_PARTS.min(rows(g)).max(1)
}

/// Workspace elements: the padded filter (forward) or the partial sums (gradient).
pub(super) fn workspace_elements(g: &ConvGeometry) -> usize {
    grad_parts(g) * g.patch() * padded_out(g)
}

/// The `part`-th of `parts` near-equal ranges of `0..n`.
fn split(n: usize, parts: usize, part: usize) -> Range<usize> {
    n * part / parts..n * (part + 1) / parts
}

/// Whether padded position `pos` lies inside an image dim of `len` after `pad`.
#[inline(always)]
fn inside(pos: usize, pad: usize, len: usize) -> bool {
    pos >= pad && pos - pad < len
}

/// Filter taps as (input offset, row of the `[patch, O]` filter) pairs, in patch order.
pub(super) struct TapList {
    taps: [(usize, usize); DIRECT_MAX_PATCH],
    len: usize,
}

impl TapList {
    /// Taps `(ky, kx)` for which `at` gives the offset of the tap's first channel.
    #[inline(always)]
    fn fill(&mut self, g: &ConvGeometry, at: impl Fn(usize, usize) -> Option<usize>) {
        self.len = 0;
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let Some(base) = at(ky, kx) else { continue };
                for ci in 0..g.c {
                    self.taps[self.len] = (base + ci, (ky * g.kw + kx) * g.c + ci);
                    self.len += 1;
                }
            }
        }
    }

    /// Every tap, relative to the input position of the first.
    #[inline(always)]
    pub(super) fn interior(g: &ConvGeometry) -> Self {
        let mut list = TapList::empty();
        let [dy, dx] = g.attrs.dilation;
        list.fill(g, |ky, kx| Some((ky * dy * g.w + kx * dx) * g.c));
        list
    }

    /// The taps of output `(img, oy, ox)` inside the image, at absolute offsets.
    #[inline(always)]
    fn border(&mut self, g: &ConvGeometry, img: usize, oy: usize, ox: usize) {
        self.fill(g, |ky, kx| {
            let (iy, ix) = g.source(oy, ox, ky, kx)?;
            Some(((img * g.h + iy) * g.w + ix) * g.c)
        });
    }

    fn empty() -> Self {
        TapList {
            taps: [(0, 0); DIRECT_MAX_PATCH],
            len: 0,
        }
    }

    pub(super) fn as_slice(&self) -> &[(usize, usize)] {
        &self.taps[..self.len]
    }
}

/// Consecutive output pixels of one row that share a tap list.
struct Run<'a> {
    /// The taps, as offsets from each pixel's input base.
    taps: &'a [(usize, usize)],
    /// Input base of the first pixel.
    x0: usize,
    /// Input base step from one pixel to the next.
    step: usize,
    /// Index (`(img·OH + oy)·OW + ox`) of the first output pixel.
    q0: usize,
    /// Pixels in the run.
    len: usize,
}

impl Run<'_> {
    /// Input base of the run's pixel `p`.
    #[inline(always)]
    fn base(&self, p: usize) -> usize {
        self.x0 + p * self.step
    }
}

/// The output columns whose every tap lies inside the image's columns: `lo..hi`, empty
/// (`OW..OW`) if there are none.
fn interior_columns(g: &ConvGeometry) -> (usize, usize) {
    let a = g.attrs;
    let reach = (g.kw - 1) * a.dilation[1];
    let inner = |ox: usize| {
        let pos = ox * a.stride[1];
        inside(pos, a.padding.left, g.w) && inside(pos + reach, a.padding.left, g.w)
    };
    let lo = (0..g.ow).find(|&ox| inner(ox)).unwrap_or(g.ow);
    let hi = lo + (lo..g.ow).take_while(|&ox| inner(ox)).count();
    (lo, hi)
}

/// What a kernel does with each run. A trait rather than a closure: its `#[inline(always)]`
/// method is inlined into the caller of [`simd::dispatch`] and so gets the wide code.
trait Visit {
    fn run(&mut self, run: &Run);
}

/// The runs of one convolution: the interior tap list and columns, worked out once and then
/// walked for any range of output rows (the fused conv block walks one window row at a time).
pub(super) struct Runs<'a> {
    g: &'a ConvGeometry,
    interior: TapList,
    /// Interior output columns `lo..hi`.
    lo: usize,
    hi: usize,
    /// Scratch for border pixels' taps.
    border: TapList,
}

impl<'a> Runs<'a> {
    /// The runs of `g`.
    #[inline(always)]
    pub(super) fn new(g: &'a ConvGeometry) -> Self {
        let (lo, hi) = interior_columns(g);
        Runs {
            g,
            interior: TapList::interior(g),
            lo,
            hi,
            border: TapList::empty(),
        }
    }

    /// Visits the runs of output rows `rows` (`img·OH + oy`), in order.
    #[inline(always)]
    fn visit(&mut self, rows: Range<usize>, visit: &mut impl Visit) {
        let g = self.g;
        let a = g.attrs;
        let reach = (g.kh - 1) * a.dilation[0];
        for r in rows {
            let (img, oy) = (r / g.oh, r % g.oh);
            let pos = oy * a.stride[0];
            let inner_row =
                inside(pos, a.padding.top, g.h) && inside(pos + reach, a.padding.top, g.h);
            let (lo, hi) = if inner_row {
                (self.lo, self.hi)
            } else {
                (g.ow, g.ow)
            };
            let mut ox = 0;
            while ox < g.ow {
                if ox == lo && lo < hi {
                    let (iy, ix) = (pos - a.padding.top, lo * a.stride[1] - a.padding.left);
                    visit.run(&Run {
                        taps: self.interior.as_slice(),
                        x0: ((img * g.h + iy) * g.w + ix) * g.c,
                        step: a.stride[1] * g.c,
                        q0: r * g.ow + lo,
                        len: hi - lo,
                    });
                    ox = hi;
                } else {
                    self.border.border(g, img, oy, ox);
                    visit.run(&Run {
                        taps: self.border.as_slice(),
                        x0: 0,
                        step: 0,
                        q0: r * g.ow + ox,
                        len: 1,
                    });
                    ox += 1;
                }
            }
        }
    }
}

/// `y = conv2d(x, w)` for small patches; parallel over output rows.
pub(super) fn conv2d(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    ws: &mut [f32],
    pool: &WorkerPool,
) {
    let wp = &mut ws[..padded_filter_len(g)];
    pad_filter(g, w, wp);
    let wp = &*wp;
    let rows = rows(g);
    let tasks = (pool.threads() * TASKS_PER_THREAD).min(rows);
    let out = SharedMut::new(y.as_mut_ptr());
    pool.run(tasks, &|t| {
        let rows = split(rows, tasks, t);
        // SAFETY: the task's output rows are its own.
        let y = unsafe { out.slice(rows.start * g.ow * g.o, rows.len() * g.ow * g.o) };
        simd::dispatch(
            #[inline(always)]
            || forward_rows(&mut Runs::new(g), x, wp, rows, y),
        );
    });
}

/// Elements of the filter padded to whole blocks of output channels.
pub(super) fn padded_filter_len(g: &ConvGeometry) -> usize {
    g.patch() * padded_out(g)
}

/// Copies the `[patch, O]` filter `w` into `dst` with rows padded to whole blocks.
pub(super) fn pad_filter(g: &ConvGeometry, w: &[f32], dst: &mut [f32]) {
    let o_pad = padded_out(g);
    for (dst, src) in dst.chunks_exact_mut(o_pad).zip(w.chunks_exact(g.o)) {
        dst[..g.o].copy_from_slice(src);
        dst[g.o..].fill(0.0);
    }
}

/// Output rows `rows` (`img·OH + oy`) of the convolution of `runs` with the padded filter
/// `wp`, into `y` (those rows only, `OW · O` values each). Call inside [`simd::dispatch`].
#[inline(always)]
pub(super) fn forward_rows(
    runs: &mut Runs,
    x: &[f32],
    wp: &[f32],
    rows: Range<usize>,
    y: &mut [f32],
) {
    let first_pixel = rows.start * runs.g.ow;
    let mut forward = Forward {
        g: runs.g,
        x,
        w: wp,
        y,
        first_pixel,
        level: simd::level(),
    };
    runs.visit(rows, &mut forward);
}

/// The forward pass over runs, from the padded filter `w`, into `y`, which starts at output
/// pixel `first_pixel`.
struct Forward<'a> {
    g: &'a ConvGeometry,
    x: &'a [f32],
    w: &'a [f32],
    y: &'a mut [f32],
    first_pixel: usize,
    /// The vector level, read once rather than per tile.
    level: simd::Level,
}

impl Visit for Forward<'_> {
    #[inline(always)]
    fn run(&mut self, run: &Run) {
        let g = self.g;
        let y = &mut self.y[(run.q0 - self.first_pixel) * g.o..][..run.len * g.o];
        // Checked once per run rather than per tile: the bases grow with the pixel.
        check_taps(
            self.x.len(),
            run.taps,
            &[run.base(0), run.base(run.len.max(1) - 1)],
        );
        assert!(self.w.len() >= tap_rows(run.taps) * padded_out(g));
        let mut p = 0;
        while p < run.len {
            let y = &mut y[p * g.o..];
            let (level, x, w) = (self.level, self.x, self.w);
            // SAFETY: checked above for every pixel of the run.
            p += unsafe {
                match run.len - p {
                    PIXELS.. => forward_pixels::<PIXELS>(level, g, x, w, run, p, y),
                    4.. => forward_pixels::<4>(level, g, x, w, run, p, y),
                    2.. => forward_pixels::<2>(level, g, x, w, run, p, y),
                    _ => forward_pixels::<1>(level, g, x, w, run, p, y),
                }
            };
        }
    }
}

/// Output pixels `first..first + P` of `run` into `y` (their rows), from the padded filter
/// `w`, in blocks two vectors wide where the padded row has room; returns `P`.
///
/// # Safety
/// Every tap of every pixel of `run` lies inside `x`, and `w` holds every tap's row (as
/// `Forward::run` checks once per run).
#[inline(always)]
unsafe fn forward_pixels<const P: usize>(
    level: simd::Level,
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    run: &Run,
    first: usize,
    y: &mut [f32],
) -> usize {
    let o_pad = padded_out(g);
    let mut bases = [0; P];
    for (p, base) in bases.iter_mut().enumerate() {
        *base = run.base(first + p);
    }
    let mut ob = 0;
    while ob < o_pad {
        ob += if o_pad - ob >= 2 * LANES {
            forward_tile::<P, { 2 * LANES }>(level, g, x, w, run.taps, bases, ob, y)
        } else {
            forward_tile::<P, LANES>(level, g, x, w, run.taps, bases, ob, y)
        };
    }
    P
}

/// Output channels `ob..ob + L` of the `P` pixels at input `bases`; returns `L`. Uses the
/// vector type of `level`, the one [`simd::dispatch`] compiled the caller for.
///
/// # Safety
/// As for [`forward_pixels`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_tile<const P: usize, const L: usize>(
    level: simd::Level,
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    taps: &[(usize, usize)],
    bases: [usize; P],
    ob: usize,
    y: &mut [f32],
) -> usize {
    let o_pad = padded_out(g);
    let n = L.min(g.o - ob);
    assert!(y.len() >= (P - 1) * g.o + ob + n);
    let tile = Tile {
        x: x.as_ptr(),
        w: w.as_ptr().add(ob),
        o_pad,
        taps,
        y: y[ob..].as_mut_ptr(),
        ldy: g.o,
        n,
    };
    // SAFETY: the caller's checks and the one above cover every read and write of the tile;
    // the vector types' instructions are present wherever `dispatch` chose their level.
    with_vectors!(level, forward_vectors::<_, P, L>(&tile, bases));
    L
}

/// Panics unless every tap of every base lies inside an input of `len` values, so that the
/// tiles can read the input unchecked.
#[inline(always)]
fn check_taps<const P: usize>(len: usize, taps: &[(usize, usize)], bases: &[usize; P]) {
    // Plain loops: iterator adaptors' closures would not be inlined into the wide code.
    let (mut top, mut base) = (0, 0);
    for &(off, _) in taps {
        top = top.max(off);
    }
    for &b in bases {
        base = base.max(b);
    }
    assert!(
        taps.is_empty() || base + top < len,
        "a tap lies outside the input"
    );
}

/// One forward tile's operands, as checked pointers.
struct Tile<'a> {
    /// The input.
    x: *const f32,
    /// The padded filter, from the tile's first channel.
    w: *const f32,
    o_pad: usize,
    taps: &'a [(usize, usize)],
    /// The first pixel's output, from the tile's first channel; pixels `ldy` apart.
    y: *mut f32,
    ldy: usize,
    /// Channels stored (`≤ L`).
    n: usize,
}

/// The tile's sums in `P × L/LANES` vector registers: per tap, `L/LANES` filter vectors
/// loaded once and one input value broadcast per pixel, then a multiply-add each.
///
/// # Safety
/// The tile's pointers must be valid as [`forward_tile`] checks, and `S`'s instructions
/// present.
#[inline(always)]
unsafe fn forward_vectors<S: Simd, const P: usize, const L: usize>(t: &Tile, bases: [usize; P]) {
    let nv = L / S::LANES;
    let acc = tap_sums::<S, P, L>(t.x, t.w, t.o_pad, t.taps, bases);
    for (p, acc) in acc.iter().enumerate() {
        let dst = t.y.add(p * t.ldy);
        for (v, &sum) in acc.iter().enumerate().take(nv) {
            let c = v * S::LANES;
            if c + S::LANES <= t.n {
                S::store(dst.add(c), sum);
            } else if c < t.n {
                S::store_first(dst.add(c), sum, t.n - c);
            }
        }
    }
}

/// The sums of `P` output pixels (input `bases`) × `L` output channels (from the padded
/// filter `w`, rows `o_pad` apart) over `taps`, in `P × L/LANES` vector registers: per tap,
/// the filter vectors loaded once and one input value broadcast per pixel, then a
/// multiply-add each.
///
/// # Safety
/// Every tap of every base lies inside the input at `x`, every tap's row (`L` floats) inside
/// the filter at `w`; `S`'s instructions present.
#[inline(always)]
pub(super) unsafe fn tap_sums<S: Simd, const P: usize, const L: usize>(
    x: *const f32,
    w: *const f32,
    o_pad: usize,
    taps: &[(usize, usize)],
    bases: [usize; P],
) -> [[S::V; MAX_VECTORS]; P] {
    let nv = L / S::LANES;
    debug_assert!(nv <= MAX_VECTORS && nv * S::LANES == L);
    let mut acc = [[S::zero(); MAX_VECTORS]; P];
    for &(off, row) in taps {
        let wp = w.add(row * o_pad);
        let mut wv = [S::zero(); MAX_VECTORS];
        for (v, wv) in wv.iter_mut().enumerate().take(nv) {
            *wv = S::load(wp.add(v * S::LANES));
        }
        for (acc, &base) in acc.iter_mut().zip(&bases) {
            let xv = S::splat(*x.add(base + off));
            for (acc, &wv) in acc.iter_mut().zip(&wv).take(nv) {
                *acc = S::mul_add(*acc, xv, wv);
            }
        }
    }
    acc
}

/// `dw = Σ patchesᵀ · dy` for small patches: each task sums its output rows into its own
/// `[patch, O]` partial, and the partials are added in a fixed order.
pub(super) fn conv2d_grad_filter(
    g: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    ws: &mut [f32],
    pool: &WorkerPool,
) {
    let (rows, parts, size) = (rows(g), grad_parts(g), padded_filter_len(g));
    let partials = SharedMut::new(ws.as_mut_ptr());
    pool.run(parts, &|t| {
        // SAFETY: partial `t` is written by this task only.
        let part = unsafe { partials.slice(t * size, size) };
        let rows = split(rows, parts, t);
        let dy = &dy[rows.start * g.ow * g.o..][..rows.len() * g.ow * g.o];
        simd::dispatch(
            #[inline(always)]
            || {
                part.fill(0.0);
                grad_filter_rows(&mut Runs::new(g), x, dy, rows, part);
            },
        );
    });
    sum_partials(g, &ws[..parts * size], dw);
}

/// Adds the filter gradient of output rows `rows` (`img·OH + oy`) of the convolution of
/// `runs`, whose gradient `dy` holds (those rows only), to the padded `[patch, O]` partial
/// `part`. Call inside [`simd::dispatch`].
#[inline(always)]
pub(super) fn grad_filter_rows(
    runs: &mut Runs,
    x: &[f32],
    dy: &[f32],
    rows: Range<usize>,
    part: &mut [f32],
) {
    let first_pixel = rows.start * runs.g.ow;
    let mut grad = GradFilter {
        g: runs.g,
        x,
        dy,
        part,
        first_pixel,
    };
    runs.visit(rows, &mut grad);
}

/// `dw = Σ partials` (padded `[patch, O]` each, [`padded_filter_len`] apart), in order.
pub(super) fn sum_partials(g: &ConvGeometry, partials: &[f32], dw: &mut [f32]) {
    let (o_pad, size) = (padded_out(g), padded_filter_len(g));
    simd::dispatch(
        #[inline(always)]
        || {
            for (row, dst) in dw.chunks_exact_mut(g.o).enumerate() {
                dst.copy_from_slice(&partials[row * o_pad..][..g.o]);
                for part in partials.chunks_exact(size).skip(1) {
                    let src = &part[row * o_pad..][..g.o];
                    dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
                }
            }
        },
    );
}

/// The filter gradient over runs, summed into one partial; `dy` starts at output pixel
/// `first_pixel`.
struct GradFilter<'a> {
    g: &'a ConvGeometry,
    x: &'a [f32],
    dy: &'a [f32],
    part: &'a mut [f32],
    first_pixel: usize,
}

impl Visit for GradFilter<'_> {
    #[inline(always)]
    fn run(&mut self, run: &Run) {
        let g = self.g;
        // The run's gradient rows, from its first pixel.
        let dy = &self.dy[(run.q0 - self.first_pixel) * g.o..];
        let o_pad = padded_out(g);
        check_taps(
            self.x.len(),
            run.taps,
            &[run.base(0), run.base(run.len.max(1) - 1)],
        );
        assert!(
            dy.len() >= (run.len.max(1) - 1) * g.o + g.o
                && self.part.len() >= tap_rows(run.taps) * o_pad
        );
        let level = simd::level();
        let mut ob = 0;
        while ob < o_pad {
            let wide = o_pad - ob >= 2 * LANES;
            let mut i = 0;
            while i < run.taps.len() {
                let t = GradTile {
                    x: self.x.as_ptr(),
                    dy: dy.as_ptr(),
                    ldy: g.o,
                    n: g.o - ob,
                    part: self.part.as_mut_ptr(),
                    o_pad,
                    ob,
                    taps: &run.taps[i..],
                };
                // SAFETY: checked above: every tap of every pixel lies in the input, every
                // pixel's gradient row in `dy` and every tap's row in the partial.
                i += unsafe {
                    match (run.taps.len() - i, wide) {
                        (9.., true) => grad_tile::<9, 2>(level, &t, run),
                        (3.., true) => grad_tile::<3, 2>(level, &t, run),
                        (_, true) => grad_tile::<1, 2>(level, &t, run),
                        (9.., false) => grad_tile::<9, 1>(level, &t, run),
                        (3.., false) => grad_tile::<3, 1>(level, &t, run),
                        (_, false) => grad_tile::<1, 1>(level, &t, run),
                    }
                };
            }
            ob += if wide { 2 * LANES } else { LANES };
        }
    }
}

/// Rows of a `[patch, O]` matrix (filter or partial) that `taps` reach.
#[inline(always)]
pub(super) fn tap_rows(taps: &[(usize, usize)]) -> usize {
    let mut top = 0;
    for &(_, row) in taps {
        top = top.max(row + 1);
    }
    top
}

/// One gradient tile's operands, as checked pointers.
struct GradTile<'a> {
    x: *const f32,
    /// The run's first gradient row; rows `ldy` apart, `n` channels valid from `ob`.
    dy: *const f32,
    ldy: usize,
    n: usize,
    /// The padded partial (rows `o_pad` apart) and the tile's first channel.
    part: *mut f32,
    o_pad: usize,
    ob: usize,
    /// The taps from the tile's first.
    taps: &'a [(usize, usize)],
}

/// Adds the products of `run`'s pixels with the first `T` taps, for output channels
/// `ob..ob + B·LANES`, to the partial; returns `T`. Picks the vector type of `level`.
///
/// # Safety
/// As checked in `GradFilter::run`; `level`'s instructions present.
#[inline(always)]
unsafe fn grad_tile<const T: usize, const B: usize>(
    level: simd::Level,
    t: &GradTile,
    run: &Run,
) -> usize {
    with_vectors!(level, grad_vectors::<_, T, B>(t, run));
    T
}

/// The tile's sums in `T × B·LANES/S::LANES` registers: per pixel, its gradient vectors
/// loaded once and one input value broadcast per tap, then a multiply-add each.
///
/// # Safety
/// As for [`grad_tile`].
#[inline(always)]
unsafe fn grad_vectors<S: Simd, const T: usize, const B: usize>(t: &GradTile, run: &Run) {
    let width = B * LANES;
    let nv = width / S::LANES;
    debug_assert!(nv <= MAX_VECTORS && nv * S::LANES == width);
    let mut offsets = [0; T];
    for (o, &(off, _)) in offsets.iter_mut().zip(t.taps) {
        *o = off;
    }
    let mut acc = [[S::zero(); MAX_VECTORS]; T];
    for p in 0..run.len {
        let base = run.base(p);
        let row = t.dy.add(p * t.ldy + t.ob);
        let mut d = [S::zero(); MAX_VECTORS];
        for (v, d) in d.iter_mut().enumerate().take(nv) {
            let c = v * S::LANES;
            *d = if c + S::LANES <= t.n {
                S::load(row.add(c))
            } else {
                S::load_first(row.add(c), t.n.saturating_sub(c))
            };
        }
        for (acc, &off) in acc.iter_mut().zip(&offsets) {
            let xv = S::splat(*t.x.add(base + off));
            for (acc, &d) in acc.iter_mut().zip(&d).take(nv) {
                *acc = S::mul_add(*acc, xv, d);
            }
        }
    }
    for (acc, &(_, row)) in acc.iter().zip(t.taps) {
        let dst = t.part.add(row * t.o_pad + t.ob);
        for (v, &sum) in acc.iter().enumerate().take(nv) {
            let p = dst.add(v * S::LANES);
            S::store(p, S::add(S::load(p), sum));
        }
    }
}
