//! `Mirrored`: data-parallel training on replicas in one process, itself a [`Backend`].
//!
//! Compiling a graph built for a global batch `B` compiles, on each replica, that replica's
//! share of it (see [`hasten_tensor::shard`]); a step splits the batched inputs by rows, runs every
//! replica on its own thread at once (their all-reduces meet in the group's communicator), and
//! joins the replicas' per-sample outputs (predictions) in row order. The loss, the metrics
//! and the state are the same on every replica and are read from the first.

use crate::executable::MirroredExecutable;
use crate::threads::ThreadGroup;
use hasten_tensor::shard::{global_batch, shard_graph, Sharded};
use hasten_tensor::shard::{split_batch, Shard};
use hasten_tensor::{Backend, Communicator, CpuBackend, Error, Executable, Graph, Result};
use std::sync::{Arc, Mutex};

/// Replicas of one model in one process, kept in step by all-reduce (TensorFlow's
/// `MirroredStrategy`): `model.set_backend(Arc::new(Mirrored::cpu(4)?))` and `fit` as usual.
pub struct Mirrored {
    replicas: Vec<Arc<dyn Backend>>,
    group: Arc<ThreadGroup>,
    /// Held by a step: the replicas of all of this strategy's executables share one group.
    busy: Arc<Mutex<()>>,
}

impl std::fmt::Debug for Mirrored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.replicas.iter().map(|r| r.name()).collect();
        f.debug_struct("Mirrored")
            .field("replicas", &names)
            .finish()
    }
}

impl Mirrored {
    /// `replicas` CPU backends on threads of this process, all-reducing over shared memory.
    pub fn cpu(replicas: usize) -> Result<Self> {
        Self::new(replicas, |c| {
            Ok(Arc::new(CpuBackend::new().with_communicator(c)) as Arc<dyn Backend>)
        })
    }

    /// `replicas` backends made by `make` from each rank's communicator (in rank order); each
    /// must run its graphs' all-reduce nodes through the communicator it was given.
    pub fn new(
        replicas: usize,
        mut make: impl FnMut(Arc<dyn Communicator>) -> Result<Arc<dyn Backend>>,
    ) -> Result<Self> {
        let group = ThreadGroup::new(replicas)?;
        let replicas = group
            .communicators()
            .into_iter()
            .map(&mut make)
            .collect::<Result<Vec<_>>>()?;
        Ok(Mirrored {
            replicas,
            group,
            busy: Arc::new(Mutex::new(())),
        })
    }

    /// The number of replicas.
    pub fn replicas(&self) -> usize {
        self.replicas.len()
    }

    /// Each replica's graph and rows, for a graph built for the whole batch.
    fn shard(&self, graph: &Graph) -> Result<Vec<(Sharded, Option<Shard>)>> {
        let n = self.replicas.len();
        let Some(batch) = global_batch(graph) else {
            let whole = || Sharded {
                graph: graph.clone(),
                batched_outputs: vec![false; graph.outputs().len()],
            };
            return Ok((0..n).map(|_| (whole(), None)).collect());
        };
        split_batch(batch, n)?
            .into_iter()
            .map(|s| Ok((shard_graph(graph, batch, s)?, Some(s))))
            .collect()
    }
}

impl Backend for Mirrored {
    fn name(&self) -> &'static str {
        "mirrored"
    }

    fn compile(&self, graph: &Graph) -> Result<Box<dyn Executable>> {
        let shards = self.shard(graph)?;
        let batched_outputs = shards
            .first()
            .map(|(s, _)| s.batched_outputs.clone())
            .unwrap_or_default();
        let mut replicas = Vec::with_capacity(shards.len());
        let mut rows = Vec::with_capacity(shards.len());
        for ((sharded, shard), backend) in shards.into_iter().zip(&self.replicas) {
            replicas.push(backend.compile(&sharded.graph)?);
            rows.push(shard);
        }
        if replicas.is_empty() {
            return Err(Error::InvalidArgument {
                op: "mirrored",
                detail: "no replicas".into(),
            });
        }
        MirroredExecutable::new(
            graph,
            replicas,
            rows,
            batched_outputs,
            Arc::clone(&self.group),
            Arc::clone(&self.busy),
        )
        .map(|e| Box::new(e) as Box<dyn Executable>)
    }

    fn uses_host_cores(&self) -> bool {
        self.replicas.iter().any(|r| r.uses_host_cores())
    }
}
