//! Adam, in Keras's formulation.

use super::{blend, slot, Hyper, Optimizer, ParamGrad};
use crate::Result;
use hasten_tensor::{Graph, NodeId};
use serde::{Deserialize, Serialize};

/// Keras's Adam: `m = β₁m + (1-β₁)g`, `v = β₂v + (1-β₂)g²`,
/// `p -= lr·√(1-β₂ᵗ)/(1-β₁ᵗ) · m / (√v + ε)`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "name", rename = "adam")]
pub struct Adam {
    /// Learning rate.
    pub learning_rate: f32,
    /// First-moment decay.
    pub beta_1: f32,
    /// Second-moment decay.
    pub beta_2: f32,
    /// Added to the root of the second moment.
    pub epsilon: f32,
}

impl Default for Adam {
    fn default() -> Self {
        Adam {
            learning_rate: 1e-3,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        }
    }
}

impl Adam {
    /// Adam with a learning rate and Keras's other defaults.
    pub fn new(learning_rate: f32) -> Self {
        Adam {
            learning_rate,
            ..Default::default()
        }
    }
}

/// `β^t` as `exp(t·ln β)`.
pub(crate) fn power(g: &mut Graph, beta: f32, t: NodeId) -> Result<NodeId> {
    let e = g.scale(t, beta.ln())?;
    Ok(g.exp(e)?)
}

impl Optimizer for Adam {
    fn name(&self) -> &'static str {
        "adam"
    }

    fn learning_rate(&self) -> f32 {
        self.learning_rate
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn apply(&self, g: &mut Graph, params: &[ParamGrad], hyper: Hyper) -> Result<()> {
        self.update(g, params, hyper, 0.0)
    }
}

impl Adam {
    /// Appends the Adam update of every parameter; with a nonzero `weight_decay`, each
    /// parameter first decays by `lr·weight_decay·p` (AdamW's decoupled decay).
    pub(crate) fn update(
        &self,
        g: &mut Graph,
        params: &[ParamGrad],
        hyper: Hyper,
        weight_decay: f32,
    ) -> Result<()> {
        let one = g.scalar(1.0);
        let b1t = power(g, self.beta_1, hyper.step)?;
        let b2t = power(g, self.beta_2, hyper.step)?;
        let c1 = g.sub(one, b1t)?;
        let c2 = g.sub(one, b2t)?;
        let c2 = g.sqrt(c2)?;
        let correction = g.div(c2, c1)?;
        let lr_t = g.mul(hyper.learning_rate, correction)?;
        let lr_wd = g.scale(hyper.learning_rate, weight_decay)?;
        let eps = g.scalar(self.epsilon);
        for p in params {
            let start = if weight_decay == 0.0 {
                p.param
            } else {
                let decay = g.mul(p.param, lr_wd)?;
                g.sub(p.param, decay)?
            };
            let m = slot(g, p, "m")?;
            let v = slot(g, p, "v")?;
            let m_new = blend(g, self.beta_1, m, 1.0 - self.beta_1, p.grad)?;
            let g2 = g.mul(p.grad, p.grad)?;
            let v_new = blend(g, self.beta_2, v, 1.0 - self.beta_2, g2)?;
            let root = g.sqrt(v_new)?;
            let denom = g.add(root, eps)?;
            let ratio = g.div(m_new, denom)?;
            let step = g.mul(ratio, lr_t)?;
            let new = g.sub(start, step)?;
            g.update(m, m_new)?;
            g.update(v, v_new)?;
            g.update(p.param, new)?;
        }
        Ok(())
    }
}
