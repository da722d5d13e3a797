//! A NaN that reaches a train step shows in that step's loss, as in PyTorch and JAX, so
//! `TerminateOnNaN` stops there and the history shows it. With the input check off
//! (`check_finite(false)`), one NaN pixel poisons its batch; a divergent learning rate poisons
//! the weights, and the next batch's loss is non-finite.
//!
//! Before relu and max-pooling propagated NaN, the NaN pixel vanished in the forward pass
//! (`max(NaN, 0) = 0`) while its gradient turned first-layer weights to NaN: the loss sat at
//! log 10 and `fit` returned `Ok` with a dead model.

use hasten_nn::prelude::*;
use hasten_nn::Result;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::rc::Rc;

const SAMPLES: usize = 2048;
const BATCH: usize = 64;
const POISONED: usize = 100;

/// Random 28×28×1 images and labels, with one NaN pixel in sample 100 at (10, 20, 0).
fn poisoned_images() -> (HostTensor, HostTensor) {
    let mut rng = StdRng::seed_from_u64(5);
    let mut pixels: Vec<f32> = (0..SAMPLES * 784).map(|_| rng.random()).collect();
    pixels[POISONED * 784 + 10 * 28 + 20] = f32::NAN;
    let labels: Vec<i32> = (0..SAMPLES).map(|_| rng.random_range(0..10)).collect();
    (
        HostTensor::f32([SAMPLES, 28, 28, 1], pixels).unwrap(),
        HostTensor::i32([SAMPLES], labels).unwrap(),
    )
}

/// Records per batch the loss, and whether every weight was finite after the step; clones
/// share the record, so the test keeps one while `fit` owns another.
#[derive(Clone, Default)]
struct Watch(Rc<RefCell<Vec<(f32, bool)>>>);

impl Callback for Watch {
    fn on_batch_end(&mut self, _batch: usize, loss: f32, control: &mut Control<'_>) -> Result<()> {
        let finite = control
            .model
            .get_weights()?
            .values()
            .all(|w| w.as_f32().is_ok_and(|v| v.iter().all(|x| x.is_finite())));
        self.0.borrow_mut().push((loss, finite));
        Ok(())
    }
}

/// How a training run went.
struct Run {
    /// Where `TerminateOnNaN` stopped it: (epoch, batch).
    stopped: Option<(usize, usize)>,
    history: History,
    /// Per batch: loss, and whether the weights were finite after the step.
    batches: Vec<(f32, bool)>,
}

/// Trains `model` for 3 epochs without shuffling or the input check, with `TerminateOnNaN`.
fn train(
    mut model: Sequential,
    optimizer: impl Optimizer + 'static,
    x: &HostTensor,
    y: &HostTensor,
) -> Run {
    model
        .compile(
            optimizer,
            Loss::sparse_categorical_crossentropy(),
            &[Metric::Accuracy],
        )
        .unwrap();
    let guard = TerminateOnNaN::new();
    let watch = Watch::default();
    let options = FitOptions::epochs(3)
        .batch_size(BATCH)
        .shuffle(false)
        .check_finite(false)
        .verbose(Verbosity::Silent)
        .callback(guard.clone())
        .callback(watch.clone());
    let history = model.fit(x, y, options).unwrap();
    let batches = watch.0.borrow().clone();
    Run {
        stopped: guard.terminated_at(),
        history,
        batches,
    }
}

/// The poisoned sample is in batch 1: training stops there, in epoch 0, with a NaN loss in
/// the history, after two steps.
fn assert_stopped_in_the_poisoned_batch(run: &Run) {
    let batches = &run.batches;
    assert_eq!(
        run.stopped,
        Some((0, POISONED / BATCH)),
        "losses {batches:?}"
    );
    assert_eq!(batches.len(), POISONED / BATCH + 1);
    assert!(batches[0].0.is_finite() && batches[0].1);
    assert!(
        batches[1].0.is_nan(),
        "the poisoned batch's loss {:?}",
        batches[1]
    );
    assert_eq!(run.history.epochs, vec![0]);
    assert!(run.history.last("loss").unwrap().is_nan());
}

#[test]
fn a_nan_pixel_shows_in_the_reference_mlps_loss() {
    let (x, y) = poisoned_images();
    let x = x.reshape([SAMPLES, 784]).unwrap();
    let model = Sequential::new()
        .with(
            Dense::new(128)
                .activation(Activation::Relu)
                .input_shape([784]),
        )
        .with(Dense::new(10).activation(Activation::Softmax));
    assert_stopped_in_the_poisoned_batch(&train(model, Adam::default(), &x, &y));
}

#[test]
fn a_nan_pixel_shows_in_a_conv_pool_models_loss() {
    let (x, y) = poisoned_images();
    let model = Sequential::new()
        .with(
            Conv2D::new(8, [3, 3])
                .activation(Activation::Relu)
                .input_shape([28, 28, 1]),
        )
        .with(MaxPooling2D::new([2, 2]))
        .with(Flatten::new())
        .with(Dense::new(10).activation(Activation::Softmax));
    assert_stopped_in_the_poisoned_batch(&train(model, Adam::default(), &x, &y));
}

#[test]
fn weights_that_diverge_show_in_the_next_loss() {
    let (x, y) = poisoned_images();
    let mut values = x.as_f32().unwrap().to_vec();
    values[POISONED * 784 + 10 * 28 + 20] = 0.5;
    let x = HostTensor::f32([SAMPLES, 784], values).unwrap();
    let model = Sequential::new()
        .with(
            Dense::new(64)
                .activation(Activation::Relu)
                .input_shape([784]),
        )
        .with(Dense::new(64).activation(Activation::Relu))
        .with(Dense::new(10).activation(Activation::Softmax));
    let Run {
        stopped,
        history,
        batches,
    } = train(model, Sgd::new(1e12), &x, &y);
    let (epoch, batch) = stopped.expect("a learning rate of 1e12 diverges");
    println!("stopped at epoch {epoch}, batch {batch}: {batches:?}");
    assert_eq!(epoch, 0, "losses {batches:?}");
    // Every batch before the stop had a finite loss, and the weights it was computed from
    // were finite: a non-finite weight always reaches the very next loss.
    assert_eq!(batches.len(), batch + 1);
    assert!(!batches[batch].0.is_finite());
    for (b, (loss, _)) in batches[..batch].iter().enumerate() {
        assert!(loss.is_finite(), "batch {b}");
        assert!(
            b == 0 || batches[b - 1].1,
            "batch {b} ran on non-finite weights"
        );
    }
    assert!(!history.last("loss").unwrap().is_finite());
}
