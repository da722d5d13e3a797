//! 2-D convolution (NHWC input, HWIO filter) and its two gradients, each one
//! `stablehlo.convolution`: the input gradient convolves `dy`, dilated by the stride, with
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

/// `y = conv(x, w)`.
pub(crate) fn forward(b: &mut Builder, x: &V, w: &V, a: &Conv2dAttrs, dims: &[usize]) -> V {
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
