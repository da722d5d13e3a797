//! Stand-alone activation layers.

use super::{ForwardCtx, Layer, LayerOutput};
use crate::activations::Activation;
use crate::Result;
use hasten_tensor::{Graph, NodeId};
use serde::{Deserialize, Serialize};

/// Applies an activation (Keras's `Activation`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ActivationLayer {
    /// The activation.
    pub activation: Activation,
    /// Per-sample input shape, when this is the first layer.
    #[serde(default)]
    pub input_shape: Option<Vec<usize>>,
    /// Name.
    #[serde(default)]
    pub name: String,
}

impl ActivationLayer {
    /// An activation layer.
    pub fn new(activation: Activation) -> Self {
        ActivationLayer {
            activation,
            input_shape: None,
            name: String::new(),
        }
    }

    input_shape_builder!();
}

/// Softmax over the last axis (Keras's `Softmax`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Softmax {
    /// Per-sample input shape, when this is the first layer.
    #[serde(default)]
    pub input_shape: Option<Vec<usize>>,
    /// Name.
    #[serde(default)]
    pub name: String,
}

impl Softmax {
    /// A softmax layer.
    pub fn new() -> Self {
        Self::default()
    }

    input_shape_builder!();
}

fn apply(activation: Activation, g: &mut Graph, x: NodeId) -> Result<LayerOutput> {
    let value = activation.apply(g, x)?;
    let logits = (activation == Activation::Softmax).then_some(x);
    Ok(LayerOutput { value, logits })
}

macro_rules! activation_layer {
    ($ty:ty, $kind:literal, $act:expr) => {
        impl Layer for $ty {
            layer_basics!($kind);

            fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
                Ok(input.to_vec())
            }

            fn forward(
                &self,
                g: &mut Graph,
                x: NodeId,
                _: &[NodeId],
                _: &mut ForwardCtx<'_>,
            ) -> Result<LayerOutput> {
                #[allow(clippy::redundant_closure_call)]
                apply(($act)(self), g, x)
            }
        }
    };
}

activation_layer!(ActivationLayer, "Activation", |l: &ActivationLayer| l
    .activation);
activation_layer!(Softmax, "Softmax", |_: &Softmax| Activation::Softmax);
