//! Max- and average-pooling over NHWC and their gradients. Channels are innermost, so every
//! window step is a contiguous vector operation over `C`.

use crate::cpu::pool::WorkerPool;
use crate::ir::Pool2dAttrs;

/// The geometry of one pooling.
#[derive(Clone, Copy, Debug)]
pub struct PoolGeometry {
    n: usize,
    h: usize,
    w: usize,
    c: usize,
    oh: usize,
    ow: usize,
    attrs: Pool2dAttrs,
}

impl PoolGeometry {
    /// From the NHWC input and output dims.
    pub fn new(x: &[usize], y: &[usize], attrs: Pool2dAttrs) -> Self {
        PoolGeometry {
            n: x[0],
            h: x[1],
            w: x[2],
            c: x[3],
            oh: y[1],
            ow: y[2],
            attrs,
        }
    }

    /// The input cells of output `(oy, ox)`'s window that lie inside the image: the window
    /// clipped to the image, as a rectangle (no per-cell bounds checks).
    fn window(&self, oy: usize, ox: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let a = self.attrs;
        let clip = |o: usize, stride: usize, pad: usize, size: usize, len: usize| {
            let start = o * stride;
            (
                start.saturating_sub(pad).min(len),
                (start + size).saturating_sub(pad).min(len),
            )
        };
        let (y0, y1) = clip(oy, a.stride[0], a.padding.top, a.window[0], self.h);
        let (x0, x1) = clip(ox, a.stride[1], a.padding.left, a.window[1], self.w);
        (y0..y1).flat_map(move |iy| (x0..x1).map(move |ix| (iy, ix)))
    }

    fn at(&self, img: usize, iy: usize, ix: usize) -> usize {
        ((img * self.h + iy) * self.w + ix) * self.c
    }

    fn out_at(&self, img: usize, oy: usize, ox: usize) -> usize {
        ((img * self.oh + oy) * self.ow + ox) * self.c
    }

    /// Runs `f(image)` for every image, spread over the pool.
    fn per_image(&self, pool: &WorkerPool, f: &(dyn Fn(usize) + Sync)) {
        let tasks = pool.threads().min(self.n.max(1));
        let n = self.n;
        pool.run(tasks, &|t| (n * t / tasks..n * (t + 1) / tasks).for_each(f));
    }
}

#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: each task writes only the images it was given.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    fn at(self, i: usize) -> *mut f32 {
        // SAFETY: callers pass offsets inside the buffer.
        unsafe { self.0.add(i) }
    }

    /// # Safety
    /// The range must be inside the buffer and written by one task only.
    unsafe fn row(self, at: usize, len: usize) -> &'static mut [f32] {
        std::slice::from_raw_parts_mut(self.at(at), len)
    }
}

/// Max-pooling; a window entirely in padding yields `-inf`.
pub fn max_pool(g: &PoolGeometry, x: &[f32], y: &mut [f32], pool: &WorkerPool) {
    let out = Out(y.as_mut_ptr());
    g.per_image(pool, &|img| {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                // SAFETY: output rows of image `img` belong to this task.
                let dst = unsafe { out.row(g.out_at(img, oy, ox), g.c) };
                dst.fill(f32::NEG_INFINITY);
                for (iy, ix) in g.window(oy, ox) {
                    let src = &x[g.at(img, iy, ix)..][..g.c];
                    dst.iter_mut().zip(src).for_each(|(d, &s)| *d = d.max(s));
                }
            }
        }
    });
}

/// Channels handled together when looking for each window's maxima.
const CHANNEL_BLOCK: usize = 64;

/// Gradient of max-pooling: each window's gradient goes to its first maximal input.
///
/// Windows that tile the input exactly (stride = window, no padding, sizes divisible) write
/// every input cell once, so `dx` needs no clearing; otherwise `dx` is cleared and gradients
/// of overlapping windows add up.
pub fn max_pool_grad(g: &PoolGeometry, x: &[f32], dy: &[f32], dx: &mut [f32], pool: &WorkerPool) {
    let a = g.attrs;
    let p = a.padding;
    let tiles = a.stride == a.window
        && p.top + p.bottom + p.left + p.right == 0
        && g.oh * a.window[0] == g.h
        && g.ow * a.window[1] == g.w;
    if !tiles {
        dx.fill(0.0);
    }
    let out = Out(dx.as_mut_ptr());
    g.per_image(pool, &|img| {
        let mut best_at = [0usize; CHANNEL_BLOCK];
        let mut best = [0f32; CHANNEL_BLOCK];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let grad = &dy[g.out_at(img, oy, ox)..][..g.c];
                for c0 in (0..g.c).step_by(CHANNEL_BLOCK) {
                    let cn = CHANNEL_BLOCK.min(g.c - c0);
                    let (best_at, best) = (&mut best_at[..cn], &mut best[..cn]);
                    best.fill(f32::NEG_INFINITY);
                    best_at.fill(usize::MAX);
                    for (iy, ix) in g.window(oy, ox) {
                        let at = g.at(img, iy, ix) + c0;
                        let row = &x[at..at + cn];
                        for (k, &v) in row.iter().enumerate() {
                            // `best_at == MAX` also takes a first NaN or -inf, as a scan would.
                            if v > best[k] || best_at[k] == usize::MAX {
                                best[k] = v;
                                best_at[k] = at + k;
                            }
                        }
                    }
                    for (iy, ix) in g.window(oy, ox).filter(|_| tiles) {
                        // SAFETY: the cells of this window belong to image `img`, this task's.
                        unsafe { out.row(g.at(img, iy, ix) + c0, cn) }.fill(0.0);
                    }
                    for (k, &at) in best_at.iter().enumerate() {
                        if at != usize::MAX {
                            // SAFETY: `at` is inside image `img`, which this task owns.
                            unsafe { *out.at(at) += grad[c0 + k] };
                        }
                    }
                }
            }
        }
    });
}

/// Average-pooling over the cells inside the image (padding is not counted).
pub fn avg_pool(g: &PoolGeometry, x: &[f32], y: &mut [f32], pool: &WorkerPool) {
    let out = Out(y.as_mut_ptr());
    g.per_image(pool, &|img| {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                // SAFETY: output rows of image `img` belong to this task.
                let dst = unsafe { out.row(g.out_at(img, oy, ox), g.c) };
                dst.fill(0.0);
                let mut count = 0usize;
                for (iy, ix) in g.window(oy, ox) {
                    count += 1;
                    let src = &x[g.at(img, iy, ix)..][..g.c];
                    dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
                }
                let scale = 1.0 / count.max(1) as f32;
                dst.iter_mut().for_each(|d| *d *= scale);
            }
        }
    });
}

/// Gradient of average-pooling.
pub fn avg_pool_grad(g: &PoolGeometry, dy: &[f32], dx: &mut [f32], pool: &WorkerPool) {
    dx.fill(0.0);
    let out = Out(dx.as_mut_ptr());
    g.per_image(pool, &|img| {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let count = g.window(oy, ox).count();
                let scale = 1.0 / count.max(1) as f32;
                let grad = &dy[g.out_at(img, oy, ox)..][..g.c];
                for (iy, ix) in g.window(oy, ox) {
                    // SAFETY: image `img` of dx belongs to this task.
                    let dst = unsafe { out.row(g.at(img, iy, ix), g.c) };
                    dst.iter_mut().zip(grad).for_each(|(d, &s)| *d += s * scale);
                }
            }
        }
    });
}
