//! 2-D max- and average-pooling layers.

use super::{ForwardCtx, Layer, LayerOutput, Padding};
use crate::{Error, Result};
use hasten_tensor::{Graph, NodeId};
use serde::{Deserialize, Serialize};

/// The settings both pooling layers share.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PoolConfig {
    /// Window.
    pub pool_size: [usize; 2],
    /// Step (defaults to the window).
    pub strides: Option<[usize; 2]>,
    /// Padding.
    #[serde(default)]
    pub padding: Padding,
    /// Per-sample input shape, when this is the first layer.
    #[serde(default)]
    pub input_shape: Option<Vec<usize>>,
    /// Name.
    #[serde(default)]
    pub name: String,
}

impl PoolConfig {
    fn stride(&self) -> [usize; 2] {
        self.strides.unwrap_or(self.pool_size)
    }

    fn output_shape(&self, kind: &str, input: &[usize]) -> Result<Vec<usize>> {
        let [h, w, c] = match *input {
            [h, w, c] => [h, w, c],
            _ => {
                return Err(Error::config(format!(
                    "{kind} expects per-sample input (height, width, channels), got {input:?}"
                )))
            }
        };
        let s = self.stride();
        match (
            self.padding.output_len(h, self.pool_size[0], s[0], 1),
            self.padding.output_len(w, self.pool_size[1], s[1], 1),
        ) {
            (Some(oh), Some(ow)) if oh > 0 && ow > 0 => Ok(vec![oh, ow, c]),
            _ => Err(Error::config(format!(
                "{kind}({:?}) does not fit input {input:?}",
                self.pool_size
            ))),
        }
    }
}

macro_rules! pooling_layer {
    ($name:ident, $kind:literal, $method:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Debug, Serialize, Deserialize)]
        pub struct $name(pub PoolConfig);

        impl $name {
            /// A `pool_size` window with stride equal to the window and valid padding.
            pub fn new(pool_size: [usize; 2]) -> Self {
                $name(PoolConfig {
                    pool_size,
                    strides: None,
                    padding: Padding::Valid,
                    input_shape: None,
                    name: String::new(),
                })
            }

            /// Sets the strides.
            pub fn strides(mut self, strides: [usize; 2]) -> Self {
                self.0.strides = Some(strides);
                self
            }

            /// Sets the padding.
            pub fn padding(mut self, padding: Padding) -> Self {
                self.0.padding = padding;
                self
            }

            input_shape_builder!(0);
        }

        impl Layer for $name {
            layer_basics!($kind, 0);

            fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
                self.0.output_shape($kind, input)
            }

            fn forward(
                &self,
                g: &mut Graph,
                x: NodeId,
                _: &[NodeId],
                _: &mut ForwardCtx<'_>,
            ) -> Result<LayerOutput> {
                let c = &self.0;
                Ok(g.$method(x, c.pool_size, c.stride(), c.padding.mode())?
                    .into())
            }
        }
    };
}

pooling_layer!(
    MaxPooling2D,
    "MaxPooling2D",
    max_pool2d,
    "Keras's `MaxPooling2D` over channels-last input."
);
pooling_layer!(
    AveragePooling2D,
    "AveragePooling2D",
    avg_pool2d,
    "Keras's `AveragePooling2D` over channels-last input (padding is not counted)."
);
