//! The model's input: where its per-sample shape is declared, and the checks that data given
//! to `fit`, `evaluate` and `predict` has exactly that shape and only finite values.

use super::finite::{copy_and_find_non_finite, first_non_finite, non_finite_error};
use crate::layers::Layer;
use crate::{Error, Result};
use hasten_tensor::{HostData, HostTensor};
use std::borrow::Cow;

/// The per-sample input shape the model takes: declared by `Sequential::input` or on the first
/// layer (exactly one of them), and read by that layer (`Conv2D` reads `(H, W)` as one
/// channel).
pub(crate) fn model_input_shape(
    declared: Option<&[usize]>,
    layers: &[Box<dyn Layer>],
) -> Result<Vec<usize>> {
    let first = layers
        .first()
        .ok_or_else(|| Error::config("the model has no layers"))?;
    if let Some((i, later)) = layers
        .iter()
        .enumerate()
        .skip(1)
        .find(|(_, l)| l.declared_input_shape().is_some())
    {
        return Err(Error::config(format!(
            "layer {i} ({}) declares an input shape, but only the first layer may: the shape \
             of every later layer's input follows from the layers before it",
            later.kind()
        )));
    }
    let shape = match (declared, first.declared_input_shape()) {
        (Some(model), Some(layer)) => {
            return Err(Error::config(format!(
                "the input is declared twice: Sequential::input({model:?}) and \
                 {}.input_shape({layer:?}); keep one",
                first.kind()
            )))
        }
        (Some(shape), None) | (None, Some(shape)) => shape,
        (None, None) => {
            return Err(Error::config(format!(
                "the model's input shape is not declared: use `Sequential::new().input([784])` \
                 or `.input_shape([784])` on the first layer ({})",
                first.kind()
            )))
        }
    };
    Ok(first.full_input_shape(shape))
}

/// Checks that `x` is `[samples, ..input]`, or `[samples, ..input without its last dim]` when
/// that dim is 1 (a single channel may be left out); returns the sample count.
pub(crate) fn check_sample_shape(role: &str, x: &HostTensor, input: &[usize]) -> Result<usize> {
    let dims = x.shape.dims();
    let per_sample = dims.get(1..).unwrap_or(&[]);
    let channel_left_out = input.last() == Some(&1) && per_sample == &input[..input.len() - 1];
    if !dims.is_empty() && (per_sample == input || channel_left_out) {
        return Ok(dims[0]);
    }
    let list = |d: &[usize]| d.iter().map(|d| format!(", {d}")).collect::<String>();
    let mut message = format!(
        "{role} has shape {}, but the model takes samples of shape {input:?}: {role} must be \
         [samples{}]",
        x.shape,
        list(input)
    );
    if input.last() == Some(&1) {
        message += &format!(
            " (or [samples{}], the channel of 1 left out)",
            list(&input[..input.len() - 1])
        );
    }
    let samples = dims.first().copied().unwrap_or(0);
    if samples > 0 && x.shape.numel() == samples * input.iter().product::<usize>() {
        message += &format!(
            "; if its values are in that order, `{role}.reshape([{samples}{}])` gives it",
            list(input)
        );
    }
    Err(Error::BadData(message))
}

/// The values of `x` as `f32`s, borrowed when they already are. With `check_finite`, a NaN or
/// infinity is an error naming its sample and position (integer data is always finite).
pub(crate) fn borrowed_values<'x>(
    role: &str,
    x: &'x HostTensor,
    check_finite: bool,
) -> Result<Cow<'x, [f32]>> {
    let values = as_f32s(x)?;
    if check_finite && matches!(x.data, HostData::F32(_)) {
        if let Some(i) = first_non_finite(&values) {
            return Err(non_finite_error(role, &x.shape, i, values[i]));
        }
    }
    Ok(values)
}

/// [`borrowed_values`] as an owned copy; the finite check runs inside the copy.
pub(crate) fn owned_values(role: &str, x: &HostTensor, check_finite: bool) -> Result<Vec<f32>> {
    match &x.data {
        HostData::F32(v) if check_finite => match copy_and_find_non_finite(v) {
            (_, Some(i)) => Err(non_finite_error(role, &x.shape, i, v[i])),
            (copy, None) => Ok(copy),
        },
        _ => Ok(as_f32s(x)?.into_owned()),
    }
}

/// The values of `x` as `f32`s: borrowed when they are, converted from integers otherwise.
fn as_f32s(x: &HostTensor) -> Result<Cow<'_, [f32]>> {
    Ok(match &x.data {
        HostData::F32(v) => Cow::Borrowed(v),
        HostData::U8(v) => Cow::Owned(v.iter().map(|&p| p as f32).collect()),
        HostData::I32(v) => Cow::Owned(v.iter().map(|&p| p as f32).collect()),
        HostData::Bool(_) => return Err(Error::BadData("x must be numeric, found bool".into())),
    })
}
