//! `MultiWorker`: data-parallel training across processes over MPI (feature `mpi`), itself a
//! [`Backend`].
//!
//! Every process runs the same program on the same data (same seed, same shuffling) and
//! compiles its share of each step with [`crate::shard_graph`] for its rank; the all-reduces
//! go through MPI. State written into an executable (initial weights, a loaded checkpoint) is
//! broadcast from rank 0, so every rank starts from rank 0's weights. Per-sample outputs
//! (predictions) are gathered on every rank. Only rank 0 should print and write checkpoints:
//! test [`MultiWorker::is_chief`]. A rank that dies or hangs would leave the others blocked in
//! an all-reduce: a step (or state broadcast) that runs longer than the timeout aborts the
//! whole job with a message.

use crate::watchdog::Watchdog;
use hasten_tensor::shard::{check_lengths, input_splits, shard_inputs, InputSplit};
use hasten_tensor::shard::{global_batch, shard_graph};
use hasten_tensor::shard::{split_batch, Shard};
use hasten_tensor::{
    AllReduceOp, Backend, Communicator, CpuBackend, Error, Executable, Graph, HostSlice,
    HostTensor, Result, Shape,
};
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::Communicator as _;
use mpi::traits::*;
use mpi::Threading;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The MPI world of this process, as a [`Communicator`].
pub struct MpiCommunicator {
    world: Mutex<SimpleCommunicator>,
    scratch: Mutex<Vec<f32>>,
    rank: usize,
    size: usize,
}

// SAFETY: MPI is initialised with `MPI_THREAD_MULTIPLE` (checked by `MultiWorker::init`), and
// every call on the communicator goes through its mutex.
unsafe impl Send for MpiCommunicator {}
unsafe impl Sync for MpiCommunicator {}

impl std::fmt::Debug for MpiCommunicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MpiCommunicator {{ rank: {}, size: {} }}",
            self.rank, self.size
        )
    }
}

impl Communicator for MpiCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce(&self, buf: &mut [f32], op: AllReduceOp) -> Result<()> {
        let poisoned = || Error::Collective("an earlier all-reduce panicked".into());
        let world = self.world.lock().map_err(|_| poisoned())?;
        let mut send = self.scratch.lock().map_err(|_| poisoned())?;
        send.clear();
        send.extend_from_slice(buf);
        let system = match op {
            AllReduceOp::Sum | AllReduceOp::Mean => SystemOperation::sum(),
            AllReduceOp::Max => SystemOperation::max(),
        };
        world.all_reduce_into(&send[..], buf, system);
        if op == AllReduceOp::Mean {
            let n = self.size as f32;
            buf.iter_mut().for_each(|v| *v /= n);
        }
        Ok(())
    }
}

/// Keeps MPI initialised while any worker or executable lives (finalised on drop).
struct Environment(#[allow(dead_code)] Universe);

// SAFETY: the universe is only dropped (finalising MPI), never used from two threads.
unsafe impl Send for Environment {}
unsafe impl Sync for Environment {}

/// This process's rank of a data-parallel job over MPI (TensorFlow's
/// `MultiWorkerMirroredStrategy`), training on the CPU backend.
pub struct MultiWorker {
    local: Arc<dyn Backend>,
    comm: Arc<MpiCommunicator>,
    watchdog: Arc<Watchdog>,
    _env: Arc<Environment>,
}

impl std::fmt::Debug for MultiWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MultiWorker {{ rank: {}, size: {} }}",
            self.comm.rank, self.comm.size
        )
    }
}

impl MultiWorker {
    /// Initialises MPI (with `MPI_THREAD_MULTIPLE`) and joins its world; a step that takes
    /// longer than `timeout` aborts every rank of the job.
    pub fn init(timeout: Duration) -> Result<Self> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Multiple)
            .ok_or_else(|| Error::Collective("MPI was initialised already".into()))?;
        if threading != Threading::Multiple {
            return Err(Error::Collective(format!(
                "the MPI library offers thread support {threading:?}; MultiWorker needs \
                 Multiple (the watchdog calls MPI_Abort while a step waits)"
            )));
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let aborter = Environment(universe);
        let abort_world = SendWorld(aborter.0.world());
        let watchdog = Watchdog::start(timeout, move |ran| {
            let world = &abort_world;
            eprintln!(
                "rank {rank}: a collective step has waited {:.1} s (timeout {:.1} s): a rank \
                 has died or hangs; aborting the job",
                ran.as_secs_f64(),
                timeout.as_secs_f64()
            );
            world.0.abort(2);
        });
        let comm = Arc::new(MpiCommunicator {
            world: Mutex::new(world),
            scratch: Mutex::new(Vec::new()),
            rank,
            size,
        });
        let local = CpuBackend::new().with_communicator(Arc::clone(&comm) as Arc<dyn Communicator>);
        Ok(MultiWorker {
            local: Arc::new(local),
            comm,
            watchdog,
            _env: Arc::new(aborter),
        })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.comm.rank
    }

    /// The number of processes.
    pub fn size(&self) -> usize {
        self.comm.size
    }

    /// The communicator its steps all-reduce through (for benchmarks and custom collectives).
    pub fn communicator(&self) -> Arc<dyn Communicator> {
        Arc::clone(&self.comm) as Arc<dyn Communicator>
    }

    /// Whether this is rank 0, the one that prints and writes checkpoints.
    pub fn is_chief(&self) -> bool {
        self.comm.rank == 0
    }
}

/// A world handle moved into the watchdog thread.
struct SendWorld(SimpleCommunicator);
// SAFETY: MPI runs with `MPI_THREAD_MULTIPLE`; the handle is only used to abort.
unsafe impl Send for SendWorld {}

impl Backend for MultiWorker {
    fn name(&self) -> &'static str {
        "multi-worker"
    }

    fn compile(&self, graph: &Graph) -> Result<Box<dyn Executable>> {
        let batch = global_batch(graph);
        let shard = match batch {
            Some(b) => Some(split_batch(b, self.size())?[self.rank()]),
            None => None,
        };
        let (local_graph, batched) = match (batch, shard) {
            (Some(b), Some(s)) => {
                let sharded = shard_graph(graph, b, s)?;
                (sharded.graph, sharded.batched_outputs)
            }
            _ => (graph.clone(), vec![false; graph.outputs().len()]),
        };
        let (input_names, inputs) = input_splits(graph, batch)?.into_iter().unzip();
        let mut gathered = Vec::new();
        for ((_, id), on) in graph.outputs().iter().zip(batched) {
            gathered.push(on.then(|| graph.shape(*id).cloned()).transpose()?);
        }
        Ok(Box::new(WorkerExecutable {
            inner: self.local.compile(&local_graph)?,
            inputs,
            input_names,
            shard,
            joined: vec![None; gathered.len()],
            gathered,
            comm: Arc::clone(&self.comm),
            watchdog: Arc::clone(&self.watchdog),
            _env: Arc::clone(&self._env),
        }))
    }

    fn uses_host_cores(&self) -> bool {
        true
    }

    fn workers(&self) -> usize {
        self.size()
    }
}

/// One rank's executable of a step.
struct WorkerExecutable {
    inner: Box<dyn Executable>,
    inputs: Vec<InputSplit>,
    input_names: Vec<String>,
    shard: Option<Shard>,
    /// Per output: its whole-batch shape, if each rank holds its own rows of it.
    gathered: Vec<Option<Shape>>,
    joined: Vec<Option<HostTensor>>,
    comm: Arc<MpiCommunicator>,
    watchdog: Arc<Watchdog>,
    _env: Arc<Environment>,
}

impl WorkerExecutable {
    /// Gathers per-sample outputs on every rank: each writes its rows into a zeroed
    /// whole-batch buffer and the buffers are summed.
    fn gather(&mut self) -> Result<()> {
        let Some(shard) = self.shard else {
            return Ok(());
        };
        for k in 0..self.gathered.len() {
            let Some(shape) = &self.gathered[k] else {
                continue;
            };
            let HostSlice::F32(mine) = self.inner.output_slice(k)? else {
                return Err(Error::Collective(format!(
                    "output {:?}: MultiWorker gathers only f32 per-sample outputs",
                    self.inner.output_names()[k]
                )));
            };
            let row = mine.len() / shard.rows.max(1);
            let mut all = vec![0.0f32; shape.numel()];
            all[shard.offset * row..][..mine.len()].copy_from_slice(mine);
            self.comm.all_reduce(&mut all, AllReduceOp::Sum)?;
            self.joined[k] = Some(HostTensor::f32(shape.clone(), all)?);
        }
        Ok(())
    }
}

impl Executable for WorkerExecutable {
    fn input_names(&self) -> &[String] {
        &self.input_names
    }

    fn output_names(&self) -> &[String] {
        self.inner.output_names()
    }

    fn state_names(&self) -> &[String] {
        self.inner.state_names()
    }

    fn run(&mut self, inputs: &[HostSlice<'_>]) -> Result<()> {
        check_lengths(inputs, &self.inputs, &self.input_names)?;
        let mine = shard_inputs(inputs, &self.inputs, self.shard);
        self.watchdog.begin();
        let result = self.inner.run(&mine).and_then(|()| self.gather());
        self.watchdog.end();
        result
    }

    fn output_slice(&mut self, index: usize) -> Result<HostSlice<'_>> {
        match self.joined.get(index) {
            Some(Some(t)) => Ok(t.data.as_slice()),
            _ => self.inner.output_slice(index),
        }
    }

    fn read_state(&mut self, name: &str) -> Result<HostTensor> {
        self.inner.read_state(name)
    }

    /// Writes rank 0's value on every rank (`f32` state; other state, such as Dropout's
    /// counters, is written as given: every rank computes the same).
    fn write_state(&mut self, name: &str, value: HostSlice<'_>) -> Result<()> {
        let HostSlice::F32(v) = value else {
            return self.inner.write_state(name, value);
        };
        let mut from_chief = if self.comm.rank == 0 {
            v.to_vec()
        } else {
            vec![0.0; v.len()]
        };
        self.watchdog.begin();
        let sent = self.comm.all_reduce(&mut from_chief, AllReduceOp::Sum);
        self.watchdog.end();
        sent?;
        self.inner.write_state(name, HostSlice::F32(&from_chief))
    }

    fn output(&mut self, name: &str) -> Result<HostTensor> {
        let k = self.output_index(name)?;
        match &self.joined[k] {
            Some(t) => Ok(t.clone()),
            None => self.inner.output(name),
        }
    }
}
