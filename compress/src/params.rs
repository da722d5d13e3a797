//! What to prune and how: tfmot's `prune_low_magnitude` arguments.

use crate::schedule::PruningSchedule;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// How the magnitudes in a block are pooled into the block's score.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum BlockPooling {
    /// The mean magnitude (tfmot's default, `"AVG"`).
    #[default]
    Avg,
    /// The largest magnitude (`"MAX"`).
    Max,
}

/// The arguments of [`crate::prune_low_magnitude`], with tfmot's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PruningParams {
    /// When masks are recomputed and to what sparsity (default `ConstantSparsity(0.5, 0)`).
    #[serde(default)]
    pub pruning_schedule: PruningSchedule,
    /// `(rows, cols)` of the blocks pruned as units over the kernel seen as a matrix
    /// `[fan_in, units]` (a Conv2D kernel `[h, w, in, out]` as `[h·w·in, out]`); `(1, 1)`
    /// prunes single weights. Edge blocks may be partial.
    #[serde(default = "one_by_one")]
    pub block_size: (usize, usize),
    /// How a block's magnitudes become its score.
    #[serde(default)]
    pub block_pooling: BlockPooling,
    /// `(m, n)`: keep the `m` largest of every `n` consecutive weights along the input
    /// axis (2:4 is what sparse tensor cores run). Replaces the schedule's sparsity, which
    /// then only decides when masks are updated.
    #[serde(default)]
    pub sparsity_m_by_n: Option<(usize, usize)>,
}

fn one_by_one() -> (usize, usize) {
    (1, 1)
}

impl Default for PruningParams {
    fn default() -> Self {
        PruningParams {
            pruning_schedule: PruningSchedule::default(),
            block_size: (1, 1),
            block_pooling: BlockPooling::Avg,
            sparsity_m_by_n: None,
        }
    }
}

impl PruningParams {
    /// Parameters with `schedule` and the other defaults.
    pub fn new(schedule: impl Into<PruningSchedule>) -> Self {
        PruningParams {
            pruning_schedule: schedule.into(),
            ..Default::default()
        }
    }

    /// Prunes `(rows, cols)` blocks as units.
    pub fn block_size(mut self, rows: usize, cols: usize) -> Self {
        self.block_size = (rows, cols);
        self
    }

    /// Sets how block magnitudes are pooled.
    pub fn block_pooling(mut self, pooling: BlockPooling) -> Self {
        self.block_pooling = pooling;
        self
    }

    /// Keeps `m` of every `n` consecutive input weights (2:4 sparsity: `m_by_n(2, 4)`).
    pub fn m_by_n(mut self, m: usize, n: usize) -> Self {
        self.sparsity_m_by_n = Some((m, n));
        self
    }

    /// Whether whole blocks (not single weights) are the units.
    pub fn is_blocked(&self) -> bool {
        self.block_size != (1, 1)
    }

    /// Checks every parameter, with a message naming the bad one.
    pub fn validate(&self) -> Result<()> {
        self.pruning_schedule.validate()?;
        let (r, c) = self.block_size;
        if r == 0 || c == 0 {
            return Err(Error::config(format!(
                "block_size must be at least (1, 1), got ({r}, {c})"
            )));
        }
        if let Some((m, n)) = self.sparsity_m_by_n {
            if m == 0 || m >= n {
                return Err(Error::config(format!(
                    "sparsity_m_by_n needs 0 < m < n, got ({m}, {n})"
                )));
            }
            if self.is_blocked() {
                return Err(Error::config(
                    "sparsity_m_by_n and block_size cannot be combined: choose one",
                ));
            }
        }
        Ok(())
    }
}
