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
    let err = BatchIterator::new(Arc::clone(&x), ROW, Arc::clone(&y), 0).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::InvalidArgument {
                name: "batch_size",
                ..
            }
        ),
        "{err:?}"
    );
    let err = BatchIterator::new(Arc::clone(&x), 0, Arc::clone(&y), 4).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::InvalidArgument {
                name: "row_len",
                ..
            }
        ),
        "{err:?}"
    );
    let err = BatchIterator::new(Arc::clone(&x), 4, Arc::clone(&y), 4).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::FeatureLabelMismatch {
                features: 30,
                row_len: 4,
                labels: 10,
                expected: 40
            }
        ),
        "{err:?}"
    );
    // Plain Vecs are accepted too.
    let it = BatchIterator::new(vec![0.0f32; 6], 2, vec![0i32; 3], 2).expect("vecs");
    assert_eq!(it.len(), 3);
}
