//! 2-D convolution layer.

use super::{ForwardCtx, Layer, LayerOutput, Padding, ParamSpec, StateKind};
use crate::activations::Activation;
use crate::initializers::Initializer;
use crate::{Error, Result};
use hasten_tensor::{Graph, NodeId};
use serde::{Deserialize, Serialize};

/// Keras's `Conv2D` over channels-last input: `activation(conv(x, kernel) + bias)`.
///
/// A per-sample input shape of rank 2 (`(28, 28)`, as the MNIST tutorial writes it) is read as
/// one channel.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Conv2D {
    /// Output channels.
    pub filters: usize,
    /// Window (rows, columns).
    pub kernel_size: [usize; 2],
    /// Step (rows, columns).
    #[serde(default = "ones")]
    pub strides: [usize; 2],
    /// Padding.
    #[serde(default)]
    pub padding: Padding,
    /// Tap spacing.
    #[serde(default = "ones")]
    pub dilation_rate: [usize; 2],
    /// Activation.
    #[serde(default)]
    pub activation: Activation,
    /// Whether there is a bias.
    #[serde(default = "yes")]
    pub use_bias: bool,
    /// Kernel initialiser.
    #[serde(default = "glorot")]
    pub kernel_initializer: Initializer,
    /// Per-sample input shape, on a first layer.
    #[serde(default)]
    pub input_shape: Option<Vec<usize>>,
    /// Name.
    #[serde(default)]
    pub name: String,
}

fn ones() -> [usize; 2] {
    [1, 1]
}
fn yes() -> bool {
    true
}
fn glorot() -> Initializer {
    Initializer::GlorotUniform
}

impl Conv2D {
    /// `filters` output channels with a `kernel_size` window, stride 1, valid padding.
    pub fn new(filters: usize, kernel_size: [usize; 2]) -> Self {
        Conv2D {
            filters,
            kernel_size,
            strides: [1, 1],
            padding: Padding::Valid,
            dilation_rate: [1, 1],
            activation: Activation::Linear,
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
            input_shape: None,
            name: String::new(),
        }
    }

    /// Sets the activation.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Sets the strides.
    pub fn strides(mut self, strides: [usize; 2]) -> Self {
        self.strides = strides;
        self
    }

    /// Sets the padding.
    pub fn padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    /// Sets the dilation.
    pub fn dilation_rate(mut self, rate: [usize; 2]) -> Self {
        self.dilation_rate = rate;
        self
    }

    input_shape_builder!();

    /// `(H, W, C)` from a per-sample input shape.
    fn hwc(&self, input: &[usize]) -> Result<[usize; 3]> {
        match *input {
            [h, w] => Ok([h, w, 1]),
            [h, w, c] => Ok([h, w, c]),
            _ => Err(Error::config(format!(
                "Conv2D expects per-sample input (height, width, channels) or (height, width); got {input:?}. \
                 Reshape the data to (samples, height, width, channels)"
            ))),
        }
    }
}

impl Layer for Conv2D {
    layer_basics!("Conv2D");

    fn full_input_shape(&self, declared: &[usize]) -> Vec<usize> {
        match *declared {
            [h, w] => vec![h, w, 1],
            _ => declared.to_vec(),
        }
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let [h, w, _] = self.hwc(input)?;
        let k = self.kernel_size;
        let oh = self
            .padding
            .output_len(h, k[0], self.strides[0], self.dilation_rate[0]);
        let ow = self
            .padding
            .output_len(w, k[1], self.strides[1], self.dilation_rate[1]);
        match (oh, ow) {
            (Some(oh), Some(ow)) if self.filters > 0 && k.iter().all(|&k| k > 0) => {
                Ok(vec![oh, ow, self.filters])
            }
            _ => Err(Error::config(format!(
                "Conv2D({}, {k:?}) does not fit input {input:?} with {:?} padding",
                self.filters, self.padding
            ))),
        }
    }

    fn params(&self, input: &[usize]) -> Result<Vec<ParamSpec>> {
        let [_, _, c] = self.hwc(input)?;
        let [kh, kw] = self.kernel_size;
        let receptive = kh * kw;
        let mut specs = vec![ParamSpec {
            name: "kernel",
            shape: vec![kh, kw, c, self.filters],
            init: self.kernel_initializer,
            fans: (receptive * c, receptive * self.filters),
            trainable: true,
            kind: StateKind::Parameter,
        }];
        if self.use_bias {
            specs.push(ParamSpec {
                name: "bias",
                shape: vec![self.filters],
                init: Initializer::Zeros,
                fans: (1, 1),
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
        let [h, w, c] = self.hwc(&dims[1..])?;
        let x = g.reshape(x, [dims[0], h, w, c])?;
        let mut z = g.conv2d(
            x,
            params[0],
            self.strides,
            self.padding.mode(),
            self.dilation_rate,
        )?;
        if self.use_bias {
            z = g.add(z, params[1])?;
        }
        let value = self.activation.apply(g, z)?;
        let logits = (self.activation == Activation::Softmax).then_some(z);
        Ok(LayerOutput { value, logits })
    }
}
