//! `FitOptions::steps_per_execution` on the CPU backend (which runs the steps of one
//! execution one after the other): the same batches in the same order, so the history, every
//! callback's per-batch loss and the final state are bit-identical to one step per execution,
//! including a short last group and a partial last batch.

mod common;

use common::mlp_classifier;
use hasten_nn::callbacks::{Callback, Control};
use hasten_nn::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;

/// 100 samples of 4 features: 6 full batches of 16 and one of 4.
fn data() -> (HostTensor, HostTensor) {
    let x = (0..400)
        .map(|i| ((i * 37) % 101) as f32 / 101.0 - 0.5)
        .collect();
    let y = (0..100).map(|i| (i * 7) % 3).collect();
    (
        HostTensor::f32([100, 4], x).unwrap(),
        HostTensor::i32([100], y).unwrap(),
    )
}

/// Records every batch's index and loss.
struct Losses(Rc<RefCell<Vec<(usize, u32)>>>);

impl Callback for Losses {
    fn on_batch_end(
        &mut self,
        batch: usize,
        loss: f32,
        _: &mut Control<'_>,
    ) -> hasten_nn::Result<()> {
        self.0.borrow_mut().push((batch, loss.to_bits()));
        Ok(())
    }
}

/// What a run gave, as bits: the history (loss, accuracy), each batch's index and loss, and
/// the final state.
type Bits = (Vec<Vec<u64>>, Vec<(usize, u32)>, Vec<Vec<u32>>);

/// Trains 3 epochs with `steps` per execution.
fn train(steps: usize) -> Bits {
    let (x, y) = data();
    let mut model = mlp_classifier(Sequential::new().seed(3), 4, 8, 3, 0.01);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let options = FitOptions::epochs(3)
        .batch_size(16)
        .seed(5)
        .verbose(Verbosity::Silent)
        .steps_per_execution(steps)
        .callback(Losses(Rc::clone(&seen)));
    let history = model.fit(&x, &y, options).unwrap();
    let logs = ["loss", "accuracy"]
        .iter()
        .map(|k| {
            history
                .get(k)
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        })
        .collect();
    let state = model
        .get_state()
        .unwrap()
        .values()
        .filter_map(|t| {
            t.as_f32()
                .ok()
                .map(|v| v.iter().map(|f| f.to_bits()).collect())
        })
        .collect();
    let losses = seen.borrow().clone();
    (logs, losses, state)
}

#[test]
fn steps_per_execution_trains_exactly_as_one_step_per_execution() {
    let one = train(1);
    assert_eq!(one.1.len(), 3 * 7, "7 batches an epoch");
    for steps in [2, 4, 7, 10] {
        let many = train(steps);
        assert_eq!(many.0, one.0, "history with {steps} steps per execution");
        assert_eq!(
            many.1, one.1,
            "per-batch losses with {steps} steps per execution"
        );
        assert_eq!(many.2, one.2, "state with {steps} steps per execution");
    }
}

#[test]
fn zero_steps_per_execution_is_an_error() {
    let (x, y) = data();
    let mut model = mlp_classifier(Sequential::new(), 4, 8, 3, 0.01);
    let options = FitOptions::epochs(1).steps_per_execution(0);
    let e = model.fit(&x, &y, options).unwrap_err().to_string();
    assert!(e.contains("steps_per_execution must be at least 1"), "{e}");
}
