//! Inference with sparse Dense kernels: a model whose sparse enough Dense layers run
//! [`SparseMatrix::matmul`] on the CPU, and whose other layers run as before, on the
//! model's backend, in runs of consecutive layers.

use crate::plain::{model_from, plain_view, PlainLayer};
use crate::sparse::SparseMatrix;
use crate::{Error, Result};
use hasten_nn::activations::Activation;
use hasten_nn::Sequential;
use hasten_tensor::HostTensor;
use std::collections::BTreeMap;

/// Density below which a Dense layer runs sparse by default, measured by the `prune_bench`
/// example on the reference MLP's layers (see ARCHITECTURE.md).
pub const MEASURED_CROSSOVER: f64 = 0.07;

/// Which Dense layers run sparse.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SparseChoice {
    /// Those with density below [`MEASURED_CROSSOVER`].
    Auto,
    /// Those with density below this.
    DensityBelow(f64),
    /// Every Dense layer.
    Always,
    /// None: the whole model runs on its backend (for comparison).
    Never,
}

/// A model for `predict` with sparse Dense layers.
pub struct SparseModel {
    stages: Vec<Stage>,
    input_shape: Vec<usize>,
    output_shape: Vec<usize>,
}

enum Stage {
    /// Consecutive layers run by a plain model on the backend.
    Backend(Box<Sequential>),
    /// One Dense layer run sparse.
    Sparse(SparseDense),
}

struct SparseDense {
    name: String,
    matrix: SparseMatrix,
    bias: Option<Vec<f32>>,
    activation: Activation,
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
        let mut stages = Vec::new();
        let mut run: Vec<&PlainLayer> = Vec::new();
        for layer in &layers {
            match sparse_dense(layer, &weights, choice)? {
                Some(sparse) => {
                    flush(&mut run, &weights, &mut stages)?;
                    stages.push(Stage::Sparse(sparse));
                }
                None => run.push(layer),
            }
        }
        flush(&mut run, &weights, &mut stages)?;
        let mut output_shape = input_shape.clone();
        for layer in model.layers() {
            output_shape = layer.output_shape(&output_shape)?;
        }
        Ok(SparseModel {
            stages,
            input_shape,
            output_shape,
        })
    }

    /// The layers that run sparse, with their densities.
    pub fn sparse_layers(&self) -> Vec<(String, f64)> {
        let sparse = self.stages.iter().filter_map(|s| match s {
            Stage::Sparse(d) => Some((d.name.clone(), d.matrix.density())),
            Stage::Backend(_) => None,
        });
        sparse.collect()
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
        let values = x.as_f32()?;
        let samples = dims[0];
        let mut out = Vec::with_capacity(samples * self.output_shape.iter().product::<usize>());
        for start in (0..samples).step_by(batch_size.max(1)) {
            let n = batch_size.max(1).min(samples - start);
            let rows = values[start * row..(start + n) * row].to_vec();
            out.extend(self.predict_batch(rows, n)?);
        }
        let mut dims = vec![samples];
        dims.extend_from_slice(&self.output_shape);
        Ok(HostTensor::f32(dims, out)?)
    }

    fn predict_batch(&mut self, mut values: Vec<f32>, n: usize) -> Result<Vec<f32>> {
        let mut shape = self.input_shape.clone();
        for stage in &mut self.stages {
            match stage {
                Stage::Backend(model) => {
                    let mut dims = vec![n];
                    dims.extend_from_slice(&shape);
                    let out = model.predict(&HostTensor::f32(dims, values)?, n)?;
                    shape = out.shape.dims()[1..].to_vec();
                    values = out.as_f32()?.to_vec();
                }
                Stage::Sparse(layer) => {
                    let rows = values.len() / layer.matrix.features.max(1);
                    let mut y = vec![0.0; rows * layer.matrix.units];
                    layer.matrix.matmul(&values, layer.bias.as_deref(), &mut y);
                    activate(layer.activation, &mut y, layer.matrix.units);
                    if let Some(last) = shape.last_mut() {
                        *last = layer.matrix.units;
                    }
                    values = y;
                }
            }
        }
        Ok(values)
    }
}

fn sparse_dense(
    layer: &PlainLayer,
    weights: &BTreeMap<String, HostTensor>,
    choice: SparseChoice,
) -> Result<Option<SparseDense>> {
    if layer.kind != "Dense" {
        return Ok(None);
    }
    let kernel = weights
        .get(&format!("{}/kernel", layer.name))
        .ok_or_else(|| Error::config(format!("layer {} has no kernel", layer.name)))?;
    let dims = kernel.shape.dims();
    let matrix = SparseMatrix::from_dense(kernel.as_f32()?, dims[0], dims[1]);
    let chosen = match choice {
        SparseChoice::Auto => matrix.density() < MEASURED_CROSSOVER,
        SparseChoice::DensityBelow(d) => matrix.density() < d,
        SparseChoice::Always => true,
        SparseChoice::Never => false,
    };
    if !chosen {
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

/// Turns a run of plain layers into one backend stage.
fn flush(
    run: &mut Vec<&PlainLayer>,
    weights: &BTreeMap<String, HostTensor>,
    stages: &mut Vec<Stage>,
) -> Result<()> {
    if run.is_empty() {
        return Ok(());
    }
    let specs: Vec<(&str, &serde_json::Value)> =
        run.iter().map(|l| (l.kind.as_str(), &l.config)).collect();
    let mut model = model_from(&specs, &run[0].input_shape)?;
    run.clear();
    let own: BTreeMap<String, HostTensor> = model
        .weight_names()
        .into_iter()
        .filter_map(|n| weights.get(&n).map(|w| (n, w.clone())))
        .collect();
    model.set_weights(&own)?;
    stages.push(Stage::Backend(Box::new(model)));
    Ok(())
}

/// Applies `activation` to rows of `width` values in place.
fn activate(activation: Activation, y: &mut [f32], width: usize) {
    match activation {
        Activation::Linear => {}
        Activation::Relu => y
            .iter_mut()
            .for_each(|v| *v = if *v > 0.0 || v.is_nan() { *v } else { 0.0 }),
        Activation::Sigmoid => y.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
        Activation::Tanh => y.iter_mut().for_each(|v| *v = v.tanh()),
        Activation::Softmax => {
            for row in y.chunks_mut(width.max(1)) {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for v in row.iter_mut() {
                    *v = (*v - max).exp();
                    sum += *v;
                }
                row.iter_mut().for_each(|v| *v /= sum);
            }
        }
    }
}
