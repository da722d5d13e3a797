//! Shuffled mini-batches over an in-memory dataset, optionally prefetched on a
//! background thread.
//!
//! A [`BatchIterator`] holds the dataset (shared through [`Arc`]s, so nothing is copied)
//! and the batching options; [`BatchIterator::epoch`] returns an [`Epoch`], an iterator
//! over the owned [`Batch`]es of one pass through the data.
//!
//! * **Labels or targets.** [`BatchIterator::new`] takes one `i32` class label per
//!   sample (gathered into [`Batch::y`]); [`BatchIterator::with_targets`] takes
//!   `target_len` `f32` values per sample instead (one-hot rows, regression targets,
//!   0/1 values; gathered into [`Batch::targets`]). Both kinds share all of the
//!   behaviour below.
//! * **Order.** Without shuffling, samples come in their stored order. With
//!   [`BatchIterator::shuffle`], every epoch uses a fresh permutation that depends only
//!   on the seed and the epoch number, so a run is reproducible and epochs differ
//!   (for a given version of the `rand` crate, whose `StdRng` algorithm may change
//!   between its releases).
//! * **Last batch.** When the batch size does not divide the number of samples, the
//!   last batch is smaller ([`BatchIterator::last_batch_len`]) unless
//!   [`BatchIterator::drop_last`] is set.
//! * **Prefetching.** With [`BatchIterator::prefetch`], a background thread gathers the
//!   next batches (at most two ahead, through a bounded channel) while the current one
//!   is in use. Dropping the [`Epoch`] early stops and joins that thread.
//! * **Parallel gathering.** With [`BatchIterator::parallel_gather`], each batch's rows
//!   are copied by all the threads of the CPU backend's worker pool, just before the
//!   batch is used. This is what suits a step that itself runs on every core: a prefetch
//!   thread would take a core away from the step, and one thread alone gathers half as
//!   fast.
//! * **Buffer reuse.** Give batches back with [`Epoch::recycle`] (or a [`Recycler`])
//!   once done with them; their buffers are reused, so a steady-state training loop
//!   allocates nothing per batch.
//!
//! ```
//! use hasten_nn::data::batches::BatchIterator;
//!
//! // Ten samples of three features each.
//! let x: Vec<f32> = (0..30).map(|v| v as f32).collect();
//! let y: Vec<i32> = (0..10).collect();
//! let batches = BatchIterator::new(x, 3, y, 4)?.shuffle(42).prefetch(true);
//! for epoch in 0..2 {
//!     let mut it = batches.epoch(epoch);
//!     let mut seen = 0;
//!     while let Some(batch) = it.next() {
//!         assert_eq!(batch.x.len(), batch.len * 3);
//!         seen += batch.len;
//!         it.recycle(batch);
//!     }
//!     assert_eq!(seen, 10);
//! }
//! # Ok::<(), hasten_nn::data::DataError>(())
//! ```
//!
//! With float targets, here one-hot rows over three classes:
//!
//! ```
//! use hasten_nn::data::batches::BatchIterator;
//!
//! let x: Vec<f32> = (0..20).map(|v| v as f32).collect(); // 10 samples of 2 features
//! let targets: Vec<f32> = (0..10)
//!     .flat_map(|i| (0..3).map(move |c| if c == i % 3 { 1.0 } else { 0.0 }))
//!     .collect();
//! let batches = BatchIterator::with_targets(x, 2, targets, 3, 4)?.shuffle(7);
//! assert_eq!((batches.len(), batches.target_len()), (10, Some(3)));
//! for batch in batches.epoch(0) {
//!     assert_eq!(batch.targets.len(), batch.len * 3);
//!     assert!(batch.y.is_empty());
//! }
//! # Ok::<(), hasten_nn::data::DataError>(())
//! ```

use std::iter::FusedIterator;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam::channel::{self, Receiver, Sender};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::DataError;

/// Batches the prefetch thread may have ready ahead of the consumer.
const PREFETCH_DEPTH: usize = 2;
/// Spare batch buffers kept for reuse; extra recycled buffers are simply freed.
const POOL_CAPACITY: usize = 8;
/// Mixed into the shuffle key so these permutations are independent of other uses of
/// the same user seed.
const SHUFFLE_DOMAIN: &[u8; 16] = b"hasten/batches/1";

/// One mini-batch, owning its data.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Batch {
    /// `len * row_len` feature values, row-major, one sample after another.
    pub x: Vec<f32>,
    /// `len` class labels, in the same order as the rows of `x`; empty for an iterator
    /// made with [`BatchIterator::with_targets`].
    pub y: Vec<i32>,
    /// `len * target_len` target values, row-major, in the same order as the rows of
    /// `x`; empty for an iterator made with [`BatchIterator::new`] (which has `i32`
    /// labels in `y` instead).
    pub targets: Vec<f32>,
    /// Number of samples in the batch: the batch size, or fewer for the last batch.
    pub len: usize,
}

impl Batch {
    /// An empty batch with room for `batch_size` samples of `row_len` feature values
    /// and one `i32` label each (the shape [`BatchIterator::new`] produces).
    pub fn with_capacity(batch_size: usize, row_len: usize) -> Batch {
        Batch {
            x: Vec::with_capacity(batch_size.saturating_mul(row_len)),
            y: Vec::with_capacity(batch_size),
            targets: Vec::new(),
            len: 0,
        }
    }

    /// An empty batch with room for `batch_size` samples of `row_len` feature values
    /// and `target_len` target values each (the shape
    /// [`BatchIterator::with_targets`] produces).
    pub fn with_target_capacity(batch_size: usize, row_len: usize, target_len: usize) -> Batch {
        Batch {
            x: Vec::with_capacity(batch_size.saturating_mul(row_len)),
            y: Vec::new(),
            targets: Vec::with_capacity(batch_size.saturating_mul(target_len)),
            len: 0,
        }
    }
}

/// A handle that returns used [`Batch`]es to their iterator's buffer pool.
///
/// Cloneable and `Send`, so it can be kept outside a `for` loop that borrows the
/// [`Epoch`], or moved to another thread.
#[derive(Debug, Clone)]
pub struct Recycler {
    pool: Sender<Batch>,
}

impl Recycler {
    /// Hands a batch's buffers back for reuse. Never blocks: when the pool is full the
    /// batch is freed instead.
    pub fn recycle(&self, batch: Batch) {
        // A full pool just means enough spares already exist; dropping is correct.
        let _ = self.pool.try_send(batch);
    }
}

/// The per-sample supervision of a dataset.
#[derive(Debug, Clone)]
enum Labels {
    /// One `i32` class label per sample.
    Sparse(Arc<Vec<i32>>),
    /// `len` (non-zero) `f32` values per sample, row-major.
    Dense { values: Arc<Vec<f32>>, len: usize },
}

impl Labels {
    /// Number of samples.
    fn samples(&self) -> usize {
        match self {
            Labels::Sparse(labels) => labels.len(),
            Labels::Dense { values, len } => values.len() / len,
        }
    }

    /// A new buffer shaped for these labels.
    fn new_batch(&self, batch_size: usize, row_len: usize) -> Batch {
        match self {
            Labels::Sparse(_) => Batch::with_capacity(batch_size, row_len),
            Labels::Dense { len, .. } => Batch::with_target_capacity(batch_size, row_len, *len),
        }
    }

    /// Replaces the contents of `y` or `targets` (the other is cleared) with the labels
    /// of `samples`, in order.
    fn gather(&self, samples: &[usize], y: &mut Vec<i32>, targets: &mut Vec<f32>) {
        y.clear();
        targets.clear();
        match self {
            Labels::Sparse(labels) => y.extend(samples.iter().map(|&i| labels[i])),
            Labels::Dense { values, len } => {
                targets.reserve(samples.len() * len);
                for &i in samples {
                    targets.extend_from_slice(&values[i * len..(i + 1) * len]);
                }
            }
        }
    }
}

/// A shuffling mini-batch iterator factory over features and labels (or float targets)
/// in memory.
///
/// See the [module documentation](self) for the behaviour; each call to
/// [`BatchIterator::epoch`] yields one pass through the data.
#[derive(Debug, Clone)]
pub struct BatchIterator {
    features: Arc<Vec<f32>>,
    labels: Labels,
    row_len: usize,
    batch_size: usize,
    seed: Option<u64>,
    prefetch: bool,
    parallel_gather: bool,
    drop_last: bool,
    pool_tx: Sender<Batch>,
    pool_rx: Receiver<Batch>,
}

impl BatchIterator {
    /// Creates an iterator over `labels.len()` samples whose features are the
    /// consecutive rows of `row_len` values in `features`.
    ///
    /// Accepts `Vec`s or `Arc<Vec<_>>`s (sharing without a copy). Starts with no
    /// shuffling, no prefetching and the last partial batch kept.
    ///
    /// Fails with [`DataError::InvalidArgument`] when `row_len` or `batch_size` is zero
    /// and [`DataError::FeatureLabelMismatch`] unless
    /// `features.len() == labels.len() * row_len`.
    pub fn new(
        features: impl Into<Arc<Vec<f32>>>,
        row_len: usize,
        labels: impl Into<Arc<Vec<i32>>>,
        batch_size: usize,
    ) -> Result<BatchIterator, DataError> {
        let labels = labels.into();
        let samples = labels.len();
        BatchIterator::build(
            features.into(),
            row_len,
            Labels::Sparse(labels),
            samples,
            batch_size,
        )
    }

    /// Creates an iterator whose samples each have `target_len` `f32` target values
    /// (one-hot rows, regression targets, 0/1 values, ...): sample `i` has the features
    /// `features[i * row_len..(i + 1) * row_len]` and the targets
    /// `targets[i * target_len..(i + 1) * target_len]`, gathered into
    /// [`Batch::targets`] ([`Batch::y`] stays empty).
    ///
    /// Accepts `Vec`s or `Arc<Vec<_>>`s (sharing without a copy). Starts with no
    /// shuffling, no prefetching and the last partial batch kept.
    ///
    /// Fails with [`DataError::InvalidArgument`] when `row_len`, `target_len` or
    /// `batch_size` is zero, or when `targets.len()` is not a multiple of `target_len`
    /// (named `"targets"`), and with [`DataError::FeatureLabelMismatch`] (counting
    /// target rows as labels) unless `features.len() == n * row_len` for the
    /// `n = targets.len() / target_len` samples.
    pub fn with_targets(
        features: impl Into<Arc<Vec<f32>>>,
        row_len: usize,
        targets: impl Into<Arc<Vec<f32>>>,
        target_len: usize,
        batch_size: usize,
    ) -> Result<BatchIterator, DataError> {
        let targets = targets.into();
        if target_len == 0 {
            return Err(DataError::InvalidArgument {
                name: "target_len",
                reason: "every sample needs at least one target value, found 0".to_string(),
            });
        }
        if targets.len() % target_len != 0 {
            return Err(DataError::InvalidArgument {
                name: "targets",
                reason: format!(
                    "{} target values is not a whole number of rows of target_len {target_len} \
                     ({} rows and {} values left over)",
                    targets.len(),
                    targets.len() / target_len,
                    targets.len() % target_len
                ),
            });
        }
        let samples = targets.len() / target_len;
        let labels = Labels::Dense {
            values: targets,
            len: target_len,
        };
        BatchIterator::build(features.into(), row_len, labels, samples, batch_size)
    }

    /// Validates the shared arguments of the constructors; `samples` is the number of
    /// samples `labels` holds.
    fn build(
        features: Arc<Vec<f32>>,
        row_len: usize,
        labels: Labels,
        samples: usize,
        batch_size: usize,
    ) -> Result<BatchIterator, DataError> {
        if row_len == 0 {
            return Err(DataError::InvalidArgument {
                name: "row_len",
                reason: "every sample needs at least one feature value, found 0".to_string(),
            });
        }
        if batch_size == 0 {
            return Err(DataError::InvalidArgument {
                name: "batch_size",
                reason: "a batch must hold at least one sample, found 0".to_string(),
            });
        }
        let expected = samples.checked_mul(row_len);
        if expected != Some(features.len()) {
            return Err(DataError::FeatureLabelMismatch {
                features: features.len(),
                row_len,
                labels: samples,
                expected: expected.unwrap_or(usize::MAX),
            });
        }
        let (pool_tx, pool_rx) = channel::bounded(POOL_CAPACITY);
        Ok(BatchIterator {
            features,
            labels,
            row_len,
            batch_size,
            seed: None,
            prefetch: false,
            parallel_gather: false,
            drop_last: false,
            pool_tx,
            pool_rx,
        })
    }

    /// Shuffles every epoch with a permutation derived from `seed` and the epoch number.
    #[must_use = "builder methods return the changed iterator"]
    pub fn shuffle(mut self, seed: u64) -> BatchIterator {
        self.seed = Some(seed);
        self
    }

    /// Turns off shuffling: samples come in their stored order (the default).
    #[must_use = "builder methods return the changed iterator"]
    pub fn no_shuffle(mut self) -> BatchIterator {
        self.seed = None;
        self
    }

    /// Gathers upcoming batches on a background thread when `on` (default: off).
    #[must_use = "builder methods return the changed iterator"]
    pub fn prefetch(mut self, on: bool) -> BatchIterator {
        self.prefetch = on;
        self
    }

    /// Copies each batch's feature rows on all the threads of the CPU backend's worker pool
    /// when `on` (default: off). Applies to batches gathered on the calling thread, that is
    /// without [`BatchIterator::prefetch`].
    #[must_use = "builder methods return the changed iterator"]
    pub fn parallel_gather(mut self, on: bool) -> BatchIterator {
        self.parallel_gather = on;
        self
    }

    /// Drops the last batch when it would be smaller than the batch size (default: off,
    /// the partial batch is kept).
    #[must_use = "builder methods return the changed iterator"]
    pub fn drop_last(mut self, on: bool) -> BatchIterator {
        self.drop_last = on;
        self
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.samples()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Feature values per sample.
    pub fn row_len(&self) -> usize {
        self.row_len
    }

    /// Target values per sample for an iterator made with
    /// [`BatchIterator::with_targets`]; `None` for one with `i32` labels.
    pub fn target_len(&self) -> Option<usize> {
        match self.labels {
            Labels::Sparse(_) => None,
            Labels::Dense { len, .. } => Some(len),
        }
    }

    /// Samples per batch (all batches but possibly the last).
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Number of batches per epoch.
    pub fn num_batches(&self) -> usize {
        if self.drop_last {
            self.len() / self.batch_size
        } else {
            self.len().div_ceil(self.batch_size)
        }
    }

    /// Samples in the last batch of an epoch: the batch size when it divides the number
    /// of samples (or with [`BatchIterator::drop_last`]), the remainder otherwise, and 0
    /// when there are no batches.
    pub fn last_batch_len(&self) -> usize {
        match self.num_batches() {
            0 => 0,
            _ if self.drop_last => self.batch_size,
            n => self.len() - (n - 1) * self.batch_size,
        }
    }

    /// The order in which epoch `epoch` visits the samples (sample indices).
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        epoch_order(self.len(), self.seed, epoch)
    }

    /// A handle for returning batches to this iterator's buffer pool.
    pub fn recycler(&self) -> Recycler {
        Recycler {
            pool: self.pool_tx.clone(),
        }
    }

    /// Returns a batch's buffers to the pool for reuse (see [`Recycler::recycle`]).
    pub fn recycle(&self, batch: Batch) {
        self.recycler().recycle(batch);
    }

    /// Starts epoch number `epoch` (which selects the shuffle permutation).
    ///
    /// With prefetching on, this spawns the background thread that gathers the batches;
    /// if the thread cannot be spawned, the epoch silently gathers batches on the
    /// calling thread instead. The returned [`Epoch`] owns what it needs (the data is
    /// shared through `Arc`s), so it does not borrow `self`.
    pub fn epoch(&self, epoch: u64) -> Epoch {
        let remaining = self.num_batches();
        let recycler = self.recycler();
        if self.prefetch {
            let (tx, rx) = channel::bounded(PREFETCH_DEPTH);
            let stop = Arc::new(AtomicBool::new(false));
            let worker = Worker {
                plan: self.plan(Vec::new()),
                seed: self.seed,
                epoch,
                tx,
                pool: self.pool_rx.clone(),
                stop: Arc::clone(&stop),
            };
            let spawned = std::thread::Builder::new()
                .name("hasten-batch-prefetch".to_string())
                .spawn(move || worker.run());
            if let Ok(handle) = spawned {
                return Epoch {
                    mode: Mode::Prefetch {
                        rx,
                        stop,
                        handle: Some(handle),
                    },
                    remaining,
                    recycler,
                };
            }
        }
        Epoch {
            mode: Mode::Direct {
                plan: self.plan(self.order(epoch)),
                next: 0,
                pool: self.pool_rx.clone(),
            },
            remaining,
            recycler,
        }
    }

    /// An epoch's plan with the given sample order.
    fn plan(&self, order: Vec<usize>) -> Plan {
        Plan {
            features: Arc::clone(&self.features),
            labels: self.labels.clone(),
            row_len: self.row_len,
            batch_size: self.batch_size,
            num_batches: self.num_batches(),
            parallel_gather: self.parallel_gather,
            order,
        }
    }
}

/// The sample order of one epoch: the identity without a seed, otherwise a permutation
/// determined by `(seed, epoch)`.
fn epoch_order(len: usize, seed: Option<u64>, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    if let Some(seed) = seed {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&epoch.to_le_bytes());
        key[16..].copy_from_slice(SHUFFLE_DOMAIN);
        order.shuffle(&mut StdRng::from_seed(key));
    }
    order
}

/// The data and order of one epoch.
struct Plan {
    features: Arc<Vec<f32>>,
    labels: Labels,
    row_len: usize,
    batch_size: usize,
    num_batches: usize,
    parallel_gather: bool,
    order: Vec<usize>,
}

impl Plan {
    /// Fills `batch` (reusing its buffers) with batch number `index` of the epoch.
    fn fill(&self, index: usize, batch: &mut Batch) {
        let start = index * self.batch_size;
        let end = (start + self.batch_size).min(self.order.len());
        let samples = &self.order[start..end];
        if self.parallel_gather {
            gather_rows_in_parallel(&self.features, self.row_len, samples, &mut batch.x);
        } else {
            batch.x.clear();
            batch.x.reserve(samples.len() * self.row_len);
            for &i in samples {
                batch
                    .x
                    .extend_from_slice(&self.features[i * self.row_len..(i + 1) * self.row_len]);
            }
        }
        self.labels
            .gather(samples, &mut batch.y, &mut batch.targets);
        batch.len = samples.len();
    }

    /// A spare buffer from the pool, or a new one.
    fn buffer(&self, pool: &Receiver<Batch>) -> Batch {
        pool.try_recv()
            .unwrap_or_else(|_| self.labels.new_batch(self.batch_size, self.row_len))
    }
}

/// Replaces `x` with the `row_len`-long rows `samples` of `features`, the rows shared out
/// over the CPU backend's worker pool.
fn gather_rows_in_parallel(features: &[f32], row_len: usize, samples: &[usize], x: &mut Vec<f32>) {
    /// A pointer to disjoint row ranges of `x`, one per task.
    struct Rows(*mut f32);
    // SAFETY: every task writes only its own rows.
    unsafe impl Sync for Rows {}
    impl Rows {
        fn row(&self, r: usize, row_len: usize) -> *mut f32 {
            self.0.wrapping_add(r * row_len)
        }
    }

    // Recycled buffers already have this length, so this rarely writes anything.
    x.resize(samples.len() * row_len, 0.0);
    let pool = hasten_tensor::cpu::pool::global();
    let tasks = pool.threads().min(samples.len());
    let rows = Rows(x.as_mut_ptr());
    pool.run(tasks, &|t| {
        let (lo, hi) = (samples.len() * t / tasks, samples.len() * (t + 1) / tasks);
        for (r, &i) in samples[lo..hi].iter().enumerate() {
            let src = &features[i * row_len..(i + 1) * row_len];
            // SAFETY: row `lo + r` lies inside `x` (resized above) and belongs to this task
            // alone; `src` is a different allocation.
            unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), rows.row(lo + r, row_len), row_len)
            };
        }
    });
}

/// The prefetch thread's state.
struct Worker {
    plan: Plan,
    seed: Option<u64>,
    epoch: u64,
    tx: Sender<Batch>,
    pool: Receiver<Batch>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn run(mut self) {
        self.plan.order = epoch_order(self.plan.labels.samples(), self.seed, self.epoch);
        for index in 0..self.plan.num_batches {
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            let mut batch = self.plan.buffer(&self.pool);
            self.plan.fill(index, &mut batch);
            if self.tx.send(batch).is_err() {
                // The consumer is gone.
                return;
            }
        }
    }
}

/// How an epoch produces its batches.
enum Mode {
    /// Gathered on the calling thread in `next`.
    Direct {
        plan: Plan,
        next: usize,
        pool: Receiver<Batch>,
    },
    /// Gathered ahead of time by a background thread.
    Prefetch {
        rx: Receiver<Batch>,
        stop: Arc<AtomicBool>,
        handle: Option<JoinHandle<()>>,
    },
}

/// An iterator over the batches of one epoch, made by [`BatchIterator::epoch`].
///
/// Dropping it before the end stops and joins its prefetch thread, if any.
pub struct Epoch {
    mode: Mode,
    remaining: usize,
    recycler: Recycler,
}

impl std::fmt::Debug for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoch")
            .field("remaining", &self.remaining)
            .field("prefetch", &matches!(self.mode, Mode::Prefetch { .. }))
            .finish()
    }
}

impl Epoch {
    /// Returns a used batch's buffers for reuse by later batches (never blocks).
    pub fn recycle(&self, batch: Batch) {
        self.recycler.recycle(batch);
    }

    /// A handle for recycling batches while a `for` loop borrows this epoch.
    pub fn recycler(&self) -> Recycler {
        self.recycler.clone()
    }

    /// Whether batches are gathered by a background thread.
    pub fn is_prefetching(&self) -> bool {
        matches!(self.mode, Mode::Prefetch { .. })
    }
}

impl Iterator for Epoch {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.remaining == 0 {
            return None;
        }
        let batch = match &mut self.mode {
            Mode::Direct { plan, next, pool } => {
                let mut batch = plan.buffer(pool);
                plan.fill(*next, &mut batch);
                *next += 1;
                batch
            }
            Mode::Prefetch { rx, handle, .. } => match rx.recv() {
                Ok(batch) => batch,
                Err(_) => {
                    // The thread ended before sending every batch: it panicked.
                    self.remaining = 0;
                    if let Some(Err(panic)) = handle.take().map(JoinHandle::join) {
                        std::panic::resume_unwind(panic);
                    }
                    return None;
                }
            },
        };
        self.remaining -= 1;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Epoch {}

impl FusedIterator for Epoch {}

impl Drop for Epoch {
    fn drop(&mut self) {
        if let Mode::Prefetch { rx, stop, handle } = &mut self.mode {
            stop.store(true, Ordering::Release);
            // Receiving unblocks a thread waiting to send; it then sees `stop` and
            // returns, which disconnects the channel and ends this loop.
            while let Ok(batch) = rx.recv() {
                self.recycler.recycle(batch);
            }
            if let Some(handle) = handle.take() {
                // A panic on the thread has already been reported by the panic hook;
                // re-raising it inside `drop` could abort, so it is ignored here.
                let _ = handle.join();
            }
        }
    }
}
