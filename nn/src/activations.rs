//! Activation functions as IR.

use crate::Result;
use hasten_tensor::ir::UnaryOp;
use hasten_tensor::{Graph, NodeId};
use serde::{Deserialize, Serialize};

/// An activation, as Keras names them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Identity.
    #[default]
    Linear,
    /// `max(x, 0)`.
    Relu,
    /// Logistic sigmoid.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// Softmax over the last axis.
    Softmax,
}

impl Activation {
    /// Applies the activation to `x`.
    pub fn apply(self, g: &mut Graph, x: NodeId) -> Result<NodeId> {
        Ok(match self {
            Activation::Linear => x,
            Activation::Relu => g.relu(x)?,
            Activation::Sigmoid => g.unary(UnaryOp::Sigmoid, x)?,
            Activation::Tanh => g.unary(UnaryOp::Tanh, x)?,
            Activation::Softmax => g.softmax(x)?,
        })
    }

    /// The Keras name.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Softmax => "softmax",
        }
    }
}
