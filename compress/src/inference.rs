//! Inference with sparse Dense kernels: a model whose sparse enough Dense layers run
//! [`forward`] on the CPU (consecutive ones in one pass), whose `Flatten`s are free (rows
//! are already flat), and whose other layers run as before, on the model's backend, in runs
//! of consecutive layers.

use crate::plain::{model_from, plain_view, PlainLayer};
use crate::sparse::{forward, SparseDense, SparseMatrix};
use crate::{Error, Result};
use hasten_nn::model::finite::{describe_non_finite, first_non_finite};
use hasten_nn::Sequential;
use hasten_tensor::HostTensor;
use std::collections::BTreeMap;

/// Density below which a Dense layer runs sparse by default, measured by the `prune_bench`
/// example on the reference MLP's first layer against the same layer's `predict` on the CPU
/// backend: at batch 1 (the one-sample kernels) they lose from 40 % density on, at batch 256
/// (the tiled one) from 50 %; 0.35 is below both (see ARCHITECTURE.md).
pub const MEASURED_CROSSOVER: f64 = 0.35;

/// Which Dense layers run sparse.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SparseChoice {
    /// Those with density below [`MEASURED_CROSSOVER`] (the same at batch 1 and 256, so one
    /// choice serves every batch size), in runs of consecutive layers whose modelled sparse
    /// cost is below their dense cost: a CNN's classifier (thousands of features, ten units)
    /// stays dense however sparse it is.
    Auto,
    /// Those with density below this.
    DensityBelow(f64),
    /// Every Dense layer.
    Always,
    /// None: the whole model runs on its backend (for comparison).
    Never,
}

impl SparseChoice {
    /// The density below which a layer runs sparse.
    fn threshold(self) -> f64 {
        match self {
            SparseChoice::Auto => MEASURED_CROSSOVER,
            SparseChoice::DensityBelow(d) => d,
            SparseChoice::Always => f64::INFINITY,
            SparseChoice::Never => f64::NEG_INFINITY,
        }
    }
}

/// A model for `predict` with sparse Dense layers.
pub struct SparseModel {
    plan: Plan,
    input_shape: Vec<usize>,
    output_shape: Vec<usize>,
    check_finite: bool,
}

/// A model's layers as stages.
struct Plan {
    stages: Vec<Stage>,
}

enum Stage {
    /// Consecutive layers run by a plain model on the backend, with their input shape.
    Backend(Box<Sequential>, Vec<usize>),
    /// Consecutive Dense layers run sparse.
    Sparse(Vec<SparseDense>),
}

impl SparseModel {
    /// Splits `model` (pruned or stripped) into sparse Dense layers, chosen by `choice`, and
    /// runs of other layers.
    pub fn new(model: &mut Sequential, choice: SparseChoice) -> Result<SparseModel> {
        let (layers, weights) = plain_view(model)?;
        let input_shape = layers
            .first()
            .map(|l| l.input_shape.clone())
            .unwrap_or_default();
        let mut output_shape = input_shape.clone();
        for layer in model.layers() {
            output_shape = layer.output_shape(&output_shape)?;
        }
        Ok(SparseModel {
            plan: Plan::new(&layers, &weights, choice)?,
            input_shape,
            output_shape,
            check_finite: model.checks_finite(),
        })
    }

    /// Whether `predict` refuses input holding NaN or infinities, as `Sequential::predict`
    /// does (taken from the model it was made from; on by default).
    pub fn set_check_finite(&mut self, on: bool) {
        self.check_finite = on;
    }

    /// The layers that run sparse, with their densities.
    pub fn sparse_layers(&self) -> Vec<(String, f64)> {
        let sparse = self.plan.stages.iter().filter_map(|s| match s {
            Stage::Sparse(run) => Some(run.iter().map(|d| (d.name.clone(), d.matrix.density()))),
            Stage::Backend(..) => None,
        });
        sparse.flatten().collect()
    }

    /// Predictions for every sample of `x`, `batch_size` at a time (as `Sequential::predict`).
    pub fn predict(&mut self, x: &HostTensor, batch_size: usize) -> Result<HostTensor> {
        let dims = x.shape.dims();
        let row: usize = self.input_shape.iter().product();
        if dims.is_empty() || x.shape.numel() != dims[0] * row {
            return Err(Error::config(format!(
                "x has shape {}, the model takes samples of {:?}",
                x.shape, self.input_shape
            )));
        }
        let (values, samples, batch) = (x.as_f32()?, dims[0], batch_size.max(1));
        if self.check_finite {
            if let Some(i) = first_non_finite(values) {
                return Err(Error::config(format!(
                    "{}; nothing was run. Clean the data, or call \
                     `SparseModel::set_check_finite(false)` to run on it anyway",
                    describe_non_finite("x", &x.shape, i, values[i])
                )));
            }
        }
        if let [Stage::Backend(model, shape)] = &mut self.plan.stages[..] {
            // Nothing runs sparse: the whole model on its backend, reading `x` in place
            // (its input was checked above).
            model.set_check_finite(false);
            if dims[1..] == shape[..] {
                return Ok(model.predict(x, batch_size)?);
            }
            let mut flat = vec![samples];
            flat.extend_from_slice(shape);
            return Ok(model.predict(&x.clone().reshape(flat)?, batch_size)?);
        }
        let width: usize = self.output_shape.iter().product();
        let mut out = vec![0.0; samples * width];
        for start in (0..samples).step_by(batch) {
            let end = (start + batch).min(samples);
            let y = &mut out[start * width..end * width];
            self.plan
                .run(&values[start * row..end * row], end - start, y)?;
        }
        let mut dims = vec![samples];
        dims.extend_from_slice(&self.output_shape);
        Ok(HostTensor::f32(dims, out)?)
    }
}

impl Plan {
    /// Stages for `layers`, with the Dense layers `choice` picks sparse.
    fn new(
        layers: &[PlainLayer],
        weights: &BTreeMap<String, HostTensor>,
        choice: SparseChoice,
    ) -> Result<Plan> {
        let mut candidates = layers
            .iter()
            .map(|layer| sparse_dense(layer, weights, choice.threshold()))
            .collect::<Result<Vec<_>>>()?;
        if choice == SparseChoice::Auto {
            drop_runs_that_do_not_pay(&mut candidates);
        }
        let mut plan = Plan { stages: Vec::new() };
        let mut run: Vec<&PlainLayer> = Vec::new();
        for (layer, candidate) in layers.iter().zip(candidates) {
            if layer.kind == "Flatten" && run.is_empty() {
                continue;
            }
            match candidate {
                Some(sparse) => {
                    plan.flush(&mut run, weights)?;
                    match plan.stages.last_mut() {
                        Some(Stage::Sparse(sparse_run)) => sparse_run.push(sparse),
                        _ => plan.stages.push(Stage::Sparse(vec![sparse])),
                    }
                }
                None => run.push(layer),
            }
        }
        plan.flush(&mut run, weights)?;
        Ok(plan)
    }

    /// Turns a run of plain layers into one backend stage.
    fn flush(
        &mut self,
        run: &mut Vec<&PlainLayer>,
        weights: &BTreeMap<String, HostTensor>,
    ) -> Result<()> {
        let Some(first) = run.first() else {
            return Ok(());
        };
        let specs: Vec<(&str, &serde_json::Value)> =
            run.iter().map(|l| (l.kind.as_str(), &l.config)).collect();
        let mut model = model_from(&specs, &first.input_shape)?;
        let input_shape = first.input_shape.clone();
        run.clear();
        let own: BTreeMap<String, HostTensor> = model
            .weight_names()
            .into_iter()
            .filter_map(|n| weights.get(&n).map(|w| (n, w.clone())))
            .collect();
        model.set_weights(&own)?;
        self.stages
            .push(Stage::Backend(Box::new(model), input_shape));
        Ok(())
    }

    /// `y` for the `n` samples of `x`, stage by stage.
    fn run(&mut self, x: &[f32], n: usize, y: &mut [f32]) -> Result<()> {
        let mut held: Option<Vec<f32>> = None;
        let stages = self.stages.len();
        for (k, stage) in self.stages.iter_mut().enumerate() {
            let input = held.as_deref().unwrap_or(x);
            let last = k + 1 == stages;
            let next = match stage {
                Stage::Backend(model, shape) => {
                    let mut dims = vec![n];
                    dims.extend_from_slice(shape);
                    let out = model.predict(&HostTensor::f32(dims, input.to_vec())?, n)?;
                    if last {
                        y.copy_from_slice(out.as_f32()?);
                        break;
                    }
                    out.as_f32()?.to_vec()
                }
                Stage::Sparse(layers) if last => {
                    forward(layers, input, y);
                    break;
                }
                Stage::Sparse(layers) => {
                    let units = layers.last().map_or(0, |l| l.matrix.units);
                    let mut out = vec![0.0; n * units];
                    forward(layers, input, &mut out);
                    out
                }
            };
            held = Some(next);
        }
        if self.stages.is_empty() {
            y.copy_from_slice(x);
        }
        Ok(())
    }
}

/// `layer` as a sparse Dense layer, if it is a Dense layer below `threshold` density.
/// Per sample, in multiply-adds of the dense product (the CPU backend's GEMM at batch 256),
/// what the tiled sparse kernel costs for each input feature (moving it into and out of
/// tiles) and for each stored weight. From `bench/prune`'s first layer (784 → 128) at batch
/// 256: dense 0.96 µs a sample (100k multiply-adds), sparse 0.19 µs at 5 % density and 0.28
/// µs at 10 %, that is 0.018 ns a stored weight and 0.13 ns a feature, against 0.0096 ns a
/// dense multiply-add. At 30 % density the model gives sparse 0.68 of dense, against 0.71
/// measured; for the pruned CNN's last layer (5408 → 10 at 20 %) it gives 1.7× dense, and
/// `prune_cnn` measured the whole model with that layer sparse at 0.59× the dense model's
/// speed at batch 256.
const TILED_COST_PER_FEATURE: f64 = 13.5;
/// See [`TILED_COST_PER_FEATURE`].
const TILED_COST_PER_WEIGHT: f64 = 1.9;

/// Turns back into plain layers each run of consecutive sparse candidates whose modelled
/// sparse cost is not below its dense cost: a layer with few units (a classifier's last
/// layer after a convolution) moves more values into tiles than the dense product does
/// arithmetic, and a sparse stage between two backend stages also costs a copy.
fn drop_runs_that_do_not_pay(candidates: &mut [Option<SparseDense>]) {
    let mut start = 0;
    while start < candidates.len() {
        let end = start
            + candidates[start..]
                .iter()
                .take_while(|c| c.is_some())
                .count();
        let run = &candidates[start..end];
        let (sparse, dense) = run.iter().flatten().fold((0.0, 0.0), |(s, d), layer| {
            let m = &layer.matrix;
            let (f, u) = (m.features as f64, m.units as f64);
            let cost = TILED_COST_PER_FEATURE * f + TILED_COST_PER_WEIGHT * m.nnz() as f64;
            (s + cost, d + f * u)
        });
        if sparse >= dense {
            candidates[start..end].iter_mut().for_each(|c| *c = None);
        }
        start = end + 1;
    }
}

fn sparse_dense(
    layer: &PlainLayer,
    weights: &BTreeMap<String, HostTensor>,
    threshold: f64,
) -> Result<Option<SparseDense>> {
    if layer.kind != "Dense" {
        return Ok(None);
    }
    let kernel = weights
        .get(&format!("{}/kernel", layer.name))
        .ok_or_else(|| Error::config(format!("layer {} has no kernel", layer.name)))?;
    let dims = kernel.shape.dims();
    let matrix = SparseMatrix::from_dense(kernel.as_f32()?, dims[0], dims[1]);
    if matrix.density() >= threshold {
        return Ok(None);
    }
    let activation = serde_json::from_value(layer.config["activation"].clone())
        .map_err(|e| Error::config(format!("layer {}: unreadable activation: {e}", layer.name)))?;
    let bias = weights
        .get(&format!("{}/bias", layer.name))
        .map(|b| b.as_f32().map(<[f32]>::to_vec))
        .transpose()?;
    Ok(Some(SparseDense {
        name: layer.name.clone(),
        matrix,
        bias,
        activation,
    }))
}
