//! 2-D convolution (NHWC input, HWIO filter) and its two gradients, each one
//! `stablehlo.convolution` (a forward with small patches is a `dot_general` of its
//! shifted views instead): the input gradient convolves `dy`, dilated by the stride, with
//! the spatially reversed filter read as `[H, W, O, I]`; the filter gradient convolves `x`
//! read with batch and channels swapped by `dy`, dilated by the stride.

use super::builder::{dims_array, signed_padding_attr, Builder, V};
use super::linalg::HIGHEST;
use hasten_tensor::ir::Conv2dAttrs;

/// The attributes of one `stablehlo.convolution`.
struct Conv<'a> {
    numbers: &'a str,
    strides: [usize; 2],
    padding: [(i64, i64); 2],
    lhs_dilation: [usize; 2],
    rhs_dilation: [usize; 2],
}

impl Conv<'_> {
    fn emit(&self, b: &mut Builder, lhs: &V, rhs: &V, dims: &[usize]) -> V {
        let attr = format!(
            "dimension_numbers = #stablehlo.conv<{}>, window_strides = {}, padding = {}, lhs_dilation = {}, rhs_dilation = {}, feature_group_count = 1 : i64, batch_group_count = 1 : i64, {HIGHEST}",
            self.numbers,
            dims_array(&self.strides),
            signed_padding_attr(&self.padding),
            dims_array(&self.lhs_dilation),
            dims_array(&self.rhs_dilation),
        );
        b.op("convolution", &[lhs, rhs], &attr, dims, lhs.dtype)
    }
}

fn forward_padding(a: &Conv2dAttrs) -> [(i64, i64); 2] {
    let p = a.padding;
    [
        (p.top as i64, p.bottom as i64),
        (p.left as i64, p.right as i64),
    ]
}

/// Patches of at most this many values (`kh·kw·C`) are convolved as one product (the CPU
/// backend's rule for its direct convolution, too).
const SMALL_PATCH: usize = 64;

/// `y = conv(x, w)`: small patches as a product of shifted views (measured on the XLA CPU
/// plugin: the reference CNN's 3×3×1 convolution made the whole step ~33 % slower as a
/// `stablehlo.convolution`), others as a convolution.
pub(crate) fn forward(b: &mut Builder, x: &V, w: &V, a: &Conv2dAttrs, dims: &[usize]) -> V {
    if w.dims[0] * w.dims[1] * w.dims[2] <= SMALL_PATCH {
        return patches_product(b, x, w, a, dims);
    }
    Conv {
        numbers: "[b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f]",
        strides: a.stride,
        padding: forward_padding(a),
        lhs_dilation: [1, 1],
        rhs_dilation: a.dilation,
    }
    .emit(b, x, w, dims)
}

/// `dx` of shape `dims` (the forward input's) from `dy` and the filter `w`.
pub(crate) fn grad_input(b: &mut Builder, dy: &V, w: &V, a: &Conv2dAttrs, dims: &[usize]) -> V {
    let fwd = forward_padding(a);
    let pad = |k: usize| {
        let extent = ((w.dims[k] - 1) * a.dilation[k] + 1) as i64;
        let (input, out, s) = (
            dims[k + 1] as i64,
            dy.dims[k + 1] as i64,
            a.stride[k] as i64,
        );
        let low = extent - 1 - fwd[k].0;
        (low, input - 1 - (out - 1) * s + fwd[k].0)
    };
    let reversed = b.op(
        "reverse",
        &[w],
        "dimensions = array<i64: 0, 1>",
        &w.dims.clone(),
        w.dtype,
    );
    Conv {
        numbers: "[b, 0, 1, f]x[0, 1, o, i]->[b, 0, 1, f]",
        strides: [1, 1],
        padding: [pad(0), pad(1)],
        lhs_dilation: a.stride,
        rhs_dilation: a.dilation,
    }
    .emit(b, dy, &reversed, dims)
}

/// `dw` of shape `dims` (HWIO) from the forward input `x` and `dy`. The high padding is
/// exact, so rows a strided forward never read are cut off (negative padding).
pub(crate) fn grad_filter(b: &mut Builder, x: &V, dy: &V, a: &Conv2dAttrs, dims: &[usize]) -> V {
    let fwd = forward_padding(a);
    let pad = |k: usize| {
        let (input, out, s, d) = (
            x.dims[k + 1] as i64,
            dy.dims[k + 1] as i64,
            a.stride[k] as i64,
            a.dilation[k] as i64,
        );
        let taps = dims[k] as i64;
        (
            fwd[k].0,
            (taps - 1) * d + (out - 1) * s + 1 - input - fwd[k].0,
        )
    };
    Conv {
        numbers: "[f, 0, 1, b]x[i, 0, 1, o]->[0, 1, b, f]",
        strides: a.dilation,
        padding: [pad(0), pad(1)],
        lhs_dilation: [1, 1],
        rhs_dilation: a.stride,
    }
    .emit(b, x, dy, dims)
}

/// `conv(x, w)` as one product of the `kh·kw` shifted views of `x`, concatenated along
/// channels (`[N, Ho, Wo, kh·kw·C]`), with the filter read as `[kh·kw·C, O]`.
fn patches_product(b: &mut Builder, x: &V, w: &V, a: &Conv2dAttrs, dims: &[usize]) -> V {
    let p = a.padding;
    let zero = b.zero(x.dtype);
    let low = [0, p.top as i64, p.left as i64, 0];
    let high = [0, p.bottom as i64, p.right as i64, 0];
    let padded = b.pad(x, &zero, &low, &high, &[0; 4]);
    let [kh, kw, c, o] = [w.dims[0], w.dims[1], w.dims[2], w.dims[3]];
    let [n, ho, wo] = [dims[0], dims[1], dims[2]];
    let mut views = Vec::with_capacity(kh * kw);
    for i in 0..kh {
        for j in 0..kw {
            let (r, q) = (i * a.dilation[0], j * a.dilation[1]);
            let limit = [
                n,
                r + (ho - 1) * a.stride[0] + 1,
                q + (wo - 1) * a.stride[1] + 1,
                c,
            ];
            views.push(b.slice(
                &padded,
                &[0, r, q, 0],
                &limit,
                &[1, a.stride[0], a.stride[1], 1],
            ));
        }
    }
    let refs: Vec<&V> = views.iter().collect();
    let patches = super::layout::concat(b, &refs, 3, &[n, ho, wo, kh * kw * c]);
    let filter = b.reshape(w, &[kh * kw * c, o]);
    let attr = format!(
        "dot_dimension_numbers = #stablehlo.dot<lhs_batching_dimensions = [], rhs_batching_dimensions = [], lhs_contracting_dimensions = [3], rhs_contracting_dimensions = [0]>, {HIGHEST}"
    );
    b.op("dot_general", &[&patches, &filter], &attr, dims, x.dtype)
}
