//! RMSprop, in Keras's formulation.

use super::{blend, slot, Hyper, Optimizer, ParamGrad};
use crate::{Error, Result};
use hasten_tensor::Graph;
use serde::{Deserialize, Serialize};

/// Keras's RMSprop: `v = ρ·v + (1-ρ)·g²`, `p -= lr·g / √(v + ε)`.
///
/// With `centered`, the denominator is `√(v - a² + ε)` where `a = ρ·a + (1-ρ)·g` is the average
/// gradient; with `momentum > 0` the increment accumulates as `m = momentum·m + increment` and
/// `p -= m`. As in Keras, `ε` is added under the square root. Slots: `velocity`, and
/// `momentum` / `average_gradient` when those options are on.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "name", rename = "rmsprop", default)]
pub struct RmsProp {
    /// Learning rate.
    pub learning_rate: f32,
    /// Decay of the mean square of the gradient.
    pub rho: f32,
    /// Momentum (0 for none).
    pub momentum: f32,
    /// Added to the mean square before its square root.
    pub epsilon: f32,
    /// Normalise by the estimated variance of the gradient instead of its second moment.
    pub centered: bool,
}

impl Default for RmsProp {
    fn default() -> Self {
        RmsProp {
            learning_rate: 1e-3,
            rho: 0.9,
            momentum: 0.0,
            epsilon: 1e-7,
            centered: false,
        }
    }
}

impl RmsProp {
    /// RMSprop with a learning rate and Keras's other defaults.
    pub fn new(learning_rate: f32) -> Self {
        RmsProp {
            learning_rate,
            ..Default::default()
        }
    }

    /// Sets the decay of the mean square.
    pub fn rho(mut self, rho: f32) -> Self {
        self.rho = rho;
        self
    }

    /// Sets the momentum.
    pub fn momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }

    /// Sets epsilon.
    pub fn epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// Turns the centered variant on or off.
    pub fn centered(mut self, on: bool) -> Self {
        self.centered = on;
        self
    }

    fn check(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.rho) {
            return Err(Error::config(format!(
                "RMSprop rho must be in [0, 1], got {}; Keras's default is 0.9",
                self.rho
            )));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(Error::config(format!(
                "RMSprop momentum must be in [0, 1), got {}; use 0 for none",
                self.momentum
            )));
        }
        if self.epsilon.is_nan() || self.epsilon < 0.0 {
            return Err(Error::config(format!(
                "RMSprop epsilon must be non-negative, got {}; Keras's default is 1e-7",
                self.epsilon
            )));
        }
        Ok(())
    }
}

impl Optimizer for RmsProp {
    fn name(&self) -> &'static str {
        "rmsprop"
    }

    fn learning_rate(&self) -> f32 {
        self.learning_rate
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn apply(&self, g: &mut Graph, params: &[ParamGrad], hyper: Hyper) -> Result<()> {
        self.check()?;
        let eps = g.scalar(self.epsilon);
        for p in params {
            let v = slot(g, p, "velocity")?;
            let g2 = g.mul(p.grad, p.grad)?;
            let v_new = blend(g, self.rho, v, 1.0 - self.rho, g2)?;
            g.update(v, v_new)?;
            let mean_square = if self.centered {
                let a = slot(g, p, "average_gradient")?;
                let a_new = blend(g, self.rho, a, 1.0 - self.rho, p.grad)?;
                g.update(a, a_new)?;
                let a2 = g.mul(a_new, a_new)?;
                g.sub(v_new, a2)?
            } else {
                v_new
            };
            let denom = g.add(mean_square, eps)?;
            let root = g.sqrt(denom)?;
            let lr_g = g.mul(p.grad, hyper.learning_rate)?;
            let increment = g.div(lr_g, root)?;
            let step = if self.momentum > 0.0 {
                let m = slot(g, p, "momentum")?;
                let mm = g.scale(m, self.momentum)?;
                let m_new = g.add(mm, increment)?;
                g.update(m, m_new)?;
                m_new
            } else {
                increment
            };
            let new = g.sub(p.param, step)?;
            g.update(p.param, new)?;
        }
        Ok(())
    }
}
