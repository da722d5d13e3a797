//! [`PjrtBackend`]: compiles a whole graph into one PJRT executable on the plugin's first
//! device.

use crate::emit;
use crate::executable::PjrtExecutable;
use crate::pjrt::{Client, Plugin};
use hasten_tensor::{Backend, Executable, Graph, Result};
use std::path::Path;
use std::sync::Arc;

/// A backend over a PJRT plugin (TPU, GPU or CPU, whichever the plugin drives).
pub struct PjrtBackend {
    client: Arc<Client>,
}

impl PjrtBackend {
    /// Loads the plugin at `path` (or at `$HASTEN_PJRT_PLUGIN` when `None`) and creates a
    /// client of it. A missing file, a library that is not a PJRT plugin and an incompatible
    /// API version are errors that say which.
    pub fn new(path: Option<&Path>) -> Result<Self> {
        let plugin = Plugin::load(path)?;
        Ok(PjrtBackend {
            client: Client::new(plugin)?,
        })
    }

    /// The plugin named by `$HASTEN_PJRT_PLUGIN`.
    pub fn from_env() -> Result<Self> {
        Self::new(None)
    }

    /// The kind of the device steps run on ("cpu", "TPU v5 lite", …).
    pub fn device_kind(&self) -> Result<String> {
        Ok(self.client.device_kind(0)?)
    }

    /// The platform's name ("cpu", "cuda", "tpu").
    pub fn platform_name(&self) -> Result<String> {
        Ok(self.client.platform_name()?)
    }

    /// Number of devices the plugin offers (steps use the first).
    pub fn device_count(&self) -> usize {
        self.client.device_count()
    }

    /// The StableHLO text this backend compiles for `graph` (for inspection and debugging).
    pub fn stablehlo(&self, graph: &Graph) -> Result<String> {
        Ok(emit::emit(graph)?.text)
    }
}

impl PjrtBackend {
    /// Compiles `steps` steps of `graph` into one executable (steps per execution): each
    /// input is given as `steps` batches stacked on a new leading axis, step `i` reads batch
    /// `i`, and each output comes back stacked the same way; the state is updated `steps`
    /// times per `run`, without leaving the device.
    pub fn compile_steps(&self, graph: &Graph, steps: usize) -> Result<Box<dyn Executable>> {
        self.load(emit::emit_repeated(graph, steps)?)
    }

    /// Compiles an emitted program and binds its state.
    fn load(&self, program: emit::Program) -> Result<Box<dyn Executable>> {
        let loaded = self.client.compile(&program.text)?;
        Ok(Box::new(PjrtExecutable::new(
            &self.client,
            program,
            loaded,
        )?))
    }
}

impl Backend for PjrtBackend {
    fn name(&self) -> &'static str {
        "pjrt"
    }

    fn compile(&self, graph: &Graph) -> Result<Box<dyn Executable>> {
        self.load(emit::emit(graph)?)
    }
}
