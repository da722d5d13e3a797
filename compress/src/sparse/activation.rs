//! Dense layers' activations on the sparse path, for rows of one sample and for
//! feature-major tiles (where a softmax runs down each lane). `exp` is the CPU backend's,
//! so that the values match the dense path's; ReLU keeps NaN, as everywhere in hasten.

use super::by_unit::{Lanes, TILE};
use hasten_nn::activations::Activation;
use hasten_tensor::cpu::kernels::{elementwise::relu, exp::exp};

/// Applies `activation` to each row of `width` values of `y` in place.
#[inline(always)]
pub fn rows(activation: Activation, y: &mut [f32], width: usize) {
    match activation {
        Activation::Linear => {}
        Activation::Relu => y.iter_mut().for_each(|v| *v = relu(*v)),
        Activation::Sigmoid => y.iter_mut().for_each(|v| *v = sigmoid(*v)),
        Activation::Tanh => y.iter_mut().for_each(|v| *v = v.tanh()),
        Activation::Softmax => y.chunks_mut(width.max(1)).for_each(softmax_row),
    }
}

/// Applies `activation` to a tile of units (`[units][TILE]`) in place, except ReLU, which
/// the product already applied.
#[inline(always)]
pub fn tile(activation: Activation, y: &mut [Lanes]) {
    let each = |f: fn(f32) -> f32, y: &mut [Lanes]| {
        y.iter_mut().flatten().for_each(|v| *v = f(*v));
    };
    match activation {
        Activation::Linear | Activation::Relu => {}
        Activation::Sigmoid => each(sigmoid, y),
        Activation::Tanh => each(f32::tanh, y),
        Activation::Softmax => softmax_lanes(y),
    }
}

#[inline(always)]
fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + exp(-v))
}

#[inline(always)]
fn softmax_row(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = exp(*v - max);
        sum += *v;
    }
    row.iter_mut().for_each(|v| *v /= sum);
}

/// Softmax over the units of each sample (lane) of a tile.
#[inline(always)]
fn softmax_lanes(y: &mut [Lanes]) {
    let mut max = [f32::NEG_INFINITY; TILE];
    for row in y.iter() {
        for (m, &v) in max.iter_mut().zip(row) {
            *m = m.max(v);
        }
    }
    let mut sum = [0.0f32; TILE];
    for row in y.iter_mut() {
        for ((v, s), m) in row.iter_mut().zip(&mut sum).zip(&max) {
            *v = exp(*v - m);
            *s += *v;
        }
    }
    for row in y.iter_mut() {
        for (v, s) in row.iter_mut().zip(&sum) {
            *v /= s;
        }
    }
}
