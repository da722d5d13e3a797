//! Dropout layer.

use super::{ForwardCtx, Layer, LayerOutput, ParamSpec};
use crate::initializers::Initializer;
use crate::{Error, Result};
use hasten_tensor::ir::CompareOp;
use hasten_tensor::{Graph, NodeId};
use serde::{Deserialize, Serialize};

/// Seeds and step counters are kept below this (2²⁴), where every integer is exact in `f32`.
const SEED_PERIOD: f32 = 16_777_216.0;

/// Keras's `Dropout`: while training, each element is zeroed with probability `rate` and the
/// others are scaled by `1 / (1 - rate)`; at inference the layer is the identity.
///
/// The mask comes from [`Graph::random_uniform`] with a seed that changes every step: the layer
/// keeps a step counter as non-trainable state (`<layer>/seed`, advanced by one per train step)
/// and mixes it with a salt hashed from the layer's name (unique in its model) and
/// [`Dropout::seed`]. Training is therefore deterministic, two dropout layers of one model draw
/// different masks, and a model restored from a checkpoint (which holds the counter) continues
/// with the masks it would have drawn.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Dropout {
    /// Fraction of the inputs to drop, in `[0, 1)`.
    pub rate: f32,
    /// Extra seed mixed into the layer's masks (Keras's `seed`).
    #[serde(default)]
    pub seed: u32,
    /// Name.
    #[serde(default)]
    pub name: String,
}

impl Dropout {
    /// A dropout layer dropping a `rate` fraction of its inputs while training.
    pub fn new(rate: f32) -> Self {
        Dropout {
            rate,
            seed: 0,
            name: String::new(),
        }
    }

    /// Sets the extra seed mixed into the masks.
    pub fn seed(mut self, seed: u32) -> Self {
        self.seed = seed;
        self
    }

    fn check_rate(&self) -> Result<()> {
        if (0.0..1.0).contains(&self.rate) {
            Ok(())
        } else {
            Err(Error::config(format!(
                "Dropout rate must be in [0, 1), got {}; pass the fraction to drop, e.g. \
                 `Dropout::new(0.5)`",
                self.rate
            )))
        }
    }

    /// A per-layer offset in `[0, 2²⁴)`: FNV-1a of the name and the extra seed.
    fn salt(&self) -> u32 {
        let mut h: u32 = 0x811c_9dc5;
        for b in self.name.bytes().chain(self.seed.to_le_bytes()) {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        h & 0x00ff_ffff
    }
}

/// `(a + b) mod 2²⁴` for integers `a` in `[0, 2²⁴)` and a constant `b` in `[0, 2²⁴)`, exact in
/// `f32`: `a - (2²⁴ - b)` lies in `(-2²⁴, 2²⁴)`, and `2²⁴` is added back when it is negative.
fn add_wrapping(g: &mut Graph, a: NodeId, b: u32) -> Result<NodeId> {
    let offset = g.scalar(b as f32 - SEED_PERIOD);
    let shifted = g.add(a, offset)?;
    let zero = g.scalar(0.0);
    let negative = g.compare(CompareOp::Lt, shifted, zero)?;
    let period = g.scalar(SEED_PERIOD);
    let wrapped = g.add(shifted, period)?;
    Ok(g.select(negative, wrapped, shifted)?)
}

impl Layer for Dropout {
    layer_basics!("Dropout");

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.check_rate()?;
        Ok(input.to_vec())
    }

    fn params(&self, _input: &[usize]) -> Result<Vec<ParamSpec>> {
        self.check_rate()?;
        Ok(vec![ParamSpec {
            name: "seed",
            shape: vec![],
            init: Initializer::Zeros,
            fans: (1, 1),
            trainable: false,
        }])
    }

    fn forward(
        &self,
        g: &mut Graph,
        x: NodeId,
        params: &[NodeId],
        ctx: &mut ForwardCtx<'_>,
    ) -> Result<LayerOutput> {
        self.check_rate()?;
        let &[counter] = params else {
            return Err(Error::config(format!(
                "Dropout expects its one state value (the step counter), got {} parameters; \
                 create its parameters from `Layer::params`",
                params.len()
            )));
        };
        if !ctx.training || self.rate == 0.0 {
            return Ok(x.into());
        }
        // This step's seed, and the counter's next value (wrapping before f32 loses integers).
        let seed = add_wrapping(g, counter, self.salt())?;
        let next = add_wrapping(g, counter, 1)?;
        ctx.updates.push((counter, next));

        let shape = g.shape(x)?.clone();
        let u = g.random_uniform(seed, shape)?;
        let rate = g.scalar(self.rate);
        let keep = g.compare(CompareOp::Ge, u, rate)?;
        let keep_prob = g.scalar(1.0 - self.rate);
        let scaled = g.div(x, keep_prob)?;
        let zero = g.scalar(0.0);
        Ok(g.select(keep, scaled, zero)?.into())
    }
}
