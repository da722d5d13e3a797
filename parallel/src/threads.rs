//! The communicator of replicas that are threads of one process: all-reduce over shared
//! memory.
//!
//! Each rank copies its buffer into its slot; after a barrier, rank `r` reduces the `r`-th
//! chunk of every slot, in rank order, into its chunk of the result (a reduce-scatter); after a
//! second barrier every rank copies the whole result back (an all-gather). Each element is
//! therefore combined once, in the same order, and every rank ends with bitwise the same
//! values; each rank reads and writes about three times the message, as a ring all-reduce
//! does over a network.

use crate::barrier::Barrier;
use hasten_tensor::{AllReduceOp, Communicator, Error, Result};
use std::ops::Range;
use std::sync::{Arc, RwLock};

/// The shared state of a group of `size` thread ranks.
#[derive(Debug)]
pub struct ThreadGroup {
    size: usize,
    /// Each rank's contribution to the current all-reduce.
    slots: Vec<RwLock<Vec<f32>>>,
    /// Each rank's chunk of the result.
    chunks: Vec<RwLock<Vec<f32>>>,
    barrier: Barrier,
}

impl ThreadGroup {
    /// A group of `size` ranks (at least one).
    pub fn new(size: usize) -> Result<Arc<Self>> {
        if size == 0 {
            return Err(Error::InvalidArgument {
                op: "thread group",
                detail: "a replica group needs at least one rank, got 0".into(),
            });
        }
        let empty = || (0..size).map(|_| RwLock::new(Vec::new())).collect();
        Ok(Arc::new(ThreadGroup {
            size,
            slots: empty(),
            chunks: empty(),
            barrier: Barrier::new(size),
        }))
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        self.size
    }

    /// One communicator per rank, in rank order.
    pub fn communicators(self: &Arc<Self>) -> Vec<Arc<dyn Communicator>> {
        (0..self.size)
            .map(|rank| {
                Arc::new(ThreadCommunicator {
                    group: Arc::clone(self),
                    rank,
                }) as Arc<dyn Communicator>
            })
            .collect()
    }

    /// Fails every pending and later collective with `why` (a rank has failed and will not
    /// arrive), until [`ThreadGroup::mend`].
    pub fn break_with(&self, why: &str) {
        self.barrier.break_with(why);
    }

    /// Makes a broken group usable again; call it only while no rank is inside a collective.
    pub fn mend(&self) {
        self.barrier.mend();
    }

    /// The elements rank `rank` reduces, of a message of `len`.
    fn chunk(&self, rank: usize, len: usize) -> Range<usize> {
        let per = len.div_ceil(self.size);
        (rank * per).min(len)..((rank + 1) * per).min(len)
    }

    fn all_reduce(&self, rank: usize, buf: &mut [f32], op: AllReduceOp) -> Result<()> {
        {
            let mut slot = write(&self.slots[rank])?;
            slot.clear();
            slot.extend_from_slice(buf);
        }
        self.barrier.wait()?;
        self.reduce_chunk(rank, buf.len(), op)?;
        self.barrier.wait()?;
        let len = buf.len();
        for q in 0..self.size {
            let chunk = read(&self.chunks[q])?;
            buf[self.chunk(q, len)].copy_from_slice(&chunk);
        }
        Ok(())
    }

    /// Combines this rank's chunk of every slot into its chunk of the result.
    fn reduce_chunk(&self, rank: usize, len: usize, op: AllReduceOp) -> Result<()> {
        let slots = self.slots.iter().map(read).collect::<Result<Vec<_>>>()?;
        if let Some((q, s)) = slots.iter().enumerate().find(|(_, s)| s.len() != len) {
            return Err(Error::Collective(format!(
                "all_reduce: rank {rank} sent {len} values, rank {q} sent {}; every rank must \
                 run the same graph",
                s.len()
            )));
        }
        let range = self.chunk(rank, len);
        let mut out = write(&self.chunks[rank])?;
        out.clear();
        out.extend_from_slice(&slots[0][range.clone()]);
        for s in &slots[1..] {
            combine(op, &mut out, &s[range.clone()]);
        }
        if op == AllReduceOp::Mean {
            let n = self.size as f32;
            out.iter_mut().for_each(|v| *v /= n);
        }
        Ok(())
    }
}

/// `acc ⊕= x`, elementwise.
fn combine(op: AllReduceOp, acc: &mut [f32], x: &[f32]) {
    match op {
        AllReduceOp::Sum | AllReduceOp::Mean => acc.iter_mut().zip(x).for_each(|(a, v)| *a += v),
        AllReduceOp::Max => acc.iter_mut().zip(x).for_each(|(a, &v)| {
            if v > *a || v.is_nan() {
                *a = v;
            }
        }),
    }
}

fn read<T>(lock: &RwLock<T>) -> Result<std::sync::RwLockReadGuard<'_, T>> {
    lock.read().map_err(|_| poisoned())
}

fn write<T>(lock: &RwLock<T>) -> Result<std::sync::RwLockWriteGuard<'_, T>> {
    lock.write().map_err(|_| poisoned())
}

fn poisoned() -> Error {
    Error::Collective("a replica thread panicked inside an all-reduce".into())
}

/// One rank of a [`ThreadGroup`].
#[derive(Debug)]
pub struct ThreadCommunicator {
    group: Arc<ThreadGroup>,
    rank: usize,
}

impl Communicator for ThreadCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.group.size
    }

    fn all_reduce(&self, buf: &mut [f32], op: AllReduceOp) -> Result<()> {
        self.group.all_reduce(self.rank, buf, op)
    }
}
