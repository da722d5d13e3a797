//! Callbacks and checkpoints work unchanged on `Mirrored`: a checkpoint written while training
//! on replicas loads on one device and continues as the replicas continue.

mod common;

use common::*;
use hasten_nn::prelude::*;
use hasten_parallel::Mirrored;
use std::sync::Arc;

#[test]
fn a_checkpoint_saved_on_replicas_resumes_on_one_device() {
    let dir = std::env::temp_dir().join(format!("hasten-parallel-{}-ckpt", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = data(128, &[784], 5);
    let mut model = mlp();
    model
        .set_backend(Arc::new(Mirrored::cpu(2).unwrap()))
        .unwrap();
    model
        .compile(
            Adam::new(1e-3),
            Loss::sparse_categorical_crossentropy(),
            &[Metric::Accuracy],
        )
        .unwrap();
    let first = FitOptions::epochs(1)
        .batch_size(32)
        .verbose(Verbosity::Silent)
        .callback(ModelCheckpoint::new(&dir));
    model.fit(&data.0, &data.1, first).unwrap();

    let mut restored = Sequential::load(&dir).unwrap();
    let again = || {
        let mut o = FitOptions::epochs(2)
            .batch_size(32)
            .verbose(Verbosity::Silent);
        o.initial_epoch = 1;
        o
    };
    model.fit(&data.0, &data.1, again()).unwrap();
    restored.fit(&data.0, &data.1, again()).unwrap();
    let a = model.get_state().unwrap();
    let b = restored.get_state().unwrap();
    for (name, value) in &b {
        if let (Ok(x), Ok(y)) = (a[name].as_f32(), value.as_f32()) {
            let d = relative_difference(x, y);
            assert!(d <= 1e-5, "{name}: relative difference {d:e}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
