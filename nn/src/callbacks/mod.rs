//! Callbacks: hooks into `fit` through one trait. A callback sees the model through
//! [`Control`], which can read and write weights, change the learning rate and stop training.

pub mod csv_logger;
pub mod early_stopping;
pub mod lr_schedulers;
pub mod model_checkpoint;
pub mod terminate_on_nan;

pub use csv_logger::CsvLogger;
pub use early_stopping::EarlyStopping;
pub use lr_schedulers::{LearningRateScheduler, ReduceLROnPlateau};
pub use model_checkpoint::ModelCheckpoint;
pub use terminate_on_nan::TerminateOnNaN;

use crate::model::Sequential;
use crate::Result;
use std::collections::BTreeMap;

/// Loss and metrics by name ("loss", "accuracy", "val_loss", …).
pub type Logs = BTreeMap<String, f64>;

/// Whether a monitored value should go down or up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Lower is better (losses).
    Min,
    /// Higher is better (accuracies).
    Max,
    /// Keras's rule: `Max` when the monitored name contains "acc" or "auc" or starts with
    /// "fmeasure", `Min` otherwise.
    #[default]
    Auto,
}

impl Mode {
    /// The concrete direction for `monitor`: [`Mode::Min`] or [`Mode::Max`], never `Auto`.
    pub fn resolve(self, monitor: &str) -> Mode {
        let name = monitor.to_ascii_lowercase();
        match self {
            Mode::Auto
                if name.contains("acc") || name.contains("auc") || name.starts_with("fmeasure") =>
            {
                Mode::Max
            }
            Mode::Auto => Mode::Min,
            other => other,
        }
    }
}

/// What a callback may do to the training it observes.
pub struct Control<'a> {
    /// The model being trained.
    pub model: &'a mut Sequential,
    stop: &'a mut bool,
}

impl<'a> Control<'a> {
    pub(crate) fn new(model: &'a mut Sequential, stop: &'a mut bool) -> Self {
        Control { model, stop }
    }

    /// Ends training after the current batch or epoch.
    pub fn stop_training(&mut self) {
        *self.stop = true;
    }

    /// Whether training was asked to stop.
    pub fn stopping(&self) -> bool {
        *self.stop
    }
}

/// A hook into `fit`. Every method has an empty default.
pub trait Callback {
    /// Before the first epoch.
    fn on_train_begin(&mut self, _ctx: &mut Control<'_>) -> Result<()> {
        Ok(())
    }

    /// Before each epoch (0-based).
    fn on_epoch_begin(&mut self, _epoch: usize, _ctx: &mut Control<'_>) -> Result<()> {
        Ok(())
    }

    /// After each batch, with its loss.
    fn on_batch_end(&mut self, _batch: usize, _loss: f32, _ctx: &mut Control<'_>) -> Result<()> {
        Ok(())
    }

    /// After each epoch, with the epoch's logs (validation included).
    fn on_epoch_end(&mut self, _epoch: usize, _logs: &Logs, _ctx: &mut Control<'_>) -> Result<()> {
        Ok(())
    }

    /// After the last epoch.
    fn on_train_end(&mut self, _ctx: &mut Control<'_>) -> Result<()> {
        Ok(())
    }
}
