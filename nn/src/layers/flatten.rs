//! Flatten layer.

use super::{batch_of, ForwardCtx, Layer, LayerOutput};
use crate::Result;
use hasten_tensor::{Graph, NodeId};
use serde::{Deserialize, Serialize};

/// Flattens each sample to one dim (a view: no data moves).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Flatten {
    /// Per-sample input shape, when this is the first layer.
    #[serde(default)]
    pub input_shape: Option<Vec<usize>>,
    /// Name.
    #[serde(default)]
    pub name: String,
}

impl Flatten {
    /// A flatten layer.
    pub fn new() -> Self {
        Self::default()
    }

    input_shape_builder!();
}

impl Layer for Flatten {
    layer_basics!("Flatten");

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(vec![input.iter().product()])
    }

    fn forward(
        &self,
        g: &mut Graph,
        x: NodeId,
        _: &[NodeId],
        _: &mut ForwardCtx<'_>,
    ) -> Result<LayerOutput> {
        let dims = g.shape(x)?.0.clone();
        let b = batch_of(g, x)?;
        Ok(g.reshape(x, [b, dims[1..].iter().product()])?.into())
    }
}
