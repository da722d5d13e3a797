//! # hasten-parallel
//!
//! Data-parallel training: a model's train step, built for a global batch, runs as one
//! replica per device on a share of the batch, kept in step by all-reduce. The strategies are
//! [`Backend`](hasten_tensor::Backend)s, so `fit`, `evaluate`, `predict`, callbacks and
//! checkpoints work on them unchanged:
//!
//! ```no_run
//! use hasten_nn::prelude::*;
//! use hasten_parallel::Mirrored;
//! use std::sync::Arc;
//! let mut model = Sequential::new();
//! model.add(Dense::new(10).activation(Activation::Softmax).input_shape([784]));
//! model.set_backend(Arc::new(Mirrored::cpu(2).unwrap())).unwrap();
//! ```
//!
//! - [`Mirrored`]: replicas in one process (CPU threads over shared memory, or any backends
//!   given a communicator);
//! - [`shard_graph`]: the graph transform from a whole-batch step to one replica's step (it
//!   lives in `hasten_tensor::shard`, so that any backend can replicate a step);
//! - [`ThreadGroup`]: the shared-memory communicator;
//! - `MultiWorker` (feature `mpi`): one process per rank over MPI.

mod barrier;
mod executable;
mod mirrored;
#[cfg(feature = "mpi")]
mod mpi;
mod threads;
#[cfg(feature = "mpi")]
mod watchdog;

#[cfg(feature = "mpi")]
pub use self::mpi::{MpiCommunicator, MultiWorker};
pub use hasten_tensor::shard::{
    global_batch, shard_graph, split_batch, Shard, Sharded, BUCKET_BYTES,
};
pub use mirrored::Mirrored;
pub use threads::{ThreadCommunicator, ThreadGroup};
