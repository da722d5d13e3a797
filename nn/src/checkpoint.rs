//! Saving and loading whole models: architecture, weights and optimizer state, so training
//! can stop and resume bit-for-bit.
//!
//! # Layout
//!
//! [`Sequential::save`] writes one directory:
//!
//! | file | contents |
//! |------|----------|
//! | `model.json` | format name and version, the layers (`[{"kind": .., "config": ..}]`), the input shape under `"input"` when it was given by `Sequential::input`, the model seed when known, the compile configuration (optimizer config, loss, metrics) or `null`, and the SHA-256 of each safetensors file |
//! | `weights.safetensors` | the weights only, named as the model names them (`dense/kernel`, `dense_1/bias`, …), so other tools can read them; also state such as Dropout's `I32` step counter (`dropout/seed`) |
//! | `optimizer.safetensors` | (compiled models only) the optimizer slots (`optimizer/<weight>/<slot>`), `optimizer/iterations` and `optimizer/learning_rate` |
//!
//! An example `model.json`:
//!
//! ```json
//! {
//!   "format": "hasten.sequential",
//!   "format_version": 1,
//!   "seed": null,
//!   "layers": [
//!     {"kind": "Dense", "config": {"units": 8, "activation": "relu", "use_bias": true,
//!       "kernel_initializer": "glorot_uniform", "bias_initializer": "zeros",
//!       "input_shape": [4], "name": "dense"}},
//!     {"kind": "Dense", "config": {"units": 3, "activation": "softmax", "use_bias": true,
//!       "kernel_initializer": "glorot_uniform", "bias_initializer": "zeros",
//!       "input_shape": null, "name": "dense_1"}}
//!   ],
//!   "compile": {
//!     "optimizer": {"name": "adam", "learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
//!     "loss": {"name": "sparse_categorical_crossentropy", "from_logits": false},
//!     "metrics": ["accuracy"]
//!   },
//!   "files": {
//!     "weights.safetensors": {"bytes": 372, "sha256": "…"},
//!     "optimizer.safetensors": {"bytes": 1012, "sha256": "…"}
//!   }
//! }
//! ```
//!
//! # Crash safety
//!
//! Every file is written atomically (temporary file, fsync, rename), but that alone is not
//! enough: a crash between two files of a save over an existing checkpoint would leave new
//! weights beside an old `model.json` or old optimizer slots, which would load without error
//! as a model that never existed. So a save builds the whole checkpoint in a fresh sibling
//! directory `.<name>.tmp-<pid>-<nanos>-<n>`, syncs it, and then swaps directories:
//!
//! 1. `dir` → `.<name>.old-<…>` (only when `dir` exists),
//! 2. the temporary directory → `dir`,
//! 3. the parent directory is synced, the old directory removed, and leftovers of earlier
//!    crashed saves of the same `dir` removed.
//!
//! A crash at any point leaves `dir` either complete-old, complete-new, or absent (between
//! steps 1 and 2). When it is absent, [`Sequential::load`] fails with a "not found" error that
//! names the complete previous checkpoint kept in `.<name>.old-<…>`; it never loads a mix. A
//! Linux-only `renameat2(RENAME_EXCHANGE)` would close the gap, but needs `libc`, and the
//! portable two-rename swap is safe as described. The SHA-256 recorded in `model.json` also
//! catches safetensors files that were corrupted or replaced after the save.
//!
//! Two processes must not save to the same directory at the same time (the later one removes
//! the other's temporary directory as a leftover).

use crate::layers::{self, StateKind};
use crate::losses::Loss;
use crate::metrics::Metric;
use crate::optimizers;
use crate::{Error, Result, Sequential};
use hasten_tensor::io::{load_safetensors, save_safetensors, write_atomically};
use hasten_tensor::{DType, HostTensor, Shape};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The `format` string of `model.json`.
pub const FORMAT: &str = "hasten.sequential";
/// The `format_version` this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The architecture and compile configuration file of a checkpoint.
pub const MODEL_FILE: &str = "model.json";
/// The weights file of a checkpoint (also what [`Sequential::save_weights`] writes).
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// The optimizer-state file of a checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// Prefix of every optimizer state name.
const OPTIMIZER_PREFIX: &str = "optimizer/";
use crate::model::{ITERATIONS, LEARNING_RATE};

/// `model.json`.
#[derive(Serialize, Deserialize)]
struct ModelFile {
    format: String,
    format_version: u32,
    /// The weight-initialisation seed (`null` in files that did not record it).
    #[serde(default)]
    seed: Option<u64>,
    /// The input shape given by `Sequential::input` (absent when a layer declares it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input: Option<Vec<usize>>,
    layers: Vec<LayerEntry>,
    #[serde(default)]
    compile: Option<CompileEntry>,
    #[serde(default)]
    files: BTreeMap<String, FileDigest>,
}

/// One layer of `model.json`.
#[derive(Serialize, Deserialize)]
struct LayerEntry {
    kind: String,
    config: serde_json::Value,
}

/// What `compile` was given.
#[derive(Serialize, Deserialize)]
struct CompileEntry {
    optimizer: serde_json::Value,
    loss: Loss,
    metrics: Vec<Metric>,
}

/// Size and SHA-256 of a file of the checkpoint.
#[derive(Serialize, Deserialize, PartialEq)]
struct FileDigest {
    bytes: u64,
    sha256: String,
}

impl FileDigest {
    fn of(bytes: &[u8]) -> Self {
        let digest = Sha256::digest(bytes);
        let sha256 = digest.iter().map(|b| format!("{b:02x}")).collect();
        FileDigest {
            bytes: bytes.len() as u64,
            sha256,
        }
    }
}

fn format_err(path: &Path, detail: impl Into<String>) -> Error {
    Error::Format {
        path: path.display().to_string(),
        detail: detail.into(),
    }
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Tensor-crate I/O errors become [`Error::Io`]; the others (a corrupt safetensors file is
/// `hasten_tensor::Error::Safetensors`, which names the file) stay [`Error::Tensor`].
fn from_tensor(e: hasten_tensor::Error) -> Error {
    match e {
        hasten_tensor::Error::Io { path, source } => Error::Io { path, source },
        other => Error::Tensor(other),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| io_err(path, e))
}

/// What a saved tensor must look like.
struct Expected {
    shape: Vec<usize>,
    dtype: DType,
}

impl Expected {
    fn describe(&self) -> String {
        format!("{} {}", self.dtype, Shape::new(self.shape.clone()))
    }
}

/// Checks one tensor against what the model needs.
fn check_tensor(path: &Path, name: &str, t: &HostTensor, want: &Expected) -> Result<()> {
    if t.shape.dims() != want.shape.as_slice() || t.dtype() != want.dtype {
        return Err(format_err(
            path,
            format!(
                "tensor {name:?} is {} {} but the architecture needs {}",
                t.dtype(),
                t.shape,
                want.describe()
            ),
        ));
    }
    Ok(())
}

/// Every weight of a built model with its shape, in layer order.
fn weight_specs(model: &Sequential) -> Result<Vec<(String, Expected)>> {
    let built = model
        .built
        .as_ref()
        .ok_or_else(|| Error::config("the model is not built"))?;
    Ok(built
        .params
        .iter()
        .flatten()
        .map(|(name, spec)| {
            (
                name.clone(),
                Expected {
                    shape: spec.shape.clone(),
                    dtype: spec.dtype(),
                },
            )
        })
        .collect())
}

/// Reads step counters saved by versions that kept them in an `f32` (whole numbers below
/// 2²⁴) as the `I32` the model now keeps.
fn upgrade_f32_counters(model: &Sequential, found: &mut BTreeMap<String, HostTensor>) {
    let Some(built) = model.built.as_ref() else {
        return;
    };
    for (name, spec) in built.params.iter().flatten() {
        if spec.kind != StateKind::Counter {
            continue;
        }
        if let Some(t) = found.get_mut(name) {
            let counts: Option<Vec<i32>> = t.as_f32().ok().and_then(|v| {
                v.iter()
                    .map(|&c| {
                        (c.fract() == 0.0 && (0.0..16_777_216.0).contains(&c)).then_some(c as i32)
                    })
                    .collect()
            });
            if let Some(counts) = counts {
                if let Ok(upgraded) = HostTensor::i32(t.shape.clone(), counts) {
                    *t = upgraded;
                }
            }
        }
    }
}

/// Checks that `found` holds exactly the model's weights, with the right shapes.
fn check_weights(
    path: &Path,
    model: &Sequential,
    found: &BTreeMap<String, HostTensor>,
) -> Result<()> {
    let specs = weight_specs(model)?;
    for (name, want) in &specs {
        match found.get(name) {
            Some(t) => check_tensor(path, name, t, want)?,
            None => {
                return Err(format_err(
                    path,
                    format!(
                        "missing tensor {name:?} (the architecture needs {})",
                        want.describe()
                    ),
                ))
            }
        }
    }
    if let Some(extra) = found
        .keys()
        .find(|k| !specs.iter().any(|(name, _)| name == *k))
    {
        let known: Vec<&str> = specs.iter().map(|(n, _)| n.as_str()).collect();
        return Err(format_err(
            path,
            format!(
                "unexpected tensor {extra:?}: the model's weights are {}",
                known.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Checks optimizer state: the step counter and learning rate (required), and slots
/// `optimizer/<weight>/<slot>` shaped like their weight.
fn check_optimizer_state(
    path: &Path,
    model: &Sequential,
    found: &BTreeMap<String, HostTensor>,
) -> Result<()> {
    let scalar = Expected {
        shape: Vec::new(),
        dtype: DType::F32,
    };
    for name in [ITERATIONS, LEARNING_RATE] {
        let t = found.get(name).ok_or_else(|| {
            format_err(
                path,
                format!("missing tensor {name:?} (the architecture needs f32 [])"),
            )
        })?;
        check_tensor(path, name, t, &scalar)?;
    }
    let specs = weight_specs(model)?;
    for (name, t) in found {
        if name == ITERATIONS || name == LEARNING_RATE {
            continue;
        }
        let weight = name
            .strip_prefix(OPTIMIZER_PREFIX)
            .and_then(|rest| rest.rsplit_once('/'))
            .map(|(weight, _slot)| weight);
        match weight.and_then(|w| specs.iter().find(|(n, _)| n == w)) {
            Some((_, want)) => check_tensor(path, name, t, want)?,
            None => {
                return Err(format_err(
                    path,
                    format!(
                    "unexpected tensor {name:?}: not an optimizer slot of any weight of the model"
                ),
                ))
            }
        }
    }
    Ok(())
}

/// Splits the model's state into weights and optimizer state.
type SplitState = (BTreeMap<String, HostTensor>, BTreeMap<String, HostTensor>);

fn split_state(model: &mut Sequential) -> Result<SplitState> {
    let state = model.get_state()?;
    let names = model.weight_names();
    let mut weights = BTreeMap::new();
    let mut optimizer = BTreeMap::new();
    for (name, t) in state {
        if names.contains(&name) {
            weights.insert(name, t);
        } else if name.starts_with(OPTIMIZER_PREFIX) {
            optimizer.insert(name, t);
        } else {
            return Err(Error::config(format!(
                "state {name:?} is neither a weight nor optimizer state; the checkpoint format \
                 does not know where to save it"
            )));
        }
    }
    Ok((weights, optimizer))
}

/// What [`save_checkpoint`] writes.
pub(crate) struct SaveSpec<'a> {
    /// Only `weights.safetensors` (Keras's `save_weights_only`), no architecture or optimizer.
    pub weights_only: bool,
    /// Further files (name, contents) written into the same directory swap.
    pub extra: &'a [(&'a str, Vec<u8>)],
}

/// Saves `model` into `dir` with one directory swap (see the module docs).
pub(crate) fn save_checkpoint(
    model: &mut Sequential,
    dir: &Path,
    spec: SaveSpec<'_>,
) -> Result<()> {
    model.build()?;
    let (weights, optimizer) = split_state(model)?;
    let compile = match (&model.training, spec.weights_only) {
        (Some(t), false) => Some(CompileEntry {
            optimizer: t.optimizer.config(),
            loss: t.loss,
            metrics: t.metrics.clone(),
        }),
        _ => None,
    };
    let layers: Vec<LayerEntry> = model
        .layers()
        .iter()
        .map(|l| LayerEntry {
            kind: l.kind().to_string(),
            config: l.config(),
        })
        .collect();
    replace_dir(dir, |tmp| {
        let mut files = BTreeMap::new();
        let weights_path = tmp.join(WEIGHTS_FILE);
        save_safetensors(&weights_path, &weights).map_err(from_tensor)?;
        files.insert(
            WEIGHTS_FILE.to_string(),
            FileDigest::of(&read_file(&weights_path)?),
        );
        if !spec.weights_only {
            if compile.is_some() {
                let path = tmp.join(OPTIMIZER_FILE);
                save_safetensors(&path, &optimizer).map_err(from_tensor)?;
                files.insert(
                    OPTIMIZER_FILE.to_string(),
                    FileDigest::of(&read_file(&path)?),
                );
            }
            let file = ModelFile {
                format: FORMAT.to_string(),
                format_version: FORMAT_VERSION,
                seed: Some(model.initial_seed()),
                input: model.declared_input().map(<[usize]>::to_vec),
                layers,
                compile,
                files,
            };
            let json = serde_json::to_vec_pretty(&file)
                .map_err(|e| Error::config(format!("cannot serialise {MODEL_FILE}: {e}")))?;
            write_atomically(&tmp.join(MODEL_FILE), &json).map_err(from_tensor)?;
        }
        for (name, bytes) in spec.extra {
            write_atomically(&tmp.join(name), bytes).map_err(from_tensor)?;
        }
        Ok(())
    })
}

impl Sequential {
    /// Saves the whole model into directory `dir`: `model.json` (architecture and compile
    /// configuration), `weights.safetensors` and, when compiled, `optimizer.safetensors`. An
    /// existing checkpoint at `dir` is replaced as a whole (see the module docs: a crash never
    /// leaves a mix of old and new files). Builds the model first if needed.
    pub fn save(&mut self, dir: impl AsRef<Path>) -> Result<()> {
        save_checkpoint(
            self,
            dir.as_ref(),
            SaveSpec {
                weights_only: false,
                extra: &[],
            },
        )
    }

    /// Loads a model saved by [`Sequential::save`]: rebuilds the layers, compiles it when the
    /// compile configuration was saved, and restores the weights and the optimizer state, so
    /// `fit` with `initial_epoch` continues exactly where the saved run was.
    ///
    /// Errors (never panics):
    /// - missing directory or file: [`Error::Io`] naming it;
    /// - malformed or inconsistent `model.json`, unknown layer kind or optimizer, wrong format
    ///   version: [`Error::Format`];
    /// - a truncated or corrupt safetensors file: `Error::Tensor(hasten_tensor::Error::Safetensors)`
    ///   when it does not parse, [`Error::Format`] when its SHA-256 differs from the one saved;
    /// - a missing, unexpected or wrongly shaped tensor: [`Error::Format`] naming the tensor
    ///   and both shapes.
    pub fn load(dir: impl AsRef<Path>) -> Result<Sequential> {
        let dir = dir.as_ref();
        check_dir(dir)?;
        let model_path = dir.join(MODEL_FILE);
        let file = read_model_file(&model_path)?;
        let mut model = Sequential::new();
        if let Some(seed) = file.seed {
            model = model.seed(seed);
        }
        if let Some(input) = file.input {
            model = model.input(input);
        }
        for (i, entry) in file.layers.into_iter().enumerate() {
            let layer = layers::from_config(&entry.kind, entry.config)
                .map_err(|e| format_err(&model_path, format!("layer {i} ({}): {e}", entry.kind)))?;
            model.add_boxed(layer);
        }
        model.build().map_err(|e| {
            format_err(
                &model_path,
                format!("the saved architecture does not build: {e}"),
            )
        })?;
        if let Some(c) = &file.compile {
            let optimizer = optimizers::from_config(&c.optimizer)
                .map_err(|e| format_err(&model_path, e.to_string()))?;
            model
                .compile_boxed(optimizer, c.loss, &c.metrics)
                .map_err(|e| {
                    format_err(
                        &model_path,
                        format!("the saved compile does not apply: {e}"),
                    )
                })?;
        }

        let weights_path = dir.join(WEIGHTS_FILE);
        let mut weights = read_verified(&weights_path, &model_path, &file.files)?;
        upgrade_f32_counters(&model, &mut weights);
        check_weights(&weights_path, &model, &weights)?;
        model.set_weights(&weights)?;

        if file.compile.is_some() {
            let path = dir.join(OPTIMIZER_FILE);
            let state = read_verified(&path, &model_path, &file.files)?;
            check_optimizer_state(&path, &model, &state)?;
            // Slots are not in the state before the first train step, so they are set on the
            // runtime directly (after the checks above) rather than through `set_weights`.
            model.runtime_mut()?.set_state(&state)?;
        }
        Ok(model)
    }

    /// Saves only the weights, as one safetensors file (Keras's `save_weights`), atomically.
    /// Builds the model first if needed.
    pub fn save_weights(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let weights = self.get_weights()?;
        save_safetensors(path.as_ref(), &weights).map_err(from_tensor)
    }

    /// Loads weights saved by [`Sequential::save_weights`] (or `weights.safetensors` of a
    /// checkpoint, or any safetensors file with the same names). The file must hold exactly the
    /// model's weights with the architecture's shapes; otherwise nothing is changed and the
    /// error names the tensor (and both shapes).
    pub fn load_weights(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.build()?;
        let mut weights = load_safetensors(path).map_err(from_tensor)?;
        upgrade_f32_counters(self, &mut weights);
        check_weights(path, self, &weights)?;
        self.set_weights(&weights)
    }
}

/// Reads and checks `model.json`.
fn read_model_file(path: &Path) -> Result<ModelFile> {
    let bytes = read_file(path)?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format_err(path, e.to_string()))?;
    let format = value.get("format").and_then(|v| v.as_str());
    if format != Some(FORMAT) {
        return Err(format_err(
            path,
            format!("not a hasten model file: \"format\" is {format:?}, expected {FORMAT:?}"),
        ));
    }
    match value.get("format_version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        Some(v) => {
            return Err(format_err(
                path,
                format!(
                "format version {v} is not supported (this build reads version {FORMAT_VERSION})"
            ),
            ))
        }
        None => {
            return Err(format_err(
                path,
                "\"format_version\" is missing or not a number",
            ))
        }
    }
    serde_json::from_value(value).map_err(|e| format_err(path, e.to_string()))
}

/// Reads a safetensors file of a checkpoint, checking it against the digest in `model.json`
/// when one is recorded.
fn read_verified(
    path: &Path,
    model_path: &Path,
    files: &BTreeMap<String, FileDigest>,
) -> Result<BTreeMap<String, HostTensor>> {
    let bytes = read_file(path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A digest is recorded by every save; a hand-assembled checkpoint may lack one, and then
    // the safetensors reader alone checks the file.
    if let Some(want) = files.get(&name) {
        let found = FileDigest::of(&bytes);
        if &found != want {
            return Err(format_err(
                path,
                format!(
                    "the file is corrupt or was replaced: it has {} bytes with SHA-256 {}, \
                     {} recorded {} bytes with SHA-256 {}",
                    found.bytes,
                    found.sha256,
                    model_path.display(),
                    want.bytes,
                    want.sha256
                ),
            ));
        }
    }
    load_safetensors(path).map_err(from_tensor)
}

/// Checks that `dir` is a directory; when it is missing, names any complete checkpoint an
/// interrupted save left beside it.
fn check_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(io_err(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a directory (a checkpoint is a directory)",
            ),
        )),
        Err(e) => {
            let hint = leftovers(dir)
                .into_iter()
                .filter(|(kind, path)| *kind == Leftover::Old && path.join(MODEL_FILE).is_file())
                .map(|(_, path)| {
                    format!(
                        "; an interrupted save left the previous checkpoint at {}",
                        path.display()
                    )
                })
                .next()
                .unwrap_or_default();
            Err(io_err(
                dir,
                std::io::Error::new(
                    e.kind(),
                    format!("checkpoint directory not found ({e}){hint}"),
                ),
            ))
        }
    }
}

/// What a leftover sibling of a checkpoint directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Leftover {
    /// A checkpoint being written.
    Tmp,
    /// A replaced checkpoint not yet removed.
    Old,
}

/// The parent of `dir` and its base name.
fn split_dir(dir: &Path) -> Result<(PathBuf, String)> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            Error::config(format!(
                "checkpoint path {} has no directory name",
                dir.display()
            ))
        })?;
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    Ok((parent, name))
}

/// Siblings `.<name>.tmp-<digits-and-dashes>` and `.<name>.old-<…>` of `dir`.
fn leftovers(dir: &Path) -> Vec<(Leftover, PathBuf)> {
    let Ok((parent, name)) = split_dir(dir) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(&parent) else {
        return Vec::new();
    };
    let tmp = format!(".{name}.tmp-");
    let old = format!(".{name}.old-");
    let unique = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '-');
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if file_name.strip_prefix(&tmp).is_some_and(unique) {
            out.push((Leftover::Tmp, entry.path()));
        } else if file_name.strip_prefix(&old).is_some_and(unique) {
            out.push((Leftover::Old, entry.path()));
        }
    }
    out.sort();
    out
}

/// Removes a file or directory tree, ignoring errors.
fn remove_quietly(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// Syncs a directory's entries (renames inside it) to disk, where the platform allows.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// A suffix no other save (in this or another process) uses: pid, time, counter.
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Fills a fresh temporary directory beside `dir` with `fill`, then swaps it into place.
fn replace_dir(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let (parent, name) = split_dir(dir)?;
    std::fs::create_dir_all(&parent).map_err(|e| io_err(&parent, e))?;
    if let Ok(m) = std::fs::symlink_metadata(dir) {
        if !m.is_dir() {
            return Err(io_err(
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "exists and is not a directory; not replacing it with a checkpoint",
                ),
            ));
        }
    }
    let suffix = unique_suffix();
    let tmp = parent.join(format!(".{name}.tmp-{suffix}"));
    std::fs::create_dir(&tmp).map_err(|e| io_err(&tmp, e))?;
    if let Err(e) = fill(&tmp) {
        remove_quietly(&tmp);
        return Err(e);
    }
    sync_dir(&tmp);
    let old = parent.join(format!(".{name}.old-{suffix}"));
    let had_old = dir.exists();
    if had_old {
        if let Err(e) = std::fs::rename(dir, &old) {
            remove_quietly(&tmp);
            return Err(io_err(dir, e));
        }
    }
    if let Err(e) = std::fs::rename(&tmp, dir) {
        if had_old {
            // Put the previous checkpoint back.
            let _ = std::fs::rename(&old, dir);
        }
        remove_quietly(&tmp);
        return Err(io_err(dir, e));
    }
    sync_dir(&parent);
    if had_old {
        remove_quietly(&old);
    }
    // The new checkpoint is in place: whatever earlier crashed saves left is obsolete.
    for (_, path) in leftovers(dir) {
        remove_quietly(&path);
    }
    Ok(())
}
