//! Batch normalisation layer.

use super::{ForwardCtx, Layer, LayerOutput, ParamSpec, StateKind};
use crate::initializers::Initializer;
use crate::optimizers::blend;
use crate::{Error, Result};
use hasten_tensor::ir::UnaryOp;
use hasten_tensor::{Graph, NodeId};
use serde::{Deserialize, Serialize};

/// Keras's `BatchNormalization` over the last axis (channels-last features):
/// `y = gamma · (x - mean) / sqrt(variance + epsilon) + beta`.
///
/// While training, `mean` and `variance` are the batch's (the biased variance, over every axis
/// but the last), and the moving statistics are updated after each step:
/// `moving = momentum · moving + (1 - momentum) · batch_statistic`. At inference the moving
/// statistics are used. Weights, in Keras's order: `gamma` (if `scale`), `beta` (if `center`),
/// then the non-trainable `moving_mean` and `moving_variance`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BatchNormalization {
    /// Weight of the old value in the moving statistics' update, in `[0, 1]`.
    #[serde(default = "default_momentum")]
    pub momentum: f32,
    /// Added to the variance before its square root; must be positive.
    #[serde(default = "default_epsilon")]
    pub epsilon: f32,
    /// Whether to add the learned offset `beta`.
    #[serde(default = "yes")]
    pub center: bool,
    /// Whether to multiply by the learned scale `gamma`.
    #[serde(default = "yes")]
    pub scale: bool,
    /// Initialiser of `beta` (zeros by default).
    #[serde(default = "zeros")]
    pub beta_initializer: Initializer,
    /// Initialiser of `gamma` (ones by default).
    #[serde(default = "ones")]
    pub gamma_initializer: Initializer,
    /// Initialiser of `moving_mean` (zeros by default).
    #[serde(default = "zeros")]
    pub moving_mean_initializer: Initializer,
    /// Initialiser of `moving_variance` (ones by default).
    #[serde(default = "ones")]
    pub moving_variance_initializer: Initializer,
    /// Per-sample input shape, on a first layer.
    #[serde(default)]
    pub input_shape: Option<Vec<usize>>,
    /// Name.
    #[serde(default)]
    pub name: String,
}

fn default_momentum() -> f32 {
    0.99
}
fn default_epsilon() -> f32 {
    1e-3
}
fn yes() -> bool {
    true
}
fn zeros() -> Initializer {
    Initializer::Zeros
}
fn ones() -> Initializer {
    Initializer::Ones
}

impl Default for BatchNormalization {
    fn default() -> Self {
        BatchNormalization {
            momentum: default_momentum(),
            epsilon: default_epsilon(),
            center: true,
            scale: true,
            beta_initializer: Initializer::Zeros,
            gamma_initializer: Initializer::Ones,
            moving_mean_initializer: Initializer::Zeros,
            moving_variance_initializer: Initializer::Ones,
            input_shape: None,
            name: String::new(),
        }
    }
}

impl BatchNormalization {
    /// Batch normalisation with Keras's defaults (momentum 0.99, epsilon 1e-3, center, scale).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the momentum of the moving statistics.
    pub fn momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }

    /// Sets epsilon.
    pub fn epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// Turns the offset `beta` on or off.
    pub fn center(mut self, on: bool) -> Self {
        self.center = on;
        self
    }

    /// Turns the scale `gamma` on or off.
    pub fn scale(mut self, on: bool) -> Self {
        self.scale = on;
        self
    }

    input_shape_builder!();

    /// The number of features (the last dim), after checking the settings.
    fn features(&self, input: &[usize]) -> Result<usize> {
        if !(0.0..=1.0).contains(&self.momentum) {
            return Err(Error::config(format!(
                "BatchNormalization momentum must be in [0, 1], got {}; Keras's default is 0.99",
                self.momentum
            )));
        }
        if !(self.epsilon > 0.0 && self.epsilon.is_finite()) {
            return Err(Error::config(format!(
                "BatchNormalization epsilon must be positive, got {}; Keras's default is 1e-3",
                self.epsilon
            )));
        }
        match input.last() {
            Some(&c) if c > 0 => Ok(c),
            _ => Err(Error::config(format!(
                "BatchNormalization normalises the last axis and needs a per-sample input with \
                 at least one non-empty dim, got {input:?}; add a Flatten or Reshape before it"
            ))),
        }
    }
}

impl Layer for BatchNormalization {
    layer_basics!("BatchNormalization");

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.features(input)?;
        Ok(input.to_vec())
    }

    fn params(&self, input: &[usize]) -> Result<Vec<ParamSpec>> {
        let c = self.features(input)?;
        let spec = |name, init, trainable| ParamSpec {
            name,
            shape: vec![c],
            init,
            fans: (c, c),
            trainable,
            kind: StateKind::Parameter,
        };
        let mut specs = Vec::with_capacity(4);
        if self.scale {
            specs.push(spec("gamma", self.gamma_initializer, true));
        }
        if self.center {
            specs.push(spec("beta", self.beta_initializer, true));
        }
        specs.push(spec("moving_mean", self.moving_mean_initializer, false));
        specs.push(spec(
            "moving_variance",
            self.moving_variance_initializer,
            false,
        ));
        Ok(specs)
    }

    fn forward(
        &self,
        g: &mut Graph,
        x: NodeId,
        params: &[NodeId],
        ctx: &mut ForwardCtx<'_>,
    ) -> Result<LayerOutput> {
        let dims = g.shape(x)?.0.clone();
        self.features(dims.get(1..).unwrap_or(&[]))?;
        let expected = 2 + usize::from(self.scale) + usize::from(self.center);
        if params.len() != expected {
            return Err(Error::config(format!(
                "BatchNormalization expects {expected} weights, got {}; create its parameters \
                 from `Layer::params`",
                params.len()
            )));
        }
        let mut rest = params.iter().copied();
        let mut next = || rest.next().ok_or_else(|| Error::config("missing weight"));
        let gamma = if self.scale { Some(next()?) } else { None };
        let beta = if self.center { Some(next()?) } else { None };
        let (moving_mean, moving_variance) = (next()?, next()?);

        let axes: Vec<usize> = (0..dims.len() - 1).collect();
        let (centered, variance) = if ctx.training {
            let mean = g.mean(x, &axes, false)?;
            let centered = g.sub(x, mean)?;
            let squares = g.unary(UnaryOp::Square, centered)?;
            let variance = g.mean(squares, &axes, false)?;
            let m = self.momentum;
            let new_mean = blend(g, m, moving_mean, 1.0 - m, mean)?;
            let new_variance = blend(g, m, moving_variance, 1.0 - m, variance)?;
            ctx.updates.push((moving_mean, new_mean));
            ctx.updates.push((moving_variance, new_variance));
            (centered, variance)
        } else {
            (g.sub(x, moving_mean)?, moving_variance)
        };
        let eps = g.scalar(self.epsilon);
        let var_eps = g.add(variance, eps)?;
        let mut inv = g.unary(UnaryOp::Rsqrt, var_eps)?;
        if let Some(gamma) = gamma {
            inv = g.mul(inv, gamma)?;
        }
        let mut y = g.mul(centered, inv)?;
        if let Some(beta) = beta {
            y = g.add(y, beta)?;
        }
        Ok(y.into())
    }
}
