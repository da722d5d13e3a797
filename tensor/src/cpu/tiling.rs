//! Batch tiling: runs of consecutive kernels that each compute a sample from that sample alone
//! (convolution, pooling and their gradients, fused elementwise loops) are executed a few
//! samples at a time, every kernel of the run on the same tile before the next tile starts.
//! A tile's intermediate values then stay in the core's L2 cache instead of making a round
//! trip through memory between kernels, and each thread works through its own tiles with no
//! barrier between the kernels of a run.

use crate::ir::NodeId;
use std::ops::Range;

/// Bytes of one tile's values that should fit in a core's L2 cache beside its other data.
const TILE_BYTES: usize = 384 << 10;

/// What a kernel needs to join a tiled run.
#[derive(Clone, Debug)]
pub(crate) struct Separable {
    /// The batch: the leading dim of the kernel's output and of every operand in `local`.
    pub batch: usize,
    /// Buffers (resolved through views) the kernel writes, sample by sample.
    pub defines: Vec<NodeId>,
    /// Buffers it reads sample by sample.
    pub local: Vec<NodeId>,
    /// Buffers it reads whole (weights, biases, scalars).
    pub shared: Vec<NodeId>,
    /// Bytes of one sample of its outputs and local operands.
    pub bytes_per_sample: usize,
}

/// A tiled run of kernels.
#[derive(Clone, Debug)]
pub(crate) struct Segment {
    /// The kernels (indices into the executable's steps).
    pub steps: Range<usize>,
    /// Samples in the batch.
    pub batch: usize,
    /// Samples per tile.
    pub tile: usize,
}

/// Splits `kernels` (each separable or not, in execution order) into tiled runs of two or
/// more separable kernels over the same batch, for a pool of `threads` threads.
///
/// A kernel may join a run only if it reads nothing whole that an earlier kernel of the run
/// writes: a tile sees only its own samples of those values.
pub(crate) fn segments(kernels: &[Option<Separable>], threads: usize) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut written: Vec<NodeId> = Vec::new();
    let mut bytes = 0usize;
    let close = |out: &mut Vec<Segment>, steps: Range<usize>, bytes: usize| {
        let Some(Some(first)) = kernels.get(steps.start) else {
            return;
        };
        let batch = first.batch;
        // A run pays off with two kernels or more, and only if every thread gets tiles.
        if steps.len() >= 2 && batch >= 2 * threads {
            let tile = (TILE_BYTES / bytes.max(1)).clamp(1, batch.div_ceil(threads));
            out.push(Segment { steps, batch, tile });
        }
    };
    for (k, kernel) in kernels.iter().enumerate() {
        let joins = match (kernel, kernels.get(start).and_then(Option::as_ref)) {
            (Some(this), Some(first)) if k > start => {
                this.batch == first.batch && !this.shared.iter().any(|x| written.contains(x))
            }
            _ => false,
        };
        if !joins {
            close(&mut out, start..k, bytes);
            start = k;
            written.clear();
            bytes = 0;
        }
        if let Some(this) = kernel {
            written.extend(&this.defines);
            bytes += this.bytes_per_sample;
        }
    }
    close(&mut out, start..kernels.len(), bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(batch: usize, defines: &[usize], shared: &[usize]) -> Option<Separable> {
        Some(Separable {
            batch,
            defines: defines.iter().map(|&i| NodeId(i)).collect(),
            local: Vec::new(),
            shared: shared.iter().map(|&i| NodeId(i)).collect(),
            bytes_per_sample: 100 << 10,
        })
    }

    #[test]
    fn runs_break_at_other_kernels_other_batches_and_whole_reads_of_run_values() {
        let kernels = [
            kernel(32, &[1], &[]),
            kernel(32, &[2], &[0]),
            None,
            kernel(32, &[3], &[]),
            kernel(32, &[4], &[3]), // reads 3 whole: a new run starts here
            kernel(32, &[5], &[]),
            kernel(16, &[6], &[]),
            kernel(32, &[7], &[]),
        ];
        let runs: Vec<Range<usize>> = segments(&kernels, 2).into_iter().map(|s| s.steps).collect();
        assert_eq!(runs, vec![0..2, 4..6]);
    }

    #[test]
    fn tiles_fit_the_cache_and_leave_work_for_every_thread() {
        let kernels = [kernel(32, &[1], &[]), kernel(32, &[2], &[])];
        let s = &segments(&kernels, 2)[0];
        assert_eq!(s.tile, 1); // 200 KiB per sample
        let small: Vec<_> = kernels
            .iter()
            .map(|k| {
                let mut k = k.clone().unwrap();
                k.bytes_per_sample = 1 << 10;
                Some(k)
            })
            .collect();
        assert_eq!(segments(&small, 2)[0].tile, 16);
        assert!(segments(&small[..1], 2).is_empty(), "one kernel is no run");
        let tiny_batch = [kernel(3, &[1], &[]), kernel(3, &[2], &[])];
        assert!(segments(&tiny_batch, 2).is_empty());
    }
}
