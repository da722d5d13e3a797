//! Gradient bucketing: partial sums waiting to be all-reduced together.
//!
//! One all-reduce costs a fixed latency (two barriers on the threads communicator, about
//! 20 µs here; a network round trip over MPI or NCCL), so small gradients are packed: the
//! transform defers each partial sum until a node reads it or the bucket holds
//! [`BUCKET_BYTES`], then flattens the bucket's members, concatenates them, all-reduces once
//! and slices the results back out. The optimizer's updates read the gradients only after the
//! whole backward pass, so buckets fill in backward order (last layer first), as PyTorch's
//! DDP fills them. Elementwise sums are unchanged by packing, so results are bitwise the same.

use crate::{AllReduceOp, Graph, NodeId, Result};

/// How many bytes of partial sums a bucket gathers before it is all-reduced.
pub const BUCKET_BYTES: usize = 4 << 20;

/// Deferred partial sums, by the original graph's node index.
#[derive(Debug, Default)]
pub(crate) struct Bucket {
    members: Vec<(usize, NodeId)>,
    bytes: usize,
}

impl Bucket {
    /// Defers the all-reduce-sum of `partial` (the value of original node `index`).
    pub fn defer(&mut self, g: &Graph, index: usize, partial: NodeId) -> Result<()> {
        self.bytes += g.shape(partial)?.numel() * 4;
        self.members.push((index, partial));
        Ok(())
    }

    /// Whether original node `index` waits in the bucket.
    pub fn holds(&self, index: usize) -> bool {
        self.members.iter().any(|(i, _)| *i == index)
    }

    /// Whether the bucket should be all-reduced now.
    pub fn is_full(&self) -> bool {
        self.bytes >= BUCKET_BYTES
    }

    /// All-reduces every member at once; returns each original node with its summed value.
    pub fn flush(&mut self, g: &mut Graph) -> Result<Vec<(usize, NodeId)>> {
        let members = std::mem::take(&mut self.members);
        self.bytes = 0;
        if let [(index, partial)] = members[..] {
            return Ok(vec![(index, g.all_reduce(partial, AllReduceOp::Sum)?)]);
        }
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let mut flat = Vec::with_capacity(members.len());
        for (_, partial) in &members {
            let n = g.shape(*partial)?.numel();
            flat.push(g.reshape(*partial, [n])?);
        }
        let packed = g.concat(&flat, 0)?;
        let summed = g.all_reduce(packed, AllReduceOp::Sum)?;
        let mut offset = 0;
        let mut out = Vec::with_capacity(members.len());
        for (index, partial) in members {
            let shape = g.shape(partial)?.clone();
            let n = shape.numel();
            let part = g.slice(summed, &[offset], &[offset + n])?;
            out.push((index, g.reshape(part, shape)?));
            offset += n;
        }
        Ok(out)
    }
}
