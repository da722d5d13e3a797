//! Stop training as soon as a batch's loss is NaN or infinite (Keras's `TerminateOnNaN`).

use super::{Callback, Control};
use crate::Result;
use std::sync::{Arc, Mutex, MutexGuard};

/// What changes while training.
#[derive(Debug, Default)]
struct State {
    epoch: usize,
    terminated: Option<(usize, usize, f32)>,
}

/// Stops `fit` after the first batch whose loss is NaN or infinite, and records where.
///
/// `fit` still finishes that epoch's bookkeeping (its logs, with the non-finite loss, go into
/// the history) and then returns `Ok`; check [`TerminateOnNaN::terminated_at`] to tell a
/// stopped run from a finished one. Clones share their state: keep a clone to read it after
/// `fit` has consumed the other.
#[derive(Clone, Debug, Default)]
pub struct TerminateOnNaN {
    state: Arc<Mutex<State>>,
}

impl TerminateOnNaN {
    /// A new callback.
    pub fn new() -> Self {
        Self::default()
    }

    /// The epoch and batch (both 0-based) whose loss was not finite, if training was stopped.
    pub fn terminated_at(&self) -> Option<(usize, usize)> {
        self.lock().terminated.map(|(e, b, _)| (e, b))
    }

    /// The non-finite loss that stopped training, if it was stopped.
    pub fn loss(&self) -> Option<f32> {
        self.lock().terminated.map(|(_, _, l)| l)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Callback for TerminateOnNaN {
    fn on_train_begin(&mut self, _ctx: &mut Control<'_>) -> Result<()> {
        *self.lock() = State::default();
        Ok(())
    }

    fn on_epoch_begin(&mut self, epoch: usize, _ctx: &mut Control<'_>) -> Result<()> {
        self.lock().epoch = epoch;
        Ok(())
    }

    fn on_batch_end(&mut self, batch: usize, loss: f32, ctx: &mut Control<'_>) -> Result<()> {
        if !loss.is_finite() {
            let mut state = self.lock();
            if state.terminated.is_none() {
                state.terminated = Some((state.epoch, batch, loss));
            }
            ctx.stop_training();
        }
        Ok(())
    }
}
