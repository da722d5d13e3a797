//! Layer kinds defined outside this crate, so that saved models using them load: Keras's
//! `register_keras_serializable`.

use super::Layer;
use crate::Result;
use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

/// Rebuilds a layer from the configuration its [`Layer::config`] saved.
pub type LayerFromConfig = fn(serde_json::Value) -> Result<Box<dyn Layer>>;

fn registry() -> &'static RwLock<HashMap<String, LayerFromConfig>> {
    static REGISTRY: OnceLock<RwLock<HashMap<String, LayerFromConfig>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Makes `kind` (the layer's [`Layer::kind`]) loadable by [`super::from_config`] and so by
/// `Sequential::load`. Registering a kind again replaces its constructor; the built-in kinds
/// cannot be overridden.
pub fn register_layer(kind: &str, from_config: LayerFromConfig) {
    let mut map = registry()
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    map.insert(kind.to_string(), from_config);
}

/// The constructor registered for `kind`.
pub(crate) fn lookup(kind: &str) -> Option<LayerFromConfig> {
    let map = registry()
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    map.get(kind).copied()
}
