//! Wrapping a model's layers for pruning, and stripping the wrappers afterwards.

use crate::params::PruningParams;
use crate::plain::plain_view;
use crate::wrapper::{PruneLowMagnitude, KIND, PRUNABLE_KINDS};
use crate::{Error, Result};
use hasten_nn::layers::{from_config, register_layer, Layer};
use hasten_nn::Sequential;
use hasten_tensor::HostTensor;
use std::collections::BTreeMap;

/// Which layers [`prune_layers`] wraps.
#[derive(Clone, Debug)]
pub enum LayerSelection {
    /// Every Dense and Conv2D layer (the others are left as they are).
    All,
    /// The layers with these names (each must exist and be prunable).
    Names(Vec<String>),
    /// The layers of these kinds ("Dense", "Conv2D").
    Kinds(Vec<String>),
}

/// Makes saved pruned models loadable by `Sequential::load` (tfmot's `prune_scope`). The
/// functions of this crate call it themselves; call it before loading a pruned checkpoint
/// in a program that has not pruned anything yet.
pub fn register() {
    register_layer(KIND, PruneLowMagnitude::from_saved);
}

/// tfmot's `prune_low_magnitude(model, **params)`: every Dense and Conv2D kernel of `model`
/// is pruned while it trains. The model is built first (names assigned, weights drawn) and
/// keeps its weights, so a trained model can be pruned; compile the result before `fit`.
pub fn prune_low_magnitude(model: Sequential, params: PruningParams) -> Result<Sequential> {
    prune_layers(model, params, LayerSelection::All)
}

/// [`prune_low_magnitude`] for the selected layers only.
pub fn prune_layers(
    model: Sequential,
    params: PruningParams,
    selection: LayerSelection,
) -> Result<Sequential> {
    register();
    params.validate()?;
    let mut model = model;
    model.build()?;
    check_selection(&model, &selection)?;
    let weights = model.get_weights()?;
    rebuild(model, weights, |layer| {
        let chosen = match &selection {
            LayerSelection::All => PRUNABLE_KINDS.contains(&layer.kind()),
            LayerSelection::Names(names) => names.iter().any(|n| n == layer.name()),
            LayerSelection::Kinds(kinds) => kinds.iter().any(|k| k == layer.kind()),
        };
        if chosen && layer.kind() != KIND {
            Ok(Box::new(PruneLowMagnitude::new(layer, params)?))
        } else {
            Ok(layer)
        }
    })
}

/// tfmot's `strip_pruning`: the same model without the wrappers, each pruned kernel holding
/// its zeros (`kernel · mask`), the masks and thresholds gone. The result is uncompiled.
pub fn strip_pruning(model: Sequential) -> Result<Sequential> {
    let mut model = model;
    let (_, weights) = plain_view(&mut model)?;
    rebuild(model, weights, |layer| {
        if layer.kind() != KIND {
            return Ok(layer);
        }
        let (kind, config) = PruneLowMagnitude::inner_config(layer.config())?;
        Ok(from_config(&kind, config)?)
    })
}

/// Whether `layer` is a pruning wrapper.
pub fn is_pruned(layer: &dyn Layer) -> bool {
    layer.kind() == KIND
}

fn check_selection(model: &Sequential, selection: &LayerSelection) -> Result<()> {
    let wanted: &[String] = match selection {
        LayerSelection::All => return Ok(()),
        LayerSelection::Names(names) => names,
        LayerSelection::Kinds(kinds) => {
            if let Some(bad) = kinds.iter().find(|k| !PRUNABLE_KINDS.contains(&k.as_str())) {
                return Err(Error::config(format!(
                    "layers of kind {bad:?} cannot be pruned: prunable kinds are {}",
                    PRUNABLE_KINDS.join(", ")
                )));
            }
            return Ok(());
        }
    };
    for name in wanted {
        match model.layers().iter().find(|l| l.name() == name) {
            None => {
                let known: Vec<&str> = model.layers().iter().map(|l| l.name()).collect();
                return Err(Error::config(format!(
                    "the model has no layer named {name:?} (its layers: {})",
                    known.join(", ")
                )));
            }
            Some(l) if !PRUNABLE_KINDS.contains(&l.kind()) && l.kind() != KIND => {
                return Err(Error::config(format!(
                    "layer {name:?} is a {}, which cannot be pruned: prunable kinds are {}",
                    l.kind(),
                    PRUNABLE_KINDS.join(", ")
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// A new model from `model`'s layers passed through `map`, with `model`'s seed, declared
/// input and backend-independent `weights` (new weights keep their initial values).
fn rebuild(
    model: Sequential,
    weights: BTreeMap<String, HostTensor>,
    mut map: impl FnMut(Box<dyn Layer>) -> Result<Box<dyn Layer>>,
) -> Result<Sequential> {
    let mut out = Sequential::new().seed(model.initial_seed());
    if let Some(input) = model.declared_input() {
        out = out.input(input.to_vec());
    }
    for layer in model.into_layers() {
        out.add_boxed(map(layer)?);
    }
    out.build()?;
    out.set_weights(&weights)?;
    Ok(out)
}
