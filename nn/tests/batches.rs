//! Tests of the shuffling, prefetching mini-batch iterator.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hasten_nn::data::{Batch, BatchIterator, DataError};

const ROW: usize = 3;

/// `n` samples; sample `i` has features `[3i, 3i + 1, 3i + 2]` and label `i`, so every
/// batch row can be checked against its label.
fn dataset(n: usize) -> (Arc<Vec<f32>>, Arc<Vec<i32>>) {
    let x: Vec<f32> = (0..n * ROW).map(|v| v as f32).collect();
    let y: Vec<i32> = (0..n as i32).collect();
    (Arc::new(x), Arc::new(y))
}

fn iter(n: usize, batch_size: usize) -> BatchIterator {
    let (x, y) = dataset(n);
    BatchIterator::new(x, ROW, y, batch_size).expect("valid iterator")
}

/// Checks that each row of `x` belongs to the label in `y`.
fn check_rows(batch: &Batch) {
    assert_eq!(batch.y.len(), batch.len);
    assert_eq!(batch.x.len(), batch.len * ROW);
    for (row, &label) in batch.x.chunks_exact(ROW).zip(&batch.y) {
        let base = (label as usize * ROW) as f32;
        assert_eq!(row, [base, base + 1.0, base + 2.0]);
    }
}

/// Asserts that `result` failed with [`DataError::InvalidArgument`] naming the argument
/// `name`, and returns the error.
fn assert_invalid_argument(result: Result<BatchIterator, DataError>, name: &str) -> DataError {
    let err = result.unwrap_err();
    assert!(
        matches!(&err, DataError::InvalidArgument { name: n, .. } if *n == name),
        "expected an invalid {name}, got {err:?}"
    );
    err
}

/// Asserts that `result` failed with [`DataError::FeatureLabelMismatch`] with exactly these
/// counts.
fn assert_mismatch(
    result: Result<BatchIterator, DataError>,
    features: usize,
    row_len: usize,
    labels: usize,
    expected: usize,
) {
    let err = result.unwrap_err();
    let want = (features, row_len, labels, expected);
    assert!(
        matches!(
            err,
            DataError::FeatureLabelMismatch { features, row_len, labels, expected }
                if (features, row_len, labels, expected) == want
        ),
        "expected a mismatch {want:?} (features, row_len, labels, expected), got {err:?}"
    );
}

/// All labels of one epoch, in order, recycling every batch.
fn epoch_labels(it: &BatchIterator, epoch: u64) -> Vec<i32> {
    let mut e = it.epoch(epoch);
    let mut out = Vec::new();
    while let Some(batch) = e.next() {
        check_rows(&batch);
        out.extend_from_slice(&batch.y);
        e.recycle(batch);
    }
    out
}

#[test]
fn every_sample_appears_once_per_epoch() {
    for prefetch in [false, true] {
        let it = iter(103, 10).shuffle(7).prefetch(prefetch);
        for epoch in 0..4 {
            let mut labels = epoch_labels(&it, epoch);
            assert_eq!(labels.len(), 103);
            labels.sort_unstable();
            assert_eq!(labels, (0..103).collect::<Vec<_>>(), "prefetch={prefetch}");
        }
    }
}

#[test]
fn same_seed_gives_same_order() {
    let a = iter(200, 16).shuffle(1234);
    let b = iter(200, 16).shuffle(1234);
    for epoch in [0, 1, 5] {
        assert_eq!(epoch_labels(&a, epoch), epoch_labels(&b, epoch));
        assert_eq!(a.order(epoch), b.order(epoch));
    }
    // The same epoch run twice on one iterator is also identical.
    assert_eq!(epoch_labels(&a, 3), epoch_labels(&a, 3));
}

#[test]
fn different_epochs_and_seeds_give_different_orders() {
    let a = iter(200, 16).shuffle(1234);
    assert_ne!(epoch_labels(&a, 0), epoch_labels(&a, 1));
    assert_ne!(a.order(1), a.order(2));
    let b = iter(200, 16).shuffle(1235);
    assert_ne!(a.order(0), b.order(0));
    // (seed, epoch) pairs are not confused with each other.
    let c = iter(200, 16).shuffle(1233);
    assert_ne!(a.order(0), c.order(1));
    // A shuffled order is not the identity.
    assert_ne!(a.order(0), (0..200).collect::<Vec<_>>());
}

#[test]
fn no_shuffle_is_identity_order() {
    for prefetch in [false, true] {
        let it = iter(50, 8).prefetch(prefetch);
        for epoch in 0..3 {
            assert_eq!(epoch_labels(&it, epoch), (0..50).collect::<Vec<_>>());
        }
    }
    let it = iter(50, 8).shuffle(3).no_shuffle();
    assert_eq!(it.order(9), (0..50).collect::<Vec<_>>());
}

#[test]
fn partial_last_batch_is_kept_and_reported() {
    for prefetch in [false, true] {
        let it = iter(10, 4).shuffle(1).prefetch(prefetch);
        assert_eq!((it.num_batches(), it.last_batch_len()), (3, 2));
        let e = it.epoch(0);
        assert_eq!(e.len(), 3);
        let lens: Vec<usize> = e.map(|b| b.len).collect();
        assert_eq!(lens, [4, 4, 2]);

        let it = it.drop_last(true);
        assert_eq!((it.num_batches(), it.last_batch_len()), (2, 4));
        let lens: Vec<usize> = it.epoch(0).map(|b| b.len).collect();
        assert_eq!(lens, [4, 4]);
    }
    let exact = iter(12, 4);
    assert_eq!((exact.num_batches(), exact.last_batch_len()), (3, 4));
    let one = iter(3, 100);
    assert_eq!((one.num_batches(), one.last_batch_len()), (1, 3));
    assert_eq!(one.drop_last(true).num_batches(), 0);
}

#[test]
fn prefetching_yields_the_same_batches() {
    let direct = iter(1000, 64).shuffle(99);
    let prefetched = iter(1000, 64).shuffle(99).prefetch(true);
    for epoch in 0..3 {
        let mut d = direct.epoch(epoch);
        let mut p = prefetched.epoch(epoch);
        assert!(!d.is_prefetching());
        assert!(p.is_prefetching());
        let mut count = 0;
        loop {
            match (d.next(), p.next()) {
                (Some(a), Some(b)) => {
                    assert_eq!(a, b, "epoch {epoch}, batch {count}");
                    d.recycle(a);
                    p.recycle(b);
                    count += 1;
                }
                (None, None) => break,
                (a, b) => panic!(
                    "one iterator ended early: {:?} {:?}",
                    a.map(|b| b.len),
                    b.map(|b| b.len)
                ),
            }
        }
        assert_eq!(count, 16);
        // Fused: stays finished.
        assert!(p.next().is_none());
    }
}

#[test]
fn parallel_gathering_yields_the_same_batches() {
    // 1000 samples in batches of 64 end with a partial batch of 40, filled into a recycled
    // buffer of 64 rows.
    let direct = iter(1000, 64).shuffle(7);
    let parallel = iter(1000, 64).shuffle(7).parallel_gather(true);
    for epoch in 0..2 {
        let (mut d, mut p) = (direct.epoch(epoch), parallel.epoch(epoch));
        let mut count = 0;
        while let Some(a) = d.next() {
            let b = p.next().expect("as many batches as the direct epoch");
            check_rows(&b);
            assert_eq!(a, b, "epoch {epoch}, batch {count}");
            d.recycle(a);
            p.recycle(b);
            count += 1;
        }
        assert!(p.next().is_none());
        assert_eq!(count, 16);
    }
}

#[test]
fn recycled_buffers_are_reused() {
    // Direct mode: a recycled buffer is the next one filled.
    let it = iter(100, 10).shuffle(5);
    let mut e = it.epoch(0);
    let first = e.next().expect("batch");
    let ptr = first.x.as_ptr();
    e.recycle(first);
    assert_eq!(e.next().expect("batch").x.as_ptr(), ptr);

    // Prefetch mode: with every batch recycled, a whole run of epochs cycles through a
    // handful of buffers (two queued, one being filled, one in use).
    let it = iter(2000, 10).shuffle(5).prefetch(true);
    let mut buffers = HashSet::new();
    for epoch in 0..3 {
        let mut e = it.epoch(epoch);
        let recycler = e.recycler();
        for batch in &mut e {
            buffers.insert(batch.x.as_ptr() as usize);
            recycler.recycle(batch);
        }
    }
    assert!(
        buffers.len() <= 6,
        "{} distinct buffers for 600 batches",
        buffers.len()
    );
}

#[test]
fn dropping_mid_epoch_returns_promptly() {
    // Large enough that the producer is still busy when the consumer gives up.
    let n = 20_000;
    let x = Arc::new(vec![0.5f32; n * 784]);
    let y = Arc::new(vec![1i32; n]);
    let it = BatchIterator::new(x, 784, y, 32)
        .expect("valid")
        .shuffle(0)
        .prefetch(true);

    // Dropped after one batch, while the thread is blocked on a full channel.
    let mut e = it.epoch(0);
    let batch = e.next().expect("batch");
    assert_eq!(batch.len, 32);
    std::thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    drop(e);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "drop took {:?}",
        start.elapsed()
    );

    // Dropped before taking anything, and right after creation.
    for _ in 0..20 {
        let start = Instant::now();
        drop(it.epoch(1));
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    // Dropping the iterator itself with an epoch still running is fine too.
    let e = it.epoch(2);
    drop(it);
    let lens: usize = e.take(3).map(|b| b.len).sum();
    assert_eq!(lens, 96);
}

#[test]
fn empty_dataset_yields_nothing() {
    for prefetch in [false, true] {
        let it = iter(0, 4).prefetch(prefetch).shuffle(1);
        assert!(it.is_empty());
        assert_eq!((it.num_batches(), it.last_batch_len()), (0, 0));
        assert_eq!(it.epoch(0).count(), 0);
    }
}

#[test]
fn invalid_arguments_are_errors() {
    let (x, y) = dataset(10);
    let make = |row_len, batch_size| {
        BatchIterator::new(Arc::clone(&x), row_len, Arc::clone(&y), batch_size)
    };
    assert_invalid_argument(make(ROW, 0), "batch_size");
    assert_invalid_argument(make(0, 4), "row_len");
    assert_mismatch(make(4, 4), 30, 4, 10, 40);
    // Plain Vecs are accepted too.
    let it = BatchIterator::new(vec![0.0f32; 6], 2, vec![0i32; 3], 2).expect("vecs");
    assert_eq!(it.len(), 3);
}

const TARGET: usize = 2;

/// `n` samples with the features of [`dataset`] and `TARGET` float targets each:
/// sample `i` has targets `[i, -(i + 0.5)]`, so every target row can be checked against
/// its feature row.
fn target_dataset(n: usize) -> (Arc<Vec<f32>>, Arc<Vec<f32>>) {
    let (x, _) = dataset(n);
    let t: Vec<f32> = (0..n).flat_map(|i| [i as f32, -(i as f32 + 0.5)]).collect();
    (x, Arc::new(t))
}

fn target_iter(n: usize, batch_size: usize) -> BatchIterator {
    let (x, t) = target_dataset(n);
    BatchIterator::with_targets(x, ROW, t, TARGET, batch_size).expect("valid iterator")
}

/// Checks that each target row belongs to its feature row and returns the sample
/// indices of the batch, in order.
fn check_target_rows(batch: &Batch) -> Vec<usize> {
    assert!(
        batch.y.is_empty(),
        "float-target batches carry no i32 labels"
    );
    assert_eq!(batch.x.len(), batch.len * ROW);
    assert_eq!(batch.targets.len(), batch.len * TARGET);
    batch
        .x
        .chunks_exact(ROW)
        .zip(batch.targets.chunks_exact(TARGET))
        .map(|(row, target)| {
            let i = target[0] as usize;
            let base = (i * ROW) as f32;
            assert_eq!(row, [base, base + 1.0, base + 2.0]);
            assert_eq!(target, [i as f32, -(i as f32 + 0.5)]);
            i
        })
        .collect()
}

/// The sample indices of one epoch of a float-target iterator, recycling every batch.
fn epoch_samples(it: &BatchIterator, epoch: u64) -> Vec<usize> {
    let mut e = it.epoch(epoch);
    let mut out = Vec::new();
    while let Some(batch) = e.next() {
        out.extend(check_target_rows(&batch));
        e.recycle(batch);
    }
    out
}

#[test]
fn float_targets_stay_aligned_with_their_rows() {
    for prefetch in [false, true] {
        // Stored order without shuffling.
        let it = target_iter(53, 8).prefetch(prefetch);
        assert_eq!(it.len(), 53);
        assert_eq!(it.target_len(), Some(TARGET));
        assert_eq!((it.num_batches(), it.last_batch_len()), (7, 5));
        for epoch in 0..2 {
            assert_eq!(epoch_samples(&it, epoch), (0..53).collect::<Vec<_>>());
        }

        // Shuffled: the order is the iterator's permutation, every sample once.
        let it = it.shuffle(11);
        for epoch in 0..3 {
            let samples = epoch_samples(&it, epoch);
            assert_eq!(samples, it.order(epoch), "prefetch={prefetch}");
            assert_ne!(samples, (0..53).collect::<Vec<_>>());
        }

        // drop_last applies as well.
        let it = it.drop_last(true);
        let lens: Vec<usize> = it.epoch(0).map(|b| b.len).collect();
        assert_eq!(lens, [8; 6]);
    }
}

#[test]
fn float_targets_follow_the_same_order_as_labels() {
    // Same seed, same number of samples: the label and target iterators visit the
    // samples in the same order.
    let labels = iter(120, 16).shuffle(77);
    let targets = target_iter(120, 16).shuffle(77).prefetch(true);
    for epoch in 0..3 {
        let from_labels: Vec<usize> = epoch_labels(&labels, epoch)
            .into_iter()
            .map(|l| l as usize)
            .collect();
        assert_eq!(epoch_samples(&targets, epoch), from_labels);
    }
}

#[test]
fn float_target_prefetching_and_recycling() {
    let direct = target_iter(500, 32).shuffle(3);
    let prefetched = target_iter(500, 32).shuffle(3).prefetch(true);
    let mut buffers = HashSet::new();
    for epoch in 0..3 {
        let d: Vec<Batch> = direct.epoch(epoch).collect();
        let mut p = prefetched.epoch(epoch);
        let recycler = p.recycler();
        let mut count = 0;
        for (a, b) in d.iter().zip(&mut p) {
            assert_eq!(a, &b, "epoch {epoch}, batch {count}");
            buffers.insert(b.targets.as_ptr() as usize);
            recycler.recycle(b);
            count += 1;
        }
        assert_eq!(count, 16);
        assert_eq!(d.len(), 16);
    }
    assert!(
        buffers.len() <= 6,
        "{} distinct target buffers",
        buffers.len()
    );

    // A recycled buffer keeps its target capacity and is the next one filled.
    let mut e = direct.epoch(0);
    let first = e.next().expect("batch");
    let ptr = first.targets.as_ptr();
    e.recycle(first);
    let second = e.next().expect("batch");
    assert_eq!(second.targets.as_ptr(), ptr);
    check_target_rows(&second);
}

#[test]
fn label_iterators_have_no_targets() {
    let it = iter(10, 4);
    assert_eq!(it.target_len(), None);
    for batch in it.epoch(0) {
        assert!(batch.targets.is_empty());
        assert_eq!(batch.y.len(), batch.len);
    }
    let b = Batch::with_capacity(4, 3);
    assert!(b.x.capacity() >= 12 && b.y.capacity() >= 4 && b.len == 0);
    let b = Batch::with_target_capacity(4, 3, 10);
    assert!(b.x.capacity() >= 12 && b.targets.capacity() >= 40 && b.len == 0);
}

#[test]
fn empty_float_target_dataset_yields_nothing() {
    for prefetch in [false, true] {
        let it = BatchIterator::with_targets(Vec::new(), 4, Vec::new(), 3, 2)
            .expect("empty is valid")
            .shuffle(1)
            .prefetch(prefetch);
        assert!(it.is_empty());
        assert_eq!((it.len(), it.target_len()), (0, Some(3)));
        assert_eq!(it.epoch(0).count(), 0);
    }
}

#[test]
fn invalid_float_targets_are_errors() {
    let (x, t) = target_dataset(10);
    let make = |row_len, targets: &Arc<Vec<f32>>, target_len, batch_size| {
        BatchIterator::with_targets(
            Arc::clone(&x),
            row_len,
            Arc::clone(targets),
            target_len,
            batch_size,
        )
    };
    assert!(make(ROW, &t, TARGET, 4).is_ok());

    assert_invalid_argument(make(ROW, &t, 0, 4), "target_len");
    assert_invalid_argument(make(0, &t, TARGET, 4), "row_len");
    assert_invalid_argument(make(ROW, &t, TARGET, 0), "batch_size");

    // 20 target values are not whole rows of 3.
    let err = assert_invalid_argument(make(ROW, &t, 3, 4), "targets");
    assert!(err.to_string().contains("20 target values"), "{err}");

    // 20 target values as rows of 4 are 5 samples, but there are 10 feature rows.
    assert_mismatch(make(ROW, &t, 4, 4), 30, 3, 5, 15);

    // One target row too many.
    let long: Arc<Vec<f32>> = Arc::new(vec![0.0; 22]);
    assert_mismatch(make(ROW, &long, TARGET, 4), 30, ROW, 11, 33);
    // Too few features for the targets.
    assert_mismatch(
        BatchIterator::with_targets(vec![0.0f32; 5], 2, vec![0.0f32; 3], 1, 2),
        5,
        2,
        3,
        6,
    );
}
