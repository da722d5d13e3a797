//! Stochastic gradient descent with optional (Nesterov) momentum.

use super::{slot, Hyper, Optimizer, ParamGrad};
use crate::Result;
use hasten_tensor::Graph;
use serde::{Deserialize, Serialize};

/// Keras's SGD: `v = momentum·v - lr·g`; `p += v`, or `p += momentum·v - lr·g` with Nesterov.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "name", rename = "sgd")]
pub struct Sgd {
    /// Learning rate.
    pub learning_rate: f32,
    /// Momentum (0 for plain SGD).
    pub momentum: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd {
            learning_rate: 0.01,
            momentum: 0.0,
            nesterov: false,
        }
    }
}

impl Sgd {
    /// Plain SGD.
    pub fn new(learning_rate: f32) -> Self {
        Sgd {
            learning_rate,
            ..Default::default()
        }
    }

    /// With momentum.
    pub fn momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }

    /// With Nesterov momentum.
    pub fn nesterov(mut self, on: bool) -> Self {
        self.nesterov = on;
        self
    }
}

impl Optimizer for Sgd {
    fn name(&self) -> &'static str {
        "sgd"
    }

    fn learning_rate(&self) -> f32 {
        self.learning_rate
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn apply(&self, g: &mut Graph, params: &[ParamGrad], hyper: Hyper) -> Result<()> {
        for p in params {
            let lr_g = g.mul(p.grad, hyper.learning_rate)?;
            if self.momentum == 0.0 {
                let new = g.sub(p.param, lr_g)?;
                g.update(p.param, new)?;
                continue;
            }
            let v = slot(g, p, "momentum")?;
            let mv = g.scale(v, self.momentum)?;
            let v_new = g.sub(mv, lr_g)?;
            let step = if self.nesterov {
                let m2 = g.scale(v_new, self.momentum)?;
                g.sub(m2, lr_g)?
            } else {
                v_new
            };
            let new = g.add(p.param, step)?;
            g.update(v, v_new)?;
            g.update(p.param, new)?;
        }
        Ok(())
    }
}
