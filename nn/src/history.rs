//! What `fit` returns: the logs of every epoch.

use crate::callbacks::Logs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Per-epoch loss and metrics, as Keras's `History`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Epoch numbers (0-based).
    pub epochs: Vec<usize>,
    /// Seconds each epoch took (training only).
    pub seconds: Vec<f64>,
    /// Each log's values, one per epoch.
    pub metrics: BTreeMap<String, Vec<f64>>,
}

impl History {
    /// Records one epoch.
    pub fn push(&mut self, epoch: usize, seconds: f64, logs: &Logs) {
        self.epochs.push(epoch);
        self.seconds.push(seconds);
        for (k, v) in logs {
            self.metrics.entry(k.clone()).or_default().push(*v);
        }
    }

    /// The values of one log ("loss", "val_accuracy", …).
    pub fn get(&self, name: &str) -> Option<&[f64]> {
        self.metrics.get(name).map(|v| v.as_slice())
    }

    /// The last value of a log.
    pub fn last(&self, name: &str) -> Option<f64> {
        self.get(name).and_then(|v| v.last().copied())
    }
}
