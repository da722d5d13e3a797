//! Convolution over NHWC input with HWIO filters, as im2col + GEMM: the filter viewed as a
//! `[KH·KW·C, O]` matrix multiplies the patch matrix and lands directly in NHWC order. A 1×1,
//! stride-1, unpadded convolution skips im2col entirely.
//!
//! With a small patch (`KH·KW·C`), a GEMM of depth `KH·KW·C` spends its time packing rather
//! than multiplying, so the forward pass and the filter gradient then work directly on the
//! input instead (see `direct`); the input gradient keeps im2col + GEMM.

use crate::cpu::gemm::{sgemm, Epilogue, MatRef};
use crate::cpu::pool::{SharedMut, WorkerPool};
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
    let out = SharedMut::new(cols.as_mut_ptr());
    let tasks = pool.threads().min(rows.max(1));
    pool.run(tasks, &|t| {
        for r in rows * t / tasks..rows * (t + 1) / tasks {
            let (img, rem) = (first + r / (g.oh * g.ow), r % (g.oh * g.ow));
            let (oy, ox) = (rem / g.ow, rem % g.ow);
            // SAFETY: row `r` of `cols` is written by this task only.
            let row = unsafe { out.slice(r * patch, patch) };
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
                Epilogue::NONE,
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
                Epilogue::NONE,
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
                Epilogue::NONE,
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
                Epilogue::NONE,
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
                Epilogue::NONE,
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
            sgemm(
                rows,
                patch,
                g.o,
                a,
                b,
                ws.as_mut_ptr(),
                patch,
                false,
                Epilogue::NONE,
                pool,
            );
        }
        let cols = &ws[..rows * patch];
        let out = SharedMut::new(dx.as_mut_ptr());
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
                                let dst =
                                    unsafe { out.slice(((img * g.h + iy) * g.w + ix) * g.c, g.c) };
                                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                            }
                        }
                    }
                }
            }
        });
    }
}

/// The small-patch kernels.
mod direct;
/// Convolution, bias, ReLU and pooling fused.
pub mod pooled;
/// Register tiles of the fused block for 2×2 windows.
mod pooled_tile;

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

    const CASES: [Case; 12] = [
        // The reference CNN's first layer, valid padding.
        (3, [28, 28, 1], [3, 3], 32, 1, 1, [0, 0, 0, 0]),
        // Unpadded with an odd number of 2×2 windows a row and a partly used block of
        // channels; dilated, with two-block and one-block tiles.
        (3, [13, 13, 2], [2, 3], 20, 2, 1, [0, 0, 0, 0]),
        (2, [13, 12, 3], [3, 3], 36, 1, 2, [0, 0, 0, 0]),
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
            // NaN matches NaN and an infinity itself: where they go is part of the result.
            let same_special = (a.is_nan() && b.is_nan()) || a == b;
            assert!(
                same_special || (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
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

    /// `p = max_pool(relu(conv2d(x, w) + b))` and its gradients `(dw, db, dz)` for `dp`, from
    /// the separate kernels.
    fn unfused_pooled_conv(
        g: &pooled::PooledConv,
        (x, w, b, dp): (&[f32], &[f32], &[f32], &[f32]),
        pool: &WorkerPool,
    ) -> [Vec<f32>; 4] {
        use crate::cpu::kernels::pool2d::{max_pool, max_pool_grad, PoolGeometry};
        let c = &g.conv;
        let mut z = vec![0f32; c.n * c.oh * c.ow * c.o];
        let mut ws = vec![0f32; c.workspace_elements()];
        conv2d_im2col(c, x, w, &mut z, &mut ws, pool);
        for row in z.chunks_exact_mut(c.o) {
            row.iter_mut().zip(b).for_each(|(v, &b)| *v += b);
        }
        let r: Vec<f32> = z
            .iter()
            .map(|&v| {
                if g.relu {
                    crate::cpu::kernels::elementwise::relu(v)
                } else {
                    v
                }
            })
            .collect();
        let attrs = crate::ir::Pool2dAttrs {
            window: g.window,
            stride: g.window,
            padding: Padding2d::default(),
        };
        let pg = PoolGeometry::new(&[c.n, c.oh, c.ow, c.o], &[c.n, g.ph, g.pw, c.o], attrs);
        let mut p = vec![0f32; g.pooled_len()];
        max_pool(&pg, &r, &mut p, pool);
        let mut dz = vec![0f32; z.len()];
        max_pool_grad(&pg, &r, dp, &mut dz, pool);
        for (d, &r) in dz.iter_mut().zip(&r) {
            if g.relu && r <= 0.0 {
                *d = 0.0;
            }
        }
        let mut db = vec![0f32; c.o];
        for row in dz.chunks_exact(c.o) {
            db.iter_mut().zip(row).for_each(|(d, &v)| *d += v);
        }
        let mut dw = vec![0f32; c.patch() * c.o];
        conv2d_grad_filter_im2col(c, x, &dz, &mut dw, &mut ws, pool);
        [p, dw, db, dz]
    }

    /// How far from the end of `x` pixel (1, 2), channel 0, of the last image lies.
    fn x_at_end(c: &ConvGeometry) -> usize {
        (c.h * c.w - (c.w + 2)) * c.c
    }

    #[test]
    fn pooled_conv_matches_the_separate_kernels() {
        let (mut checked, mut tiled) = (0, 0);
        for (k, case) in CASES.into_iter().enumerate() {
            let c = geometry(case);
            for (window, relu) in [([2, 2], true), ([3, 2], true), ([2, 1], false)] {
                let Some(g) = pooled::PooledConv::new(c, window, relu) else {
                    continue;
                };
                // Small integers make many windows tie, whose gradient goes to the first
                // cell holding the maximum.
                let ties = k % 2 == 0;
                let q = |v: Vec<f32>| -> Vec<f32> {
                    if ties {
                        v.iter().map(|x| (x * 2.0).round()).collect()
                    } else {
                        v
                    }
                };
                let mut x = q(values(c.n * c.h * c.w * c.c, 7));
                let mut w = q(values(c.patch() * c.o, 8));
                // Every third case has a NaN and an infinity near the images' corners, the
                // unpadded ones a NaN filter tap (a whole output channel of NaN): both paths
                // must send them to the same outputs, and each window's gradient to the same
                // (first NaN) cell. Not where the unfused path multiplies a NaN by a zero
                // the fused one rightly skips: a NaN tap by the padding's zeros, or pixels
                // that only reach conv outputs outside every window by their zero gradient.
                if case.6 == [0; 4] {
                    w[0] = f32::NAN;
                }
                if k % 3 == 1 {
                    x[(c.w + 1) * c.c] = f32::NAN;
                    let at = x.len() - x_at_end(&c);
                    x[at] = f32::INFINITY;
                }
                let b = q(values(c.o, 9));
                let dp = values(g.pooled_len(), 10);
                let mut outputs = Vec::new();
                for threads in [1, 3] {
                    let pool = WorkerPool::new(threads);
                    let want = unfused_pooled_conv(&g, (&x, &w, &b, &dp), &pool);
                    let mut ws = vec![f32::NAN; g.forward_workspace().max(g.backward_workspace())];
                    let mut p = vec![f32::NAN; g.pooled_len()];
                    let mut codes = vec![0u8; g.pooled_len()];
                    pooled::forward(
                        &g,
                        &x,
                        &w,
                        Some(&b),
                        &mut p,
                        Some(&mut codes),
                        &mut ws,
                        &pool,
                    );
                    let mut dw = vec![f32::NAN; w.len()];
                    let mut db = vec![f32::NAN; c.o];
                    let mut dz = vec![f32::NAN; want[3].len()];
                    pooled::backward(
                        &g,
                        &x,
                        &dp,
                        &codes,
                        &mut dw,
                        Some(&mut db),
                        Some(&mut dz),
                        &mut ws,
                        &pool,
                    );
                    // Without `dz` (a first layer) and without codes (inference), 2×2 blocks
                    // take the register tiles.
                    let mut p_only = vec![f32::NAN; p.len()];
                    pooled::forward(&g, &x, &w, Some(&b), &mut p_only, None, &mut ws, &pool);
                    let mut dw_only = vec![f32::NAN; w.len()];
                    let mut db_only = vec![f32::NAN; c.o];
                    pooled::backward(
                        &g,
                        &x,
                        &dp,
                        &codes,
                        &mut dw_only,
                        Some(&mut db_only),
                        None,
                        &mut ws,
                        &pool,
                    );
                    let what =
                        |name: &str| format!("case {k}, window {window:?}, relu {relu}: {name}");
                    for (name, got, want) in [
                        ("p", &p, &want[0]),
                        ("dw", &dw, &want[1]),
                        ("db", &db, &want[2]),
                        ("dz", &dz, &want[3]),
                        ("p without codes", &p_only, &want[0]),
                        ("dw without dz", &dw_only, &want[1]),
                        ("db without dz", &db_only, &want[2]),
                    ] {
                        assert_close(got, want, &what(name));
                    }
                    tiled += usize::from(g.register_tiled());
                    let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    outputs.push([p, dw, db, dz, p_only, dw_only, db_only].map(bits));
                }
                assert_eq!(
                    outputs[0], outputs[1],
                    "case {k}: the pool changed the result"
                );
                checked += 1;
            }
        }
        assert!(checked >= 12, "only {checked} pooled cases");
        assert!(tiled >= 6, "only {tiled} register-tiled runs");
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
