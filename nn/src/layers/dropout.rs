//! Dropout layer.

use super::{ForwardCtx, Layer, LayerOutput, ParamSpec};
use crate::{Error, Result};
use hasten_tensor::ir::{BinaryOp, CompareOp};
use hasten_tensor::{Graph, HostTensor, NodeId};
use serde::{Deserialize, Serialize};

/// Keras's `Dropout`: while training, each element is zeroed with probability `rate` and the
/// others are scaled by `1 / (1 - rate)`; at inference the layer is the identity.
///
/// The mask comes from [`Graph::random_uniform`] with a seed that changes every step: the layer
/// keeps a step counter (`<layer>/seed`, an `I32` advanced by one per train step; state, not a
/// parameter) and adds a salt hashed from the layer's name (unique in its model) and
/// [`Dropout::seed`]. Training is therefore deterministic, two dropout layers of one model draw
/// different masks, and a model restored from a checkpoint (which holds the counter) continues
/// with the masks it would have drawn.
///
/// The counter wraps modulo 2³², and every one of the 2³² seeds is a distinct Philox key, so
/// masks first repeat after 4,294,967,296 steps: 7.7 days of the reference MLP's step at
/// batch 32, 0.15 ms here (`bench_train --model mlp`: 0.289 s per epoch of 1,875 steps).
/// Earlier versions kept the counter in an `f32`, which had to wrap at 2²⁴ steps (43 minutes
/// of that MLP); their checkpoints still load.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Dropout {
    /// Fraction of the inputs to drop, in `[0, 1)`.
    pub rate: f32,
    /// Extra seed mixed into the layer's masks (Keras's `seed`).
    #[serde(default)]
    pub seed: u32,
    /// Per-sample input shape, when this is the first layer.
    #[serde(default)]
    pub input_shape: Option<Vec<usize>>,
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
            input_shape: None,
            name: String::new(),
        }
    }

    input_shape_builder!();

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

    /// A per-layer offset: FNV-1a of the name and the extra seed.
    fn salt(&self) -> i32 {
        let mut h: u32 = 0x811c_9dc5;
        for b in self.name.bytes().chain(self.seed.to_le_bytes()) {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        h as i32
    }
}

/// `counter + value` for the `I32` counter, wrapping modulo 2³².
fn add_to_counter(g: &mut Graph, counter: NodeId, value: i32) -> Result<NodeId> {
    let value = g.constant(HostTensor::i32([0usize; 0], vec![value])?);
    Ok(g.binary(BinaryOp::Add, counter, value)?)
}

impl Layer for Dropout {
    layer_basics!("Dropout");

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.check_rate()?;
        Ok(input.to_vec())
    }

    fn params(&self, _input: &[usize]) -> Result<Vec<ParamSpec>> {
        self.check_rate()?;
        Ok(vec![ParamSpec::counter("seed")])
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
        // This step's seed, and the counter's next value.
        let seed = add_to_counter(g, counter, self.salt())?;
        let next = add_to_counter(g, counter, 1)?;
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
