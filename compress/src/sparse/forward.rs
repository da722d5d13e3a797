//! A run of sparse Dense layers applied to a batch in one pass.
//!
//! Below [`TILED_FROM`] samples, each sample goes through every layer on its own with the
//! by-feature kernel (zero inputs skipped), no threads. From there on, samples go in tiles of
//! [`TILE`]: a tile is transposed to feature-major once, goes through every layer in that
//! layout (bias and ReLU fused into each product, softmax run down the lanes), and is
//! transposed back into its rows of `y`. Tiles are spread over the CPU backend's worker pool.
//! Intermediate values live in per-thread buffers that grow once and are reused, so a call
//! allocates nothing after the first.

use super::by_unit::{Lanes, TILE};
use super::kernel::SparseMatrix;
use super::tile::{gather, scatter};
use super::{activation, non_finite};
use hasten_nn::activations::Activation;
use hasten_tensor::cpu::pool::{self, SharedMut};
use hasten_tensor::cpu::simd::{self, Level};
use std::cell::RefCell;

/// Batches of at least this many samples run tiled; smaller ones sample by sample. Measured
/// on a 784 → 128 → 10 chain at 10 % density with MNIST-like inputs (a 2-core VM): by
/// samples 1.9 µs a sample at any batch; tiled 3.3 µs a sample at 4, 2.1 at 7, 1.9 at 8.
pub const TILED_FROM: usize = 8;

/// What [`forward`] needs of a layer.
pub trait SparseLayer: Sync {
    /// The kernel.
    fn matrix(&self) -> &SparseMatrix;
    /// The bias, if any.
    fn bias(&self) -> Option<&[f32]>;
    /// The activation.
    fn activation(&self) -> Activation;
}

/// A Dense layer with a sparse kernel.
#[derive(Clone, Debug)]
pub struct SparseDense {
    /// The layer's name.
    pub name: String,
    /// The kernel.
    pub matrix: SparseMatrix,
    /// The bias, if the layer has one.
    pub bias: Option<Vec<f32>>,
    /// The activation.
    pub activation: Activation,
}

impl SparseLayer for SparseDense {
    fn matrix(&self) -> &SparseMatrix {
        &self.matrix
    }

    fn bias(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }

    fn activation(&self) -> Activation {
        self.activation
    }
}

/// Two buffers that consecutive layers write in turn.
#[derive(Default)]
struct PingPong<E> {
    a: Vec<E>,
    b: Vec<E>,
}

/// A thread's buffers for tiles.
#[derive(Default)]
struct TileScratch {
    input: Vec<Lanes>,
    output: Vec<Lanes>,
    between: PingPong<Lanes>,
}

thread_local! {
    static ROWS: RefCell<PingPong<f32>> = RefCell::default();
    static MASKS: RefCell<Vec<u64>> = RefCell::default();
    static TILES: RefCell<TileScratch> = RefCell::default();
}

/// `y = layers(x)` for `x` row-major `[samples, first features]` and `y`
/// `[samples, last units]`.
pub fn forward<L: SparseLayer>(layers: &[L], x: &[f32], y: &mut [f32]) {
    let (Some(first), Some(last)) = (layers.first(), layers.last()) else {
        return;
    };
    let samples = x.len() / first.matrix().features.max(1);
    let y = &mut y[..samples * last.matrix().units];
    if samples < TILED_FROM {
        ROWS.with_borrow_mut(|rows| {
            MASKS.with_borrow_mut(|masks| {
                with_fma(
                    #[inline(always)]
                    |fma| {
                        if fma {
                            by_samples::<true, L>(layers, x, y, rows, masks)
                        } else {
                            by_samples::<false, L>(layers, x, y, rows, masks)
                        }
                    },
                )
            })
        });
    } else {
        tiled(layers, x, y);
    }
}

/// Runs `f(fma)` compiled for the widest vector unit, `fma` saying whether it has FMA.
#[inline(always)]
fn with_fma<R>(f: impl FnOnce(bool) -> R) -> R {
    match simd::level() {
        Level::Baseline => f(false),
        _ => simd::dispatch(
            #[inline(always)]
            || f(true),
        ),
    }
}

/// Sample by sample, each product in the form that costs less for its inputs.
#[inline(always)]
fn by_samples<const FMA: bool, L: SparseLayer>(
    layers: &[L],
    x: &[f32],
    y: &mut [f32],
    rows: &mut PingPong<f32>,
    masks: &mut Vec<u64>,
) {
    let features = layers[0].matrix().features.max(1);
    let units = layers[layers.len() - 1].matrix().units.max(1);
    for (x, y) in x.chunks_exact(features).zip(y.chunks_exact_mut(units)) {
        through(
            layers,
            x,
            y,
            rows,
            #[inline(always)]
            |layer, x, y| {
                layer.matrix().sample::<FMA>(x, layer.bias(), y, masks);
                if !non_finite::finite(x) {
                    non_finite::poison_row(layer.matrix(), x, y);
                }
                activation::rows(layer.activation(), y, y.len());
            },
        );
    }
}

/// Tile by tile, over the worker pool.
fn tiled<L: SparseLayer>(layers: &[L], x: &[f32], y: &mut [f32]) {
    let features = layers[0].matrix().features.max(1);
    let units = layers[layers.len() - 1].matrix().units.max(1);
    let samples = x.len() / features;
    let tiles = samples.div_ceil(TILE);
    let out = SharedMut::new(y.as_mut_ptr());
    let task = |t: usize| {
        let (start, end) = (t * TILE, ((t + 1) * TILE).min(samples));
        // SAFETY: tile `t` writes only its own rows of `y`, which hold `samples · units`
        // values (`forward` cut `y` to that length).
        let y = unsafe { out.slice(start * units, (end - start) * units) };
        let x = &x[start * features..end * features];
        TILES.with_borrow_mut(|scratch| {
            with_fma(
                #[inline(always)]
                |fma| {
                    if fma {
                        one_tile::<true, L>(layers, x, y, scratch)
                    } else {
                        one_tile::<false, L>(layers, x, y, scratch)
                    }
                },
            )
        });
    };
    if tiles == 1 {
        task(0);
    } else {
        pool::global().run(tiles, &task);
    }
}

/// Up to [`TILE`] samples through every layer in feature-major layout.
#[inline(always)]
fn one_tile<const FMA: bool, L: SparseLayer>(
    layers: &[L],
    x: &[f32],
    y: &mut [f32],
    scratch: &mut TileScratch,
) {
    let features = layers[0].matrix().features.max(1);
    let units = layers[layers.len() - 1].matrix().units.max(1);
    grow(&mut scratch.input, features);
    grow(&mut scratch.output, units);
    let (input, output) = (&mut scratch.input[..features], &mut scratch.output[..units]);
    gather(x, features, input);
    through(
        layers,
        input,
        output,
        &mut scratch.between,
        #[inline(always)]
        |layer, x, y| {
            let relu = layer.activation() == Activation::Relu;
            layer
                .matrix()
                .by_unit()
                .tile::<FMA>(x, layer.bias(), relu, y);
            let lanes = non_finite::lanes(x);
            if lanes != [0.0; TILE] {
                non_finite::poison_tile(layer.matrix(), x, &lanes, y);
            }
            activation::tile(layer.activation(), y);
        },
    );
    scatter(output, units, y);
}

/// Runs `step(layer, input, output)` (a closure marked `#[inline(always)]`, so that it is
/// compiled with its caller's vector instructions) for each layer in turn: the first reads `first`, the
/// last writes `last`, the ones between write the buffers of `between` alternately.
#[inline(always)]
fn through<L: SparseLayer, E: Copy + Default>(
    layers: &[L],
    first: &[E],
    last: &mut [E],
    between: &mut PingPong<E>,
    mut step: impl FnMut(&L, &[E], &mut [E]),
) {
    let widest = layers.iter().map(|l| l.matrix().units).max().unwrap_or(0);
    grow(&mut between.a, widest);
    grow(&mut between.b, widest);
    let (mut previous, mut next) = (&mut between.a, &mut between.b);
    let mut width = 0;
    for (k, layer) in layers.iter().enumerate() {
        let input = if k == 0 { first } else { &previous[..width] };
        width = layer.matrix().units;
        if k + 1 == layers.len() {
            step(layer, input, last);
        } else {
            step(layer, input, &mut next[..width]);
            std::mem::swap(&mut previous, &mut next);
        }
    }
}

/// Makes `buffer` hold at least `len` values (growing it once).
#[inline(always)]
fn grow<E: Copy + Default>(buffer: &mut Vec<E>, len: usize) {
    if buffer.len() < len {
        buffer.resize(len, E::default());
    }
}
