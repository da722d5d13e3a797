//! Convolution over NHWC input with HWIO filters, as im2col + GEMM: the filter viewed as a
//! `[KH·KW·C, O]` matrix multiplies the patch matrix and lands directly in NHWC order. A 1×1,
//! stride-1, unpadded convolution skips im2col entirely.
//!
//! With a small patch (`KH·KW·C`), a GEMM of depth `KH·KW·C` spends its time packing rather
//! than multiplying, so the forward pass and the filter gradient then work directly on the
//! input instead (see `direct`); the input gradient keeps im2col + GEMM.

use crate::cpu::gemm::{sgemm, MatRef};
use crate::cpu::pool::WorkerPool;
use crate::ir::Conv2dAttrs;

/// Patch-matrix bytes are bounded by processing the batch in slices of this many elements.
const MAX_COLS_ELEMENTS: usize = 1 << 22;
/// Patches up to this many values (`KH·KW·C`) may take the direct path...
const DIRECT_MAX_PATCH: usize = 64;
/// ... if the filter has at most this many values (`KH·KW·C·O`). Beyond it, the GEMM's fused
/// multiply-adds outrun the direct loops despite the packing (measured at 3×3 filters: the
/// direct path is 1.3–2.4× faster for O = 16 or 32 with C ≤ 3, even at 9 × 64, slower at
/// 9 × 128 or 27 × 64).
const DIRECT_MAX_FILTER: usize = 1024;

/// The geometry of one convolution.
#[derive(Clone, Copy, Debug)]
pub struct ConvGeometry {
    /// Batch.
    pub n: usize,
    /// Input rows, columns, channels.
    pub h: usize,
    /// Input columns.
    pub w: usize,
    /// Input channels.
    pub c: usize,
    /// Filter rows.
    pub kh: usize,
    /// Filter columns.
    pub kw: usize,
    /// Output channels.
    pub o: usize,
    /// Output rows.
    pub oh: usize,
    /// Output columns.
    pub ow: usize,
    /// Attributes.
    pub attrs: Conv2dAttrs,
}

impl ConvGeometry {
    /// From the NHWC input dims, HWIO filter dims and NHWC output dims.
    pub fn new(x: &[usize], w: &[usize], y: &[usize], attrs: Conv2dAttrs) -> Self {
        ConvGeometry {
            n: x[0],
            h: x[1],
            w: x[2],
            c: x[3],
            kh: w[0],
            kw: w[1],
            o: w[3],
            oh: y[1],
            ow: y[2],
            attrs,
        }
    }

    fn patch(&self) -> usize {
        self.kh * self.kw * self.c
    }

    fn is_pointwise(&self) -> bool {
        let p = self.attrs.padding;
        self.kh == 1
            && self.kw == 1
            && self.attrs.stride == [1, 1]
            && p.top + p.bottom + p.left + p.right == 0
    }

    /// Images per slice so that a slice's patch matrix stays bounded.
    fn images_per_slice(&self) -> usize {
        let per_image = self.oh * self.ow * self.patch();
        (MAX_COLS_ELEMENTS / per_image.max(1)).clamp(1, self.n.max(1))
    }

    /// Whether the forward pass and the filter gradient skip im2col (the patch is small).
    fn is_direct(&self) -> bool {
        !self.is_pointwise()
            && (1..=DIRECT_MAX_PATCH).contains(&self.patch())
            && (1..=DIRECT_MAX_FILTER).contains(&(self.patch() * self.o))
    }

    /// Workspace elements (`f32`) the kernels need: the patch matrix of one slice of the batch
    /// (im2col), or the direct path's buffers if larger.
    pub fn workspace_elements(&self) -> usize {
        if self.is_pointwise() {
            return 0;
        }
        let cols = self.images_per_slice() * self.oh * self.ow * self.patch();
        if self.is_direct() {
            cols.max(direct::workspace_elements(self))
        } else {
            cols
        }
    }

    /// Input position of output `(oy, ox)` and tap `(ky, kx)`, if inside the image.
    #[inline]
    fn source(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
        let a = self.attrs;
        let iy = (oy * a.stride[0] + ky * a.dilation[0]).checked_sub(a.padding.top)?;
        let ix = (ox * a.stride[1] + kx * a.dilation[1]).checked_sub(a.padding.left)?;
        (iy < self.h && ix < self.w).then_some((iy, ix))
    }
}

#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: tasks write disjoint rows (im2col) or disjoint images (col2im).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// # Safety
    /// `i` must be inside the buffer, and the caller's task must own that element.
    unsafe fn at(self, i: usize) -> *mut f32 {
        self.0.add(i)
    }
}

/// Fills `cols` (`images · OH·OW` rows of `KH·KW·C`) with the patches of images
/// `first..first+images`.
fn im2col(
    g: &ConvGeometry,
    x: &[f32],
    first: usize,
    images: usize,
    cols: &mut [f32],
    pool: &WorkerPool,
) {
    let patch = g.patch();
    let rows = images * g.oh * g.ow;
    let out = Shared(cols.as_mut_ptr());
    let tasks = pool.threads().min(rows.max(1));
    pool.run(tasks, &|t| {
        for r in rows * t / tasks..rows * (t + 1) / tasks {
            let (img, rem) = (first + r / (g.oh * g.ow), r % (g.oh * g.ow));
            let (oy, ox) = (rem / g.ow, rem % g.ow);
            // SAFETY: row `r` of `cols` is written by this task only.
            let row = unsafe { std::slice::from_raw_parts_mut(out.at(r * patch), patch) };
            for ky in 0..g.kh {
                // With undilated columns and every tap inside the image, a filter row's taps
                // are one contiguous run of `kw·C` input values.
                let first = g.source(oy, ox, ky, 0);
                let last = g.source(oy, ox, ky, g.kw - 1);
                if let (1, Some((iy, ix)), Some(_)) = (g.attrs.dilation[1], first, last) {
                    let len = g.kw * g.c;
                    row[ky * len..][..len]
                        .copy_from_slice(&x[((img * g.h + iy) * g.w + ix) * g.c..][..len]);
                    continue;
                }
                for kx in 0..g.kw {
                    let dst = &mut row[(ky * g.kw + kx) * g.c..][..g.c];
                    match g.source(oy, ox, ky, kx) {
                        Some((iy, ix)) => {
                            dst.copy_from_slice(&x[((img * g.h + iy) * g.w + ix) * g.c..][..g.c])
                        }
                        None => dst.fill(0.0),
                    }
                }
            }
        }
    });
}

/// `y = conv2d(x, w)`.
pub fn conv2d(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    ws: &mut [f32],
    pool: &WorkerPool,
) {
    if g.is_direct() {
        direct::conv2d(g, x, w, y, ws, pool);
    } else {
        conv2d_im2col(g, x, w, y, ws, pool);
    }
}

/// [`conv2d`] as im2col + GEMM (or a plain GEMM when pointwise).
fn conv2d_im2col(
    g: &ConvGeometry,
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    ws: &mut [f32],
    pool: &WorkerPool,
) {
    let patch = g.patch();
    let per_image = g.oh * g.ow;
    if g.is_pointwise() {
        // SAFETY: x is [N·H·W, C], w is [C, O], y is [N·H·W, O].
        unsafe {
            let (a, b) = (
                MatRef::row_major(x.as_ptr(), g.c, false),
                MatRef::row_major(w.as_ptr(), g.o, false),
            );
            sgemm(
                g.n * per_image,
                g.o,
                g.c,
                a,
                b,
                y.as_mut_ptr(),
                g.o,
                false,
                pool,
            );
        }
        return;
    }
    let step = g.images_per_slice();
    for first in (0..g.n).step_by(step) {
        let images = step.min(g.n - first);
        let rows = images * per_image;
        im2col(g, x, first, images, &mut ws[..rows * patch], pool);
        // SAFETY: cols is [rows, patch], w is [patch, O], the output slice is [rows, O].
        unsafe {
            let a = MatRef::row_major(ws.as_ptr(), patch, false);
            let b = MatRef::row_major(w.as_ptr(), g.o, false);
            sgemm(
                rows,
                g.o,
                patch,
                a,
                b,
                y[first * per_image * g.o..].as_mut_ptr(),
                g.o,
                false,
                pool,
            );
        }
    }
}

/// `dw = Σ patchesᵀ · dy`.
pub fn conv2d_grad_filter(
    g: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    ws: &mut [f32],
    pool: &WorkerPool,
) {
    if g.is_direct() {
        direct::conv2d_grad_filter(g, x, dy, dw, ws, pool);
    } else {
        conv2d_grad_filter_im2col(g, x, dy, dw, ws, pool);
    }
}

/// [`conv2d_grad_filter`] as im2col + GEMM (or a plain GEMM when pointwise).
fn conv2d_grad_filter_im2col(
    g: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    ws: &mut [f32],
    pool: &WorkerPool,
) {
    let patch = g.patch();
    let per_image = g.oh * g.ow;
    if g.is_pointwise() {
        // SAFETY: xᵀ is [C, N·H·W], dy is [N·H·W, O], dw is [C, O].
        unsafe {
            let a = MatRef::row_major(x.as_ptr(), g.c, true);
            let b = MatRef::row_major(dy.as_ptr(), g.o, false);
            sgemm(
                g.c,
                g.o,
                g.n * per_image,
                a,
                b,
                dw.as_mut_ptr(),
                g.o,
                false,
                pool,
            );
        }
        return;
    }
    let step = g.images_per_slice();
    for first in (0..g.n).step_by(step) {
        let images = step.min(g.n - first);
        let rows = images * per_image;
        im2col(g, x, first, images, &mut ws[..rows * patch], pool);
        // SAFETY: colsᵀ is [patch, rows], the dy slice is [rows, O], dw is [patch, O].
        unsafe {
            let a = MatRef::row_major(ws.as_ptr(), patch, true);
            let b = MatRef::row_major(dy[first * per_image * g.o..].as_ptr(), g.o, false);
            sgemm(
                patch,
                g.o,
                rows,
                a,
                b,
                dw.as_mut_ptr(),
                g.o,
                first > 0,
                pool,
            );
        }
    }
}

/// `dx = col2im(dy · wᵀ)`.
pub fn conv2d_grad_input(
    g: &ConvGeometry,
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
    ws: &mut [f32],
    pool: &WorkerPool,
) {
    let patch = g.patch();
    let per_image = g.oh * g.ow;
    if g.is_pointwise() {
        // SAFETY: dy is [N·H·W, O], wᵀ is [O, C], dx is [N·H·W, C].
        unsafe {
            let a = MatRef::row_major(dy.as_ptr(), g.o, false);
            let b = MatRef::row_major(w.as_ptr(), g.o, true);
            sgemm(
                g.n * per_image,
                g.c,
                g.o,
                a,
                b,
                dx.as_mut_ptr(),
                g.c,
                false,
                pool,
            );
        }
        return;
    }
    dx.fill(0.0);
    let step = g.images_per_slice();
    for first in (0..g.n).step_by(step) {
        let images = step.min(g.n - first);
        let rows = images * per_image;
        // SAFETY: the dy slice is [rows, O], wᵀ is [O, patch], cols is [rows, patch].
        unsafe {
            let a = MatRef::row_major(dy[first * per_image * g.o..].as_ptr(), g.o, false);
            let b = MatRef::row_major(w.as_ptr(), g.o, true);
            sgemm(rows, patch, g.o, a, b, ws.as_mut_ptr(), patch, false, pool);
        }
        let cols = &ws[..rows * patch];
        let out = Shared(dx.as_mut_ptr());
        let tasks = pool.threads().min(images);
        pool.run(tasks, &|t| {
            for i in images * t / tasks..images * (t + 1) / tasks {
                let img = first + i;
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let row = &cols[(i * per_image + oy * g.ow + ox) * patch..][..patch];
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let Some((iy, ix)) = g.source(oy, ox, ky, kx) else {
                                    continue;
                                };
                                let src = &row[(ky * g.kw + kx) * g.c..][..g.c];
                                // SAFETY: image `img` of dx is written by this task only.
                                let dst = unsafe {
                                    std::slice::from_raw_parts_mut(
                                        out.at(((img * g.h + iy) * g.w + ix) * g.c),
                                        g.c,
                                    )
                                };
                                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                            }
                        }
                    }
                }
            }
        });
    }
}

/// Direct convolution for small patches: no patch matrix and no GEMM packing.
///
/// The output is walked in *runs*: consecutive output pixels of one row that see the same
/// filter taps, at input positions a fixed step apart. The pixels whose every tap lies inside
/// the image form one run per row and share one tap list (offsets from the pixel's first tap);
/// each pixel near a padded border is a run of its own, listing only its taps inside the image
/// (at absolute offsets), so padding costs nothing. The kernels keep small tiles of sums in
/// registers: the forward pass a few pixels × [`LANES`] output channels, the filter gradient a
/// few taps × [`LANES`] output channels.
mod direct {
    use super::{ConvGeometry, Shared, DIRECT_MAX_PATCH};
    use crate::cpu::pool::WorkerPool;
    use crate::cpu::simd;
    use std::ops::Range;

    /// Output channels in one block of a tile (one AVX-512 vector); the filter (forward) and
    /// the partial sums (gradient) have their rows padded to a multiple of it. Forward tiles
    /// take two blocks where there is room.
    const LANES: usize = 16;
    /// Output pixels a forward tile computes together.
    const PIXELS: usize = 4;
    /// Filter taps a gradient tile accumulates together.
    const TAPS: usize = 8;
    /// Partial sums of the filter gradient, one per task. A fixed count rather than one per
    /// thread, so that the order of the sum, and its rounding, does not depend on the pool.
    const GRAD_PARTS: usize = 16;
    /// Forward tasks per pool thread, for balance when cores are shared.
    const TASKS_PER_THREAD: usize = 4;

    /// A row of `[patch, O]` matrices padded to whole blocks.
    fn padded_out(g: &ConvGeometry) -> usize {
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
    struct TapList {
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
        fn interior(g: &ConvGeometry) -> Self {
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

        fn as_slice(&self) -> &[(usize, usize)] {
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

    /// Visits the runs of output rows `rows` (`img·OH + oy`), in order.
    #[inline(always)]
    fn for_each_run(g: &ConvGeometry, rows: Range<usize>, visit: &mut impl Visit) {
        let a = g.attrs;
        let interior = TapList::interior(g);
        let (lo, hi) = interior_columns(g);
        let reach = (g.kh - 1) * a.dilation[0];
        let mut border = TapList::empty();
        for r in rows {
            let (img, oy) = (r / g.oh, r % g.oh);
            let pos = oy * a.stride[0];
            let inner_row =
                inside(pos, a.padding.top, g.h) && inside(pos + reach, a.padding.top, g.h);
            let (lo, hi) = if inner_row { (lo, hi) } else { (g.ow, g.ow) };
            let mut ox = 0;
            while ox < g.ow {
                if ox == lo && lo < hi {
                    let (iy, ix) = (pos - a.padding.top, lo * a.stride[1] - a.padding.left);
                    visit.run(&Run {
                        taps: interior.as_slice(),
                        x0: ((img * g.h + iy) * g.w + ix) * g.c,
                        step: a.stride[1] * g.c,
                        q0: r * g.ow + lo,
                        len: hi - lo,
                    });
                    ox = hi;
                } else {
                    border.border(g, img, oy, ox);
                    visit.run(&Run {
                        taps: border.as_slice(),
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

    /// `src[..n]` (with `n` clipped to [`LANES`]) as a block, zero beyond `n`.
    #[inline(always)]
    fn load(src: &[f32], n: usize) -> [f32; LANES] {
        if n >= LANES {
            return src[..LANES].try_into().unwrap();
        }
        let mut v = [0.0; LANES];
        v[..n].copy_from_slice(&src[..n]);
        v
    }

    /// Stores the first `n` (clipped to `L`) values of `v` at `dst`.
    ///
    /// Lane by lane: a copy of the block, and worse one of variable length, would keep the
    /// block (and the whole tile of sums with it) in memory rather than in registers.
    #[inline(always)]
    fn store<const L: usize>(dst: &mut [f32], v: [f32; L], n: usize) {
        if n >= L {
            dst[..L].iter_mut().zip(v).for_each(|(d, v)| *d = v);
            return;
        }
        for l in 0..L {
            if l < n {
                dst[l] = v[l];
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
        let o_pad = padded_out(g);
        let wp = &mut ws[..g.patch() * o_pad];
        for (dst, src) in wp.chunks_exact_mut(o_pad).zip(w.chunks_exact(g.o)) {
            dst[..g.o].copy_from_slice(src);
            dst[g.o..].fill(0.0);
        }
        let wp = &*wp;
        let rows = rows(g);
        let tasks = (pool.threads() * TASKS_PER_THREAD).min(rows);
        let out = Shared(y.as_mut_ptr());
        pool.run(tasks, &|t| {
            let mut forward = Forward { g, x, w: wp, out };
            simd::dispatch(
                #[inline(always)]
                || for_each_run(g, split(rows, tasks, t), &mut forward),
            );
        });
    }

    /// The forward pass over runs, from the padded filter `w`, into the output at `out`.
    struct Forward<'a> {
        g: &'a ConvGeometry,
        x: &'a [f32],
        w: &'a [f32],
        out: Shared,
    }

    impl Visit for Forward<'_> {
        #[inline(always)]
        fn run(&mut self, run: &Run) {
            let g = self.g;
            // SAFETY: the run's output pixels lie in the rows of the task visiting it.
            let y =
                unsafe { std::slice::from_raw_parts_mut(self.out.at(run.q0 * g.o), run.len * g.o) };
            let mut p = 0;
            while p < run.len {
                let y = &mut y[p * g.o..];
                p += if run.len - p >= PIXELS {
                    forward_pixels::<PIXELS>(g, self.x, self.w, run, p, y)
                } else {
                    forward_pixels::<1>(g, self.x, self.w, run, p, y)
                };
            }
        }
    }

    /// Output pixels `first..first + P` of `run` into `y` (their rows), from the padded filter
    /// `w`, in blocks two vectors wide where the padded row has room; returns `P`.
    #[inline(always)]
    fn forward_pixels<const P: usize>(
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
                forward_tile::<P, { 2 * LANES }>(g, x, w, run.taps, bases, ob, y)
            } else {
                forward_tile::<P, LANES>(g, x, w, run.taps, bases, ob, y)
            };
        }
        P
    }

    /// Output channels `ob..ob + L` of the `P` pixels at input `bases`; returns `L`.
    #[inline(always)]
    fn forward_tile<const P: usize, const L: usize>(
        g: &ConvGeometry,
        x: &[f32],
        w: &[f32],
        taps: &[(usize, usize)],
        bases: [usize; P],
        ob: usize,
        y: &mut [f32],
    ) -> usize {
        let o_pad = padded_out(g);
        let mut acc = [[0f32; L]; P];
        for &(off, row) in taps {
            let wv: &[f32; L] = w[row * o_pad + ob..][..L].try_into().unwrap();
            for (acc, &base) in acc.iter_mut().zip(&bases) {
                let xv = x[base + off];
                acc.iter_mut().zip(wv).for_each(|(a, &w)| *a += xv * w);
            }
        }
        for (p, acc) in acc.into_iter().enumerate() {
            store(&mut y[p * g.o + ob..], acc, g.o - ob);
        }
        L
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
        let o_pad = padded_out(g);
        let (rows, parts, size) = (rows(g), grad_parts(g), g.patch() * o_pad);
        let partials = Shared(ws.as_mut_ptr());
        pool.run(parts, &|t| {
            // SAFETY: partial `t` is written by this task only.
            let part = unsafe { std::slice::from_raw_parts_mut(partials.at(t * size), size) };
            let mut grad = GradFilter { g, x, dy, part };
            simd::dispatch(
                #[inline(always)]
                || {
                    grad.part.fill(0.0);
                    for_each_run(g, split(rows, parts, t), &mut grad);
                },
            );
        });
        let ws = &ws[..parts * size];
        simd::dispatch(
            #[inline(always)]
            || {
                for (row, dst) in dw.chunks_exact_mut(g.o).enumerate() {
                    dst.copy_from_slice(&ws[row * o_pad..][..g.o]);
                    for part in ws.chunks_exact(size).skip(1) {
                        let src = &part[row * o_pad..][..g.o];
                        dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
                    }
                }
            },
        );
    }

    /// The filter gradient over runs, summed into one partial.
    struct GradFilter<'a> {
        g: &'a ConvGeometry,
        x: &'a [f32],
        dy: &'a [f32],
        part: &'a mut [f32],
    }

    impl Visit for GradFilter<'_> {
        #[inline(always)]
        fn run(&mut self, run: &Run) {
            let (g, x, dy) = (self.g, self.x, self.dy);
            let part = &mut *self.part;
            let mut i = 0;
            while i < run.taps.len() {
                let taps = &run.taps[i..];
                i += match taps.len() {
                    TAPS.. => grad_tile::<TAPS>(g, x, dy, run, taps, part),
                    4.. => grad_tile::<4>(g, x, dy, run, taps, part),
                    2.. => grad_tile::<2>(g, x, dy, run, taps, part),
                    _ => grad_tile::<1>(g, x, dy, run, taps, part),
                };
            }
        }
    }

    /// Adds the products of `run`'s pixels with the first `T` of `taps` to `part`; returns `T`.
    #[inline(always)]
    fn grad_tile<const T: usize>(
        g: &ConvGeometry,
        x: &[f32],
        dy: &[f32],
        run: &Run,
        taps: &[(usize, usize)],
        part: &mut [f32],
    ) -> usize {
        let o_pad = padded_out(g);
        let mut offsets = [0; T];
        for (o, &(off, _)) in offsets.iter_mut().zip(taps) {
            *o = off;
        }
        for ob in (0..o_pad).step_by(LANES) {
            let mut acc = [[0f32; LANES]; T];
            for p in 0..run.len {
                let base = run.base(p);
                let d = load(&dy[(run.q0 + p) * g.o + ob..], g.o - ob);
                for (acc, &off) in acc.iter_mut().zip(&offsets) {
                    let xv = x[base + off];
                    acc.iter_mut().zip(&d).for_each(|(a, &d)| *a += xv * d);
                }
            }
            for (acc, &(_, row)) in acc.iter().zip(taps) {
                let dst = &mut part[row * o_pad + ob..][..LANES];
                dst.iter_mut().zip(acc).for_each(|(d, &a)| *d += a);
            }
        }
        T
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Padding2d;

    /// A convolution case: batch, input rows, columns, channels, filter rows, columns, output
    /// channels, stride, dilation and padding (top, bottom, left, right).
    type Case = (
        usize,
        [usize; 3],
        [usize; 2],
        usize,
        usize,
        usize,
        [usize; 4],
    );

    const CASES: [Case; 10] = [
        // The reference CNN's first layer, valid padding.
        (3, [28, 28, 1], [3, 3], 32, 1, 1, [0, 0, 0, 0]),
        (1, [9, 7, 2], [3, 3], 5, 1, 1, [1, 1, 1, 1]),
        (3, [11, 10, 3], [3, 3], 33, 2, 1, [1, 1, 1, 1]),
        (2, [10, 9, 1], [3, 3], 32, 2, 1, [0, 1, 0, 1]),
        (1, [12, 11, 2], [3, 3], 5, 1, 2, [2, 2, 2, 2]),
        (3, [9, 13, 3], [2, 3], 17, 2, 2, [1, 0, 2, 1]),
        (2, [5, 6, 1], [5, 5], 16, 1, 1, [2, 2, 2, 2]),
        // Kernels wider than the padded input leave no interior pixel at all.
        (1, [2, 3, 2], [3, 3], 7, 1, 1, [1, 1, 1, 1]),
        // The largest patch, and a filter at the size limit.
        (2, [8, 8, 16], [2, 2], 16, 1, 1, [0, 1, 0, 1]),
        // Two-block and one-block forward tiles in one row.
        (1, [6, 7, 2], [3, 3], 48, 1, 1, [1, 1, 1, 1]),
    ];

    /// Deterministic values in `[-1, 1)`.
    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn geometry(case: Case) -> ConvGeometry {
        let (n, [h, w, c], [kh, kw], o, stride, dilation, [top, bottom, left, right]) = case;
        let attrs = Conv2dAttrs {
            stride: [stride; 2],
            dilation: [dilation; 2],
            padding: Padding2d {
                top,
                bottom,
                left,
                right,
            },
        };
        let out =
            |len: usize, pad: usize, k: usize| (len + pad - dilation * (k - 1) - 1) / stride + 1;
        let (oh, ow) = (out(h, top + bottom, kh), out(w, left + right, kw));
        ConvGeometry::new(&[n, h, w, c], &[kh, kw, c, o], &[n, oh, ow, o], attrs)
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len());
        for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{what}: element {i}: {a} vs {b}"
            );
        }
    }

    /// Runs `direct` and `reference` (each filling its output from a fresh workspace) with
    /// pools of 1 and 3 threads, for every case, and compares.
    fn compare(
        output_len: impl Fn(&ConvGeometry) -> usize,
        run: impl Fn(&ConvGeometry, bool, &mut [f32], &WorkerPool),
    ) {
        for (k, case) in CASES.into_iter().enumerate() {
            let g = geometry(case);
            assert!(g.is_direct(), "case {k} should take the direct path");
            let mut outputs = Vec::new();
            for threads in [1, 3] {
                let pool = WorkerPool::new(threads);
                let mut direct = vec![f32::NAN; output_len(&g)];
                let mut reference = vec![f32::NAN; output_len(&g)];
                run(&g, true, &mut direct, &pool);
                run(&g, false, &mut reference, &pool);
                assert_close(&direct, &reference, &format!("case {k}, {threads} threads"));
                outputs.push(direct);
            }
            assert_eq!(
                outputs[0], outputs[1],
                "case {k}: the pool changed the result"
            );
        }
    }

    #[test]
    fn direct_conv2d_matches_im2col() {
        compare(
            |g| g.n * g.oh * g.ow * g.o,
            |g, direct, y, pool| {
                let x = values(g.n * g.h * g.w * g.c, 1);
                let w = values(g.patch() * g.o, 2);
                let mut ws = vec![f32::NAN; g.workspace_elements()];
                if direct {
                    direct::conv2d(g, &x, &w, y, &mut ws, pool);
                } else {
                    conv2d_im2col(g, &x, &w, y, &mut ws, pool);
                }
            },
        );
    }

    #[test]
    fn direct_conv2d_grad_filter_matches_im2col() {
        compare(
            |g| g.patch() * g.o,
            |g, direct, dw, pool| {
                let x = values(g.n * g.h * g.w * g.c, 3);
                let dy = values(g.n * g.oh * g.ow * g.o, 4);
                let mut ws = vec![f32::NAN; g.workspace_elements()];
                if direct {
                    direct::conv2d_grad_filter(g, &x, &dy, dw, &mut ws, pool);
                } else {
                    conv2d_grad_filter_im2col(g, &x, &dy, dw, &mut ws, pool);
                }
            },
        );
    }

    #[test]
    fn direct_conv2d_matches_a_naive_loop() {
        let g = geometry(CASES[5]);
        let x = values(g.n * g.h * g.w * g.c, 5);
        let w = values(g.patch() * g.o, 6);
        let mut want = vec![0f32; g.n * g.oh * g.ow * g.o];
        for (q, out) in want.chunks_exact_mut(g.o).enumerate() {
            let (img, oy, ox) = (q / (g.oh * g.ow), q / g.ow % g.oh, q % g.ow);
            for (ky, kx) in (0..g.kh).flat_map(|ky| (0..g.kw).map(move |kx| (ky, kx))) {
                let Some((iy, ix)) = g.source(oy, ox, ky, kx) else {
                    continue;
                };
                for ci in 0..g.c {
                    let xv = x[((img * g.h + iy) * g.w + ix) * g.c + ci];
                    let row = &w[((ky * g.kw + kx) * g.c + ci) * g.o..][..g.o];
                    out.iter_mut().zip(row).for_each(|(o, &w)| *o += xv * w);
                }
            }
        }
        let mut y = vec![f32::NAN; want.len()];
        let mut ws = vec![f32::NAN; g.workspace_elements()];
        conv2d(&g, &x, &w, &mut y, &mut ws, &WorkerPool::new(2));
        assert_close(&y, &want, "naive");
    }
}
