//! Runs the layers' own state upkeep ([`crate::layers::Maintenance`]) inside `fit`.

use super::sequential::Sequential;
use crate::callbacks::Logs;
use crate::{Error, Result};
use std::collections::BTreeMap;

impl Sequential {
    /// Before train step `step`: lets every layer whose upkeep is due replace some of its
    /// state. Costs one check per layer when nothing is due.
    pub(crate) fn maintain_layers(&mut self, step: u64) -> Result<()> {
        let due =
            |layer: &dyn crate::layers::Layer| layer.maintenance().is_some_and(|m| m.due(step));
        if !self.layers().iter().any(|l| due(l.as_ref())) {
            return Ok(());
        }
        let mut changes = BTreeMap::new();
        self.with_runtime(|model, rt| {
            let state = rt.state()?;
            for layer in model.layers().iter().filter(|l| due(l.as_ref())) {
                if let Some(upkeep) = layer.maintenance() {
                    let new = upkeep
                        .maintain(step, state)
                        .map_err(|e| Error::config(format!("layer {}: {e}", layer.name())))?;
                    changes.extend(new);
                }
            }
            Ok(())
        })?;
        self.set_weights(&changes)
    }

    /// Adds the layers' epoch logs (a pruned layer's sparsity and threshold) to `logs`.
    pub(crate) fn add_layer_logs(&mut self, logs: &mut Logs) -> Result<()> {
        if !self.layers().iter().any(|l| l.maintenance().is_some()) {
            return Ok(());
        }
        self.with_runtime(|model, rt| {
            let state = rt.state()?;
            for upkeep in model.layers().iter().filter_map(|l| l.maintenance()) {
                logs.extend(upkeep.epoch_logs(state));
            }
            Ok(())
        })
    }
}
