//! Pruning schedules: when masks are recomputed and to what sparsity, with the formulas and
//! defaults of TF Model Optimization (`tfmot.sparsity.keras.ConstantSparsity`,
//! `PolynomialDecay`).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// When to prune and how much, as a function of the optimizer's step count.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "class_name", rename_all = "PascalCase")]
pub enum PruningSchedule {
    /// A constant sparsity from `begin_step` on.
    ConstantSparsity(ConstantSparsity),
    /// Sparsity rising from `initial_sparsity` to `final_sparsity` between `begin_step` and
    /// `end_step` along `(1 - p)^power`.
    PolynomialDecay(PolynomialDecay),
}

/// tfmot's `ConstantSparsity(target_sparsity, begin_step, end_step=-1, frequency=100)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConstantSparsity {
    /// Fraction of weights pruned, in `[0, 1)`.
    pub target_sparsity: f32,
    /// First step that prunes.
    pub begin_step: i64,
    /// Last step that prunes; `-1` prunes forever.
    pub end_step: i64,
    /// Steps between mask updates.
    pub frequency: i64,
}

/// tfmot's `PolynomialDecay(initial_sparsity, final_sparsity, begin_step, end_step,
/// power=3, frequency=100)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolynomialDecay {
    /// Sparsity at `begin_step`, in `[0, 1)`.
    pub initial_sparsity: f32,
    /// Sparsity from `end_step` on, in `[0, 1)`.
    pub final_sparsity: f32,
    /// First step that prunes.
    pub begin_step: i64,
    /// Step at which `final_sparsity` is reached (and the last that prunes).
    pub end_step: i64,
    /// Exponent of the decay.
    pub power: f32,
    /// Steps between mask updates.
    pub frequency: i64,
}

impl ConstantSparsity {
    /// `target_sparsity` from `begin_step` on, forever, masks updated every 100 steps.
    pub fn new(target_sparsity: f32, begin_step: i64) -> Self {
        ConstantSparsity {
            target_sparsity,
            begin_step,
            end_step: -1,
            frequency: 100,
        }
    }

    /// Sets the last pruning step (`-1`: never stop).
    pub fn end_step(mut self, end_step: i64) -> Self {
        self.end_step = end_step;
        self
    }

    /// Sets the steps between mask updates.
    pub fn frequency(mut self, frequency: i64) -> Self {
        self.frequency = frequency;
        self
    }
}

impl PolynomialDecay {
    /// From `initial_sparsity` at `begin_step` to `final_sparsity` at `end_step`, cubic,
    /// masks updated every 100 steps.
    pub fn new(initial_sparsity: f32, final_sparsity: f32, begin_step: i64, end_step: i64) -> Self {
        PolynomialDecay {
            initial_sparsity,
            final_sparsity,
            begin_step,
            end_step,
            power: 3.0,
            frequency: 100,
        }
    }

    /// Sets the exponent.
    pub fn power(mut self, power: f32) -> Self {
        self.power = power;
        self
    }

    /// Sets the steps between mask updates.
    pub fn frequency(mut self, frequency: i64) -> Self {
        self.frequency = frequency;
        self
    }
}

impl From<ConstantSparsity> for PruningSchedule {
    fn from(s: ConstantSparsity) -> Self {
        PruningSchedule::ConstantSparsity(s)
    }
}

impl From<PolynomialDecay> for PruningSchedule {
    fn from(s: PolynomialDecay) -> Self {
        PruningSchedule::PolynomialDecay(s)
    }
}

impl Default for PruningSchedule {
    /// tfmot's default: `ConstantSparsity(0.5, 0)`.
    fn default() -> Self {
        ConstantSparsity::new(0.5, 0).into()
    }
}

impl PruningSchedule {
    fn steps(&self) -> (i64, i64, i64) {
        match self {
            PruningSchedule::ConstantSparsity(s) => (s.begin_step, s.end_step, s.frequency),
            PruningSchedule::PolynomialDecay(s) => (s.begin_step, s.end_step, s.frequency),
        }
    }

    /// Whether masks are recomputed before step `step`: `begin_step ≤ step`, `step ≤ end_step`
    /// unless `end_step < 0`, and `(step - begin_step) mod frequency = 0` (tfmot's
    /// `_should_prune_in_step`).
    pub fn should_prune(&self, step: u64) -> bool {
        let (begin, end, frequency) = self.steps();
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        let in_range = step >= begin && (end < 0 || step <= end);
        in_range && frequency > 0 && (step - begin).rem_euclid(frequency) == 0
    }

    /// The sparsity the schedule asks for at `step`, computed in `f32` as tfmot does.
    pub fn sparsity(&self, step: u64) -> f32 {
        match self {
            PruningSchedule::ConstantSparsity(s) => s.target_sparsity,
            PruningSchedule::PolynomialDecay(s) => {
                let span = (s.end_step - s.begin_step) as f32;
                let p = ((step as i64 - s.begin_step) as f32 / span).clamp(0.0, 1.0);
                (s.initial_sparsity - s.final_sparsity) * (1.0 - p).powf(s.power) + s.final_sparsity
            }
        }
    }

    /// Checks the parameters as tfmot does, with a message naming the bad one.
    pub fn validate(&self) -> Result<()> {
        let (begin, end, frequency) = self.steps();
        let sparsities: &[(&str, f32)] = match self {
            PruningSchedule::ConstantSparsity(s) => &[("target_sparsity", s.target_sparsity)],
            PruningSchedule::PolynomialDecay(s) => &[
                ("initial_sparsity", s.initial_sparsity),
                ("final_sparsity", s.final_sparsity),
            ],
        };
        for &(name, value) in sparsities {
            if !(0.0..1.0).contains(&value) {
                return Err(Error::config(format!(
                    "{name} must be in [0, 1), got {value}"
                )));
            }
        }
        if begin < 0 {
            return Err(Error::config(format!(
                "begin_step must be ≥ 0, got {begin}"
            )));
        }
        if frequency <= 0 {
            return Err(Error::config(format!(
                "frequency must be > 0, got {frequency}"
            )));
        }
        let polynomial = matches!(self, PruningSchedule::PolynomialDecay(_));
        if (end >= 0 || polynomial) && end < begin {
            return Err(Error::config(format!(
                "end_step ({end}) must be ≥ begin_step ({begin}){}",
                if polynomial {
                    ""
                } else {
                    ", or -1 to prune forever"
                }
            )));
        }
        if let PruningSchedule::PolynomialDecay(s) = self {
            if s.end_step == s.begin_step || !s.power.is_finite() {
                return Err(Error::config(format!(
                    "PolynomialDecay needs end_step > begin_step and a finite power, got steps \
                     {}..{} and power {}",
                    s.begin_step, s.end_step, s.power
                )));
            }
        }
        Ok(())
    }
}
