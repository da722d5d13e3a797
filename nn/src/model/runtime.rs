//! Compiled executables of one model and the movement of its state between them.
//!
//! A model compiles one executable per (mode, batch size) it meets: the train step, the
//! evaluation step and the prediction step, plus ones for a last partial batch. The executable
//! that last trained holds the freshest state; the host copy is brought up to date from it only
//! when another executable (or the user) needs the state.

use crate::Result;
use hasten_tensor::{Backend, Executable, Graph, HostTensor};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What an executable does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Forward, loss, backward and update.
    Train,
    /// That many train steps per execution, on batches stacked on a leading axis.
    TrainSteps(usize),
    /// Forward, loss and metrics.
    Eval,
    /// Forward only.
    Predict,
}

/// An executable and the state version it holds.
struct Compiled {
    exe: Box<dyn Executable>,
    version: u64,
}

/// The executables of a model and its state.
pub struct Runtime {
    backend: Arc<dyn Backend>,
    compiled: HashMap<(Mode, usize), Compiled>,
    /// The state when no executable holds a newer copy.
    host: BTreeMap<String, HostTensor>,
    /// The executable whose state is newer than `host`.
    live: Option<(Mode, usize)>,
    version: u64,
}

impl Runtime {
    /// A runtime over `backend` starting from `state`.
    pub fn new(backend: Arc<dyn Backend>, state: BTreeMap<String, HostTensor>) -> Self {
        Runtime {
            backend,
            compiled: HashMap::new(),
            host: state,
            live: None,
            version: 1,
        }
    }

    /// The backend the executables are compiled for.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// Brings the host copy of the state up to date and returns it.
    pub fn state(&mut self) -> Result<&BTreeMap<String, HostTensor>> {
        if let Some(key) = self.live.take() {
            if let Some(c) = self.compiled.get_mut(&key) {
                for name in c.exe.state_names().to_vec() {
                    self.host.insert(name.clone(), c.exe.read_state(&name)?);
                }
            }
        }
        Ok(&self.host)
    }

    /// Replaces some state values (weights loaded by the user or a callback).
    pub fn set_state(&mut self, values: &BTreeMap<String, HostTensor>) -> Result<()> {
        self.state()?;
        for (name, value) in values {
            self.host.insert(name.clone(), value.clone());
        }
        self.version += 1;
        Ok(())
    }

    /// The executable for `key`, compiled from `build` if needed, holding the current state.
    /// With `mutates`, it becomes the holder of the freshest state.
    pub fn activate(
        &mut self,
        key: (Mode, usize),
        mutates: bool,
        build: impl FnOnce() -> Result<Graph>,
    ) -> Result<&mut dyn Executable> {
        if self.live != Some(key) {
            self.state()?;
            if !self.compiled.contains_key(&key) {
                let graph = build()?;
                let exe = match key.0 {
                    Mode::TrainSteps(steps) => self.backend.compile_steps(&graph, steps)?,
                    _ => self.backend.compile(&graph)?,
                };
                self.compiled.insert(key, Compiled { exe, version: 0 });
            }
            let version = self.version;
            let c = self
                .compiled
                .get_mut(&key)
                .ok_or(crate::Error::NotCompiled)?;
            if c.version != version {
                for name in c.exe.state_names().to_vec() {
                    if let Some(value) = self.host.get(&name) {
                        c.exe.write_state(&name, value.data.as_slice())?;
                    }
                }
                c.version = version;
            }
            if mutates {
                self.version += 1;
                c.version = self.version;
                self.live = Some(key);
            }
        }
        let c = self
            .compiled
            .get_mut(&key)
            .ok_or(crate::Error::NotCompiled)?;
        Ok(c.exe.as_mut())
    }
}
