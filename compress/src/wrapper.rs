//! `PruneLowMagnitude`: a layer wrapped so that its kernel trains under a magnitude mask.
//!
//! The wrapper keeps the inner layer's name, so its weights keep their names
//! (`dense/kernel`, `dense/bias`) and adds two non-trainable weights, `<layer>/mask` (the
//! kernel's shape, ones at first) and `<layer>/threshold` (a scalar). In every step the
//! kernel is used as `kernel · mask`, so its gradient is masked too, and the optimizer's new
//! kernel is multiplied by the mask before it is stored (a weight constraint), so a pruned
//! weight stays exactly zero. Masks are recomputed on the host before the steps the schedule
//! names, from the optimizer's step count, which `fit` does automatically
//! ([`hasten_nn::layers::Maintenance`]); tfmot needs its `UpdatePruningStep` callback.

use crate::mask::magnitude_mask;
use crate::params::PruningParams;
use hasten_nn::initializers::Initializer;
use hasten_nn::layers::{from_config, ForwardCtx, Layer, LayerOutput, Maintenance, ParamSpec};
use hasten_nn::{Error, Result};
use hasten_tensor::{Graph, HostTensor, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The kind name under which pruned layers are saved.
pub const KIND: &str = "PruneLowMagnitude";

/// A Dense or Conv2D layer whose kernel is pruned while it trains.
#[derive(Debug)]
pub struct PruneLowMagnitude {
    inner: Box<dyn Layer>,
    params: PruningParams,
}

/// The saved form: the inner layer's kind and configuration, and the pruning parameters.
#[derive(Serialize, Deserialize)]
struct SavedConfig {
    layer: SavedLayer,
    pruning: PruningParams,
}

#[derive(Serialize, Deserialize)]
struct SavedLayer {
    kind: String,
    config: serde_json::Value,
}

/// The layer kinds whose kernels can be pruned (their biases are not, as in tfmot).
pub const PRUNABLE_KINDS: [&str; 2] = ["Dense", "Conv2D"];

impl PruneLowMagnitude {
    /// Wraps `inner`, which must be a Dense or Conv2D layer.
    pub fn new(inner: Box<dyn Layer>, params: PruningParams) -> crate::Result<Self> {
        params.validate()?;
        if !PRUNABLE_KINDS.contains(&inner.kind()) {
            return Err(crate::Error::config(format!(
                "layer {:?} is a {}, which has no prunable kernel: prunable kinds are {}",
                inner.name(),
                inner.kind(),
                PRUNABLE_KINDS.join(", ")
            )));
        }
        Ok(PruneLowMagnitude { inner, params })
    }

    /// The wrapped layer.
    pub fn inner(&self) -> &dyn Layer {
        self.inner.as_ref()
    }

    /// The pruning parameters.
    pub fn params(&self) -> &PruningParams {
        &self.params
    }

    /// Rebuilds a wrapper from its saved configuration (registered for `Sequential::load`).
    pub fn from_saved(config: serde_json::Value) -> Result<Box<dyn Layer>> {
        let saved: SavedConfig = serde_json::from_value(config)
            .map_err(|e| Error::config(format!("bad {KIND} configuration: {e}")))?;
        let inner = from_config(&saved.layer.kind, saved.layer.config)?;
        Ok(Box::new(PruneLowMagnitude::new(inner, saved.pruning)?))
    }

    /// Splits a saved wrapper configuration into the inner layer's kind and configuration.
    pub(crate) fn inner_config(config: serde_json::Value) -> Result<(String, serde_json::Value)> {
        let saved: SavedConfig = serde_json::from_value(config)
            .map_err(|e| Error::config(format!("bad {KIND} configuration: {e}")))?;
        Ok((saved.layer.kind, saved.layer.config))
    }

    fn state_name(&self, weight: &str) -> String {
        format!("{}/{weight}", self.inner.name())
    }

    /// The index of the kernel among the inner layer's parameters.
    fn kernel_index(&self, input: &[usize]) -> Result<usize> {
        self.inner
            .params(input)?
            .iter()
            .position(|s| s.name == "kernel")
            .ok_or_else(|| Error::config(format!("layer {} has no kernel", self.inner.name())))
    }

    /// The mask node: the next-to-last parameter (after the inner layer's).
    fn mask_of(params: &[NodeId]) -> Result<NodeId> {
        params
            .len()
            .checked_sub(2)
            .map(|i| params[i])
            .ok_or_else(|| Error::config("a pruned layer needs its mask and threshold"))
    }

    fn tensor<'a>(
        &self,
        state: &'a BTreeMap<String, HostTensor>,
        weight: &str,
    ) -> Result<&'a HostTensor> {
        let name = self.state_name(weight);
        state
            .get(&name)
            .ok_or_else(|| Error::config(format!("the model has no state {name:?}")))
    }
}

impl Layer for PruneLowMagnitude {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn set_name(&mut self, name: String) {
        self.inner.set_name(name);
    }

    fn declared_input_shape(&self) -> Option<&[usize]> {
        self.inner.declared_input_shape()
    }

    fn full_input_shape(&self, declared: &[usize]) -> Vec<usize> {
        self.inner.full_input_shape(declared)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.inner.output_shape(input)
    }

    fn params(&self, input: &[usize]) -> Result<Vec<ParamSpec>> {
        let mut specs = self.inner.params(input)?;
        let kernel = specs[self.kernel_index(input)?].clone();
        let fixed = |name, shape: Vec<usize>, init| ParamSpec {
            name,
            shape,
            init,
            fans: kernel.fans,
            trainable: false,
            kind: Default::default(),
        };
        specs.push(fixed("mask", kernel.shape.clone(), Initializer::Ones));
        specs.push(fixed("threshold", Vec::new(), Initializer::Zeros));
        Ok(specs)
    }

    fn forward(
        &self,
        g: &mut Graph,
        x: NodeId,
        params: &[NodeId],
        ctx: &mut ForwardCtx<'_>,
    ) -> Result<LayerOutput> {
        let input = g.shape(x)?.dims()[1..].to_vec();
        let kernel = self.kernel_index(&input)?;
        let mask = Self::mask_of(params)?;
        let mut inner = params[..params.len() - 2].to_vec();
        inner[kernel] = g.mul(inner[kernel], mask)?;
        self.inner.forward(g, x, &inner, ctx)
    }

    fn config(&self) -> serde_json::Value {
        let saved = SavedConfig {
            layer: SavedLayer {
                kind: self.inner.kind().to_string(),
                config: self.inner.config(),
            },
            pruning: self.params,
        };
        serde_json::to_value(saved).unwrap_or_default()
    }

    fn constrain(
        &self,
        g: &mut Graph,
        index: usize,
        params: &[NodeId],
        updated: NodeId,
    ) -> Result<NodeId> {
        let mask = Self::mask_of(params)?;
        // The kernel is the one inner weight with the mask's shape (a bias has rank 1).
        let is_kernel = index < params.len() - 2 && g.shape(params[index])? == g.shape(mask)?;
        if is_kernel {
            return Ok(g.mul(updated, mask)?);
        }
        Ok(updated)
    }

    fn maintenance(&self) -> Option<&dyn Maintenance> {
        Some(self)
    }
}

impl Maintenance for PruneLowMagnitude {
    fn due(&self, step: u64) -> bool {
        self.params.pruning_schedule.should_prune(step)
    }

    fn maintain(
        &self,
        step: u64,
        state: &BTreeMap<String, HostTensor>,
    ) -> Result<BTreeMap<String, HostTensor>> {
        let kernel = self.tensor(state, "kernel")?;
        let old_mask = self.tensor(state, "mask")?.as_f32()?;
        let dims = kernel.shape.dims().to_vec();
        let masked: Vec<f32> = kernel
            .as_f32()?
            .iter()
            .zip(old_mask)
            .map(|(w, m)| w * m)
            .collect();
        let sparsity = self.params.pruning_schedule.sparsity(step);
        let mask = magnitude_mask(&masked, &dims, &self.params, sparsity)?;
        let pruned: Vec<f32> = masked
            .iter()
            .zip(&mask.values)
            .map(|(w, m)| w * m)
            .collect();
        let mut out = BTreeMap::new();
        out.insert(
            self.state_name("kernel"),
            HostTensor::f32(dims.clone(), pruned)?,
        );
        out.insert(self.state_name("mask"), HostTensor::f32(dims, mask.values)?);
        out.insert(
            self.state_name("threshold"),
            HostTensor::scalar(mask.threshold),
        );
        Ok(out)
    }

    fn epoch_logs(&self, state: &BTreeMap<String, HostTensor>) -> Vec<(String, f64)> {
        let mut logs = Vec::new();
        if let Ok(mask) = self.tensor(state, "mask").and_then(|m| Ok(m.as_f32()?)) {
            let zeros = mask.iter().filter(|&&m| m == 0.0).count();
            logs.push((
                self.state_name("sparsity"),
                zeros as f64 / mask.len().max(1) as f64,
            ));
        }
        if let Ok(t) = self
            .tensor(state, "threshold")
            .and_then(|t| Ok(t.as_f32()?))
        {
            logs.push((self.state_name("threshold"), t[0] as f64));
        }
        logs
    }
}
