//! Register tiles for the fused conv block when its pooling windows are 2×2 and every window
//! sits inside the image (no padding above or to the left): the reference CNN's block.
//!
//! The general kernels in `pooled` compute a window row of convolution output into an L1
//! buffer and pool it from there (forward), or rebuild a window row of `dz` there and run the
//! filter gradient over it (backward). Here the buffer is gone:
//! - the forward tile sums two pooled pixels' 2×2 windows (8 convolution pixels) in registers
//!   and biases, pools, rectifies and codes them there, so only pooled values and codes are
//!   stored;
//! - the gradient tile walks the pooled pixels, makes each window cell's `dz` vector from the
//!   pooled gradient and the code in a register (the gradient itself where the code names the
//!   cell, zero elsewhere), and multiply-adds it into the filter gradient's sums at once.
//!
//! The forward computes the same operations in the same order as the general kernels (the
//! same bits by construction; the tests compare both with the unfused kernels within
//! rounding); the filter gradient adds the same products in another order.

use super::direct::{padded_out, tap_rows, tap_sums, TapList, LANES, MAX_VECTORS};
use super::pooled::{bias_vectors, PooledConv, NO_GRADIENT};
use crate::cpu::simd;
use crate::cpu::vector::{with_vectors, Simd};

/// Pooled pixels of one forward tile: two 2×2 windows are 8 convolution pixels, as many as
/// the general forward tile keeps in registers.
const GROUP: usize = 2;

impl PooledConv {
    /// Whether [`forward_image`] and [`backward_image`] compute this block: 2×2 windows, no
    /// padding above or left, and every tap of every convolution pixel inside a window lying
    /// inside the image (padding below or right may only reach pixels that no window uses).
    pub(super) fn register_tiled(&self) -> bool {
        let c = &self.conv;
        let a = c.attrs;
        let last = |pooled: usize, stride: usize, dilation: usize, k: usize| {
            (2 * pooled - 1) * stride + (k - 1) * dilation
        };
        self.window == [2, 2]
            && a.padding.top == 0
            && a.padding.left == 0
            && last(self.ph, a.stride[0], a.dilation[0], c.kh) < c.h
            && last(self.pw, a.stride[1], a.dilation[1], c.kw) < c.w
    }

    /// Input offset (within an image) of the first tap of convolution pixel `(oy, ox)`.
    #[inline(always)]
    fn base(&self, oy: usize, ox: usize) -> usize {
        let (c, [sy, sx]) = (&self.conv, self.conv.attrs.stride);
        (oy * sy * c.w + ox * sx) * c.c
    }
}

/// Panics unless every tap of every convolution pixel inside a window lies inside the image
/// `x`, so that the tiles read it unchecked: the last window's last pixel has the largest base.
#[inline(always)]
fn check_image(g: &PooledConv, taps: &[(usize, usize)], x: &[f32]) {
    let mut top = 0;
    for &(off, _) in taps {
        top = top.max(off);
    }
    let last = g.base(2 * g.ph - 1, 2 * g.pw - 1);
    assert!(last + top < x.len(), "a tap lies outside the image");
}

/// One image's pooled values `p` and (training) `codes`, from its input `x`, the padded
/// filter `filter` and the bias `bias` (`O` values). Call inside [`simd::dispatch`].
#[inline(always)]
pub(super) fn forward_image(
    g: &PooledConv,
    taps: &TapList,
    x: &[f32],
    filter: &[f32],
    bias: &[f32],
    p: &mut [f32],
    codes: Option<&mut [u8]>,
) {
    let (o, o_pad) = (g.conv.o, padded_out(&g.conv));
    let len = g.ph * g.pw * o;
    let taps = taps.as_slice();
    check_image(g, taps, x);
    assert!(filter.len() >= tap_rows(taps) * o_pad && bias.len() >= o);
    assert!(p.len() >= len && codes.as_ref().is_none_or(|k| k.len() >= len));
    let level = simd::level();
    let mut tile = ForwardTile {
        x: x.as_ptr(),
        w: filter.as_ptr(),
        bias: bias.as_ptr(),
        o_pad,
        taps,
        p: p.as_mut_ptr(),
        codes: codes.map(|k| k.as_mut_ptr()),
        o,
        n: 0,
        relu: g.relu,
    };
    for pr in 0..g.ph {
        let mut px = 0;
        while px < g.pw {
            let group = GROUP.min(g.pw - px);
            let mut ob = 0;
            while ob < o_pad {
                let wide = o_pad - ob >= 2 * LANES;
                tile.n = (o - ob).min(if wide { 2 * LANES } else { LANES });
                let at = (pr * g.pw + px) * o + ob;
                // SAFETY: checked above: every tap of the group's pixels lies in `x`, every
                // tap's filter row in `filter`; the group's pooled values and codes, channels
                // `ob..ob + n`, lie in `p` and `codes`. The vector types' instructions are
                // present wherever `dispatch` chose their level.
                unsafe {
                    let t = tile.at(ob, at);
                    match (group, wide) {
                        (GROUP, true) => {
                            let b = bases::<GROUP, 8>(g, pr, px);
                            with_vectors!(
                                level,
                                forward_vectors::<_, GROUP, 8, { 2 * LANES }>(&t, b)
                            )
                        }
                        (GROUP, false) => {
                            let b = bases::<GROUP, 8>(g, pr, px);
                            with_vectors!(level, forward_vectors::<_, GROUP, 8, LANES>(&t, b))
                        }
                        (_, true) => {
                            let b = bases::<1, 4>(g, pr, px);
                            with_vectors!(level, forward_vectors::<_, 1, 4, { 2 * LANES }>(&t, b))
                        }
                        (_, false) => {
                            let b = bases::<1, 4>(g, pr, px);
                            with_vectors!(level, forward_vectors::<_, 1, 4, LANES>(&t, b))
                        }
                    }
                }
                ob += if wide { 2 * LANES } else { LANES };
            }
            px += group;
        }
    }
}

/// The input bases of the `P = 4·G` convolution pixels of pooled pixels `px..px + G` in
/// pooled row `pr`: the windows' top row left to right, then their bottom row.
#[inline(always)]
fn bases<const G: usize, const P: usize>(g: &PooledConv, pr: usize, px: usize) -> [usize; P] {
    let mut b = [0; P];
    for (i, b) in b.iter_mut().enumerate() {
        let (dy, col) = (i / (2 * G), i % (2 * G));
        *b = g.base(2 * pr + dy, 2 * px + col);
    }
    b
}

/// A forward tile's operands, as checked pointers.
#[derive(Clone, Copy)]
struct ForwardTile<'a> {
    x: *const f32,
    /// The padded filter and the bias, from the block's first channel.
    w: *const f32,
    bias: *const f32,
    o_pad: usize,
    taps: &'a [(usize, usize)],
    /// The group's first pooled value and code, at the block's first channel; pooled pixels
    /// `o` apart.
    p: *mut f32,
    codes: Option<*mut u8>,
    o: usize,
    /// Channels of the block (`≤ L`).
    n: usize,
    /// Whether a ReLU sits between the bias and the pooling.
    relu: bool,
}

impl ForwardTile<'_> {
    /// The tile of channel block `ob`, whose first pooled value is element `at`.
    ///
    /// # Safety
    /// `ob` and `at` lie inside the filter and bias, and the pooled values and codes.
    #[inline(always)]
    unsafe fn at(&self, ob: usize, at: usize) -> Self {
        ForwardTile {
            w: self.w.add(ob),
            bias: self.bias.add(ob),
            p: self.p.add(at),
            codes: self.codes.map(|k| k.add(at)),
            ..*self
        }
    }
}

/// `G` pooled pixels × `L` channels: the `4·G` convolution pixels' sums in registers (as the
/// general forward tile: per tap, the filter vectors loaded once and one input value
/// broadcast per pixel), then per window the bias, the max in scan order (a cell ranking
/// above the best so far wins, so the first cell holding the maximum, or the first NaN,
/// does), the ReLU and the winning cell's code.
///
/// # Safety
/// As [`forward_image`] checks; `S`'s instructions present.
#[inline(always)]
// The pooling reads vector `v` of four pixels' sums: an index, not an iteration over `acc`.
#[allow(clippy::needless_range_loop)]
unsafe fn forward_vectors<S: Simd, const G: usize, const P: usize, const L: usize>(
    t: &ForwardTile,
    bases: [usize; P],
) {
    let nv = L / S::LANES;
    debug_assert!(P == 4 * G);
    let acc = tap_sums::<S, P, L>(t.x, t.w, t.o_pad, t.taps, bases);
    let (zero, none) = (S::zero(), S::splat(f32::from(NO_GRADIENT)));
    for v in 0..nv {
        let c = v * S::LANES;
        if c >= t.n {
            break;
        }
        let n = (t.n - c).min(S::LANES);
        let b = S::load_first(t.bias.add(c), n);
        for gi in 0..G {
            // Cells in scan order: (0, 0), (0, 1), (1, 0), (1, 1).
            let cell = |k: usize| S::add(acc[(k / 2) * 2 * G + 2 * gi + k % 2][v], b);
            let mut best = cell(0);
            let mut at = zero;
            for k in 1..4 {
                let value = cell(k);
                at = S::select_above(value, best, S::splat(k as f32), at);
                best = S::select_above(value, best, value, best);
            }
            let out = gi * t.o + c;
            if t.relu {
                // Not above zero: the ReLU passed nothing. A NaN passes, with its gradient.
                best = S::select_above(best, zero, best, zero);
                at = S::select_above(best, zero, at, none);
            }
            S::store_first(t.p.add(out), best, n);
            if let Some(codes) = t.codes {
                S::store_bytes(codes.add(out), at, n);
            }
        }
    }
}

/// Adds one image's filter gradient to the padded `[patch, O]` partial `dw` and its bias
/// gradient to `db`, from the image's input `x`, pooled gradient `dp` and codes. Call inside
/// [`simd::dispatch`].
#[inline(always)]
pub(super) fn backward_image(
    g: &PooledConv,
    taps: &TapList,
    x: &[f32],
    dp: &[f32],
    codes: &[u8],
    dw: &mut [f32],
    db: &mut [f32],
) {
    let (o, o_pad) = (g.conv.o, padded_out(&g.conv));
    let len = g.ph * g.pw * o;
    let taps = taps.as_slice();
    check_image(g, taps, x);
    assert!(dp.len() >= len && codes.len() >= len && db.len() >= o);
    assert!(dw.len() >= tap_rows(taps) * o_pad);
    let level = simd::level();
    for pr in 0..g.ph {
        let row = pr * g.pw * o;
        let (dp, codes) = (&dp[row..][..g.pw * o], &codes[row..][..g.pw * o]);
        // SAFETY: checked above; the vector types' instructions are present wherever
        // `dispatch` chose their level.
        unsafe { with_vectors!(level, bias_vectors::<_>(g, dp, codes, db)) };
        let rows = [g.base(2 * pr, 0), g.base(2 * pr + 1, 0)];
        let mut ob = 0;
        while ob < o_pad {
            let wide = o_pad - ob >= 2 * LANES;
            let mut i = 0;
            while i < taps.len() {
                let t = GradTile {
                    x: x.as_ptr(),
                    dp: dp[ob..].as_ptr(),
                    codes: codes[ob..].as_ptr(),
                    o,
                    n: o - ob,
                    pw: g.pw,
                    rows,
                    step: g.base(0, 1),
                    dw: dw[ob..].as_mut_ptr(),
                    o_pad,
                    taps: &taps[i..],
                };
                // SAFETY: as above: every tap of every window pixel lies in `x`, every tap's
                // row of `dw` is there, the row's gradients and codes are in `dp` and `codes`.
                i += unsafe {
                    match (taps.len() - i, wide) {
                        (9.., true) => {
                            with_vectors!(level, grad_vectors::<_, 9, { 2 * LANES }>(&t))
                        }
                        (3.., true) => {
                            with_vectors!(level, grad_vectors::<_, 3, { 2 * LANES }>(&t))
                        }
                        (_, true) => with_vectors!(level, grad_vectors::<_, 1, { 2 * LANES }>(&t)),
                        (9.., false) => with_vectors!(level, grad_vectors::<_, 9, LANES>(&t)),
                        (3.., false) => with_vectors!(level, grad_vectors::<_, 3, LANES>(&t)),
                        (_, false) => with_vectors!(level, grad_vectors::<_, 1, LANES>(&t)),
                    }
                };
            }
            ob += if wide { 2 * LANES } else { LANES };
        }
    }
}

/// A gradient tile's operands, as checked pointers.
struct GradTile<'a> {
    x: *const f32,
    /// The pooled row's gradients and codes from the block's first channel; pooled pixels
    /// `o` apart, `n` channels valid.
    dp: *const f32,
    codes: *const u8,
    o: usize,
    n: usize,
    pw: usize,
    /// Input bases of the window rows' first pixels, and the step from a pixel to the next.
    rows: [usize; 2],
    step: usize,
    /// The padded partial (rows `o_pad` apart) from the block's first channel.
    dw: *mut f32,
    o_pad: usize,
    /// The taps from the tile's first.
    taps: &'a [(usize, usize)],
}

/// The first `T` taps' filter gradient over one pooled row, for `L` channels: per window
/// cell and pooled pixel, `dz` selected in registers from the pooled gradient and its code,
/// and one input value broadcast per tap, then a multiply-add each. Returns `T`.
///
/// # Safety
/// As [`backward_image`] checks; `S`'s instructions present.
#[inline(always)]
unsafe fn grad_vectors<S: Simd, const T: usize, const L: usize>(t: &GradTile) -> usize {
    let nv = L / S::LANES;
    debug_assert!(nv <= MAX_VECTORS && nv * S::LANES == L);
    let mut offsets = [0; T];
    for (o, &(off, _)) in offsets.iter_mut().zip(t.taps) {
        *o = off;
    }
    let zero = S::zero();
    let mut acc = [[zero; MAX_VECTORS]; T];
    // Cell by cell, then pixel by pixel: one pixel's taps per inner iteration. Pixel by pixel
    // with the four cells inside, LLVM hoisted all 4·T broadcasts to the top of the
    // iteration and spilled them and the sums to the stack.
    for cell in 0..4 {
        let cell_code = S::splat(cell as f32);
        let first = t.rows[cell / 2] + (cell % 2) * t.step;
        for px in 0..t.pw {
            let mut dz = [zero; MAX_VECTORS];
            for (v, dz) in dz.iter_mut().enumerate().take(nv) {
                let c = v * S::LANES;
                if c < t.n {
                    let n = (t.n - c).min(S::LANES);
                    let d = S::load_first(t.dp.add(px * t.o + c), n);
                    let k = S::load_bytes(t.codes.add(px * t.o + c), n);
                    *dz = S::select_eq(k, cell_code, d, zero);
                }
            }
            let base = first + 2 * px * t.step;
            for (acc, &off) in acc.iter_mut().zip(&offsets) {
                let xv = S::splat(*t.x.add(base + off));
                for (acc, &dz) in acc.iter_mut().zip(&dz).take(nv) {
                    *acc = S::mul_add(*acc, xv, dz);
                }
            }
        }
    }
    for (acc, &(_, row)) in acc.iter().zip(t.taps) {
        let dst = t.dw.add(row * t.o_pad);
        for (v, &sum) in acc.iter().enumerate().take(nv) {
            let p = dst.add(v * S::LANES);
            S::store(p, S::add(S::load(p), sum));
        }
    }
    T
}
