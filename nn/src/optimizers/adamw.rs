//! AdamW: Adam with decoupled weight decay, in Keras's formulation.

use super::adam::Adam;
use super::{Hyper, Optimizer, ParamGrad};
use crate::{Error, Result};
use hasten_tensor::Graph;
use serde::{Deserialize, Serialize};

/// Keras's AdamW: first the decoupled weight decay `p -= lr·wd·p`, then Keras's Adam step
/// `m = β₁m + (1-β₁)g`, `v = β₂v + (1-β₂)g²`, `p -= lr·√(1-β₂ᵗ)/(1-β₁ᵗ) · m / (√v + ε)`.
///
/// Every trainable weight is decayed (Keras's default: biases and normalisation scales too).
/// Slots: `m` and `v`, as Adam's.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "name", rename = "adamw", default)]
pub struct AdamW {
    /// Learning rate.
    pub learning_rate: f32,
    /// Weight decay per unit of learning rate.
    pub weight_decay: f32,
    /// First-moment decay.
    pub beta_1: f32,
    /// Second-moment decay.
    pub beta_2: f32,
    /// Added to the root of the second moment.
    pub epsilon: f32,
}

impl Default for AdamW {
    fn default() -> Self {
        AdamW {
            learning_rate: 1e-3,
            weight_decay: 0.004,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        }
    }
}

impl AdamW {
    /// AdamW with a learning rate and Keras's other defaults (weight decay 0.004).
    pub fn new(learning_rate: f32) -> Self {
        AdamW {
            learning_rate,
            ..Default::default()
        }
    }

    /// Sets the weight decay.
    pub fn weight_decay(mut self, weight_decay: f32) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    fn check(&self) -> Result<()> {
        let beta_ok = |b: f32| (0.0..1.0).contains(&b);
        if !beta_ok(self.beta_1) || !beta_ok(self.beta_2) {
            return Err(Error::config(format!(
                "AdamW betas must be in [0, 1), got beta_1 = {} and beta_2 = {}; Keras's \
                 defaults are 0.9 and 0.999",
                self.beta_1, self.beta_2
            )));
        }
        let negative = |x: f32| x.is_nan() || x < 0.0;
        if negative(self.weight_decay) || negative(self.epsilon) {
            return Err(Error::config(format!(
                "AdamW weight_decay and epsilon must be non-negative, got {} and {}; Keras's \
                 defaults are 0.004 and 1e-7",
                self.weight_decay, self.epsilon
            )));
        }
        Ok(())
    }
}

impl Optimizer for AdamW {
    fn name(&self) -> &'static str {
        "adamw"
    }

    fn learning_rate(&self) -> f32 {
        self.learning_rate
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn apply(&self, g: &mut Graph, params: &[ParamGrad], hyper: Hyper) -> Result<()> {
        self.check()?;
        let adam = Adam {
            learning_rate: self.learning_rate,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
        };
        adam.update(g, params, hyper, self.weight_decay)
    }
}
