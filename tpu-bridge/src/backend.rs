//! [`PjrtBackend`]: compiles a whole graph into one PJRT executable, on the plugin's first
//! device or replicated over several (TensorFlow's `TPUStrategy`).

use crate::emit;
use crate::executable::{PjrtExecutable, Replication};
use crate::pjrt::{Client, Plugin};
use hasten_tensor::repeat::RepeatedExecutable;
use hasten_tensor::shard::{global_batch, input_splits, shard_graph, Shard};
use hasten_tensor::{Backend, Error, Executable, Graph, Result};
use std::path::Path;
use std::sync::Arc;

/// The most replicas a step is compiled for (its compile options hold the count in one byte).
const MAX_REPLICAS: usize = 127;

/// The CPU plugin's client option giving its number of devices.
const CPU_DEVICE_COUNT: &str = "cpu_device_count";

/// A backend over a PJRT plugin (TPU, GPU or CPU, whichever the plugin drives).
pub struct PjrtBackend {
    client: Arc<Client>,
    replicas: usize,
}

impl PjrtBackend {
    /// Loads the plugin at `path` (or at `$HASTEN_PJRT_PLUGIN` when `None`) and creates a
    /// client of it. A missing file, a library that is not a PJRT plugin and an incompatible
    /// API version are errors that say which.
    pub fn new(path: Option<&Path>) -> Result<Self> {
        let plugin = Plugin::load(path)?;
        Ok(PjrtBackend {
            client: Client::new(plugin)?,
            replicas: 1,
        })
    }

    /// A backend that runs every step on `replicas` devices of the plugin (TensorFlow's
    /// `TPUStrategy`): each device takes an equal share of the global batch, and the
    /// gradients, loss and metrics are combined with `stablehlo.all_reduce`, so training
    /// matches one device on the whole batch. The CPU plugin is asked for that many devices;
    /// another plugin must offer them.
    pub fn replicated(path: Option<&Path>, replicas: usize) -> Result<Self> {
        if !(1..=MAX_REPLICAS).contains(&replicas) {
            return Err(Error::InvalidArgument {
                op: "replicated PJRT backend",
                detail: format!(
                    "{replicas} replicas requested; a step runs on 1 to {MAX_REPLICAS}"
                ),
            });
        }
        let plugin = Plugin::load(path)?;
        let mut client = Client::new(Arc::clone(&plugin))?;
        if client.device_count() < replicas && client.platform_name()? == "cpu" {
            drop(client);
            client = Client::with_options(plugin, &[(CPU_DEVICE_COUNT, replicas as i64)])?;
        }
        if client.device_count() < replicas {
            return Err(Error::InvalidArgument {
                op: "replicated PJRT backend",
                detail: format!(
                    "{replicas} replicas requested; the plugin offers {} device(s)",
                    client.device_count()
                ),
            });
        }
        Ok(PjrtBackend { client, replicas })
    }

    /// The devices each step runs on.
    pub fn replicas(&self) -> usize {
        self.replicas
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

    /// Number of devices the plugin offers (steps use the first [`PjrtBackend::replicas`]).
    pub fn device_count(&self) -> usize {
        self.client.device_count()
    }

    /// The StableHLO text this backend compiles for `graph` (for inspection and debugging).
    pub fn stablehlo(&self, graph: &Graph) -> Result<String> {
        Ok(emit::emit(graph)?.text)
    }
}

impl PjrtBackend {
    /// One replica's program for `graph`, and how the step is spread over the replicas.
    fn replicate(&self, graph: &Graph) -> Result<(emit::Program, Replication)> {
        let n = self.replicas;
        let Some(batch) = global_batch(graph).filter(|_| n > 1) else {
            let program = emit::emit_replicated(graph, n, &emit::ReplicaSlices::new())?;
            let mut replication = Replication::single(&program);
            replication.replicas = n;
            return Ok((program, replication));
        };
        if batch % n != 0 {
            return Err(Error::InvalidArgument {
                op: "replicated PJRT step",
                detail: format!(
                    "a global batch of {batch} does not divide by {n} replicas: every replica \
                     runs one program on an equal share (use a batch size that divides)"
                ),
            });
        }
        let rows = batch / n;
        let shard = |r: usize| {
            shard_graph(
                graph,
                batch,
                Shard {
                    offset: r * rows,
                    rows,
                },
            )
        };
        let first = shard(0)?;
        // One program serves every replica: where replica 1's graph differs from replica 0's
        // it may only slice a whole-batch value at its own rows.
        let slices = emit::replica_slices(&first.graph, &shard(1)?.graph, rows)?;
        let program = emit::emit_replicated(&first.graph, n, &slices)?;
        let splits = input_splits(graph, Some(batch))?
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        let replication = Replication {
            replicas: n,
            rows: Some(rows),
            splits,
            batched: first.batched_outputs,
        };
        Ok((program, replication))
    }

    /// Compiles an emitted program and binds its state.
    fn load(
        &self,
        program: emit::Program,
        replication: Replication,
    ) -> Result<Box<dyn Executable>> {
        let loaded = self.client.compile(&program.text, replication.replicas)?;
        Ok(Box::new(PjrtExecutable::new(
            &self.client,
            program,
            loaded,
            replication,
        )?))
    }
}

impl Backend for PjrtBackend {
    fn name(&self) -> &'static str {
        "pjrt"
    }

    fn compile(&self, graph: &Graph) -> Result<Box<dyn Executable>> {
        let (program, replication) = self.replicate(graph)?;
        self.load(program, replication)
    }

    /// `steps` steps in one `stablehlo.while` on the device, in one execute call; the state is
    /// updated `steps` times per `run` without leaving the device. (Replicated, the steps run
    /// one execute call each.)
    fn compile_steps(&self, graph: &Graph, steps: usize) -> Result<Box<dyn Executable>> {
        if self.replicas > 1 {
            let one = self.compile(graph)?;
            return Ok(Box::new(RepeatedExecutable::new(one, steps)?));
        }
        let program = emit::emit_repeated(graph, steps)?;
        let replication = Replication::single(&program);
        self.load(program, replication)
    }
}
