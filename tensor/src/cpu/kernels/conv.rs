//! Convolution over NHWC input with HWIO filters, as im2col + GEMM: the filter viewed as a
//! `[KH·KW·C, O]` matrix multiplies the patch matrix and lands directly in NHWC order. A 1×1,
//! stride-1, unpadded convolution skips im2col entirely.

use crate::cpu::gemm::{sgemm, MatRef};
use crate::cpu::pool::WorkerPool;
use crate::ir::Conv2dAttrs;

/// Patch-matrix bytes are bounded by processing the batch in slices of this many elements.
const MAX_COLS_ELEMENTS: usize = 1 << 22;

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

    /// Workspace elements (`f32`) the kernels need.
    pub fn workspace_elements(&self) -> usize {
        if self.is_pointwise() {
            0
        } else {
            self.images_per_slice() * self.oh * self.ow * self.patch()
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
