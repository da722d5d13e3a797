//! Collectives: the communicator that an [`crate::ir::Op::AllReduce`] node calls at run time.
//!
//! A backend that can run collectives is built with one communicator per replica (the CPU
//! backend: [`crate::CpuBackend::with_communicator`]); every replica of a group compiles the
//! same graph, so each all-reduce node is reached by every rank in the same order. The trait
//! works on host `f32` slices, which fits a thread group over shared memory and MPI; a device
//! communicator (NCCL) would add a device-buffer method beside it.

use crate::Result;
use std::fmt;

/// How an all-reduce combines the replicas' values, elementwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AllReduceOp {
    /// The sum over the group.
    Sum,
    /// The sum divided by the group's size.
    Mean,
    /// The maximum over the group.
    Max,
}

impl AllReduceOp {
    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            AllReduceOp::Sum => "sum",
            AllReduceOp::Mean => "mean",
            AllReduceOp::Max => "max",
        }
    }
}

/// One rank's handle on a replica group.
///
/// Every rank of the group must call [`Communicator::all_reduce`] the same number of times,
/// in the same order, with buffers of the same length; a length mismatch, or a rank that has
/// failed or left, must give an error on the others rather than hang or panic. Every rank must
/// end with bitwise the same result (replicas that drift apart would train different models).
pub trait Communicator: Send + Sync + fmt::Debug {
    /// This rank, in `0..size()`.
    fn rank(&self) -> usize;

    /// The number of ranks in the group.
    fn size(&self) -> usize;

    /// Replaces `buf` on every rank by the elementwise combination of all ranks' `buf`.
    fn all_reduce(&self, buf: &mut [f32], op: AllReduceOp) -> Result<()>;
}
