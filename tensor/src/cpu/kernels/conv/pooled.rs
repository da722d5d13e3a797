//! Convolution, bias, ReLU and max-pooling (window = stride, no padding) as one kernel, and
//! its gradient as another.
//!
//! Unfused, the convolution's output, the biased sums and the ReLU output are each a full
//! `[N, OH, OW, O]` tensor written to memory (the ReLU output is kept until the backward pass),
//! although only the pooled quarter is ever used whole: the reference CNN's train step spent
//! most of its time moving those tensors. Here each image is computed a window row at a time:
//! the `wh` convolution rows of one pooled row land in a small buffer that stays in L1, are
//! biased, rectified and pooled there, and only the pooled row leaves, with a one-byte *code*
//! per pooled value: which window cell held the maximum (the first, as `max_pool2d_grad`
//! scans), or [`NO_GRADIENT`] where the ReLU passed nothing.
//!
//! The gradient rebuilds a window row of `dz` (the gradient at the biased sums) from the
//! pooled gradient and the codes, in the same L1 buffer, and feeds it straight into the
//! filter and bias gradients; `dz` is written to memory only when something else needs it
//! (the input gradient of a deeper layer).

use super::direct::{self, grad_filter_rows, pad_filter, padded_filter_len, sum_partials};
use super::pooled_tile;
use super::ConvGeometry;
use crate::cpu::pool::{SharedMut, WorkerPool};
use crate::cpu::simd;
use crate::cpu::vector::{with_vectors, Simd};
use std::ops::Range;

/// The code of a pooled value whose gradient is zero (the ReLU clipped its maximum).
pub const NO_GRADIENT: u8 = u8::MAX;
/// Tasks of the forward pass and partial sums of the gradient: a fixed count, so that the
/// order of the gradient's sum, and its rounding, does not depend on the pool.
const PARTS: usize = 16;

/// A convolution followed by an optional bias, an optional ReLU and a max-pooling whose
/// windows tile the convolution's output.
#[derive(Clone, Copy, Debug)]
pub struct PooledConv {
    /// The convolution, over the whole batch.
    pub conv: ConvGeometry,
    /// Pooling window (and stride) rows and columns.
    pub window: [usize; 2],
    /// Pooled rows and columns (`OH / wh`, `OW / ww`, rounded down).
    pub ph: usize,
    /// Pooled columns.
    pub pw: usize,
    /// Whether a ReLU sits between the bias and the pooling.
    pub relu: bool,
}

impl PooledConv {
    /// The fused form of `conv` pooled by `window`, if the kernels handle it: a small-patch
    /// convolution (see `direct`) and a window that fits at least once, with fewer than
    /// [`NO_GRADIENT`] cells.
    pub fn new(conv: ConvGeometry, window: [usize; 2], relu: bool) -> Option<Self> {
        let [wh, ww] = window;
        let ok = conv.is_direct()
            && wh >= 1
            && ww >= 1
            && wh * ww < NO_GRADIENT as usize
            && conv.oh >= wh
            && conv.ow >= ww;
        ok.then(|| PooledConv {
            conv,
            window,
            ph: conv.oh / wh,
            pw: conv.ow / ww,
            relu,
        })
    }

    /// One image's convolution.
    fn image(&self) -> ConvGeometry {
        ConvGeometry { n: 1, ..self.conv }
    }

    /// Elements of a window row of the convolution's output.
    fn rows_len(&self) -> usize {
        self.window[0] * self.conv.ow * self.conv.o
    }

    /// Pooled values (and codes) of one image.
    fn pooled_per_image(&self) -> usize {
        self.ph * self.pw * self.conv.o
    }

    /// Pooled values (and codes) of the batch.
    pub fn pooled_len(&self) -> usize {
        self.conv.n * self.pooled_per_image()
    }

    /// Workspace elements of [`forward`]: the padded filter, the bias and a row buffer per
    /// task.
    pub fn forward_workspace(&self) -> usize {
        padded_filter_len(&self.conv) + self.conv.o + PARTS * self.rows_len()
    }

    /// Workspace elements of [`backward`]: a filter and a bias partial and a row buffer per
    /// part.
    pub fn backward_workspace(&self) -> usize {
        PARTS * (padded_filter_len(&self.conv) + self.conv.o + self.rows_len())
    }

    /// Images of task `t` of `tasks`.
    fn images(&self, tasks: usize, t: usize) -> Range<usize> {
        let n = self.conv.n;
        n * t / tasks..n * (t + 1) / tasks
    }
}

/// `p = max_pool(relu(conv2d(x, w) + bias))` (ReLU and bias where the geometry has them),
/// and the codes of the pooled values when `codes` is given (a training step).
#[allow(clippy::too_many_arguments)]
pub fn forward(
    g: &PooledConv,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    p: &mut [f32],
    codes: Option<&mut [u8]>,
    ws: &mut [f32],
    pool: &WorkerPool,
) {
    let c = &g.conv;
    let (filter, rest) = ws.split_at_mut(padded_filter_len(c));
    let (b, buffers) = rest.split_at_mut(c.o);
    pad_filter(c, w, filter);
    match bias {
        Some(bias) => b.copy_from_slice(bias),
        None => b.fill(0.0),
    }
    let (filter, b) = (&*filter, &*b);
    let image = g.image();
    let tasks = PARTS.min(c.n);
    let (x_len, per_image, rows_len) = (c.h * c.w * c.c, g.pooled_per_image(), g.rows_len());
    let (out, buffers) = (
        SharedMut::new(p.as_mut_ptr()),
        SharedMut::new(buffers.as_mut_ptr()),
    );
    let codes = codes.map(|k| SharedMut::new(k.as_mut_ptr()));
    let level = simd::level();
    pool.run(tasks, &|t| {
        let images = g.images(tasks, t);
        // SAFETY: a task writes its own images of `p` and `codes` and its own row buffer.
        let (p, buffer) = unsafe {
            (
                out.slice(images.start * per_image, images.len() * per_image),
                buffers.slice(t * rows_len, rows_len),
            )
        };
        let mut codes =
            codes.map(|k| unsafe { k.slice(images.start * per_image, images.len() * per_image) });
        simd::dispatch(
            #[inline(always)]
            || {
                if g.register_tiled() {
                    let taps = direct::TapList::interior(c);
                    for (i, img) in images.clone().enumerate() {
                        let x = &x[img * x_len..][..x_len];
                        let at = i * per_image;
                        let codes = codes.as_deref_mut().map(|k| &mut k[at..][..per_image]);
                        let p = &mut p[at..][..per_image];
                        pooled_tile::forward_image(g, &taps, x, filter, b, p, codes);
                    }
                    return;
                }
                let mut runs = direct::Runs::new(&image);
                for (i, img) in images.clone().enumerate() {
                    let x = &x[img * x_len..][..x_len];
                    for pr in 0..g.ph {
                        let rows = pr * g.window[0]..(pr + 1) * g.window[0];
                        direct::forward_rows(&mut runs, x, filter, rows, buffer);
                        let at = (i * g.ph + pr) * g.pw * c.o;
                        let codes = codes.as_deref_mut().map(|k| &mut k[at..][..g.pw * c.o]);
                        pool_row(level, g, buffer, b, &mut p[at..][..g.pw * c.o], codes);
                    }
                }
            },
        );
    });
}

/// Biases, rectifies and pools one window row of convolution output `rows` into the pooled
/// row `out`, with its codes, in vectors of `level` (the one [`simd::dispatch`] compiled the
/// caller for).
#[inline(always)]
fn pool_row(
    level: simd::Level,
    g: &PooledConv,
    rows: &[f32],
    bias: &[f32],
    out: &mut [f32],
    codes: Option<&mut [u8]>,
) {
    let (o, ow, [wh, ww]) = (g.conv.o, g.conv.ow, g.window);
    assert!(rows.len() >= wh * ow * o && bias.len() >= o && out.len() >= g.pw * o);
    assert!(g.pw * ww <= ow && codes.as_ref().is_none_or(|k| k.len() >= g.pw * o));
    let codes = codes.map(|k| k.as_mut_ptr());
    // SAFETY: the checks above cover every read and write; the vector types' instructions are
    // present wherever `dispatch` chose their level.
    unsafe { with_vectors!(level, pool_vectors::<_>(g, rows, bias, out, codes)) }
}

/// [`pool_row`] for one instruction set: per pooled pixel and channel vector, the biased
/// window cells compared in registers, a cell ranking above the best so far winning (so the
/// first cell holding the maximum, or the first NaN, does, as `max_pool2d_grad` scans), the
/// winning cell tracked as a float.
///
/// # Safety
/// As [`pool_row`] checks; `codes`, when given, holds `g.pw * o` bytes.
#[inline(always)]
unsafe fn pool_vectors<S: Simd>(
    g: &PooledConv,
    rows: &[f32],
    bias: &[f32],
    out: &mut [f32],
    codes: Option<*mut u8>,
) {
    let (o, ow, [wh, ww]) = (g.conv.o, g.conv.ow, g.window);
    let (zero, one, none) = (S::zero(), S::splat(1.0), S::splat(f32::from(NO_GRADIENT)));
    for c0 in (0..o).step_by(S::LANES) {
        let n = S::LANES.min(o - c0);
        let b = S::load_first(bias.as_ptr().add(c0), n);
        for px in 0..g.pw {
            let first = rows.as_ptr().add(px * ww * o + c0);
            let mut best = S::add(S::load_first(first, n), b);
            let mut at = zero;
            // The cells in scan order, the cell's number counted as a float: no division
            // and no integer-to-float conversion per cell.
            let mut cell = zero;
            for dy in 0..wh {
                let row = first.add(dy * ow * o);
                for dx in usize::from(dy == 0)..ww {
                    cell = S::add(cell, one);
                    let v = S::add(S::load_first(row.add(dx * o), n), b);
                    at = S::select_above(v, best, cell, at);
                    best = S::select_above(v, best, v, best);
                }
            }
            let at_out = px * o + c0;
            if g.relu {
                // Not above zero: the ReLU passed nothing. A NaN passes, with its gradient.
                S::store_first(
                    out.as_mut_ptr().add(at_out),
                    S::select_above(best, zero, best, zero),
                    n,
                );
                at = S::select_above(best, zero, at, none);
            } else {
                S::store_first(out.as_mut_ptr().add(at_out), best, n);
            }
            if let Some(codes) = codes {
                S::store_bytes(codes.add(at_out), at, n);
            }
        }
    }
}

/// The gradients of [`forward`] from the pooled gradient `dp` and the forward's `codes`:
/// `dw` (the filter's), `db` (the bias's, if there is one) and, if asked for, `dz`, the
/// gradient at the convolution's output.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    g: &PooledConv,
    x: &[f32],
    dp: &[f32],
    codes: &[u8],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    dz: Option<&mut [f32]>,
    ws: &mut [f32],
    pool: &WorkerPool,
) {
    let c = &g.conv;
    let (filter_len, rows_len) = (padded_filter_len(c), g.rows_len());
    let (filters, rest) = ws.split_at_mut(PARTS * filter_len);
    let (biases, buffers) = rest.split_at_mut(PARTS * c.o);
    let image = g.image();
    let parts = PARTS.min(c.n);
    let (x_len, per_image, z_len) = (c.h * c.w * c.c, g.pooled_per_image(), c.oh * c.ow * c.o);
    let (filters_out, biases_out) = (
        SharedMut::new(filters.as_mut_ptr()),
        SharedMut::new(biases.as_mut_ptr()),
    );
    let buffers_out = SharedMut::new(buffers.as_mut_ptr());
    let dz_out = dz.map(|d| SharedMut::new(d.as_mut_ptr()));
    let level = simd::level();
    pool.run(parts, &|t| {
        // SAFETY: part `t` writes its own partials, row buffer and images of `dz`.
        let (dw, db, buffer) = unsafe {
            (
                filters_out.slice(t * filter_len, filter_len),
                biases_out.slice(t * c.o, c.o),
                buffers_out.slice(t * rows_len, rows_len),
            )
        };
        simd::dispatch(
            #[inline(always)]
            || {
                dw.fill(0.0);
                db.fill(0.0);
                if dz_out.is_none() && g.register_tiled() {
                    let taps = direct::TapList::interior(c);
                    for img in g.images(parts, t) {
                        let x = &x[img * x_len..][..x_len];
                        let at = img * per_image;
                        let (dp, codes) = (&dp[at..][..per_image], &codes[at..][..per_image]);
                        pooled_tile::backward_image(g, &taps, x, dp, codes, dw, db);
                    }
                    return;
                }
                // Cells outside every window (a remainder column) are never written.
                buffer.fill(0.0);
                let mut runs = direct::Runs::new(&image);
                for img in g.images(parts, t) {
                    let x = &x[img * x_len..][..x_len];
                    let dz = dz_out.map(|d| unsafe { d.slice(img * z_len, z_len) });
                    let mut dz = dz;
                    for pr in 0..g.ph {
                        let at = img * per_image + pr * g.pw * c.o;
                        let (dp, codes) = (&dp[at..][..g.pw * c.o], &codes[at..][..g.pw * c.o]);
                        unpool_row(level, g, dp, codes, buffer, db);
                        let rows = pr * g.window[0]..(pr + 1) * g.window[0];
                        grad_filter_rows(&mut runs, x, buffer, rows.clone(), dw);
                        if let Some(dz) = dz.as_deref_mut() {
                            dz[rows.start * c.ow * c.o..][..rows_len].copy_from_slice(buffer);
                        }
                    }
                    // Rows below the last window get no gradient.
                    if let Some(dz) = dz {
                        dz[g.ph * g.window[0] * c.ow * c.o..].fill(0.0);
                    }
                }
            },
        );
    });
    sum_partials(c, &filters[..parts * filter_len], dw);
    if let Some(db) = db {
        db.copy_from_slice(&biases[..c.o]);
        for part in biases[..parts * c.o].chunks_exact(c.o).skip(1) {
            db.iter_mut().zip(part).for_each(|(d, &s)| *d += s);
        }
    }
}

/// Writes one window row of `dz` into `rows` from the pooled gradient row `dp` and its codes,
/// and adds it to the bias partial `db`, in vectors of `level`.
#[inline(always)]
fn unpool_row(
    level: simd::Level,
    g: &PooledConv,
    dp: &[f32],
    codes: &[u8],
    rows: &mut [f32],
    db: &mut [f32],
) {
    let (o, ow, [wh, ww]) = (g.conv.o, g.conv.ow, g.window);
    assert!(dp.len() >= g.pw * o && codes.len() >= g.pw * o && db.len() >= o);
    assert!(rows.len() >= wh * ow * o && g.pw * ww <= ow);
    // SAFETY: the checks above cover every read and write; the vector types' instructions are
    // present wherever `dispatch` chose their level.
    unsafe {
        with_vectors!(level, bias_vectors::<_>(g, dp, codes, db));
        with_vectors!(level, unpool_vectors::<_>(g, dp, codes, rows));
    }
}

/// Adds the bias gradient of one pooled row (`dp` and `codes`, `PW · O` each) to `db`: the
/// pooled gradients whose code is not [`NO_GRADIENT`], in pixel order.
///
/// # Safety
/// `dp` and `codes` hold `PW · O` values, `db` `O`; `S`'s instructions present.
#[inline(always)]
pub(super) unsafe fn bias_vectors<S: Simd>(
    g: &PooledConv,
    dp: &[f32],
    codes: &[u8],
    db: &mut [f32],
) {
    let o = g.conv.o;
    let (zero, none) = (S::zero(), S::splat(f32::from(NO_GRADIENT)));
    for c0 in (0..o).step_by(S::LANES) {
        let n = S::LANES.min(o - c0);
        let mut sum = S::load_first(db.as_ptr().add(c0), n);
        for px in 0..g.pw {
            let at = px * o + c0;
            let d = S::load_first(dp.as_ptr().add(at), n);
            let k = S::load_bytes(codes.as_ptr().add(at), n);
            sum = S::add(sum, S::select_eq(k, none, zero, d));
        }
        S::store_first(db.as_mut_ptr().add(c0), sum, n);
    }
}

/// [`unpool_row`]'s `dz` for one instruction set: each window cell gets the pooled gradient
/// where its code names it, zero elsewhere.
///
/// # Safety
/// As [`unpool_row`] checks.
#[inline(always)]
unsafe fn unpool_vectors<S: Simd>(g: &PooledConv, dp: &[f32], codes: &[u8], rows: &mut [f32]) {
    let (o, ow, [wh, ww]) = (g.conv.o, g.conv.ow, g.window);
    let (zero, one) = (S::zero(), S::splat(1.0));
    for c0 in (0..o).step_by(S::LANES) {
        let n = S::LANES.min(o - c0);
        for px in 0..g.pw {
            let at = px * o + c0;
            let d = S::load_first(dp.as_ptr().add(at), n);
            let k = S::load_bytes(codes.as_ptr().add(at), n);
            let first = rows.as_mut_ptr().add(px * ww * o + c0);
            let mut cell = zero;
            for dy in 0..wh {
                let row = first.add(dy * ow * o);
                for dx in 0..ww {
                    S::store_first(row.add(dx * o), S::select_eq(k, cell, d, zero), n);
                    cell = S::add(cell, one);
                }
            }
        }
    }
}
