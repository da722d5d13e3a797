//! Fully connected layer.

use super::{batch_of, batched, ForwardCtx, Layer, LayerOutput, ParamSpec, StateKind};
use crate::activations::Activation;
use crate::initializers::Initializer;
use crate::{Error, Result};
use hasten_tensor::{Graph, NodeId};
use serde::{Deserialize, Serialize};

/// `activation(x · kernel + bias)` over the last axis, as Keras's `Dense`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Dense {
    /// Output features.
    pub units: usize,
    /// Activation.
    #[serde(default)]
    pub activation: Activation,
    /// Whether there is a bias.
    #[serde(default = "yes")]
    pub use_bias: bool,
    /// Kernel initialiser (glorot-uniform by default).
    #[serde(default = "glorot")]
    pub kernel_initializer: Initializer,
    /// Bias initialiser (zeros by default).
    #[serde(default = "zeros")]
    pub bias_initializer: Initializer,
    /// Per-sample input shape, on a first layer.
    #[serde(default)]
    pub input_shape: Option<Vec<usize>>,
    /// Name.
    #[serde(default)]
    pub name: String,
}

fn yes() -> bool {
    true
}
fn glorot() -> Initializer {
    Initializer::GlorotUniform
}
fn zeros() -> Initializer {
    Initializer::Zeros
}

impl Dense {
    /// A dense layer of `units` outputs, linear, with bias.
    pub fn new(units: usize) -> Self {
        Dense {
            units,
            activation: Activation::Linear,
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
            bias_initializer: Initializer::Zeros,
            input_shape: None,
            name: String::new(),
        }
    }

    /// Sets the activation.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    input_shape_builder!();

    /// Turns the bias on or off.
    pub fn use_bias(mut self, on: bool) -> Self {
        self.use_bias = on;
        self
    }

    /// Sets the kernel initialiser.
    pub fn kernel_initializer(mut self, init: Initializer) -> Self {
        self.kernel_initializer = init;
        self
    }

    fn features(&self, input: &[usize]) -> Result<usize> {
        match input.last() {
            Some(&f) if self.units > 0 => Ok(f),
            _ => Err(Error::config(format!(
                "Dense({}) needs units ≥ 1 and an input with at least one dim, got input {input:?}",
                self.units
            ))),
        }
    }
}

impl Layer for Dense {
    layer_basics!("Dense");

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.features(input)?;
        let mut out = input.to_vec();
        if let Some(last) = out.last_mut() {
            *last = self.units;
        }
        Ok(out)
    }

    fn params(&self, input: &[usize]) -> Result<Vec<ParamSpec>> {
        let f = self.features(input)?;
        let mut specs = vec![ParamSpec {
            name: "kernel",
            shape: vec![f, self.units],
            init: self.kernel_initializer,
            fans: (f, self.units),
            trainable: true,
            kind: StateKind::Parameter,
        }];
        if self.use_bias {
            specs.push(ParamSpec {
                name: "bias",
                shape: vec![self.units],
                init: self.bias_initializer,
                fans: (f, self.units),
                trainable: true,
                kind: StateKind::Parameter,
            });
        }
        Ok(specs)
    }

    fn forward(
        &self,
        g: &mut Graph,
        x: NodeId,
        params: &[NodeId],
        _ctx: &mut ForwardCtx<'_>,
    ) -> Result<LayerOutput> {
        let dims = g.shape(x)?.0.clone();
        let f = self.features(&dims)?;
        // Dense acts on the last axis: fold the others into rows.
        let rows = dims.iter().product::<usize>() / f.max(1);
        let flat = g.reshape(x, [rows, f])?;
        let mut z = g.matmul(flat, params[0])?;
        if self.use_bias {
            z = g.add(z, params[1])?;
        }
        let out_dims = self
            .output_shape(&dims[1..])
            .map(|s| batched(batch_of(g, x).unwrap_or(1), &s))?;
        let z = g.reshape(z, out_dims)?;
        let value = self.activation.apply(g, z)?;
        let logits = (self.activation == Activation::Softmax).then_some(z);
        Ok(LayerOutput { value, logits })
    }
}
