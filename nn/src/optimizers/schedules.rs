//! Learning-rate schedules, as Keras defines them: pure functions of the step count.
//!
//! A schedule is evaluated on the host before each train step, with the number of steps
//! already applied (Keras's `optimizer.iterations`: 0 before the first step), and the result is
//! written to the learning-rate state the compiled step reads.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// A learning rate that depends on the step.
pub trait LearningRateSchedule: Send + Sync + std::fmt::Debug {
    /// The learning rate after `step` applied steps (0 for the first step).
    fn rate(&self, step: u64) -> f32;

    /// The configuration, for saving (read back by [`from_config`]).
    fn config(&self) -> serde_json::Value;
}

/// `initial · decay_rate^(step / decay_steps)`, with the exponent floored when `staircase`
/// (Keras's `ExponentialDecay`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename = "ExponentialDecay")]
pub struct ExponentialDecay {
    /// Rate at step 0.
    pub initial: f32,
    /// Steps per factor of `decay_rate`; at least 1.
    pub decay_steps: u64,
    /// Factor applied every `decay_steps` steps.
    pub decay_rate: f32,
    /// Decay in whole factors (a step function) rather than continuously.
    #[serde(default)]
    pub staircase: bool,
}

impl ExponentialDecay {
    /// A continuous exponential decay; errors if `decay_steps` is 0.
    pub fn new(initial: f32, decay_steps: u64, decay_rate: f32) -> Result<Self> {
        let schedule = ExponentialDecay {
            initial,
            decay_steps,
            decay_rate,
            staircase: false,
        };
        schedule.check()?;
        Ok(schedule)
    }

    /// Decays in whole factors every `decay_steps` steps.
    pub fn staircase(mut self, on: bool) -> Self {
        self.staircase = on;
        self
    }

    fn check(&self) -> Result<()> {
        if self.decay_steps == 0 {
            return Err(Error::config(
                "ExponentialDecay needs decay_steps ≥ 1 (the steps per factor of decay_rate)",
            ));
        }
        if self.decay_rate.is_nan() || self.decay_rate < 0.0 {
            return Err(Error::config(format!(
                "ExponentialDecay decay_rate must be non-negative, got {}; e.g. 0.96",
                self.decay_rate
            )));
        }
        Ok(())
    }
}

impl LearningRateSchedule for ExponentialDecay {
    fn rate(&self, step: u64) -> f32 {
        let mut p = step as f64 / self.decay_steps.max(1) as f64;
        if self.staircase {
            p = p.floor();
        }
        (self.initial as f64 * (self.decay_rate as f64).powf(p)) as f32
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// `values[0]` up to and including step `boundaries[0]`, `values[i]` for steps in
/// `(boundaries[i-1], boundaries[i]]`, and the last value after the last boundary (Keras's
/// `PiecewiseConstantDecay`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename = "PiecewiseConstantDecay")]
pub struct PiecewiseConstantDecay {
    /// Increasing step boundaries.
    pub boundaries: Vec<u64>,
    /// One more value than boundaries.
    pub values: Vec<f32>,
}

impl PiecewiseConstantDecay {
    /// The schedule; errors unless the boundaries increase strictly and there is one more value
    /// than boundaries.
    pub fn new(boundaries: Vec<u64>, values: Vec<f32>) -> Result<Self> {
        let schedule = PiecewiseConstantDecay { boundaries, values };
        schedule.check()?;
        Ok(schedule)
    }

    fn check(&self) -> Result<()> {
        if self.values.len() != self.boundaries.len() + 1 {
            return Err(Error::config(format!(
                "PiecewiseConstantDecay needs one more value than boundaries, got {} boundaries \
                 and {} values; e.g. boundaries [1000, 2000] with values [0.1, 0.01, 0.001]",
                self.boundaries.len(),
                self.values.len()
            )));
        }
        if self.boundaries.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::config(format!(
                "PiecewiseConstantDecay boundaries must increase strictly, got {:?}",
                self.boundaries
            )));
        }
        Ok(())
    }
}

impl LearningRateSchedule for PiecewiseConstantDecay {
    fn rate(&self, step: u64) -> f32 {
        let piece = self.boundaries.partition_point(|&b| b < step);
        self.values
            .get(piece)
            .or(self.values.last())
            .copied()
            .unwrap_or(0.0)
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// `initial · ((1 - alpha) · ½(1 + cos(π · min(step, decay_steps) / decay_steps)) + alpha)`:
/// a half cosine from `initial` down to `alpha · initial`, then constant (Keras's `CosineDecay`
/// without warm-up).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename = "CosineDecay")]
pub struct CosineDecay {
    /// Rate at step 0.
    pub initial: f32,
    /// Steps of the decay; at least 1.
    pub decay_steps: u64,
    /// Final rate as a fraction of `initial`.
    #[serde(default)]
    pub alpha: f32,
}

impl CosineDecay {
    /// A cosine decay to zero over `decay_steps`; errors if `decay_steps` is 0.
    pub fn new(initial: f32, decay_steps: u64) -> Result<Self> {
        if decay_steps == 0 {
            return Err(Error::config(
                "CosineDecay needs decay_steps ≥ 1 (the length of the decay in steps)",
            ));
        }
        Ok(CosineDecay {
            initial,
            decay_steps,
            alpha: 0.0,
        })
    }

    /// Sets the final rate as a fraction of the initial one.
    pub fn alpha(mut self, alpha: f32) -> Self {
        self.alpha = alpha;
        self
    }
}

impl LearningRateSchedule for CosineDecay {
    fn rate(&self, step: u64) -> f32 {
        let done = if self.decay_steps == 0 {
            1.0
        } else {
            step.min(self.decay_steps) as f64 / self.decay_steps as f64
        };
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * done).cos());
        let alpha = self.alpha as f64;
        (self.initial as f64 * ((1.0 - alpha) * cosine + alpha)) as f32
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// Rebuilds a schedule from its saved configuration (its `name` is the Keras class name).
pub fn from_config(config: &serde_json::Value) -> Result<Box<dyn LearningRateSchedule>> {
    let name = config
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or_default();
    let parse = |e: serde_json::Error| Error::config(format!("bad schedule configuration: {e}"));
    Ok(match name {
        "ExponentialDecay" => {
            let s = serde_json::from_value::<ExponentialDecay>(config.clone()).map_err(parse)?;
            s.check()?;
            Box::new(s)
        }
        "PiecewiseConstantDecay" => {
            let s =
                serde_json::from_value::<PiecewiseConstantDecay>(config.clone()).map_err(parse)?;
            s.check()?;
            Box::new(s)
        }
        "CosineDecay" => {
            let s = serde_json::from_value::<CosineDecay>(config.clone()).map_err(parse)?;
            CosineDecay::new(s.initial, s.decay_steps)?;
            Box::new(s)
        }
        other => {
            return Err(Error::config(format!(
                "unknown learning-rate schedule {other:?}; known: ExponentialDecay, \
                 PiecewiseConstantDecay, CosineDecay"
            )))
        }
    })
}
