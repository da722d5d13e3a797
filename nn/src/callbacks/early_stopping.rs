//! Stop training when a monitored log has stopped improving (Keras's `EarlyStopping`).
//!
//! ```no_run
//! use hasten_nn::callbacks::early_stopping::EarlyStopping;
//! use hasten_nn::FitOptions;
//! let stopper = EarlyStopping::new("val_loss").patience(3).restore_best_weights(true);
//! let options = FitOptions::epochs(100).validation_split(0.2).callback(stopper.clone());
//! // model.fit(&x, &y, options)?; then `stopper.stopped_epoch()` says where it stopped.
//! # let _ = options;
//! ```

use super::{Callback, Control, Logs};
use crate::{Error, Result};
use hasten_tensor::HostTensor;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

pub use super::Mode;

/// Reads `monitor` from `logs`, or explains which logs there are.
pub(crate) fn monitor_value(logs: &Logs, monitor: &str, who: &str) -> Result<f64> {
    logs.get(monitor).copied().ok_or_else(|| {
        let available: Vec<&str> = logs.keys().map(String::as_str).collect();
        let hint = if monitor.starts_with("val_") {
            " (val_* logs need validation data: set `validation_split` or `validation_data`)"
        } else {
            ""
        };
        Error::config(format!(
            "{who}: the monitored log {monitor:?} is not in the epoch's logs; available: [{}]{hint}",
            available.join(", ")
        ))
    })
}

/// Whether `current` beats `reference` by more than `min_delta` in direction `mode`.
pub(crate) fn improves(mode: Mode, current: f64, reference: f64, min_delta: f64) -> bool {
    match mode {
        Mode::Max => current - min_delta > reference,
        _ => current + min_delta < reference,
    }
}

/// What changes while training.
#[derive(Debug, Default)]
struct State {
    wait: usize,
    best: Option<f64>,
    best_epoch: Option<usize>,
    stopped_epoch: Option<usize>,
    best_weights: Option<BTreeMap<String, HostTensor>>,
}

/// Stops `fit` once the monitored log has not improved for `patience` epochs, as Keras does.
///
/// Each epoch the wait counter grows by one; an improvement (by more than `min_delta` over the
/// best value so far, and over `baseline` when one is set) resets it. When it reaches
/// `patience` on an epoch without improvement, training stops. With
/// `restore_best_weights`, the weights of the best epoch are put back when training ends
/// (whether it stopped early or ran all its epochs).
///
/// A monitored log missing from the epoch's logs is an [`Error::Config`] naming the logs there
/// are (Keras only warns).
///
/// Clones share their state: keep a clone to read [`EarlyStopping::stopped_epoch`] and
/// [`EarlyStopping::best`] after `fit` has consumed the other.
#[derive(Clone, Debug)]
pub struct EarlyStopping {
    monitor: String,
    min_delta: f64,
    patience: usize,
    mode: Mode,
    restore_best_weights: bool,
    baseline: Option<f64>,
    state: Arc<Mutex<State>>,
}

impl Default for EarlyStopping {
    /// Monitors "val_loss" with Keras's defaults.
    fn default() -> Self {
        Self::new("val_loss")
    }
}

impl EarlyStopping {
    /// Monitors `monitor` ("val_loss", "val_accuracy", …) with Keras's defaults: `min_delta`
    /// 0, `patience` 0, [`Mode::Auto`], no weight restoring, no baseline.
    pub fn new(monitor: impl Into<String>) -> Self {
        EarlyStopping {
            monitor: monitor.into(),
            min_delta: 0.0,
            patience: 0,
            mode: Mode::Auto,
            restore_best_weights: false,
            baseline: None,
            state: Arc::default(),
        }
    }

    /// The smallest change that counts as an improvement (its sign is ignored).
    pub fn min_delta(mut self, min_delta: f64) -> Self {
        self.min_delta = if min_delta.is_finite() {
            min_delta.abs()
        } else {
            0.0
        };
        self
    }

    /// Epochs without improvement after which training stops.
    pub fn patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
    }

    /// Whether the monitored value should fall or rise.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Puts back the weights of the best epoch when training ends.
    pub fn restore_best_weights(mut self, on: bool) -> Self {
        self.restore_best_weights = on;
        self
    }

    /// A value the monitored log must beat before the wait counter is ever reset.
    pub fn baseline(mut self, baseline: Option<f64>) -> Self {
        self.baseline = baseline;
        self
    }

    /// The monitored log's name.
    pub fn monitor(&self) -> &str {
        &self.monitor
    }

    /// The epoch (0-based) at which this callback stopped training, if it did.
    pub fn stopped_epoch(&self) -> Option<usize> {
        self.lock().stopped_epoch
    }

    /// The best monitored value seen in the last `fit`, if any epoch ended.
    pub fn best(&self) -> Option<f64> {
        self.lock().best
    }

    /// The epoch (0-based) of [`EarlyStopping::best`].
    pub fn best_epoch(&self) -> Option<usize> {
        self.lock().best_epoch
    }

    /// Epochs since the last improvement (Keras's `wait`).
    pub fn wait(&self) -> usize {
        self.lock().wait
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Callback for EarlyStopping {
    fn on_train_begin(&mut self, _ctx: &mut Control<'_>) -> Result<()> {
        *self.lock() = State::default();
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, ctx: &mut Control<'_>) -> Result<()> {
        let current = monitor_value(logs, &self.monitor, "EarlyStopping")?;
        let mode = self.mode.resolve(&self.monitor);
        let restore = self.restore_best_weights;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if restore && state.best_weights.is_none() {
            // Until something improves, the first epoch's weights are the best there are.
            state.best_weights = Some(ctx.model.get_weights()?);
            state.best_epoch = Some(epoch);
        }
        state.wait += 1;
        let reference = state.best.unwrap_or(match mode {
            Mode::Max => f64::NEG_INFINITY,
            _ => f64::INFINITY,
        });
        let improved = improves(mode, current, reference, self.min_delta);
        if improved {
            state.best = Some(current);
            state.best_epoch = Some(epoch);
            if restore {
                state.best_weights = Some(ctx.model.get_weights()?);
            }
            let beats_baseline = self
                .baseline
                .is_none_or(|b| improves(mode, current, b, self.min_delta));
            if beats_baseline {
                state.wait = 0;
            }
            return Ok(());
        }
        if state.wait >= self.patience && epoch > 0 {
            state.stopped_epoch = Some(epoch);
            ctx.stop_training();
        }
        Ok(())
    }

    fn on_train_end(&mut self, ctx: &mut Control<'_>) -> Result<()> {
        if !self.restore_best_weights {
            return Ok(());
        }
        let best = self.lock().best_weights.take();
        if let Some(weights) = best {
            ctx.model.set_weights(&weights)?;
        }
        Ok(())
    }
}
