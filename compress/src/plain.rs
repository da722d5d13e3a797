//! A model seen without its pruning wrappers: each layer's own kind and configuration, and
//! its weights with the masks applied, which is what export and sparse inference read.

use crate::wrapper::{PruneLowMagnitude, KIND};
use crate::{Error, Result};
use hasten_nn::layers::Layer;
use hasten_nn::Sequential;
use hasten_tensor::HostTensor;
use std::collections::BTreeMap;

/// One layer, unwrapped.
#[derive(Clone, Debug)]
pub struct PlainLayer {
    /// The layer's name.
    pub name: String,
    /// Its kind ("Dense", …), the wrapped layer's for a pruned one.
    pub kind: String,
    /// Its configuration.
    pub config: serde_json::Value,
    /// The pruning block size, for a pruned layer.
    pub block: Option<(usize, usize)>,
    /// Per-sample input shape.
    pub input_shape: Vec<usize>,
}

/// The unwrapped layers of `model` and its weights with masks applied (masks and
/// thresholds dropped).
pub fn plain_view(
    model: &mut Sequential,
) -> Result<(Vec<PlainLayer>, BTreeMap<String, HostTensor>)> {
    model.build()?;
    let mut weights = model.get_weights()?;
    let mut shape = model_input_shape(model)?;
    let mut layers = Vec::new();
    for layer in model.layers() {
        let input_shape = shape.clone();
        shape = layer.output_shape(&shape)?;
        if layer.kind() != KIND {
            layers.push(PlainLayer {
                name: layer.name().to_string(),
                kind: layer.kind().to_string(),
                config: layer.config(),
                block: None,
                input_shape,
            });
            continue;
        }
        apply_mask(&mut weights, layer.name())?;
        let (kind, config) = PruneLowMagnitude::inner_config(layer.config())?;
        let block =
            serde_json::from_value::<crate::PruningParams>(layer.config()["pruning"].clone())
                .map(|p| p.block_size)
                .ok();
        layers.push(PlainLayer {
            name: layer.name().to_string(),
            kind,
            config,
            block,
            input_shape,
        });
    }
    Ok((layers, weights))
}

/// The per-sample input shape of a built model.
pub fn model_input_shape(model: &Sequential) -> Result<Vec<usize>> {
    let first: Option<&dyn Layer> = model.layers().first().map(|l| l.as_ref());
    let declared = model
        .declared_input()
        .or_else(|| first.and_then(|l| l.declared_input_shape()))
        .ok_or_else(|| Error::config("the model has no input shape"))?;
    Ok(match first {
        Some(l) if model.declared_input().is_none() => l.full_input_shape(declared),
        _ => declared.to_vec(),
    })
}

fn apply_mask(weights: &mut BTreeMap<String, HostTensor>, layer: &str) -> Result<()> {
    weights.remove(&format!("{layer}/threshold"));
    let Some(mask) = weights.remove(&format!("{layer}/mask")) else {
        return Ok(());
    };
    let name = format!("{layer}/kernel");
    if let Some(kernel) = weights.get(&name) {
        let values = kernel
            .as_f32()?
            .iter()
            .zip(mask.as_f32()?)
            .map(|(w, m)| w * m);
        let masked = HostTensor::f32(kernel.shape.clone(), values.collect())?;
        weights.insert(name, masked);
    }
    Ok(())
}

/// A built model of `layers` (kind and configuration) reading samples of `input`; the
/// input is declared on the model unless the first layer declares it itself.
pub fn model_from(layers: &[(&str, &serde_json::Value)], input: &[usize]) -> Result<Sequential> {
    let declares = layers
        .first()
        .is_some_and(|(_, config)| config.get("input_shape").is_some_and(|v| !v.is_null()));
    let mut model = Sequential::new();
    if !declares {
        model = model.input(input.to_vec());
    }
    for (kind, config) in layers {
        model.add_boxed(hasten_nn::layers::from_config(kind, (*config).clone())?);
    }
    model.build()?;
    Ok(model)
}
