//! The built-in callbacks on real `fit` runs over tiny synthetic data: early stopping (with
//! weight restoring and baselines), learning-rate schedules and plateaus, CSV logging and
//! stopping on a NaN loss.

mod common;

use common::compile_classifier;
use hasten_nn::callbacks::csv_logger::CsvLogger;
use hasten_nn::callbacks::early_stopping::{EarlyStopping, Mode};
use hasten_nn::callbacks::lr_schedulers::{LearningRateScheduler, ReduceLROnPlateau};
use hasten_nn::callbacks::terminate_on_nan::TerminateOnNaN;
use hasten_nn::callbacks::{Callback, Control, Logs};
use hasten_nn::prelude::*;
use hasten_nn::Error;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

const N: usize = 64;
const FEATURES: usize = 4;

/// `N` samples of `FEATURES` features and a noisy linear target.
fn regression_data(seed: u64) -> (HostTensor, HostTensor) {
    let mut rng = StdRng::seed_from_u64(seed);
    let w = [0.5f32, -1.0, 2.0, 0.25];
    let mut x = Vec::with_capacity(N * FEATURES);
    let mut y = Vec::with_capacity(N);
    for _ in 0..N {
        let row: Vec<f32> = (0..FEATURES).map(|_| rng.random_range(-1.0..1.0)).collect();
        let t = row.iter().zip(&w).map(|(a, b)| a * b).sum::<f32>() + 0.3;
        y.push(t + rng.random_range(-0.05..0.05));
        x.extend(row);
    }
    (
        HostTensor::f32([N, FEATURES], x).unwrap(),
        HostTensor::f32([N, 1], y).unwrap(),
    )
}

/// A linear regression model.
fn regression_model(optimizer: impl Optimizer + 'static) -> Sequential {
    let mut model = Sequential::new().seed(7);
    model.add(Dense::new(1).input_shape([FEATURES]));
    model
        .compile(optimizer, Loss::MeanSquaredError, &[])
        .unwrap();
    model
}

/// A model whose loss cannot change whatever the learning rate: its inputs are all zero and it
/// has no bias, so every gradient is zero.
fn frozen_model_and_data() -> (Sequential, HostTensor, HostTensor) {
    let mut model = Sequential::new().seed(3);
    model.add(Dense::new(1).use_bias(false).input_shape([FEATURES]));
    model
        .compile(Adam::new(0.1), Loss::MeanSquaredError, &[])
        .unwrap();
    let x = HostTensor::f32([N, FEATURES], vec![0.0; N * FEATURES]).unwrap();
    let y = HostTensor::f32([N, 1], (0..N).map(|i| (i % 5) as f32).collect()).unwrap();
    (model, x, y)
}

fn quiet(epochs: usize) -> FitOptions {
    FitOptions::epochs(epochs)
        .batch_size(16)
        .verbose(Verbosity::Silent)
}

/// Fits a fresh [`regression_model`] with `optimizer` on `regression_data(seed)`; returns the
/// model and what `fit` returned.
fn fit_regression(
    seed: u64,
    optimizer: impl Optimizer + 'static,
    options: FitOptions,
) -> (Sequential, hasten_nn::Result<History>) {
    let (x, y) = regression_data(seed);
    let mut model = regression_model(optimizer);
    let result = model.fit(&x, &y, options);
    (model, result)
}

/// Fits a fresh model of [`frozen_model_and_data`] on its data; returns the model and what
/// `fit` returned.
fn fit_frozen(options: FitOptions) -> (Sequential, hasten_nn::Result<History>) {
    let (mut model, x, y) = frozen_model_and_data();
    let result = model.fit(&x, &y, options);
    (model, result)
}

type Shared<T> = Rc<RefCell<T>>;

/// Records, per epoch, the weights at its end and the learning rate at its start and end.
#[derive(Default)]
struct Probe {
    weights: Shared<Vec<BTreeMap<String, HostTensor>>>,
    lr_begin: Shared<Vec<f32>>,
    lr_batches: Shared<Vec<Vec<f32>>>,
}

impl Probe {
    fn handles(&self) -> Probe {
        Probe {
            weights: Rc::clone(&self.weights),
            lr_begin: Rc::clone(&self.lr_begin),
            lr_batches: Rc::clone(&self.lr_batches),
        }
    }
}

impl Callback for Probe {
    fn on_epoch_begin(&mut self, _epoch: usize, ctx: &mut Control<'_>) -> hasten_nn::Result<()> {
        self.lr_begin.borrow_mut().push(ctx.model.learning_rate()?);
        self.lr_batches.borrow_mut().push(Vec::new());
        Ok(())
    }

    fn on_batch_end(
        &mut self,
        _b: usize,
        _loss: f32,
        ctx: &mut Control<'_>,
    ) -> hasten_nn::Result<()> {
        let lr = ctx.model.learning_rate()?;
        if let Some(last) = self.lr_batches.borrow_mut().last_mut() {
            last.push(lr);
        }
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        _e: usize,
        _logs: &Logs,
        ctx: &mut Control<'_>,
    ) -> hasten_nn::Result<()> {
        self.weights.borrow_mut().push(ctx.model.get_weights()?);
        Ok(())
    }
}

/// From epoch `from` on, trains with a negative learning rate (gradient ascent), so the
/// validation loss climbs and early stopping has something to stop.
struct AscendFrom {
    from: usize,
    lr: f32,
}

impl Callback for AscendFrom {
    fn on_epoch_begin(&mut self, epoch: usize, ctx: &mut Control<'_>) -> hasten_nn::Result<()> {
        if epoch >= self.from {
            ctx.model.set_learning_rate(-self.lr)?;
        }
        Ok(())
    }
}

/// Keras's early-stopping rule replayed on a history: (the epoch it stops at, the best epoch).
fn keras_early_stopping(values: &[f64], patience: usize) -> (Option<usize>, usize) {
    let (mut best, mut best_epoch, mut wait) = (f64::INFINITY, 0, 0);
    for (epoch, &v) in values.iter().enumerate() {
        wait += 1;
        if v < best {
            best = v;
            best_epoch = epoch;
            wait = 0;
            continue;
        }
        if wait >= patience && epoch > 0 {
            return (Some(epoch), best_epoch);
        }
    }
    (None, best_epoch)
}

/// Fits a fresh [`regression_model`] (Adam at 0.05) on `regression_data(seed)` for up to
/// `epochs` epochs, holding out the last quarter for validation, with gradient ascent from
/// epoch `ascend_from` on and `stopper` watching `val_loss`; returns the model, its history and
/// a probe of every epoch.
fn fit_ascending(
    seed: u64,
    epochs: usize,
    ascend_from: usize,
    stopper: &EarlyStopping,
) -> (Sequential, History, Probe) {
    let probe = Probe::default();
    let (model, history) = fit_regression(
        seed,
        Adam::new(0.05),
        quiet(epochs)
            .validation_split(0.25)
            .callback(AscendFrom {
                from: ascend_from,
                lr: 0.05,
            })
            .callback(stopper.clone())
            .callback(probe.handles()),
    );
    (model, history.unwrap(), probe)
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hasten-callbacks-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn early_stopping_stops_at_keras_epoch_and_restores_best_weights() {
    let stopper = EarlyStopping::new("val_loss")
        .patience(3)
        .restore_best_weights(true);
    let epochs = 40;
    let (mut model, history, probe) = fit_ascending(1, epochs, 6, &stopper);
    let val = history.get("val_loss").unwrap().to_vec();
    let (stop, best_epoch) = keras_early_stopping(&val, 3);
    let stop = stop.expect("gradient ascent from epoch 6 must trigger early stopping");
    println!("val_loss {val:?}: stop at {stop}, best {best_epoch}");
    assert!(stop < epochs - 1, "stopped at the last epoch {stop}");
    assert_eq!(history.epochs.len(), stop + 1, "fit ran past the stop");
    assert_eq!(stopper.stopped_epoch(), Some(stop));
    assert_eq!(stopper.best_epoch(), Some(best_epoch));
    assert_eq!(stopper.best(), Some(val[best_epoch]));
    let snapshots = probe.weights.borrow();
    assert_eq!(snapshots.len(), stop + 1);
    assert_ne!(
        snapshots[stop], snapshots[best_epoch],
        "the weights should have moved after the best epoch"
    );
    assert_eq!(
        model.get_weights().unwrap(),
        snapshots[best_epoch],
        "restore_best_weights should put back epoch {best_epoch}'s weights"
    );
    // The restored model scores the best validation loss again.
    let (x, y) = regression_data(1);
    let (vx, vy) = (
        HostTensor::f32(
            [16, FEATURES],
            x.as_f32().unwrap()[48 * FEATURES..].to_vec(),
        )
        .unwrap(),
        HostTensor::f32([16, 1], y.as_f32().unwrap()[48..].to_vec()).unwrap(),
    );
    let again = model.evaluate(&vx, &vy, 256).unwrap()["loss"];
    assert!(
        (again - val[best_epoch]).abs() <= 1e-5 * val[best_epoch].abs().max(1.0),
        "evaluate after restoring: {again}, best val_loss {}",
        val[best_epoch]
    );
}

#[test]
fn early_stopping_without_restore_keeps_the_last_weights() {
    let stopper = EarlyStopping::new("val_loss").patience(2);
    let (mut model, history, probe) = fit_ascending(2, 40, 5, &stopper);
    let stop = stopper.stopped_epoch().expect("should stop");
    assert_eq!(history.epochs.len(), stop + 1);
    assert_eq!(
        model.get_weights().unwrap(),
        probe.weights.borrow()[stop],
        "without restore_best_weights the last epoch's weights stay"
    );
}

#[test]
fn early_stopping_restores_best_weights_even_without_stopping() {
    let stopper = EarlyStopping::new("val_loss")
        .patience(100)
        .restore_best_weights(true);
    let (mut model, history, probe) = fit_ascending(3, 8, 4, &stopper);
    assert_eq!(history.epochs.len(), 8);
    assert_eq!(stopper.stopped_epoch(), None);
    let best = stopper.best_epoch().unwrap();
    let val = history.get("val_loss").unwrap();
    let argmin = (0..val.len())
        .min_by(|&a, &b| val[a].total_cmp(&val[b]))
        .unwrap();
    assert_eq!(best, argmin);
    assert_eq!(model.get_weights().unwrap(), probe.weights.borrow()[best]);
}

#[test]
fn early_stopping_counts_patience_on_a_flat_loss_and_honours_baseline() {
    // A flat validation loss: epoch 0 improves on +inf, then nothing improves.
    let stopper = EarlyStopping::new("val_loss").patience(2);
    let history = fit_frozen(quiet(10).validation_split(0.25).callback(stopper.clone()))
        .1
        .unwrap();
    let val = history.get("val_loss").unwrap();
    assert!(val.windows(2).all(|w| w[0] == w[1]), "not flat: {val:?}");
    assert_eq!(stopper.stopped_epoch(), Some(2));
    assert_eq!(history.epochs, vec![0, 1, 2]);
    assert_eq!(stopper.best(), Some(val[0]));

    // A baseline no epoch beats: epoch 0's improvement does not reset the wait counter.
    let stopper = EarlyStopping::new("val_loss")
        .patience(2)
        .baseline(Some(0.0));
    let history = fit_frozen(quiet(10).validation_split(0.25).callback(stopper.clone()))
        .1
        .unwrap();
    assert_eq!(stopper.stopped_epoch(), Some(1));
    assert_eq!(history.epochs, vec![0, 1]);

    // patience 0 stops at the first epoch that does not improve.
    let stopper = EarlyStopping::new("loss");
    let history = fit_frozen(quiet(10).callback(stopper.clone())).1.unwrap();
    assert_eq!(stopper.stopped_epoch(), Some(1));
    assert_eq!(history.epochs.len(), 2);
}

#[test]
fn early_stopping_min_delta_treats_small_gains_as_none() {
    // Real training improves every epoch, but never by 1e6: patience 1 stops at epoch 1.
    let stopper = EarlyStopping::new("loss").patience(1).min_delta(1e6);
    let history = fit_regression(4, Adam::new(0.05), quiet(20).callback(stopper.clone()))
        .1
        .unwrap();
    assert_eq!(stopper.stopped_epoch(), Some(1));
    assert_eq!(history.epochs.len(), 2);
}

#[test]
fn early_stopping_missing_monitor_is_a_config_error_listing_the_logs() {
    let options = quiet(3).callback(EarlyStopping::new("val_loss"));
    let err = fit_regression(5, Adam::new(0.05), options).1.unwrap_err();
    let Error::Config(msg) = &err else {
        panic!("expected Error::Config, got {err:?}");
    };
    assert!(msg.contains("\"val_loss\""), "{msg}");
    assert!(msg.contains("[loss]"), "{msg}");
    assert!(msg.contains("validation_split"), "{msg}");
}

#[test]
fn mode_auto_maximises_accuracies_and_minimises_the_rest() {
    assert_eq!(Mode::Auto.resolve("val_accuracy"), Mode::Max);
    assert_eq!(Mode::Auto.resolve("acc"), Mode::Max);
    assert_eq!(Mode::Auto.resolve("top_5_accuracy"), Mode::Max);
    assert_eq!(Mode::Auto.resolve("val_loss"), Mode::Min);
    assert_eq!(Mode::Auto.resolve("loss"), Mode::Min);
    assert_eq!(Mode::Min.resolve("accuracy"), Mode::Min);
    assert_eq!(Mode::Max.resolve("loss"), Mode::Max);
}

#[test]
fn early_stopping_on_accuracy_maximises() {
    // Two separable classes: accuracy reaches 1.0 and stays there, which in max mode stops
    // training `patience` epochs after it first gets there (a later 1.0 is no improvement).
    let mut rng = StdRng::seed_from_u64(9);
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for i in 0..N {
        let class = (i % 2) as i32;
        let centre = if class == 0 { -2.0 } else { 2.0 };
        for _ in 0..FEATURES {
            xs.push(centre + rng.random_range(-0.5f32..0.5));
        }
        ys.push(class);
    }
    let x = HostTensor::f32([N, FEATURES], xs).unwrap();
    let y = HostTensor::i32([N], ys).unwrap();
    let model = Sequential::new().seed(1).with(
        Dense::new(2)
            .activation(Activation::Softmax)
            .input_shape([FEATURES]),
    );
    let mut model = compile_classifier(model, 0.05);
    let stopper = EarlyStopping::new("accuracy").patience(2);
    let history = model
        .fit(&x, &y, quiet(30).callback(stopper.clone()))
        .unwrap();
    let acc = history.get("accuracy").unwrap();
    let first_best = (0..acc.len())
        .find(|&i| acc[i] == acc.iter().copied().fold(f64::MIN, f64::max))
        .unwrap();
    assert_eq!(stopper.best(), Some(acc[first_best]), "accuracy {acc:?}");
    assert_eq!(stopper.best_epoch(), Some(first_best), "accuracy {acc:?}");
    assert!(stopper.stopped_epoch().is_some(), "accuracy {acc:?}");
}

#[test]
fn reduce_lr_on_plateau_cuts_after_patience() {
    let plateau = ReduceLROnPlateau::new("val_loss").patience(2).factor(0.5);
    let probe = Probe::default();
    let (mut model, history) = fit_frozen(
        quiet(7)
            .validation_split(0.25)
            .callback(plateau.clone())
            .callback(probe.handles()),
    );
    history.unwrap();
    // Epoch 0 improves on +inf; epochs 1, 2 wait; cut at the end of 2; 3, 4 wait; cut at 4;
    // 5, 6 wait; cut at 6.
    let expected = [0.1f32, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025];
    let seen = probe.lr_begin.borrow().clone();
    assert_eq!(seen.len(), expected.len());
    for (s, e) in seen.iter().zip(expected) {
        assert!((s - e).abs() <= 1e-6 * e, "learning rates {seen:?}");
    }
    let cuts = plateau.reductions();
    assert_eq!(cuts.iter().map(|c| c.0).collect::<Vec<_>>(), vec![2, 4, 6]);
    let lr = model.learning_rate().unwrap();
    assert!((lr - 0.0125).abs() < 1e-8, "{lr} {cuts:?}");
}

#[test]
fn reduce_lr_on_plateau_cooldown_and_min_lr() {
    let plateau = ReduceLROnPlateau::new("loss")
        .patience(2)
        .factor(0.5)
        .cooldown(2);
    fit_frozen(quiet(8).callback(plateau.clone())).1.unwrap();
    // After the cut at 2, epochs 3 and 4 cool down (4 starts counting again): next cut at 5.
    let epochs: Vec<usize> = plateau.reductions().iter().map(|c| c.0).collect();
    assert_eq!(epochs, vec![2, 5]);

    let plateau = ReduceLROnPlateau::new("loss")
        .patience(1)
        .factor(0.1)
        .min_lr(0.005);
    let (mut model, history) = fit_frozen(quiet(6).callback(plateau.clone()));
    history.unwrap();
    let cuts = plateau.reductions();
    assert_eq!(cuts.len(), 2, "{cuts:?}");
    assert_eq!((cuts[0].0, cuts[1].0), (1, 2));
    assert!((cuts[0].1 - 0.01).abs() < 1e-8, "{cuts:?}");
    assert_eq!(cuts[1].1, 0.005f32, "clamped to min_lr: {cuts:?}");
    assert_eq!(model.learning_rate().unwrap(), 0.005f32);
}

#[test]
fn reduce_lr_on_plateau_leaves_an_improving_loss_alone() {
    let plateau = ReduceLROnPlateau::new("loss").patience(2);
    let (mut model, history) =
        fit_regression(6, Adam::new(0.02), quiet(5).callback(plateau.clone()));
    let history = history.unwrap();
    let loss = history.get("loss").unwrap();
    assert!(
        loss.windows(2).all(|w| w[1] < w[0] - 1e-4),
        "loss should fall steadily: {loss:?}"
    );
    assert!(plateau.reductions().is_empty());
    assert_eq!(model.learning_rate().unwrap(), 0.02f32);
    assert_eq!(plateau.best(), Some(loss[4]));
}

#[test]
fn reduce_lr_on_plateau_rejects_bad_settings() {
    for bad in [
        ReduceLROnPlateau::new("loss").factor(1.0),
        ReduceLROnPlateau::new("loss").factor(0.0),
        ReduceLROnPlateau::new("loss").factor(f64::NAN),
        ReduceLROnPlateau::new("loss").min_lr(-1.0),
    ] {
        let err = fit_frozen(quiet(2).callback(bad)).1.unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
    }
    let err = fit_frozen(quiet(2).callback(ReduceLROnPlateau::default()))
        .1
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("val_loss")),
        "{err:?}"
    );
}

#[test]
fn learning_rate_scheduler_sets_the_rate_every_epoch() {
    let (x, y) = regression_data(7);
    let mut model = regression_model(Adam::new(0.1));
    let seen_by_schedule = Rc::new(RefCell::new(Vec::new()));
    let log = Rc::clone(&seen_by_schedule);
    let schedule = LearningRateScheduler::new(move |epoch, lr| {
        log.borrow_mut().push((epoch, lr));
        match epoch {
            0 => lr * 0.2,
            1..=2 => lr * 0.5,
            _ => 0.0,
        }
    });
    let probe = Probe::default();
    model
        .fit(
            &x,
            &y,
            quiet(5).callback(schedule).callback(probe.handles()),
        )
        .unwrap();
    let expected = [0.02f32, 0.01, 0.005, 0.0, 0.0];
    let begin = probe.lr_begin.borrow().clone();
    for (e, (got, want)) in begin.iter().zip(expected).enumerate() {
        assert!((got - want).abs() <= 1e-6 * want, "epoch {e}: {begin:?}");
        // Every batch of the epoch ran at that rate.
        assert!(probe.lr_batches.borrow()[e].iter().all(|lr| lr == got));
    }
    // The schedule saw the rate in force: compile's, then its own previous value.
    let seen = seen_by_schedule.borrow().clone();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0], (0, 0.1f32));
    for e in 1..5 {
        assert_eq!(seen[e], (e, begin[e - 1]));
    }
    // A zero rate really freezes the weights.
    let w = probe.weights.borrow();
    assert_ne!(w[1], w[2]);
    assert_eq!(w[2], w[3]);
    assert_eq!(w[3], w[4]);
}

#[test]
fn learning_rate_scheduler_rejects_bad_rates() {
    for bad in [-0.1f32, f32::NAN, f32::INFINITY] {
        let schedule = LearningRateScheduler::new(move |e, lr| if e == 1 { bad } else { lr });
        let err = fit_regression(8, Adam::new(0.1), quiet(3).callback(schedule))
            .1
            .unwrap_err();
        assert!(
            matches!(&err, Error::Config(m) if m.contains("epoch 1")),
            "{err:?}"
        );
    }
}

/// Reads the CSV file at every epoch end, to show each row is on disk when its epoch ends.
struct LinesOnDisk {
    path: PathBuf,
    lines: Shared<Vec<usize>>,
}

impl Callback for LinesOnDisk {
    fn on_epoch_end(
        &mut self,
        _e: usize,
        _l: &Logs,
        _ctx: &mut Control<'_>,
    ) -> hasten_nn::Result<()> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        self.lines.borrow_mut().push(text.lines().count());
        Ok(())
    }
}

#[test]
fn csv_logger_writes_a_header_and_one_flushed_row_per_epoch() {
    let path = scratch("log.csv");
    let (x, y) = regression_data(10);
    let mut model = regression_model(Adam::new(0.05));
    let lines = Rc::new(RefCell::new(Vec::new()));
    let history = model
        .fit(
            &x,
            &y,
            quiet(3)
                .validation_split(0.25)
                .callback(CsvLogger::new(&path))
                .callback(LinesOnDisk {
                    path: path.clone(),
                    lines: Rc::clone(&lines),
                }),
        )
        .unwrap();
    assert_eq!(*lines.borrow(), vec![2, 3, 4]);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut expected = String::from("epoch,loss,val_loss\n");
    for e in 0..3 {
        expected.push_str(&format!(
            "{e},{},{}\n",
            history.get("loss").unwrap()[e],
            history.get("val_loss").unwrap()[e]
        ));
    }
    assert_eq!(text, expected);
    // Values round-trip exactly.
    let row: Vec<f64> = text
        .lines()
        .nth(2)
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(row[1], history.get("loss").unwrap()[1]);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn csv_logger_appends_or_replaces() {
    let path = scratch("append.csv");
    let (x, y) = regression_data(11);
    let mut model = regression_model(Adam::new(0.05));
    model
        .fit(&x, &y, quiet(2).callback(CsvLogger::new(&path)))
        .unwrap();
    model
        .fit(
            &x,
            &y,
            quiet(4)
                .initial_epoch(2)
                .callback(CsvLogger::new(&path).append(true)),
        )
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(lines[0], "epoch,loss");
    let epochs: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(epochs, ["0", "1", "2", "3"]);

    // Without append the file starts over.
    model
        .fit(&x, &y, quiet(1).callback(CsvLogger::new(&path)))
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");

    // Appending logs with other columns is refused rather than misaligned.
    let err = model
        .fit(
            &x,
            &y,
            quiet(1)
                .validation_split(0.25)
                .callback(CsvLogger::new(&path).append(true)),
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("append.csv") && m.contains("val_loss")),
        "{err:?}"
    );

    // Appending to a file that does not exist yet writes the header.
    let fresh = scratch("fresh.csv");
    model
        .fit(
            &x,
            &y,
            quiet(1).callback(CsvLogger::new(&fresh).append(true).separator(';')),
        )
        .unwrap();
    let text = std::fs::read_to_string(&fresh).unwrap();
    assert!(text.starts_with("epoch;loss\n0;"), "{text}");
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_file(&fresh).unwrap();
}

#[test]
fn csv_logger_errors_name_the_file() {
    let path = scratch("no-such-dir").join("log.csv");
    let options = quiet(1).callback(CsvLogger::new(&path));
    let err = fit_regression(12, Adam::new(0.05), options).1.unwrap_err();
    match &err {
        Error::Io { path: p, .. } => assert_eq!(p, &path.display().to_string()),
        other => panic!("expected Error::Io, got {other:?}"),
    }
    assert!(err.to_string().contains("log.csv"), "{err}");
}

#[test]
fn terminate_on_nan_stops_at_the_first_nan_batch() {
    let (x, y) = regression_data(13);
    let mut values = x.as_f32().unwrap().to_vec();
    values[40 * FEATURES + 1] = f32::NAN; // sample 40: batch 2 at batch size 16, unshuffled
    let x = HostTensor::f32([N, FEATURES], values).unwrap();
    let mut model = regression_model(Adam::new(0.01));
    let guard = TerminateOnNaN::new();
    // The input check would refuse the NaN before any step; here it is let through.
    let options = quiet(5)
        .callback(guard.clone())
        .shuffle(false)
        .check_finite(false);
    let history = model.fit(&x, &y, options).unwrap();
    assert_eq!(guard.terminated_at(), Some((0, 2)));
    assert!(guard.loss().unwrap().is_nan());
    assert_eq!(history.epochs, vec![0], "training went on after the NaN");
    assert!(history.last("loss").unwrap().is_nan());
}

#[test]
fn terminate_on_nan_stops_a_diverging_run() {
    let guard = TerminateOnNaN::new();
    let epochs = 20;
    let history = fit_regression(14, Sgd::new(1e30), quiet(epochs).callback(guard.clone()))
        .1
        .unwrap();
    let (epoch, batch) = guard.terminated_at().expect("lr 1e30 must diverge");
    println!(
        "diverged at epoch {epoch}, batch {batch}: {:?}",
        guard.loss()
    );
    assert!(!guard.loss().unwrap().is_finite());
    assert_eq!(history.epochs.len(), epoch + 1);
    assert!(history.epochs.len() < epochs);
}

#[test]
fn terminate_on_nan_leaves_healthy_training_alone() {
    let guard = TerminateOnNaN::new();
    let history = fit_regression(15, Adam::new(0.01), quiet(3).callback(guard.clone()))
        .1
        .unwrap();
    assert_eq!(guard.terminated_at(), None);
    assert_eq!(history.epochs.len(), 3);
}
