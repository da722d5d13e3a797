//! Layers: each one describes its weights and appends its forward computation to the IR.
//! Gradients come from autodiff, so no layer has backward code.

/// The methods every layer implements the same way: its kind, its `name` field, its
/// configuration as serde sees it, and its declared input shape (the `input_shape` field).
/// `layer_basics!("Kind", 0)` reads the fields of `self.0` (layers that wrap a config).
macro_rules! layer_basics {
    ($kind:literal $(, $inner:tt)?) => {
        fn kind(&self) -> &'static str {
            $kind
        }

        fn name(&self) -> &str {
            &self$(.$inner)?.name
        }

        fn set_name(&mut self, name: String) {
            self$(.$inner)?.name = name;
        }

        fn declared_input_shape(&self) -> Option<&[usize]> {
            self$(.$inner)?.input_shape.as_deref()
        }

        fn config(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or_default()
        }
    };
}

/// The builder every layer has for its input shape (Keras's `input_shape=`), placed in the
/// layer's `impl` block; `input_shape_builder!(0)` writes `self.0.input_shape`.
macro_rules! input_shape_builder {
    ($($inner:tt)?) => {
        /// Declares the per-sample input shape, which makes this the model's first layer
        /// (only the first layer, or `Sequential::input`, may declare it).
        pub fn input_shape(mut self, shape: impl Into<Vec<usize>>) -> Self {
            self$(.$inner)?.input_shape = Some(shape.into());
            self
        }
    };
}

mod activation;
mod batch_norm;
mod conv2d;
mod dense;
mod dropout;
mod flatten;
mod pooling;
mod registry;

pub use activation::{ActivationLayer, Softmax};
pub use batch_norm::BatchNormalization;
pub use conv2d::Conv2D;
pub use dense::Dense;
pub use dropout::Dropout;
pub use flatten::Flatten;
pub use pooling::{AveragePooling2D, MaxPooling2D};
pub use registry::{register_layer, LayerFromConfig};

use crate::initializers::Initializer;
use crate::{Error, Result};
use hasten_tensor::ir::PaddingMode;
use hasten_tensor::{DType, Graph, HostTensor, NodeId};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a piece of layer state is, which decides whether it counts as a parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StateKind {
    /// A parameter: a weight the optimizer trains, or a non-trainable statistic such as
    /// batch-norm's moving mean (Keras counts both in `count_params`).
    #[default]
    Parameter,
    /// Bookkeeping such as a random-number step counter: an `I32` scalar saved in
    /// checkpoints like a weight, never trained, and not counted as a parameter.
    Counter,
}

/// A weight or other piece of state a layer owns.
#[derive(Clone, Debug)]
pub struct ParamSpec {
    /// Name inside the layer ("kernel", "bias", "moving_mean", …).
    pub name: &'static str,
    /// Dims.
    pub shape: Vec<usize>,
    /// How it starts.
    pub init: Initializer,
    /// Fan-in and fan-out for the initialiser.
    pub fans: (usize, usize),
    /// Whether the optimizer updates it (false for batch-norm moving statistics).
    pub trainable: bool,
    /// Parameter or counter.
    pub kind: StateKind,
}

impl ParamSpec {
    /// A scalar step counter named `name`, starting at zero: state, not a parameter.
    pub fn counter(name: &'static str) -> Self {
        ParamSpec {
            name,
            shape: Vec::new(),
            init: Initializer::Zeros,
            fans: (1, 1),
            trainable: false,
            kind: StateKind::Counter,
        }
    }

    /// The number of values, when the spec is a parameter (zero for counters).
    pub fn parameter_count(&self) -> usize {
        match self.kind {
            StateKind::Parameter => self.shape.iter().product(),
            StateKind::Counter => 0,
        }
    }

    /// The dtype the state is kept in: `I32` for counters (exact and wrapping), else `F32`.
    pub fn dtype(&self) -> DType {
        match self.kind {
            StateKind::Parameter => DType::F32,
            StateKind::Counter => DType::I32,
        }
    }

    /// The starting value: drawn by the initialiser, or zeros for a counter.
    pub fn initial_value(&self, rng: &mut StdRng) -> Result<HostTensor> {
        Ok(match self.kind {
            StateKind::Parameter => self.init.sample(rng, &self.shape, self.fans.0, self.fans.1),
            StateKind::Counter => {
                let len = self.shape.iter().product();
                HostTensor::i32(self.shape.clone(), vec![0; len])?
            }
        })
    }
}

/// What a forward pass may need beyond its input.
pub struct ForwardCtx<'a> {
    /// Training (dropout active, batch-norm uses batch statistics) or inference.
    pub training: bool,
    /// State updates a layer adds while training (batch-norm moving statistics).
    pub updates: &'a mut Vec<(NodeId, NodeId)>,
}

/// A layer's result: its output, and the pre-softmax logits when the output is a softmax, so a
/// cross-entropy loss can be computed stably from them.
#[derive(Clone, Copy, Debug)]
pub struct LayerOutput {
    /// The output.
    pub value: NodeId,
    /// Logits, when `value = softmax(logits)`.
    pub logits: Option<NodeId>,
}

impl From<NodeId> for LayerOutput {
    fn from(value: NodeId) -> Self {
        LayerOutput {
            value,
            logits: None,
        }
    }
}

/// A layer of a [`crate::Sequential`] model.
pub trait Layer: Send + Sync + std::fmt::Debug {
    /// The Keras class name ("Dense", "Conv2D", …), also the key in saved architectures.
    fn kind(&self) -> &'static str;

    /// The layer's name (unique in its model once built).
    fn name(&self) -> &str;

    /// Renames the layer.
    fn set_name(&mut self, name: String);

    /// The per-sample input shape declared on the layer, if any (only on the first layer).
    fn declared_input_shape(&self) -> Option<&[usize]> {
        None
    }

    /// The per-sample shape this layer, when first, reads a declared input shape as: the
    /// shape the model's data must have. `Conv2D` reads `(H, W)` as `(H, W, 1)`; others take
    /// it as declared.
    fn full_input_shape(&self, declared: &[usize]) -> Vec<usize> {
        declared.to_vec()
    }

    /// The per-sample output shape for a per-sample input shape, or an error saying why the
    /// input does not fit.
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>>;

    /// The weights the layer needs for this input shape.
    fn params(&self, _input: &[usize]) -> Result<Vec<ParamSpec>> {
        Ok(Vec::new())
    }

    /// Appends the forward computation for a batch `x` (dims `[batch, ..input]`); `params`
    /// are the graph nodes of [`Layer::params`], in order.
    fn forward(
        &self,
        g: &mut Graph,
        x: NodeId,
        params: &[NodeId],
        ctx: &mut ForwardCtx<'_>,
    ) -> Result<LayerOutput>;

    /// The layer's configuration, for saving the architecture.
    fn config(&self) -> serde_json::Value;

    /// Keras's weight constraint: the value the trainable weight `params[index]` takes after
    /// the optimizer's update `updated`, computed inside the train step. The default keeps
    /// the update.
    fn constrain(
        &self,
        _g: &mut Graph,
        _index: usize,
        _params: &[NodeId],
        updated: NodeId,
    ) -> Result<NodeId> {
        Ok(updated)
    }

    /// The layer's own upkeep of its state between train steps (a pruning schedule
    /// recomputing masks), if it has one; `fit` runs it automatically.
    fn maintenance(&self) -> Option<&dyn Maintenance> {
        None
    }
}

/// State a layer keeps up itself on the host between train steps, on any backend: `fit`
/// asks [`Maintenance::due`] before every step and, when due, hands the current state to
/// [`Maintenance::maintain`] and writes back what it returns.
pub trait Maintenance: Send + Sync {
    /// Whether the upkeep runs before train step `step` (the optimizer's step count, so a
    /// resumed run keeps the schedule). Called before every step: keep it cheap.
    fn due(&self, step: u64) -> bool;

    /// New values for some of the layer's state (by `<layer>/<weight>` name), computed from
    /// the model's current state before step `step`.
    fn maintain(
        &self,
        step: u64,
        state: &BTreeMap<String, HostTensor>,
    ) -> Result<BTreeMap<String, HostTensor>>;

    /// Values added to each epoch's logs (so `History`, the progress line and `CsvLogger`
    /// show them), by log name.
    fn epoch_logs(&self, state: &BTreeMap<String, HostTensor>) -> Vec<(String, f64)>;
}

/// Rebuilds a layer from its kind and configuration (as saved by [`Layer::config`]).
pub fn from_config(kind: &str, config: serde_json::Value) -> Result<Box<dyn Layer>> {
    fn parse<T: serde::de::DeserializeOwned + Layer + 'static>(
        v: serde_json::Value,
    ) -> Result<Box<dyn Layer>> {
        serde_json::from_value::<T>(v)
            .map(|l| Box::new(l) as Box<dyn Layer>)
            .map_err(|e| Error::config(format!("bad layer configuration: {e}")))
    }
    match kind {
        "Dense" => parse::<Dense>(config),
        "Conv2D" => parse::<Conv2D>(config),
        "MaxPooling2D" => parse::<MaxPooling2D>(config),
        "AveragePooling2D" => parse::<AveragePooling2D>(config),
        "Flatten" => parse::<Flatten>(config),
        "Activation" => parse::<ActivationLayer>(config),
        "Softmax" => parse::<Softmax>(config),
        "Dropout" => parse::<Dropout>(config),
        "BatchNormalization" => parse::<BatchNormalization>(config),
        other => match registry::lookup(other) {
            Some(from_config) => from_config(config),
            None => Err(Error::config(format!(
                "unknown layer kind {other:?} (a layer kind defined by another crate must be \
                 registered with `layers::register_layer` before a model using it is loaded)"
            ))),
        },
    }
}

/// Padding as Keras spells it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// No padding.
    #[default]
    Valid,
    /// Output size `ceil(input / stride)`.
    Same,
}

impl Padding {
    pub(crate) fn mode(self) -> PaddingMode {
        match self {
            Padding::Valid => PaddingMode::Valid,
            Padding::Same => PaddingMode::Same,
        }
    }

    /// Output length of one spatial dim.
    pub(crate) fn output_len(
        self,
        input: usize,
        window: usize,
        stride: usize,
        dilation: usize,
    ) -> Option<usize> {
        let extent = dilation * (window.max(1) - 1) + 1;
        match self {
            Padding::Valid => (input >= extent).then(|| (input - extent) / stride.max(1) + 1),
            Padding::Same => Some(input.div_ceil(stride.max(1))),
        }
    }
}

/// Adds a batch dim to a per-sample shape.
pub(crate) fn batched(batch: usize, shape: &[usize]) -> Vec<usize> {
    std::iter::once(batch)
        .chain(shape.iter().copied())
        .collect()
}

/// The batch size of a node.
pub(crate) fn batch_of(g: &Graph, x: NodeId) -> Result<usize> {
    Ok(g.shape(x)?.dims().first().copied().unwrap_or(1))
}
