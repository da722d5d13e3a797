//! Checkpoints: save → load is bit-exact, a resumed run equals a straight one, ModelCheckpoint
//! saves when it should, bad checkpoints are errors that name the file, and crashed saves do
//! not break later ones.

mod common;

use common::{mlp_classifier, TempDir};
use hasten_nn::callbacks::model_checkpoint::{
    resume_epoch, resume_epoch_for, Mode, ModelCheckpoint, TrainingMarker, TRAINING_FILE,
};
use hasten_nn::checkpoint::{MODEL_FILE, OPTIMIZER_FILE, WEIGHTS_FILE};
use hasten_nn::history::History;
use hasten_nn::layers::{BatchNormalization, Dropout};
use hasten_nn::prelude::*;
use hasten_nn::Error;
use hasten_tensor::io::{load_safetensors, save_safetensors};
use hasten_tensor::HostData;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// 96 samples of 4 features; the class is the arg-max of three fixed projections, so a small
/// model can learn it.
fn data() -> (HostTensor, HostTensor) {
    let n = 96;
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let mut x = Vec::with_capacity(n * 4);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let f: Vec<f32> = (0..4).map(|_| next()).collect();
        let scores = [f[0] + f[1], f[2] - f[0], f[3] - f[1] + 0.2 * f[2]];
        let class = (0..3)
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
            .unwrap();
        x.extend_from_slice(&f);
        y.push(class as i32);
    }
    (
        HostTensor::f32([n, 4], x).unwrap(),
        HostTensor::i32([n], y).unwrap(),
    )
}

/// The model the checkpoints hold: 4 → Dense(8, relu) → Dense(3, softmax), Adam at 0.01.
fn model() -> Sequential {
    mlp_classifier(Sequential::new(), 4, 8, 3, 0.01)
}

fn options(epochs: usize) -> FitOptions {
    FitOptions {
        epochs,
        batch_size: 16,
        seed: 7,
        verbose: Verbosity::Silent,
        ..Default::default()
    }
}

/// Each tensor as (shape, raw bits), so equality is bit equality (NaN-safe, -0 ≠ +0).
fn bits(state: &BTreeMap<String, HostTensor>) -> BTreeMap<String, (Vec<usize>, Vec<u32>)> {
    state
        .iter()
        .map(|(name, t)| {
            let raw = match &t.data {
                HostData::F32(v) => v.iter().map(|f| f.to_bits()).collect(),
                HostData::I32(v) => v.iter().map(|&i| i as u32).collect(),
                HostData::U8(v) => v.iter().map(|&b| b as u32).collect(),
                HostData::Bool(v) => v.iter().map(|&b| b as u32).collect(),
            };
            (name.clone(), (t.shape.dims().to_vec(), raw))
        })
        .collect()
}

fn tensor_bits(t: &HostTensor) -> Vec<u32> {
    t.as_f32().unwrap().iter().map(|f| f.to_bits()).collect()
}

/// A trained, saved checkpoint at `dir`; returns the model.
fn saved(dir: &Path) -> Sequential {
    let (x, y) = data();
    let mut m = model();
    m.fit(&x, &y, options(1)).unwrap();
    m.save(dir).unwrap();
    m
}

/// A fresh temp dir for `test` (removed when dropped) with a [`saved`] checkpoint at `ckpt`
/// in it; returns the temp dir, the checkpoint's path and the model.
fn saved_in_temp(test: &str) -> (TempDir, PathBuf, Sequential) {
    let tmp = TempDir::new("checkpoint", test);
    let dir = tmp.join("ckpt");
    let m = saved(&dir);
    (tmp, dir, m)
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// Drops the recorded SHA-256 of a file, as a hand-assembled checkpoint would lack it, so the
/// safetensors reader itself meets the damage.
fn forget_digest(dir: &Path, file: &str) {
    edit_json(&dir.join(MODEL_FILE), |v| {
        v["files"].as_object_mut().unwrap().remove(file);
    });
}

fn expect_err<T: std::fmt::Debug>(r: hasten_nn::Result<T>) -> Error {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    }
}

/// Checks the error's message names `path` (by its file name) and returns the message.
fn names(e: &Error, path: &Path) -> String {
    let msg = e.to_string();
    let shown = path.display().to_string();
    assert!(msg.contains(&shown), "{msg:?} does not name {shown}");
    msg
}

#[test]
fn save_then_load_is_bit_identical() {
    let (tmp, dir, mut m) = saved_in_temp("roundtrip");
    let (x, _) = data();

    for file in [MODEL_FILE, WEIGHTS_FILE, OPTIMIZER_FILE] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    // weights.safetensors holds only the weights, under their model names.
    let weights = load_safetensors(&dir.join(WEIGHTS_FILE)).unwrap();
    assert_eq!(
        weights.keys().cloned().collect::<Vec<_>>(),
        [
            "dense/bias",
            "dense/kernel",
            "dense_1/bias",
            "dense_1/kernel"
        ]
    );
    assert_eq!(weights["dense/kernel"].shape.dims(), [4, 8]);
    let optimizer = load_safetensors(&dir.join(OPTIMIZER_FILE)).unwrap();
    assert!(optimizer.contains_key("optimizer/iterations"));
    assert!(optimizer.contains_key("optimizer/learning_rate"));
    assert!(optimizer.contains_key("optimizer/dense/kernel/m"));
    assert!(optimizer.keys().all(|k| k.starts_with("optimizer/")));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(MODEL_FILE)).unwrap()).unwrap();
    assert_eq!(json["format_version"], 1);
    assert_eq!(json["layers"][0]["kind"], "Dense");
    assert_eq!(json["layers"][1]["config"]["name"], "dense_1");
    assert_eq!(json["compile"]["optimizer"]["name"], "adam");
    assert_eq!(json["compile"]["metrics"][0], "accuracy");

    let mut loaded = Sequential::load(&dir).unwrap();
    assert_eq!(
        bits(&loaded.get_state().unwrap()),
        bits(&m.get_state().unwrap())
    );
    assert_eq!(loaded.iterations().unwrap(), 6);
    let p0 = m.predict(&x, 32).unwrap();
    let p1 = loaded.predict(&x, 32).unwrap();
    assert_eq!(p0.shape, p1.shape);
    assert_eq!(tensor_bits(&p0), tensor_bits(&p1));
    let (x, y) = data();
    assert_eq!(
        m.evaluate(&x, &y, 32).unwrap(),
        loaded.evaluate(&x, &y, 32).unwrap()
    );

    // save_weights / load_weights: just the weights, into a fresh model of the same shape.
    let wpath = tmp.join("w.safetensors");
    m.save_weights(&wpath).unwrap();
    let mut fresh = model();
    fresh.load_weights(&wpath).unwrap();
    assert_eq!(
        bits(&fresh.get_weights().unwrap()),
        bits(&m.get_weights().unwrap())
    );
    assert_eq!(
        tensor_bits(&fresh.predict(&x, 32).unwrap()),
        tensor_bits(&p0)
    );
}

#[test]
fn uncompiled_model_round_trips_without_optimizer_state() {
    let tmp = TempDir::new("checkpoint", "uncompiled");
    let dir = tmp.join("ckpt");
    let mut m = Sequential::new().seed(3);
    m.add(Dense::new(5).activation(Activation::Tanh).input_shape([4]));
    m.add(Dense::new(2));
    m.save(&dir).unwrap();
    assert!(!dir.join(OPTIMIZER_FILE).exists());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(MODEL_FILE)).unwrap()).unwrap();
    assert!(json["compile"].is_null());
    let mut loaded = Sequential::load(&dir).unwrap();
    assert_eq!(
        bits(&loaded.get_state().unwrap()),
        bits(&m.get_state().unwrap())
    );
    let (x, _) = data();
    assert_eq!(
        tensor_bits(&loaded.predict(&x, 50).unwrap()),
        tensor_bits(&m.predict(&x, 50).unwrap())
    );
    // Not compiled, so fit must say so.
    let (x, y) = data();
    assert!(matches!(
        loaded.fit(&x, &y, options(1)),
        Err(Error::NotCompiled)
    ));
}

/// History entries of the given epochs, without the timings.
fn history_of(h: &History, epochs: &[usize]) -> BTreeMap<String, Vec<u64>> {
    let idx: Vec<usize> = epochs
        .iter()
        .map(|e| h.epochs.iter().position(|x| x == e).unwrap())
        .collect();
    h.metrics
        .iter()
        .map(|(k, v)| (k.clone(), idx.iter().map(|&i| v[i].to_bits()).collect()))
        .collect()
}

/// Trains `build()` 4 epochs straight, and 2 + save + load + 2 more; both must end bit-equal.
fn check_resume(test: &str, build: fn() -> Sequential) {
    let tmp = TempDir::new("checkpoint", test);
    let (x, y) = data();
    let opts = |epochs| FitOptions {
        validation_split: 0.25,
        ..options(epochs)
    };

    let mut straight = build();
    let full = straight.fit(&x, &y, opts(4)).unwrap();
    assert_eq!(full.epochs, [0, 1, 2, 3]);

    // Two epochs, checkpointed every epoch by the callback, then a fresh process's view: load
    // and continue from the marker.
    let dir = tmp.join("ckpt");
    let mut first = build();
    let mut o = opts(2);
    o.callbacks.push(Box::new(ModelCheckpoint::new(&dir)));
    let part = first.fit(&x, &y, o).unwrap();
    assert_eq!(history_of(&part, &[0, 1]), history_of(&full, &[0, 1]));
    drop(first);

    let initial_epoch = resume_epoch(&dir).unwrap();
    assert_eq!(initial_epoch, 2);
    let mut resumed = Sequential::load(&dir).unwrap();
    let rest = resumed
        .fit(
            &x,
            &y,
            FitOptions {
                initial_epoch,
                ..opts(4)
            },
        )
        .unwrap();
    assert_eq!(rest.epochs, [2, 3]);
    assert_eq!(history_of(&rest, &[2, 3]), history_of(&full, &[2, 3]));
    assert_eq!(
        bits(&resumed.get_state().unwrap()),
        bits(&straight.get_state().unwrap()),
        "weights and optimizer state after resuming differ from the straight run"
    );
    // 72 training samples in batches of 16: 5 steps an epoch.
    assert_eq!(resumed.iterations().unwrap(), 4 * 5);
}

#[test]
fn a_resume_checks_the_worker_count_of_the_saving_job() {
    let tmp = TempDir::new("checkpoint", "worker_count");
    let (x, y) = data();
    let dir = tmp.join("ckpt");
    let mut first = model();
    let mut o = options(1);
    o.callbacks.push(Box::new(ModelCheckpoint::new(&dir)));
    first.fit(&x, &y, o).unwrap();
    let marker = TrainingMarker::read(&dir).unwrap();
    assert_eq!(marker.workers, 1, "one process saved it");
    let loaded = Sequential::load(&dir).unwrap();
    assert_eq!(resume_epoch_for(&dir, &loaded).unwrap(), 1);

    // A marker from before the field existed reads as one worker.
    edit_json(&dir.join(TRAINING_FILE), |v| {
        v.as_object_mut().unwrap().remove("workers");
    });
    assert_eq!(resume_epoch_for(&dir, &loaded).unwrap(), 1);

    edit_json(&dir.join(TRAINING_FILE), |v| v["workers"] = 4.into());
    let e = expect_err(resume_epoch_for(&dir, &loaded));
    let text = e.to_string();
    assert!(text.contains("a job of 4 worker process(es)"), "{text}");
    assert!(text.contains("runs 1"), "{text}");
}

#[test]
fn resumed_training_equals_straight_training() {
    check_resume("resume", model);
}

/// Dropout's step counter and batch-norm's moving statistics are state too: a resumed run
/// must draw the same masks and keep the same statistics.
#[test]
fn resumed_training_with_dropout_and_batch_norm_equals_straight_training() {
    check_resume("resume-stateful", || {
        let mut m = Sequential::new();
        m.add(Dense::new(8).activation(Activation::Relu).input_shape([4]));
        m.add(BatchNormalization::new());
        m.add(Dropout::new(0.3));
        m.add(Dense::new(3).activation(Activation::Softmax));
        m.compile(
            Adam::new(0.01),
            Loss::sparse_categorical_crossentropy(),
            &[Metric::Accuracy],
        )
        .unwrap();
        m
    });
}

/// Epochs (1-based) at which a monitored history improves.
fn improvements(values: &[f64], max: bool) -> BTreeSet<usize> {
    let mut best: Option<f64> = None;
    let mut out = BTreeSet::new();
    for (i, &v) in values.iter().enumerate() {
        let better = match best {
            None => true,
            Some(b) if max => v > b,
            Some(b) => v < b,
        };
        if better {
            best = Some(v);
            out.insert(i + 1);
        }
    }
    out
}

/// Names in `root` starting with `prefix`.
fn dirs_with(root: &Path, prefix: &str) -> BTreeSet<String> {
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[test]
fn model_checkpoint_saves_on_improvement_with_epoch_names() {
    let tmp = TempDir::new("checkpoint", "callback");
    let root = tmp.path();
    let (x, y) = data();
    let mut m = model();
    let mut o = FitOptions {
        validation_split: 0.25,
        ..options(6)
    };
    o.callbacks
        .push(Box::new(ModelCheckpoint::new(root.join("all-{epoch}"))));
    o.callbacks.push(Box::new(
        ModelCheckpoint::new(root.join("best-{epoch}"))
            .monitor("val_loss")
            .save_best_only(true),
    ));
    // Training loss falls, so "larger is better" improves only at the first epoch.
    o.callbacks.push(Box::new(
        ModelCheckpoint::new(root.join("max-{epoch:03d}"))
            .monitor("loss")
            .mode(Mode::Max)
            .save_best_only(true),
    ));
    o.callbacks.push(Box::new(
        ModelCheckpoint::new(root.join("latest"))
            .monitor("val_loss")
            .save_best_only(true),
    ));
    o.callbacks.push(Box::new(
        ModelCheckpoint::new(root.join("weights-{epoch}")).save_weights_only(true),
    ));
    let h = m.fit(&x, &y, o).unwrap();

    let all: BTreeSet<String> = (1..=6).map(|e| format!("all-{e:02}")).collect();
    assert_eq!(dirs_with(root, "all-"), all);

    let best = improvements(h.get("val_loss").unwrap(), false);
    let best_dirs: BTreeSet<String> = best.iter().map(|e| format!("best-{e:02}")).collect();
    assert_eq!(dirs_with(root, "best-"), best_dirs);

    let max = improvements(h.get("loss").unwrap(), true);
    assert!(max.len() < 6, "loss never fell: {:?}", h.get("loss"));
    let max_dirs: BTreeSet<String> = max.iter().map(|e| format!("max-{e:03}")).collect();
    assert_eq!(dirs_with(root, "max-"), max_dirs);

    // The fixed path holds the last improvement: its marker and its weights say so.
    let last = *best.iter().max().unwrap();
    let marker = TrainingMarker::read(root.join("latest")).unwrap();
    assert_eq!(marker.initial_epoch, last);
    assert_eq!(marker.monitor, "val_loss");
    let best_val = h.get("val_loss").unwrap()[last - 1];
    assert_eq!(marker.best, Some(best_val));
    assert_eq!(marker.logs["val_loss"], Some(best_val));
    let mut a = Sequential::load(root.join("latest")).unwrap();
    let mut b = Sequential::load(root.join(format!("best-{last:02}"))).unwrap();
    assert_eq!(bits(&a.get_state().unwrap()), bits(&b.get_state().unwrap()));

    // Every checkpoint carries its epoch marker.
    for e in 1..=6 {
        assert_eq!(resume_epoch(root.join(format!("all-{e:02}"))).unwrap(), e);
    }
    // The last every-epoch checkpoint is the final model.
    let mut fin = Sequential::load(root.join("all-06")).unwrap();
    assert_eq!(
        bits(&fin.get_state().unwrap()),
        bits(&m.get_state().unwrap())
    );

    // Weights only: just the weights and the marker.
    let w = root.join("weights-06");
    assert_eq!(
        dirs_with(&w, ""),
        BTreeSet::from([TRAINING_FILE.to_string(), WEIGHTS_FILE.to_string()])
    );
    let mut fresh = model();
    fresh.load_weights(w.join(WEIGHTS_FILE)).unwrap();
    assert_eq!(
        bits(&fresh.get_weights().unwrap()),
        bits(&m.get_weights().unwrap())
    );
    assert!(matches!(Sequential::load(&w), Err(Error::Io { .. })));
}

#[test]
fn model_checkpoint_paths_and_missing_monitor() {
    let mut logs = BTreeMap::new();
    logs.insert("val_loss".to_string(), 0.123456);
    let p = |pattern: &str, epoch| ModelCheckpoint::new(pattern).path_for(epoch, &logs);
    assert_eq!(p("ck-{epoch}", 2).unwrap(), PathBuf::from("ck-03"));
    assert_eq!(p("ck-{epoch:03d}", 2).unwrap(), PathBuf::from("ck-003"));
    assert_eq!(p("ck-{epoch:d}", 11).unwrap(), PathBuf::from("ck-12"));
    assert_eq!(
        p("{{x}}-{epoch}-{val_loss:.2f}", 0).unwrap(),
        PathBuf::from("{x}-01-0.12")
    );
    for bad in [
        "ck-{nope}",
        "ck-{epoch",
        "ck-}",
        "ck-{epoch:x}",
        "ck-{val_loss:4}",
    ] {
        assert!(matches!(p(bad, 0), Err(Error::Config(_))), "{bad}");
    }

    // save_best_only on a log that does not exist is a configuration error, not a panic.
    let tmp = TempDir::new("checkpoint", "monitor");
    let (x, y) = data();
    let mut m = model();
    let mut o = options(1);
    o.callbacks.push(Box::new(
        ModelCheckpoint::new(tmp.join("c")).save_best_only(true),
    ));
    let e = expect_err(m.fit(&x, &y, o));
    assert!(
        matches!(&e, Error::Config(msg) if msg.contains("val_loss")),
        "{e}"
    );
    assert!(!tmp.join("c").exists());
}

#[test]
fn missing_directory_and_files_are_io_errors_naming_them() {
    let tmp = TempDir::new("checkpoint", "missing");
    let nowhere = tmp.join("nowhere");
    let e = expect_err(Sequential::load(&nowhere));
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    names(&e, &nowhere);

    let dir = tmp.join("ckpt");
    saved(&dir);
    for file in [MODEL_FILE, WEIGHTS_FILE, OPTIMIZER_FILE] {
        let path = dir.join(file);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let e = expect_err(Sequential::load(&dir));
        assert!(
            matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
            "{file}: {e:?}"
        );
        names(&e, &path);
        std::fs::write(&path, bytes).unwrap();
    }
    Sequential::load(&dir).unwrap();

    let e = expect_err(resume_epoch(&dir));
    assert!(matches!(e, Error::Io { .. }));
    names(&e, &dir.join(TRAINING_FILE));

    // A checkpoint path that is a file is refused, and the file is kept.
    let file = tmp.join("file");
    std::fs::write(&file, b"keep").unwrap();
    let e = expect_err(model().save(&file));
    assert!(matches!(e, Error::Io { .. }));
    names(&e, &file);
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");
    let e = expect_err(Sequential::load(&file));
    assert!(matches!(e, Error::Io { .. }));
}

#[test]
fn bad_model_json_is_a_format_error() {
    let (_tmp, dir, _) = saved_in_temp("json");
    let path = dir.join(MODEL_FILE);
    let good = std::fs::read(&path).unwrap();

    let check = |what: &str, contains: &str| {
        let e = expect_err(Sequential::load(&dir));
        assert!(
            matches!(&e, Error::Format { path: p, .. } if Path::new(p) == path),
            "{what}: {e:?}"
        );
        let msg = names(&e, &path);
        assert!(msg.contains(contains), "{what}: {msg:?} lacks {contains:?}");
        std::fs::write(&path, &good).unwrap();
    };

    std::fs::write(&path, b"{\"format\": \"hasten.sequential\", \"layers\": [").unwrap();
    check("truncated JSON", "EOF");
    std::fs::write(&path, b"not json at all").unwrap();
    check("garbage", "expected");

    edit_json(&path, |v| v["format_version"] = 99.into());
    check("future version", "format version 99");
    edit_json(&path, |v| {
        v.as_object_mut().unwrap().remove("format_version");
    });
    check("no version", "format_version");
    edit_json(&path, |v| v["format"] = "keras".into());
    check("other format", "keras");

    edit_json(&path, |v| v["layers"][1]["kind"] = "Bogus".into());
    check("unknown layer", "Bogus");
    edit_json(&path, |v| v["layers"][0]["config"]["units"] = "many".into());
    check("bad layer config", "layer 0");
    edit_json(&path, |v| v["layers"] = serde_json::json!([]));
    check("no layers", "no layers");
    edit_json(&path, |v| {
        v["compile"]["optimizer"]["name"] = "lion_9000".into()
    });
    check("unknown optimizer", "lion_9000");
    edit_json(&path, |v| {
        v.as_object_mut().unwrap().remove("layers");
    });
    check("no layers key", "layers");

    Sequential::load(&dir).unwrap();
}

#[test]
fn corrupt_safetensors_are_errors_naming_the_file() {
    let (_tmp, dir, _) = saved_in_temp("corrupt");
    let wpath = dir.join(WEIGHTS_FILE);
    let good = std::fs::read(&wpath).unwrap();

    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 2].to_vec()),
        ("truncated header", good[..12].to_vec()),
        ("empty", Vec::new()),
        ("length prefix flipped", {
            let mut b = good.clone();
            b[0] ^= 0xff;
            b[5] ^= 0x40;
            b
        }),
        ("header JSON flipped", {
            let mut b = good.clone();
            b[8] ^= 0xff;
            b[9] ^= 0x55;
            b
        }),
    ];

    for (what, bytes) in &damaged {
        std::fs::write(&wpath, bytes).unwrap();
        // With the digest model.json recorded, the damage is caught before parsing.
        let e = expect_err(Sequential::load(&dir));
        assert!(matches!(e, Error::Format { .. }), "{what}: {e:?}");
        assert!(names(&e, &wpath).contains("corrupt"), "{what}");
        // Without a digest (weights-only loading, or a hand-made checkpoint), the safetensors
        // reader refuses the file.
        let e = expect_err(model().load_weights(&wpath));
        assert!(
            matches!(e, Error::Tensor(hasten_tensor::Error::Safetensors { .. })),
            "{what}: {e:?}"
        );
        names(&e, &wpath);
    }

    // Flipped data bytes parse fine: only the digest can tell.
    let mut b = good.clone();
    let last = b.len() - 1;
    b[last] ^= 0x01;
    std::fs::write(&wpath, &b).unwrap();
    let e = expect_err(Sequential::load(&dir));
    assert!(matches!(e, Error::Format { .. }), "{e:?}");
    names(&e, &wpath);

    forget_digest(&dir, WEIGHTS_FILE);
    std::fs::write(&wpath, &good[..good.len() - 3]).unwrap();
    let e = expect_err(Sequential::load(&dir));
    assert!(
        matches!(e, Error::Tensor(hasten_tensor::Error::Safetensors { .. })),
        "{e:?}"
    );
    names(&e, &wpath);

    // The optimizer file too.
    let opath = dir.join(OPTIMIZER_FILE);
    std::fs::write(&wpath, &good).unwrap();
    let ogood = std::fs::read(&opath).unwrap();
    std::fs::write(&opath, &ogood[..ogood.len() / 3]).unwrap();
    let e = expect_err(Sequential::load(&dir));
    assert!(matches!(e, Error::Format { .. }), "{e:?}");
    names(&e, &opath);
    std::fs::write(&opath, &ogood).unwrap();
    Sequential::load(&dir).unwrap();
}

#[test]
fn missing_or_misshapen_tensors_are_errors_naming_both_shapes() {
    let (_tmp, dir, mut m) = saved_in_temp("tensors");
    let wpath = dir.join(WEIGHTS_FILE);
    let opath = dir.join(OPTIMIZER_FILE);
    forget_digest(&dir, WEIGHTS_FILE);
    forget_digest(&dir, OPTIMIZER_FILE);
    let weights = m.get_weights().unwrap();
    let state = m.get_state().unwrap();
    let optimizer: BTreeMap<String, HostTensor> = state
        .into_iter()
        .filter(|(k, _)| k.starts_with("optimizer/"))
        .collect();

    let check = |path: &Path, what: &str, contains: &[&str]| {
        let e = expect_err(Sequential::load(&dir));
        assert!(matches!(&e, Error::Format { .. }), "{what}: {e:?}");
        let msg = names(&e, path);
        for c in contains {
            assert!(msg.contains(c), "{what}: {msg:?} lacks {c:?}");
        }
    };

    // Saves `base` to `path` with the tensor `name` set to `tensor`, or removed if `None`.
    let save_altered = |path: &Path,
                        base: &BTreeMap<String, HostTensor>,
                        name: &str,
                        tensor: Option<HostTensor>| {
        let mut altered = base.clone();
        match tensor {
            Some(t) => altered.insert(name.to_string(), t),
            None => altered.remove(name),
        };
        save_safetensors(path, &altered).unwrap();
    };

    save_altered(&wpath, &weights, "dense_1/bias", None);
    check(
        &wpath,
        "missing weight",
        &["missing tensor", "dense_1/bias", "[3]"],
    );
    let e = expect_err(model().load_weights(&wpath));
    assert!(matches!(e, Error::Format { .. }));
    names(&e, &wpath);

    let misshapen = HostTensor::f32([5, 8], vec![0.0; 40]).unwrap();
    save_altered(&wpath, &weights, "dense/kernel", Some(misshapen));
    check(
        &wpath,
        "misshapen weight",
        &["dense/kernel", "[5, 8]", "[4, 8]"],
    );
    let mut fresh = model();
    let before = bits(&fresh.get_weights().unwrap());
    let e = expect_err(fresh.load_weights(&wpath));
    assert!(e.to_string().contains("[5, 8]") && e.to_string().contains("[4, 8]"));
    assert_eq!(
        bits(&fresh.get_weights().unwrap()),
        before,
        "a failed load changed weights"
    );

    let ints = HostTensor::i32([4, 8], vec![0; 32]).unwrap();
    save_altered(&wpath, &weights, "dense/kernel", Some(ints));
    check(&wpath, "wrong dtype", &["dense/kernel", "i32", "f32"]);

    let extra = HostTensor::scalar(1.0);
    save_altered(&wpath, &weights, "dense_9/kernel", Some(extra));
    check(
        &wpath,
        "extra weight",
        &["unexpected tensor", "dense_9/kernel"],
    );
    save_safetensors(&wpath, &weights).unwrap();

    save_altered(&opath, &optimizer, "optimizer/iterations", None);
    check(&opath, "missing iterations", &["optimizer/iterations"]);

    let misshapen = HostTensor::f32([8, 4], vec![0.0; 32]).unwrap();
    save_altered(
        &opath,
        &optimizer,
        "optimizer/dense/kernel/m",
        Some(misshapen),
    );
    check(
        &opath,
        "misshapen slot",
        &["optimizer/dense/kernel/m", "[8, 4]", "[4, 8]"],
    );

    let stray = HostTensor::scalar(0.0);
    save_altered(&opath, &optimizer, "optimizer/conv/kernel/m", Some(stray));
    check(&opath, "slot of no weight", &["optimizer/conv/kernel/m"]);

    save_safetensors(&opath, &optimizer).unwrap();
    let mut loaded = Sequential::load(&dir).unwrap();
    assert_eq!(
        bits(&loaded.get_state().unwrap()),
        bits(&m.get_state().unwrap())
    );
}

#[test]
fn leftovers_of_crashed_saves_do_not_break_saving_or_loading() {
    let (tmp, dir, mut m) = saved_in_temp("crash");
    let (x, y) = data();

    // A save that died while writing: a half-filled temporary directory, a stray temp file
    // inside the checkpoint, and a replaced checkpoint that was never removed.
    let stray_tmp = tmp.join(".ckpt.tmp-999999-1-0");
    std::fs::create_dir_all(&stray_tmp).unwrap();
    std::fs::write(stray_tmp.join(MODEL_FILE), b"{\"half").unwrap();
    std::fs::write(stray_tmp.join(WEIGHTS_FILE), b"garbage").unwrap();
    let stray_old = tmp.join(".ckpt.old-999999-2-0");
    std::fs::create_dir_all(&stray_old).unwrap();
    let stray_file = dir.join(format!(".{WEIGHTS_FILE}.tmp-{}", std::process::id()));
    std::fs::write(&stray_file, b"partial").unwrap();
    // Something that merely looks alike is not ours to remove.
    let lookalike = tmp.join(".ckpt.tmp-notes");
    std::fs::write(&lookalike, b"mine").unwrap();

    // Loading ignores all of it.
    let mut loaded = Sequential::load(&dir).unwrap();
    assert_eq!(
        bits(&loaded.get_state().unwrap()),
        bits(&m.get_state().unwrap())
    );

    // The next save replaces the checkpoint as a whole and clears the leftovers.
    m.fit(&x, &y, options(2)).unwrap();
    m.save(&dir).unwrap();
    assert!(!stray_tmp.exists() && !stray_old.exists() && !stray_file.exists());
    assert!(lookalike.exists());
    let mut loaded = Sequential::load(&dir).unwrap();
    assert_eq!(
        bits(&loaded.get_state().unwrap()),
        bits(&m.get_state().unwrap())
    );

    // A crash between the two renames of the swap: the checkpoint directory is gone, the
    // previous one complete beside it. Loading says where it is; the next save recovers.
    let moved = tmp.join(".ckpt.old-999999-3-0");
    std::fs::rename(&dir, &moved).unwrap();
    let e = expect_err(Sequential::load(&dir));
    assert!(matches!(e, Error::Io { .. }));
    let msg = names(&e, &dir);
    assert!(msg.contains(&moved.display().to_string()), "{msg}");
    let mut from_moved = Sequential::load(&moved).unwrap();
    assert_eq!(
        bits(&from_moved.get_state().unwrap()),
        bits(&m.get_state().unwrap())
    );
    m.save(&dir).unwrap();
    assert!(!moved.exists());
    Sequential::load(&dir).unwrap();

    // Saving an uncompiled model over a compiled checkpoint leaves no stale optimizer file.
    let mut plain = Sequential::new();
    plain.add(Dense::new(8).activation(Activation::Relu).input_shape([4]));
    plain.add(Dense::new(3).activation(Activation::Softmax));
    plain.save(&dir).unwrap();
    assert!(!dir.join(OPTIMIZER_FILE).exists());
    let mut loaded = Sequential::load(&dir).unwrap();
    assert_eq!(
        bits(&loaded.get_state().unwrap()),
        bits(&plain.get_state().unwrap())
    );
    let entries = dirs_with(tmp.path(), "");
    assert_eq!(
        entries,
        BTreeSet::from(["ckpt".to_string(), ".ckpt.tmp-notes".to_string()])
    );
}
