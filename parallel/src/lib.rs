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
//! - [`shard_graph`]: the graph transform from a whole-batch step to one replica's step;
//! - [`ThreadGroup`]: the shared-memory communicator;
//! - `MultiWorker` (feature `mpi`): one process per rank over MPI.

mod barrier;
mod bucket;
mod executable;
mod mirrored;
#[cfg(feature = "mpi")]
mod mpi;
mod rows;
pub mod shard;
mod split;
mod threads;
#[cfg(feature = "mpi")]
mod watchdog;

#[cfg(feature = "mpi")]
pub use self::mpi::{MpiCommunicator, MultiWorker};
pub use bucket::BUCKET_BYTES;
pub use mirrored::Mirrored;
pub use shard::{global_batch, shard_graph, Sharded};
pub use split::{split_batch, Shard};
pub use threads::{ThreadCommunicator, ThreadGroup};
