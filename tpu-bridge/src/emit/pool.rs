//! 2-D pooling over NHWC and its gradients, without `select_and_scatter` (which XLA CPU runs
//! about ten times slower than the forms here):
//! - windows that tile the input (stride = window, no padding) view `x` as
//!   `[N, Ho, kh, Wo, kw, C]`, so a window is two axes of one reduce and its first maximal
//!   cell is found with compares and a min-reduce of cell indices;
//! - any other windows visit the `kh·kw` cells: each cell is a strided slice of the padded
//!   input, and its share of the gradient goes back with an interior-padded `pad`.
//!
//! The max gradient goes to each window's first maximal cell in row-major order, a NaN cell
//! counting as maximal (ARCHITECTURE.md's NaN rules); averages count only unpadded cells.

use super::builder::{Builder, Scalar, V};
use super::elementwise::maximal;
use hasten_tensor::ir::Pool2dAttrs;
use hasten_tensor::DType;

/// The 4-d window, strides and padding of `a`.
fn window(a: &Pool2dAttrs) -> ([usize; 4], [usize; 4], [(usize, usize); 4]) {
    let p = a.padding;
    (
        [1, a.window[0], a.window[1], 1],
        [1, a.stride[0], a.stride[1], 1],
        [(0, 0), (p.top, p.bottom), (p.left, p.right), (0, 0)],
    )
}

/// Max-pooling; padded cells are `-inf`.
/// Windows that tile `x` (stride = window, no padding) pool by reshape + reduce, the same
/// ops the gradient starts with, so XLA computes the maximum once for both.
pub(crate) fn max(b: &mut Builder, x: &V, a: &Pool2dAttrs) -> V {
    if tiles(a) {
        let (cells, _) = window_cells(b, x, a);
        return tiled_max(b, &cells);
    }
    let (w, s, p) = window(a);
    let init = b.scalar(Scalar::F32(f32::NEG_INFINITY), x.dtype);
    b.reduce_window(x, &init, "maximum", &w, &s, &p)
}

/// Whether the windows tile the input: stride = window, no padding.
fn tiles(a: &Pool2dAttrs) -> bool {
    a.stride == a.window && a.padding == Default::default()
}

/// `x` (less the rows and columns past the last whole window) viewed as
/// `[N, Ho, kh, Wo, kw, C]`, and those dims.
fn window_cells(b: &mut Builder, x: &V, a: &Pool2dAttrs) -> (V, [usize; 6]) {
    let [n, h, w, c] = [x.dims[0], x.dims[1], x.dims[2], x.dims[3]];
    let [kh, kw] = a.window;
    let (ho, wo) = (h / kh, w / kw);
    let used = b.slice(x, &[0; 4], &[n, ho * kh, wo * kw, c], &[1; 4]);
    let six = [n, ho, kh, wo, kw, c];
    (b.reshape(&used, &six), six)
}

/// The NaN-propagating maximum of each window of [`window_cells`]: `[N, Ho, Wo, C]`.
fn tiled_max(b: &mut Builder, cells: &V) -> V {
    let init = b.scalar(Scalar::F32(f32::NEG_INFINITY), cells.dtype);
    b.reduce(cells, &init, "maximum", &[2, 4])
}

/// Average-pooling over the unpadded cells of each window.
pub(crate) fn avg(b: &mut Builder, x: &V, a: &Pool2dAttrs) -> V {
    let (w, s, p) = window(a);
    let zero = b.zero(x.dtype);
    let sum = b.reduce_window(x, &zero, "add", &w, &s, &p);
    let counts = counts(b, a, &x.dims, &sum.dims);
    b.same("divide", &[&sum, &counts])
}

/// How many unpadded cells each window holds, broadcast to the pooled `out` dims.
fn counts(b: &mut Builder, a: &Pool2dAttrs, input: &[usize], out: &[usize]) -> V {
    let (w, s, p) = window(a);
    let ones = b.splat(Scalar::F32(1.0), DType::F32, &[1, input[1], input[2], 1]);
    let zero = b.zero(DType::F32);
    let n = b.reduce_window(&ones, &zero, "add", &w, &s, &p);
    b.broadcast_to(&n, out)
}

/// Gradient of average-pooling: each window's `dy / count` spread over its cells.
pub(crate) fn avg_grad(b: &mut Builder, dy: &V, a: &Pool2dAttrs, input: &[usize]) -> V {
    let counts = counts(b, a, input, &dy.dims);
    let g = b.same("divide", &[dy, &counts]);
    let grid = Grid::new(a, input, &dy.dims);
    let mut acc: Option<V> = None;
    for (i, j) in grid.cells() {
        let part = grid.scatter(b, &g, i, j);
        acc = Some(add(b, acc, part));
    }
    grid.unpad(b, acc.expect("a window has at least one cell"))
}

/// Gradient of max-pooling: operands `(x, dy)`.
pub(crate) fn max_grad(b: &mut Builder, x: &V, dy: &V, a: &Pool2dAttrs) -> V {
    if tiles(a) {
        max_grad_tiled(b, x, dy, a)
    } else {
        max_grad_cells(b, x, dy, a)
    }
}

fn add(b: &mut Builder, acc: Option<V>, part: V) -> V {
    match acc {
        None => part,
        Some(acc) => b.same("add", &[&acc, &part]),
    }
}

/// Windows that tile `x`: one reshape, reductions over the two window axes.
fn max_grad_tiled(b: &mut Builder, x: &V, dy: &V, a: &Pool2dAttrs) -> V {
    let [n, h, w, c] = [x.dims[0], x.dims[1], x.dims[2], x.dims[3]];
    let [ho, wo] = [dy.dims[1], dy.dims[2]];
    let [kh, kw] = a.window;
    // Rows and columns past the last whole window get no gradient.
    let (cells, six) = window_cells(b, x, a);
    let outer = [0, 1, 3, 5];
    let m = tiled_max(b, &cells);
    let m = b.broadcast_in_dim(&m, &outer, &six);
    // The index of each cell inside its window, row-major.
    let rows = b.iota(&[1, 1, kh, 1, kw, 1], 2, DType::I32);
    let cols = b.iota(&[1, 1, kh, 1, kw, 1], 4, DType::I32);
    let width = b.splat(Scalar::I32(kw as i32), DType::I32, &[1, 1, kh, 1, kw, 1]);
    let index = b.same("multiply", &[&rows, &width]);
    let index = b.same("add", &[&index, &cols]);
    let index = b.broadcast_to(&index, &six);
    let hit = maximal(b, &cells, &m);
    let never = b.splat(Scalar::I32(i32::MAX), DType::I32, &six);
    let candidates = b.select(&hit, &index, &never);
    let first_init = b.scalar(Scalar::I32(i32::MAX), DType::I32);
    let first = b.reduce(&candidates, &first_init, "minimum", &[2, 4]);
    let first = b.broadcast_in_dim(&first, &outer, &six);
    let wins = b.compare("EQ", &index, &first);
    let g = b.broadcast_in_dim(dy, &outer, &six);
    let zeros = b.splat(Scalar::F32(0.0), dy.dtype, &six);
    let dx = b.select(&wins, &g, &zeros);
    let dx = b.reshape(&dx, &[n, ho * kh, wo * kw, c]);
    let zero = b.zero(dy.dtype);
    let high = [0, (h - ho * kh) as i64, (w - wo * kw) as i64, 0];
    b.pad(&dx, &zero, &[0; 4], &high, &[0; 4])
}

/// Any windows: the cells in order, each taking the gradient where it is the first hit.
fn max_grad_cells(b: &mut Builder, x: &V, dy: &V, a: &Pool2dAttrs) -> V {
    let grid = Grid::new(a, &x.dims, &dy.dims);
    let m = max(b, x, a);
    let neg_inf = b.scalar(Scalar::F32(f32::NEG_INFINITY), x.dtype);
    let padded = grid.pad(b, x, &neg_inf);
    let zeros = b.splat(Scalar::F32(0.0), dy.dtype, &dy.dims);
    let mut taken: Option<V> = None;
    let mut acc: Option<V> = None;
    for (i, j) in grid.cells() {
        let cell = grid.cell(b, &padded, i, j);
        let hit = maximal(b, &cell, &m);
        let wins = match &taken {
            None => hit.clone(),
            Some(t) => {
                let free = b.same("not", &[t]);
                b.same("and", &[&hit, &free])
            }
        };
        taken = Some(match taken {
            None => hit,
            Some(t) => b.same("or", &[&t, &hit]),
        });
        let g = b.select(&wins, dy, &zeros);
        let part = grid.scatter(b, &g, i, j);
        acc = Some(add(b, acc, part));
    }
    grid.unpad(b, acc.expect("a window has at least one cell"))
}

/// The geometry of a pooling: input, padded input and output dims.
struct Grid {
    a: Pool2dAttrs,
    input: [usize; 4],
    padded: [usize; 4],
    out: [usize; 4],
}

impl Grid {
    fn new(a: &Pool2dAttrs, input: &[usize], out: &[usize]) -> Self {
        let p = a.padding;
        let input = [input[0], input[1], input[2], input[3]];
        Grid {
            a: *a,
            input,
            padded: [
                input[0],
                input[1] + p.top + p.bottom,
                input[2] + p.left + p.right,
                input[3],
            ],
            out: [out[0], out[1], out[2], out[3]],
        }
    }

    fn cells(&self) -> impl Iterator<Item = (usize, usize)> {
        let [kh, kw] = self.a.window;
        (0..kh).flat_map(move |i| (0..kw).map(move |j| (i, j)))
    }

    /// `x` padded with `value` on the spatial borders.
    fn pad(&self, b: &mut Builder, x: &V, value: &V) -> V {
        let p = self.a.padding;
        let low = [0, p.top as i64, p.left as i64, 0];
        let high = [0, p.bottom as i64, p.right as i64, 0];
        b.pad(x, value, &low, &high, &[0; 4])
    }

    /// Cell `(i, j)` of every window: a strided slice of the padded input.
    fn cell(&self, b: &mut Builder, padded: &V, i: usize, j: usize) -> V {
        let [_, ho, wo, _] = self.out;
        let [sh, sw] = self.a.stride;
        let limit = [
            self.padded[0],
            i + (ho - 1) * sh + 1,
            j + (wo - 1) * sw + 1,
            self.padded[3],
        ];
        b.slice(padded, &[0, i, j, 0], &limit, &[1, sh, sw, 1])
    }

    /// A per-window value `g` put back at cell `(i, j)` of each window, in padded coordinates
    /// (zeros elsewhere): the inverse of [`Grid::cell`].
    fn scatter(&self, b: &mut Builder, g: &V, i: usize, j: usize) -> V {
        let [_, ho, wo, _] = self.out;
        let [sh, sw] = self.a.stride;
        let low = [0, i as i64, j as i64, 0];
        let high = [
            0,
            (self.padded[1] - i - (ho - 1) * sh - 1) as i64,
            (self.padded[2] - j - (wo - 1) * sw - 1) as i64,
            0,
        ];
        let interior = [0, sh as i64 - 1, sw as i64 - 1, 0];
        let zero = b.zero(g.dtype);
        b.pad(g, &zero, &low, &high, &interior)
    }

    /// The unpadded part of a padded-coordinates gradient.
    fn unpad(&self, b: &mut Builder, g: V) -> V {
        let p = self.a.padding;
        let [n, h, w, c] = self.input;
        b.slice(
            &g,
            &[0, p.top, p.left, 0],
            &[n, p.top + h, p.left + w, c],
            &[1; 4],
        )
    }
}
