//! Learning-rate callbacks: a per-epoch schedule ([`LearningRateScheduler`]) and a cut when
//! a monitored log stops improving ([`ReduceLROnPlateau`]), as in Keras.

use super::early_stopping::{improves, monitor_value, Mode};
use super::{Callback, Control, Logs};
use crate::{Error, Result};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// Sets the learning rate at the start of every epoch to `schedule(epoch, current_lr)`
/// (Keras's `LearningRateScheduler`). `epoch` counts from 0.
///
/// ```no_run
/// use hasten_nn::callbacks::lr_schedulers::LearningRateScheduler;
/// // Keep the rate for 10 epochs, then decay it by 10% per epoch.
/// let schedule = LearningRateScheduler::new(|epoch, lr| if epoch < 10 { lr } else { lr * 0.9 });
/// # let _ = schedule;
/// ```
///
/// A schedule that returns a negative, NaN or infinite rate is an [`Error::Config`].
pub struct LearningRateScheduler {
    schedule: Box<dyn FnMut(usize, f32) -> f32>,
}

impl fmt::Debug for LearningRateScheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LearningRateScheduler")
            .finish_non_exhaustive()
    }
}

impl LearningRateScheduler {
    /// A scheduler calling `schedule(epoch, current_lr)` before each epoch.
    pub fn new(schedule: impl FnMut(usize, f32) -> f32 + 'static) -> Self {
        LearningRateScheduler {
            schedule: Box::new(schedule),
        }
    }
}

impl Callback for LearningRateScheduler {
    fn on_epoch_begin(&mut self, epoch: usize, ctx: &mut Control<'_>) -> Result<()> {
        let current = ctx.model.learning_rate()?;
        let lr = (self.schedule)(epoch, current);
        if !lr.is_finite() || lr < 0.0 {
            return Err(Error::config(format!(
                "LearningRateScheduler: the schedule returned the learning rate {lr} for epoch \
                 {epoch}; it must be a finite number ≥ 0"
            )));
        }
        ctx.model.set_learning_rate(lr)
    }
}

/// What changes while training.
#[derive(Debug, Default)]
struct PlateauState {
    best: Option<f64>,
    wait: usize,
    cooldown_counter: usize,
    reductions: Vec<(usize, f32)>,
}

/// Multiplies the learning rate by `factor` when the monitored log has not improved for
/// `patience` epochs (Keras's `ReduceLROnPlateau`).
///
/// An improvement is a change by more than `min_delta` in the monitored direction (falling
/// for losses, rising for accuracies, see [`Mode`]). After a cut, `cooldown` epochs pass before
/// the wait counter runs again; the rate never goes below `min_lr`. Defaults as in Keras:
/// "val_loss", factor 0.1, patience 10, `min_delta` 1e-4, cooldown 0, `min_lr` 0.
///
/// A monitored log missing from the epoch's logs, or a `factor` outside (0, 1), is an
/// [`Error::Config`]. Clones share their state: keep a clone to read
/// [`ReduceLROnPlateau::reductions`] after `fit`.
#[derive(Clone, Debug)]
pub struct ReduceLROnPlateau {
    monitor: String,
    factor: f64,
    patience: usize,
    min_delta: f64,
    cooldown: usize,
    min_lr: f64,
    mode: Mode,
    state: Arc<Mutex<PlateauState>>,
}

impl Default for ReduceLROnPlateau {
    /// Monitors "val_loss" with Keras's defaults.
    fn default() -> Self {
        Self::new("val_loss")
    }
}

impl ReduceLROnPlateau {
    /// Monitors `monitor` ("val_loss", "loss", "val_accuracy", …) with Keras's defaults.
    pub fn new(monitor: impl Into<String>) -> Self {
        ReduceLROnPlateau {
            monitor: monitor.into(),
            factor: 0.1,
            patience: 10,
            min_delta: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
            mode: Mode::Auto,
            state: Arc::default(),
        }
    }

    /// The factor the learning rate is multiplied by, in (0, 1).
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// Epochs without improvement before the rate is cut.
    pub fn patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
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

    /// Epochs to wait after a cut before counting again.
    pub fn cooldown(mut self, cooldown: usize) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The lowest learning rate a cut may reach.
    pub fn min_lr(mut self, min_lr: f64) -> Self {
        self.min_lr = min_lr;
        self
    }

    /// Whether the monitored value should fall or rise.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The monitored log's name.
    pub fn monitor(&self) -> &str {
        &self.monitor
    }

    /// The cuts of the last `fit`: the epoch (0-based) at whose end each happened and the new
    /// learning rate.
    pub fn reductions(&self) -> Vec<(usize, f32)> {
        self.lock().reductions.clone()
    }

    /// The best monitored value seen in the last `fit`, if any epoch ended.
    pub fn best(&self) -> Option<f64> {
        self.lock().best
    }

    fn lock(&self) -> MutexGuard<'_, PlateauState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Callback for ReduceLROnPlateau {
    fn on_train_begin(&mut self, _ctx: &mut Control<'_>) -> Result<()> {
        if !(self.factor > 0.0 && self.factor < 1.0) {
            return Err(Error::config(format!(
                "ReduceLROnPlateau: factor must be in (0, 1), got {}",
                self.factor
            )));
        }
        if !(self.min_lr.is_finite() && self.min_lr >= 0.0) {
            return Err(Error::config(format!(
                "ReduceLROnPlateau: min_lr must be a finite number ≥ 0, got {}",
                self.min_lr
            )));
        }
        *self.lock() = PlateauState::default();
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, ctx: &mut Control<'_>) -> Result<()> {
        let current = monitor_value(logs, &self.monitor, "ReduceLROnPlateau")?;
        let mode = self.mode.resolve(&self.monitor);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.cooldown_counter > 0 {
            state.cooldown_counter -= 1;
            state.wait = 0;
        }
        let reference = state.best.unwrap_or(match mode {
            Mode::Max => f64::NEG_INFINITY,
            _ => f64::INFINITY,
        });
        if improves(mode, current, reference, self.min_delta) {
            state.best = Some(current);
            state.wait = 0;
        } else if state.cooldown_counter == 0 {
            state.wait += 1;
            if state.wait >= self.patience {
                let old = ctx.model.learning_rate()?;
                let min_lr = self.min_lr as f32;
                if old > min_lr {
                    let new = ((old as f64 * self.factor) as f32).max(min_lr);
                    ctx.model.set_learning_rate(new)?;
                    state.reductions.push((epoch, new));
                    state.cooldown_counter = self.cooldown;
                    state.wait = 0;
                }
            }
        }
        Ok(())
    }
}
