//! Max- and average-pooling over NHWC and their gradients. Channels are innermost, so every
//! window step is a contiguous vector operation over `C`.

use super::elementwise::{maximum, ranks_above};
use crate::cpu::pool::{SharedMut, WorkerPool};
use crate::cpu::simd;
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

/// Max-pooling; a window entirely in padding yields `-inf`, one holding a NaN yields NaN.
pub fn max_pool(g: &PoolGeometry, x: &[f32], y: &mut [f32], pool: &WorkerPool) {
    let out = SharedMut::new(y.as_mut_ptr());
    g.per_image(pool, &|img| {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                // SAFETY: output rows of image `img` belong to this task.
                let dst = unsafe { out.slice(g.out_at(img, oy, ox), g.c) };
                dst.fill(f32::NEG_INFINITY);
                for (iy, ix) in g.window(oy, ox) {
                    let src = &x[g.at(img, iy, ix)..][..g.c];
                    dst.iter_mut()
                        .zip(src)
                        .for_each(|(d, &s)| *d = maximum(*d, s));
                }
            }
        }
    });
}

/// Channels handled together when looking for each window's maxima.
const CHANNEL_BLOCK: usize = 64;

/// Gradient of max-pooling: each window's gradient goes to its first maximal input, where NaN
/// is the greatest value (the cell that made the forward's output NaN), as in PyTorch.
///
/// Windows that tile the input exactly (stride = window, no padding, sizes divisible) take a
/// vectorised path that writes every input cell once; otherwise `dx` is cleared and gradients
/// of overlapping windows add up.
pub fn max_pool_grad(g: &PoolGeometry, x: &[f32], dy: &[f32], dx: &mut [f32], pool: &WorkerPool) {
    let a = g.attrs;
    let p = a.padding;
    let tiles = a.stride == a.window
        && p.top + p.bottom + p.left + p.right == 0
        && g.oh * a.window[0] == g.h
        && g.ow * a.window[1] == g.w;
    if tiles {
        max_pool_grad_tiled(g, x, dy, dx, pool);
    } else {
        max_pool_grad_general(g, x, dy, dx, pool);
    }
}

/// [`max_pool_grad`] for any windows: a scan for each window's first maximum per channel.
fn max_pool_grad_general(
    g: &PoolGeometry,
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    pool: &WorkerPool,
) {
    dx.fill(0.0);
    let out = SharedMut::new(dx.as_mut_ptr());
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
                            // `best_at == MAX` also takes a first -inf, as a scan would.
                            if ranks_above(v, best[k]) || best_at[k] == usize::MAX {
                                best[k] = v;
                                best_at[k] = at + k;
                            }
                        }
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

/// Channels the tiled gradient handles together, as values in registers (one AVX-512 vector).
const LANES: usize = 16;

/// [`max_pool_grad`] for windows that tile the input, branch-free over channels: per window
/// and block of channels, the maximum is found first (NaN-propagating, so it is NaN exactly
/// when a cell is), then the cells are walked in order and the first that equals it (or is
/// NaN when it is) takes the gradient, as the scan does.
fn max_pool_grad_tiled(g: &PoolGeometry, x: &[f32], dy: &[f32], dx: &mut [f32], pool: &WorkerPool) {
    let full = g.c / LANES * LANES;
    let out = SharedMut::new(dx.as_mut_ptr());
    g.per_image(pool, &|img| {
        simd::dispatch(
            #[inline(always)]
            || {
                for (oy, ox) in (0..g.oh).flat_map(|oy| (0..g.ow).map(move |ox| (oy, ox))) {
                    let window = Window {
                        g,
                        first: g.at(img, oy * g.attrs.window[0], ox * g.attrs.window[1]),
                        grad: &dy[g.out_at(img, oy, ox)..][..g.c],
                    };
                    for c0 in (0..full).step_by(LANES) {
                        window.route::<LANES>(x, c0, out);
                    }
                    for c0 in full..g.c {
                        window.route::<1>(x, c0, out);
                    }
                }
            },
        )
    });
}

/// One window of a tiling max-pooling.
struct Window<'a> {
    g: &'a PoolGeometry,
    /// Offset of the window's first cell in `x` (and `dx`).
    first: usize,
    /// The window's gradient, per channel.
    grad: &'a [f32],
}

impl Window<'_> {
    /// Writes `dx` of the window's cells for channels `c0..c0 + L`.
    #[inline(always)]
    fn route<const L: usize>(&self, x: &[f32], c0: usize, out: SharedMut) {
        let g = self.g;
        let [wh, ww] = g.attrs.window;
        let at = |r: usize, c: usize| self.first + (r * g.w + c) * g.c + c0;
        let block = |at: usize| -> [f32; L] { x[at..][..L].try_into().unwrap() };
        let mut best = block(at(0, 0));
        for r in 0..wh {
            for c in 0..ww {
                let v = block(at(r, c));
                for l in 0..L {
                    best[l] = maximum(best[l], v[l]);
                }
            }
        }
        // The gradient no cell has taken yet.
        let mut left: [f32; L] = self.grad[c0..][..L].try_into().unwrap();
        for r in 0..wh {
            for c in 0..ww {
                let at = at(r, c);
                let v = block(at);
                // SAFETY: the window's cells belong to the image of the task routing it.
                let dst = unsafe { out.slice(at, L) };
                // Lane by lane rather than through a block copied in: the copy would pass
                // through memory.
                for l in 0..L {
                    let takes = v[l] == best[l] || (v[l].is_nan() && best[l].is_nan());
                    dst[l] = if takes { left[l] } else { 0.0 };
                    left[l] = if takes { 0.0 } else { left[l] };
                }
            }
        }
    }
}

/// Average-pooling over the cells inside the image (padding is not counted).
pub fn avg_pool(g: &PoolGeometry, x: &[f32], y: &mut [f32], pool: &WorkerPool) {
    let out = SharedMut::new(y.as_mut_ptr());
    g.per_image(pool, &|img| {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                // SAFETY: output rows of image `img` belong to this task.
                let dst = unsafe { out.slice(g.out_at(img, oy, ox), g.c) };
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
    let out = SharedMut::new(dx.as_mut_ptr());
    g.per_image(pool, &|img| {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let count = g.window(oy, ox).count();
                let scale = 1.0 / count.max(1) as f32;
                let grad = &dy[g.out_at(img, oy, ox)..][..g.c];
                for (iy, ix) in g.window(oy, ox) {
                    // SAFETY: image `img` of dx belongs to this task.
                    let dst = unsafe { out.slice(g.at(img, iy, ix), g.c) };
                    dst.iter_mut().zip(grad).for_each(|(d, &s)| *d += s * scale);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Padding2d;

    /// Inputs with many ties: small integers, with some NaNs, infinities and signed zeros.
    fn inputs(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(7);
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                match (s >> 24) % 16 {
                    0 => f32::NAN,
                    1 => f32::NEG_INFINITY,
                    2 => f32::INFINITY,
                    3 => -0.0,
                    4 => 0.0,
                    k => (k % 4) as f32 - 1.0,
                }
            })
            .collect()
    }

    fn geometry(
        n: usize,
        [h, w, c]: [usize; 3],
        window: [usize; 2],
        stride: [usize; 2],
    ) -> PoolGeometry {
        let attrs = Pool2dAttrs {
            window,
            stride,
            padding: Padding2d::default(),
        };
        let (oh, ow) = (
            (h - window[0]) / stride[0] + 1,
            (w - window[1]) / stride[1] + 1,
        );
        PoolGeometry::new(&[n, h, w, c], &[n, oh, ow, c], attrs)
    }

    /// Each window's gradient added to its first maximal cell, per channel, by a plain scan.
    fn naive(g: &PoolGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
        let mut dx = vec![0f32; x.len()];
        for img in 0..g.n {
            for (oy, ox) in (0..g.oh).flat_map(|oy| (0..g.ow).map(move |ox| (oy, ox))) {
                for ch in 0..g.c {
                    let mut best: Option<(f32, usize)> = None;
                    for (iy, ix) in g.window(oy, ox) {
                        let at = g.at(img, iy, ix) + ch;
                        if best.is_none_or(|(b, _)| x[at] > b || (x[at].is_nan() && !b.is_nan())) {
                            best = Some((x[at], at));
                        }
                    }
                    let (_, at) = best.unwrap();
                    dx[at] += dy[g.out_at(img, oy, ox) + ch];
                }
            }
        }
        dx
    }

    #[test]
    fn max_pool_grad_matches_a_naive_scan() {
        let cases = [
            (1, [4, 4, 1], [2, 2], [2, 2]),
            (3, [6, 6, 3], [2, 2], [2, 2]),
            (2, [6, 9, 32], [3, 3], [3, 3]),
            (3, [4, 6, 70], [2, 3], [2, 3]),
            (2, [26, 26, 32], [2, 2], [2, 2]),
            // Not tiling: overlapping windows, or windows that do not divide the input.
            (2, [7, 7, 5], [3, 3], [2, 2]),
            (1, [5, 5, 3], [2, 2], [2, 2]),
        ];
        for (k, (n, dims, window, stride)) in cases.into_iter().enumerate() {
            let g = geometry(n, dims, window, stride);
            let x = inputs(g.n * g.h * g.w * g.c, k as u32);
            let dy: Vec<f32> = (0..g.n * g.oh * g.ow * g.c)
                .map(|i| i as f32 + 0.5)
                .collect();
            let want = naive(&g, &x, &dy);
            for threads in [1, 3] {
                let mut dx = vec![f32::NAN; x.len()];
                max_pool_grad(&g, &x, &dy, &mut dx, &WorkerPool::new(threads));
                // `==` also equates the +0 / -0 of cells without gradient.
                let same = dx.iter().zip(&want).all(|(a, b)| a == b);
                assert!(same, "case {k}, {threads} threads: {dx:?} vs {want:?}");
            }
        }
    }
}
