//! Keras's `ModelCheckpoint`: saves the model (or its weights) at the end of epochs, every
//! epoch or only when a monitored value improves, with an epoch marker for resuming.

use super::{Callback, Control, Logs};
use crate::checkpoint::{save_checkpoint, SaveSpec};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The epoch marker written into every checkpoint a [`ModelCheckpoint`] saves.
pub const TRAINING_FILE: &str = "training.json";

/// The `format_version` of [`TRAINING_FILE`].
const TRAINING_VERSION: u32 = 1;

pub use super::Mode;

/// The contents of [`TRAINING_FILE`]: where a resumed run continues, and what the saving run
/// had seen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingMarker {
    /// The marker's format version (1).
    pub format_version: u32,
    /// The `initial_epoch` a resumed `fit` passes: the saved epoch + 1 (0-based), which is also
    /// the 1-based number of the epoch that was saved.
    pub initial_epoch: usize,
    /// The monitored log.
    pub monitor: String,
    /// The best monitored value so far (`null` when not tracked or not finite).
    pub best: Option<f64>,
    /// The logs of the saved epoch (`null` for non-finite values).
    pub logs: BTreeMap<String, Option<f64>>,
    /// The processes that trained together ([`hasten_tensor::Backend::workers`]; 1 in markers
    /// written before this field existed).
    #[serde(default = "one_worker")]
    pub workers: usize,
}

fn one_worker() -> usize {
    1
}

impl TrainingMarker {
    /// Reads the marker of a checkpoint directory. Errors: [`Error::Io`] when the file is
    /// missing, [`Error::Format`] when it is malformed or of another version.
    pub fn read(dir: impl AsRef<Path>) -> Result<TrainingMarker> {
        let path = dir.as_ref().join(TRAINING_FILE);
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let format = |detail: String| Error::Format {
            path: path.display().to_string(),
            detail,
        };
        let marker: TrainingMarker =
            serde_json::from_slice(&bytes).map_err(|e| format(e.to_string()))?;
        if marker.format_version != TRAINING_VERSION {
            return Err(format(format!(
                "format version {} is not supported (this build reads version {TRAINING_VERSION})",
                marker.format_version
            )));
        }
        Ok(marker)
    }
}

/// The `initial_epoch` to resume from with the checkpoint in `dir` (saved by a
/// [`ModelCheckpoint`]): the epoch after the one saved.
///
/// ```no_run
/// # use hasten_nn::prelude::*;
/// # use hasten_nn::callbacks::model_checkpoint::resume_epoch;
/// # fn main() -> hasten_nn::Result<()> {
/// # let (x, y) = (HostTensor::scalar(0.0), HostTensor::scalar(0.0));
/// let mut model = Sequential::load("ckpt")?;
/// let options = FitOptions::epochs(10).initial_epoch(resume_epoch("ckpt")?);
/// model.fit(&x, &y, options)?;
/// # Ok(()) }
/// ```
pub fn resume_epoch(dir: impl AsRef<Path>) -> Result<usize> {
    Ok(TrainingMarker::read(dir)?.initial_epoch)
}

/// The `initial_epoch` to resume `model` from with the checkpoint in `dir`, like
/// [`resume_epoch`], after checking that the job saving it had as many processes as `model`'s
/// backend ([`hasten_tensor::Backend::workers`]): a data-parallel job resumes only with the
/// process count it was saved with, since each process reads its own share of every batch.
/// A different count is [`Error::Config`] naming both.
pub fn resume_epoch_for(dir: impl AsRef<Path>, model: &crate::Sequential) -> Result<usize> {
    let dir = dir.as_ref();
    let marker = TrainingMarker::read(dir)?;
    let workers = model.backend().workers();
    if marker.workers != workers {
        return Err(Error::config(format!(
            "the checkpoint in {} was written by a job of {} worker process(es), but this model's \
             backend runs {workers}: resume it with {} process(es)",
            dir.display(),
            marker.workers,
            marker.workers
        )));
    }
    Ok(marker.initial_epoch)
}

/// Saves the model at the end of epochs (Keras's `ModelCheckpoint`).
///
/// The path is a checkpoint directory (see [`crate::checkpoint`]); it may contain
/// `{epoch}` (1-based, zero-padded to two digits like Keras's `{epoch:02d}`), `{epoch:0Nd}`
/// / `{epoch:d}` for other widths, and any log as `{val_loss}` or `{val_loss:.4f}`; `{{` and
/// `}}` are literal braces. Each save also writes [`TRAINING_FILE`] into the same directory
/// (in the same atomic swap), which [`resume_epoch`] reads.
///
/// ```no_run
/// # use hasten_nn::prelude::*;
/// # use hasten_nn::callbacks::model_checkpoint::{ModelCheckpoint, Mode};
/// let cb = ModelCheckpoint::new("runs/ckpt-{epoch}")
///     .monitor("val_accuracy")
///     .mode(Mode::Max)
///     .save_best_only(true);
/// let options = FitOptions::epochs(10).validation_split(0.1).callback(cb);
/// ```
#[derive(Clone, Debug)]
pub struct ModelCheckpoint {
    path: PathBuf,
    monitor: String,
    mode: Mode,
    save_best_only: bool,
    save_weights_only: bool,
    best: Option<f64>,
    saves: usize,
}

impl ModelCheckpoint {
    /// Saves every epoch into `path` (a directory, possibly with placeholders), monitoring
    /// `val_loss` for [`ModelCheckpoint::save_best_only`].
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ModelCheckpoint {
            path: path.into(),
            monitor: "val_loss".into(),
            mode: Mode::Auto,
            save_best_only: false,
            save_weights_only: false,
            best: None,
            saves: 0,
        }
    }

    /// The log to monitor ("val_loss", "val_accuracy", "loss", …).
    pub fn monitor(mut self, monitor: impl Into<String>) -> Self {
        self.monitor = monitor.into();
        self
    }

    /// Saves only when the monitored value improves on the best so far (the first epoch
    /// always improves unless [`ModelCheckpoint::initial_value_threshold`] is set). The
    /// monitored log must then be present, or `fit` fails with a configuration error.
    pub fn save_best_only(mut self, on: bool) -> Self {
        self.save_best_only = on;
        self
    }

    /// Whether smaller or larger is better.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Saves only `weights.safetensors` (and the epoch marker), not the architecture and the
    /// optimizer state; load with [`crate::Sequential::load_weights`].
    pub fn save_weights_only(mut self, on: bool) -> Self {
        self.save_weights_only = on;
        self
    }

    /// The value to beat before the first save (for a resumed run, the `best` of its
    /// [`TrainingMarker`]).
    pub fn initial_value_threshold(mut self, value: f64) -> Self {
        self.best = Some(value);
        self
    }

    /// The best monitored value seen so far.
    pub fn best(&self) -> Option<f64> {
        self.best
    }

    /// How many checkpoints this callback has written.
    pub fn saves(&self) -> usize {
        self.saves
    }

    /// The checkpoint directory for an epoch (0-based) and its logs.
    pub fn path_for(&self, epoch: usize, logs: &Logs) -> Result<PathBuf> {
        match self.path.to_str() {
            Some(pattern) => Ok(PathBuf::from(format_pattern(pattern, epoch + 1, logs)?)),
            None => Ok(self.path.clone()),
        }
    }

    fn improves(&self, value: f64) -> bool {
        if value.is_nan() {
            return false;
        }
        match (self.best, self.mode.resolve(&self.monitor)) {
            (None, _) => true,
            (Some(best), Mode::Max) => value > best,
            (Some(best), _) => value < best,
        }
    }
}

impl Callback for ModelCheckpoint {
    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, ctx: &mut Control<'_>) -> Result<()> {
        let value = logs.get(&self.monitor).copied();
        if self.save_best_only {
            let value = value.ok_or_else(|| {
                Error::config(format!(
                    "ModelCheckpoint monitors {:?} with save_best_only, but the logs have only {}",
                    self.monitor,
                    logs.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?;
            if !self.improves(value) {
                return Ok(());
            }
            self.best = Some(value);
        } else if let Some(v) = value.filter(|&v| self.improves(v)) {
            self.best = Some(v);
        }
        let dir = self.path_for(epoch, logs)?;
        let marker = TrainingMarker {
            format_version: TRAINING_VERSION,
            initial_epoch: epoch + 1,
            monitor: self.monitor.clone(),
            best: self.best.filter(|b| b.is_finite()),
            logs: logs
                .iter()
                .map(|(k, v)| (k.clone(), v.is_finite().then_some(*v)))
                .collect(),
            workers: ctx.model.backend().workers(),
        };
        let json = serde_json::to_vec_pretty(&marker)
            .map_err(|e| Error::config(format!("cannot serialise {TRAINING_FILE}: {e}")))?;
        save_checkpoint(
            ctx.model,
            &dir,
            SaveSpec {
                weights_only: self.save_weights_only,
                extra: &[(TRAINING_FILE, json)],
            },
        )?;
        self.saves += 1;
        Ok(())
    }
}

/// Fills `{epoch}`, `{epoch:0Nd}`, `{epoch:d}`, `{log}` and `{log:.Nf}` in a path pattern.
fn format_pattern(pattern: &str, epoch: usize, logs: &Logs) -> Result<String> {
    let bad = |detail: String| Error::config(format!("checkpoint path {pattern:?}: {detail}"));
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err(bad("unmatched `}` (write `}}` for a literal brace)".into()));
        }
        let end = tail
            .find('}')
            .ok_or_else(|| bad("unclosed `{` (write `{{` for a literal brace)".into()))?;
        let field = &tail[1..end];
        let (key, spec) = match field.split_once(':') {
            Some((k, s)) => (k, Some(s)),
            None => (field, None),
        };
        if key == "epoch" {
            let width = match spec {
                None => 2,
                Some(s) => s
                    .strip_suffix('d')
                    .and_then(|w| {
                        if w.is_empty() {
                            Some(0)
                        } else {
                            w.parse().ok()
                        }
                    })
                    .ok_or_else(|| bad(format!("bad format {s:?} for epoch (try `02d`)")))?,
            };
            out.push_str(&format!("{epoch:0width$}"));
        } else {
            let value = logs.get(key).ok_or_else(|| {
                bad(format!(
                    "no log named {key:?} (the logs are epoch, {})",
                    logs.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?;
            match spec {
                None => out.push_str(&value.to_string()),
                Some(s) => {
                    let precision: usize = s
                        .strip_prefix('.')
                        .and_then(|p| p.strip_suffix('f'))
                        .and_then(|p| p.parse().ok())
                        .ok_or_else(|| bad(format!("bad format {s:?} for {key} (try `.4f`)")))?;
                    out.push_str(&format!("{value:.precision$}"));
                }
            }
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
