//! The `Sequential` model: a stack of layers, built into named weights, compiled with an
//! optimizer, a loss and metrics, and run on any backend.

use super::graphs::{ITERATIONS, LEARNING_RATE};
use super::input::{borrowed_values, check_sample_shape, model_input_shape, owned_values};
use super::runtime::{Mode, Runtime};
use crate::layers::{Layer, ParamSpec};
use crate::losses::{LabelKind, Loss};
use crate::metrics::Metric;
use crate::optimizers::{LearningRateSchedule, Optimizer};
use crate::{Error, Result};
use hasten_tensor::{Backend, CpuBackend, HostData, HostSlice, HostTensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Shapes and weight names fixed by `build`.
#[derive(Clone, Debug)]
pub(crate) struct Built {
    /// Per-sample input shape.
    pub input_shape: Vec<usize>,
    /// Per-sample output shape of each layer.
    pub output_shapes: Vec<Vec<usize>>,
    /// Each layer's weights with their state names (`<layer>/<weight>`).
    pub params: Vec<Vec<(String, ParamSpec)>>,
}

impl Built {
    /// The model's per-sample output shape.
    pub fn output_shape(&self) -> &[usize] {
        self.output_shapes.last().map_or(&self.input_shape, |s| s)
    }
}

/// What `compile` fixed.
#[derive(Debug)]
pub(crate) struct Training {
    pub optimizer: Box<dyn Optimizer>,
    pub loss: Loss,
    pub metrics: Vec<Metric>,
    /// Sets the learning rate before every step, from the step number.
    pub schedule: Option<Box<dyn LearningRateSchedule>>,
}

/// A linear stack of layers, trained the way Keras trains: `compile`, then `fit`.
///
/// ```no_run
/// use hasten_nn::prelude::*;
/// let mut model = Sequential::new();
/// model.add(Dense::new(128).activation(Activation::Relu).input_shape([784]));
/// model.add(Dense::new(10).activation(Activation::Softmax));
/// model.compile(Adam::default(), Loss::sparse_categorical_crossentropy(), &[Metric::Accuracy]).unwrap();
/// ```
pub struct Sequential {
    layers: Vec<Box<dyn Layer>>,
    /// The per-sample input shape given by [`Sequential::input`].
    input: Option<Vec<usize>>,
    /// Whether `evaluate` and `predict` refuse NaN and infinite inputs.
    check_finite: bool,
    seed: u64,
    pub(crate) built: Option<Built>,
    pub(crate) training: Option<Training>,
    pub(crate) runtime: Option<Runtime>,
    backend: Arc<dyn Backend>,
}

impl Default for Sequential {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Sequential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequential")
            .field("layers", &self.layers)
            .finish()
    }
}

impl Sequential {
    /// An empty model on the CPU backend, seeded with 42.
    pub fn new() -> Self {
        Sequential {
            layers: Vec::new(),
            input: None,
            check_finite: true,
            seed: 42,
            built: None,
            training: None,
            runtime: None,
            backend: Arc::new(CpuBackend::new()),
        }
    }

    /// Declares the per-sample input shape (Keras 3's `keras.Input(shape=...)`), instead of
    /// `input_shape` on the first layer.
    pub fn input(mut self, shape: impl Into<Vec<usize>>) -> Self {
        self.input = Some(shape.into());
        self.built = None;
        self.runtime = None;
        self
    }

    /// The input shape given by [`Sequential::input`], if any.
    pub fn declared_input(&self) -> Option<&[usize]> {
        self.input.as_deref()
    }

    /// Whether `evaluate` and `predict` check their input for NaN and infinities first and
    /// refuse it (on by default; `fit` has [`crate::FitOptions::check_finite`]).
    pub fn set_check_finite(&mut self, on: bool) {
        self.check_finite = on;
    }

    /// Whether `evaluate` and `predict` refuse NaN and infinities (see [`Self::set_check_finite`]).
    pub fn checks_finite(&self) -> bool {
        self.check_finite
    }

    /// Appends a layer (Keras's `model.add`).
    pub fn add(&mut self, layer: impl Layer + 'static) -> &mut Self {
        self.add_boxed(Box::new(layer))
    }

    /// Appends a boxed layer.
    pub fn add_boxed(&mut self, layer: Box<dyn Layer>) -> &mut Self {
        self.layers.push(layer);
        self.built = None;
        self.runtime = None;
        self
    }

    /// Builder form of [`Sequential::add`].
    pub fn with(mut self, layer: impl Layer + 'static) -> Self {
        self.add(layer);
        self
    }

    /// Sets the seed of weight initialisation (before the model is built).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The seed of weight initialisation.
    pub fn initial_seed(&self) -> u64 {
        self.seed
    }

    /// The backend the model runs on.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Runs the model on another backend from now on, keeping its weights.
    pub fn set_backend(&mut self, backend: Arc<dyn Backend>) -> Result<()> {
        let state = match self.runtime.as_mut() {
            Some(rt) => rt.state()?.clone(),
            None => BTreeMap::new(),
        };
        self.backend = backend;
        if self.built.is_some() {
            self.runtime = Some(Runtime::new(Arc::clone(&self.backend), state));
        }
        Ok(())
    }

    /// The layers.
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }

    /// Takes the model apart into its layers (named, when it was built), for a tool that
    /// rebuilds it with some layers wrapped or replaced.
    pub fn into_layers(self) -> Vec<Box<dyn Layer>> {
        self.layers
    }

    /// Fixes shapes and names, and initialises the weights. Called by `compile` and `summary`;
    /// needs the input shape, from [`Sequential::input`] or the first layer's `input_shape`.
    pub fn build(&mut self) -> Result<()> {
        if self.built.is_some() {
            return Ok(());
        }
        let input_shape = model_input_shape(self.input.as_deref(), &self.layers)?;
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        let mut shape = input_shape.clone();
        let mut output_shapes = Vec::new();
        let mut params = Vec::new();
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut state = BTreeMap::new();
        for layer in &mut self.layers {
            if layer.name().is_empty() {
                let n = counts.entry(layer.kind()).or_default();
                let base = keras_name(layer.kind());
                layer.set_name(if *n == 0 { base } else { format!("{base}_{n}") });
                *n += 1;
            }
            let specs = layer.params(&shape)?;
            let mut named = Vec::new();
            for spec in specs {
                let name = format!("{}/{}", layer.name(), spec.name);
                state.insert(name.clone(), spec.initial_value(&mut rng)?);
                named.push((name, spec));
            }
            shape = layer
                .output_shape(&shape)
                .map_err(|e| Error::config(format!("layer {}: {e}", layer.name())))?;
            output_shapes.push(shape.clone());
            params.push(named);
        }
        self.built = Some(Built {
            input_shape,
            output_shapes,
            params,
        });
        self.runtime = Some(Runtime::new(Arc::clone(&self.backend), state));
        Ok(())
    }

    /// Sets the optimizer, loss and metrics (Keras's `compile`).
    pub fn compile(
        &mut self,
        optimizer: impl Optimizer + 'static,
        loss: Loss,
        metrics: &[Metric],
    ) -> Result<()> {
        self.compile_boxed(Box::new(optimizer), loss, metrics)
    }

    /// [`Sequential::compile`] with a boxed optimizer.
    pub fn compile_boxed(
        &mut self,
        optimizer: Box<dyn Optimizer>,
        loss: Loss,
        metrics: &[Metric],
    ) -> Result<()> {
        self.build()?;
        let built = self.built.as_ref().ok_or(Error::NotCompiled)?;
        loss.check_output(built.output_shape())?;
        let mut extra = BTreeMap::new();
        extra.insert(ITERATIONS.to_string(), HostTensor::scalar(0.0));
        extra.insert(
            LEARNING_RATE.to_string(),
            HostTensor::scalar(optimizer.learning_rate()),
        );
        self.runtime_mut()?.set_state(&extra)?;
        self.training = Some(Training {
            optimizer,
            loss,
            metrics: metrics.to_vec(),
            schedule: None,
        });
        Ok(())
    }

    /// Drives the learning rate by a schedule of the step number from now on (Keras's
    /// `Adam(learning_rate=ExponentialDecay(...))`); `None` returns to a fixed rate.
    pub fn set_learning_rate_schedule(
        &mut self,
        schedule: Option<Box<dyn LearningRateSchedule>>,
    ) -> Result<()> {
        let training = self.training.as_mut().ok_or(Error::NotCompiled)?;
        training.schedule = schedule;
        Ok(())
    }

    /// Lends the runtime and the model at once (the runtime compiles graphs the model builds).
    pub(crate) fn with_runtime<T>(
        &mut self,
        f: impl FnOnce(&Sequential, &mut Runtime) -> Result<T>,
    ) -> Result<T> {
        let mut rt = self
            .runtime
            .take()
            .ok_or_else(|| Error::config("the model is not built"))?;
        let result = f(self, &mut rt);
        self.runtime = Some(rt);
        result
    }

    pub(crate) fn runtime_mut(&mut self) -> Result<&mut Runtime> {
        self.runtime
            .as_mut()
            .ok_or_else(|| Error::config("the model is not built"))
    }

    /// Names of the trainable and non-trainable weights, in layer order.
    pub fn weight_names(&self) -> Vec<String> {
        self.built
            .iter()
            .flat_map(|b| b.params.iter().flatten().map(|(n, _)| n.clone()))
            .collect()
    }

    /// The current weights by name (`dense/kernel`, …).
    pub fn get_weights(&mut self) -> Result<BTreeMap<String, HostTensor>> {
        self.build()?;
        let names = self.weight_names();
        let state = self.runtime_mut()?.state()?;
        Ok(names
            .into_iter()
            .filter_map(|n| state.get(&n).map(|t| (n, t.clone())))
            .collect())
    }

    /// Every state tensor: weights, optimizer slots, step count and learning rate.
    pub fn get_state(&mut self) -> Result<BTreeMap<String, HostTensor>> {
        self.build()?;
        Ok(self.runtime_mut()?.state()?.clone())
    }

    /// Replaces weights (or any state) by name; each must match the existing shape.
    pub fn set_weights(&mut self, values: &BTreeMap<String, HostTensor>) -> Result<()> {
        self.build()?;
        let current = self.runtime_mut()?.state()?;
        for (name, value) in values {
            match current.get(name) {
                Some(old) if old.shape == value.shape && old.dtype() == value.dtype() => {}
                Some(old) => {
                    return Err(Error::BadData(format!(
                        "weight {name:?} is {} {}, the value given is {} {}",
                        old.dtype(),
                        old.shape,
                        value.dtype(),
                        value.shape
                    )))
                }
                None => {
                    return Err(Error::BadData(format!(
                        "the model has no weight named {name:?}"
                    )))
                }
            }
        }
        self.runtime_mut()?.set_state(values)
    }

    /// The current learning rate.
    pub fn learning_rate(&mut self) -> Result<f32> {
        let state = self.runtime_mut()?.state()?;
        Ok(state
            .get(LEARNING_RATE)
            .and_then(|t| t.as_f32().ok())
            .map_or(0.0, |v| v[0]))
    }

    /// Changes the learning rate for the following steps.
    pub fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        let mut v = BTreeMap::new();
        v.insert(LEARNING_RATE.to_string(), HostTensor::scalar(lr));
        self.runtime_mut()?.set_state(&v)
    }

    /// Optimizer steps taken so far.
    pub fn iterations(&mut self) -> Result<u64> {
        let state = self.runtime_mut()?.state()?;
        Ok(state
            .get(ITERATIONS)
            .and_then(|t| t.as_f32().ok())
            .map_or(0, |v| v[0] as u64))
    }

    /// Loss and metrics over a dataset, batch by batch (Keras's `evaluate`).
    pub fn evaluate(
        &mut self,
        x: &HostTensor,
        y: &HostTensor,
        batch_size: usize,
    ) -> Result<BTreeMap<String, f64>> {
        let data = self.dataset("x", x, Some(y), self.check_finite)?;
        self.evaluate_dataset(&data, batch_size)
    }

    /// Class scores for every sample (Keras's `predict`), in batches of `batch_size`.
    pub fn predict(&mut self, x: &HostTensor, batch_size: usize) -> Result<HostTensor> {
        // The samples are read in place: copying a test set first cost more than predicting.
        let samples = self.sample_count("x", x)?;
        let values = borrowed_values("x", x, self.check_finite)?;
        let built = self.built.clone().ok_or(Error::NotCompiled)?;
        let row_len: usize = built.input_shape.iter().product();
        let out_len: usize = built.output_shape().iter().product();
        let mut out = Vec::with_capacity(samples * out_len);
        let batch_size = batch_size.max(1);
        for start in (0..samples).step_by(batch_size) {
            let n = batch_size.min(samples - start);
            let rows = &values[start * row_len..(start + n) * row_len];
            self.with_runtime(|model, rt| {
                let exe =
                    rt.activate((Mode::Predict, n), false, || model.predict_graph(&built, n))?;
                exe.run(&[HostSlice::F32(rows)])?;
                match exe.output_slice(0)? {
                    HostSlice::F32(v) => out.extend_from_slice(v),
                    other => {
                        return Err(Error::BadData(format!(
                            "predictions came back as {}",
                            other.dtype()
                        )))
                    }
                }
                Ok(())
            })?;
        }
        let mut dims = vec![samples];
        dims.extend_from_slice(built.output_shape());
        Ok(HostTensor::f32(dims, out)?)
    }

    pub(crate) fn evaluate_dataset(
        &mut self,
        data: &Dataset,
        batch_size: usize,
    ) -> Result<BTreeMap<String, f64>> {
        let built = self.built.clone().ok_or(Error::NotCompiled)?;
        let training = self.training.as_ref().ok_or(Error::NotCompiled)?;
        let (loss, metrics) = (training.loss, training.metrics.clone());
        let mut sums = Sums::new(&metrics);
        let batch_size = batch_size.max(1);
        for start in (0..data.len).step_by(batch_size) {
            let n = batch_size.min(data.len - start);
            self.with_runtime(|model, rt| {
                let exe = rt.activate((Mode::Eval, n), false, || {
                    model.eval_graph(&built, n, &loss, &metrics)
                })?;
                exe.run(&[data.x_rows(start, n), data.y_rows(start, n)?])?;
                sums.add(exe, n).map(|_| ())
            })?;
        }
        Ok(sums.mean())
    }

    /// Builds the model and checks that `x` (named `role` in errors) has its input shape;
    /// returns the sample count.
    fn sample_count(&mut self, role: &str, x: &HostTensor) -> Result<usize> {
        self.build()?;
        let built = self.built.as_ref().ok_or(Error::NotCompiled)?;
        check_sample_shape(role, x, &built.input_shape)
    }

    /// Checks and converts user data: `x` (named `role` in errors) must have the model's
    /// input shape (see [`check_sample_shape`]) and, with `check_finite`, only finite values;
    /// `y` must suit the loss.
    pub(crate) fn dataset(
        &mut self,
        role: &str,
        x: &HostTensor,
        y: Option<&HostTensor>,
        check_finite: bool,
    ) -> Result<Dataset> {
        let samples = self.sample_count(role, x)?;
        let x_data = owned_values(role, x, check_finite)?;
        let built = self.built.as_ref().ok_or(Error::NotCompiled)?;
        let row_len: usize = built.input_shape.iter().product();
        let labels = match y {
            None => Labels::None,
            Some(y) => {
                let training = self.training.as_ref().ok_or(Error::NotCompiled)?;
                labels(&training.loss, built.output_shape(), y, samples)?
            }
        };
        Ok(Dataset {
            x: Arc::new(x_data),
            row_len,
            len: samples,
            labels,
        })
    }
}

/// The Keras base name of a layer kind ("Dense" → "dense", "MaxPooling2D" → "max_pooling2d").
fn keras_name(kind: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = kind.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let prev_lower = i > 0 && chars[i - 1].is_lowercase();
        if c.is_uppercase() && prev_lower {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Training data in the form the steps take.
pub(crate) struct Dataset {
    pub x: Arc<Vec<f32>>,
    pub row_len: usize,
    pub len: usize,
    pub labels: Labels,
}

/// Labels in the dtype the loss takes.
pub(crate) enum Labels {
    None,
    Sparse(Arc<Vec<i32>>),
    Dense { values: Arc<Vec<f32>>, len: usize },
}

impl Dataset {
    pub fn x_rows(&self, start: usize, n: usize) -> HostSlice<'_> {
        HostSlice::F32(&self.x[start * self.row_len..(start + n) * self.row_len])
    }

    pub fn y_rows(&self, start: usize, n: usize) -> Result<HostSlice<'_>> {
        match &self.labels {
            Labels::Sparse(v) => Ok(HostSlice::I32(&v[start..start + n])),
            Labels::Dense { values, len } => {
                Ok(HostSlice::F32(&values[start * len..(start + n) * len]))
            }
            Labels::None => Err(Error::BadData("labels are needed here".into())),
        }
    }

    /// Splits off the last `fraction` of samples (Keras's `validation_split`).
    pub fn split_tail(&mut self, fraction: f32) -> Result<Dataset> {
        if !(0.0..1.0).contains(&fraction) {
            return Err(Error::BadData(format!(
                "validation_split must be in [0, 1), got {fraction}"
            )));
        }
        let keep = self.len - (self.len as f32 * fraction) as usize;
        let tail_x = Arc::new(Arc::make_mut(&mut self.x).split_off(keep * self.row_len));
        let labels = match &mut self.labels {
            Labels::Sparse(v) => Labels::Sparse(Arc::new(Arc::make_mut(v).split_off(keep))),
            Labels::Dense { values, len } => Labels::Dense {
                values: Arc::new(Arc::make_mut(values).split_off(keep * *len)),
                len: *len,
            },
            Labels::None => Labels::None,
        };
        let tail = Dataset {
            x: tail_x,
            row_len: self.row_len,
            len: self.len - keep,
            labels,
        };
        self.len = keep;
        Ok(tail)
    }
}

/// Converts labels for a loss, with a clear error when they do not fit.
fn labels(loss: &Loss, output: &[usize], y: &HostTensor, samples: usize) -> Result<Labels> {
    let (shape, _) = loss.label_spec(output);
    let per_sample: usize = shape.iter().product();
    if y.shape.numel() != samples * per_sample || y.shape.dims().first() != Some(&samples) {
        return Err(Error::BadData(format!(
            "y has shape {}, but {} expects [{samples}{}] for {samples} samples",
            y.shape,
            loss.name(),
            shape.iter().map(|d| format!(", {d}")).collect::<String>()
        )));
    }
    Ok(match loss.label_kind() {
        LabelKind::Sparse => {
            let classes = *output.last().unwrap_or(&1) as i64;
            let ints: Vec<i64> = match &y.data {
                HostData::I32(v) => v.iter().map(|&l| l as i64).collect(),
                HostData::U8(v) => v.iter().map(|&l| l as i64).collect(),
                HostData::F32(v) if v.iter().all(|l| l.fract() == 0.0) => {
                    v.iter().map(|&l| l as i64).collect()
                }
                _ => {
                    return Err(Error::BadData(format!(
                        "{} needs integer class labels",
                        loss.name()
                    )))
                }
            };
            if let Some(bad) = ints.iter().find(|&&l| l < 0 || l >= classes) {
                return Err(Error::BadData(format!(
                    "label {bad} is outside the {classes} classes"
                )));
            }
            Labels::Sparse(Arc::new(ints.into_iter().map(|l| l as i32).collect()))
        }
        LabelKind::Dense => {
            let values = match &y.data {
                HostData::F32(v) => v.clone(),
                HostData::I32(v) => v.iter().map(|&l| l as f32).collect(),
                HostData::U8(v) => v.iter().map(|&l| l as f32).collect(),
                HostData::Bool(v) => v.iter().map(|&l| l as u8 as f32).collect(),
            };
            Labels::Dense {
                values: Arc::new(values),
                len: per_sample,
            }
        }
    })
}

/// Running sums of loss and metrics, weighted by batch size.
pub(crate) struct Sums {
    names: Vec<String>,
    totals: Vec<f64>,
    count: usize,
}

impl Sums {
    pub fn new(metrics: &[Metric]) -> Self {
        let names: Vec<String> = std::iter::once("loss".to_string())
            .chain(metrics.iter().map(|m| m.name()))
            .collect();
        Sums {
            totals: vec![0.0; names.len()],
            names,
            count: 0,
        }
    }

    /// Adds a step's outputs (in the order loss, metrics) for `n` samples; returns the loss.
    pub fn add(&mut self, exe: &mut dyn hasten_tensor::Executable, n: usize) -> Result<f32> {
        self.add_step(exe, n, 0)
    }

    /// Adds step `step`'s outputs of an execution of several steps (each output holds one
    /// value per step) for `n` samples; returns its loss.
    pub fn add_step(
        &mut self,
        exe: &mut dyn hasten_tensor::Executable,
        n: usize,
        step: usize,
    ) -> Result<f32> {
        let mut loss = 0.0;
        for (i, total) in self.totals.iter_mut().enumerate() {
            if let HostSlice::F32(v) = exe.output_slice(i)? {
                if i == 0 {
                    loss = v[step];
                }
                *total += v[step] as f64 * n as f64;
            }
        }
        self.count += n;
        Ok(loss)
    }

    /// The current means.
    pub fn mean(&self) -> BTreeMap<String, f64> {
        let c = self.count.max(1) as f64;
        self.names
            .iter()
            .cloned()
            .zip(self.totals.iter().map(|t| t / c))
            .collect()
    }
}
