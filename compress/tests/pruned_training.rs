//! A pruned model trains with fit unchanged: masks follow the schedule, pruned weights stay
//! zero, the logs carry sparsity, a resumed run equals an uninterrupted one, and strip keeps
//! the predictions.

mod common;

use common::*;
use hasten_compress::{
    prune_layers, prune_low_magnitude, strip_pruning, ConstantSparsity, LayerSelection,
    PolynomialDecay, PruningParams,
};
use hasten_nn::prelude::*;

fn zeros(t: &HostTensor) -> usize {
    t.as_f32().unwrap().iter().filter(|&&v| v == 0.0).count()
}

#[test]
fn polynomial_pruning_reaches_its_sparsity_and_pruned_weights_stay_zero() {
    let (x, y) = classification(640, &[20], 3, 1);
    // 20 steps an epoch at batch 32; masks every 10 steps from 0 to 0.8 by step 60.
    let schedule = PolynomialDecay::new(0.0, 0.8, 0, 60).frequency(10);
    let mut model = prune_low_magnitude(mlp(20, 32, 3), PruningParams::new(schedule)).unwrap();
    compile(&mut model, 0.01);
    let history = model.fit(&x, &y, options(2, 32)).unwrap();
    let first = history.get("dense/sparsity").expect("sparsity is logged")[0];
    assert!(first > 0.3 && first < 0.8, "after 20 of 60 steps: {first}");
    model.fit(&x, &y, options(5, 32).initial_epoch(2)).unwrap();
    let weights = model.get_weights().unwrap();
    for layer in ["dense", "dense_1"] {
        let kernel = &weights[&format!("{layer}/kernel")];
        let mask = &weights[&format!("{layer}/mask")];
        let n = kernel.shape.numel();
        assert_eq!(
            zeros(mask),
            (n as f32 * 0.8).round() as usize,
            "{layer}: exact count"
        );
        for (w, m) in values(kernel).iter().zip(values(mask)) {
            if m == 0.0 {
                assert_eq!(*w, 0.0, "{layer}: a pruned weight moved");
            }
        }
        let bias = &weights[&format!("{layer}/bias")];
        assert_eq!(zeros(bias), 0, "biases are not pruned");
        // The threshold is the smallest magnitude kept at the last mask update (step 60);
        // the weights have trained on since, so only its sign and finiteness are fixed.
        let threshold = weights[&format!("{layer}/threshold")].as_f32().unwrap()[0];
        assert!(
            threshold > 0.0 && threshold.is_finite(),
            "{layer}: {threshold}"
        );
    }
    let scores = model.evaluate(&x, &y, 64).unwrap();
    assert!(
        scores["accuracy"] > 0.5,
        "the pruned model still learns: {scores:?}"
    );
}

#[test]
fn a_resumed_pruning_run_equals_an_uninterrupted_one_bit_for_bit() {
    let (x, y) = classification(320, &[20], 3, 2);
    let params = PruningParams::new(PolynomialDecay::new(0.2, 0.9, 5, 45).frequency(7));
    let fresh = || {
        let mut m = prune_low_magnitude(mlp(20, 16, 3), params).unwrap();
        compile(&mut m, 0.01);
        m
    };
    let mut straight = fresh();
    straight.fit(&x, &y, options(4, 32)).unwrap();

    let dir = TempDir::new("resume");
    let mut first = fresh();
    first.fit(&x, &y, options(2, 32)).unwrap();
    first.save(dir.path()).unwrap();
    drop(first);
    let mut resumed = Sequential::load(dir.path()).unwrap();
    resumed
        .fit(&x, &y, options(4, 32).initial_epoch(2))
        .unwrap();

    let a = straight.get_state().unwrap();
    let b = resumed.get_state().unwrap();
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, t) in &a {
        assert_eq!(t.data, b[name].data, "{name} differs after resuming");
    }
}

#[test]
fn the_cnn_prunes_its_conv_and_dense_kernels_and_strip_keeps_predictions() {
    let (x, y) = classification(128, &[10, 10, 1], 3, 3);
    let params = PruningParams::new(ConstantSparsity::new(0.6, 0).frequency(4));
    let mut model = prune_low_magnitude(cnn(10, 4, 3), params).unwrap();
    compile(&mut model, 0.01);
    let history = model.fit(&x, &y, options(2, 16)).unwrap();
    assert!(history.last("conv2d/sparsity").unwrap() > 0.59);
    assert!(history.last("dense/sparsity").unwrap() > 0.59);
    let before = model.predict(&x, 32).unwrap();
    let mut plain = strip_pruning(model).unwrap();
    assert!(plain
        .layers()
        .iter()
        .all(|l| l.kind() != "PruneLowMagnitude"));
    let names = plain.weight_names();
    assert!(
        names
            .iter()
            .all(|n| !n.ends_with("/mask") && !n.ends_with("/threshold")),
        "{names:?}"
    );
    let after = plain.predict(&x, 32).unwrap();
    assert_eq!(values(&before), values(&after));
    let kernel = &plain.get_weights().unwrap()["conv2d/kernel"];
    assert_eq!(
        zeros(kernel),
        (kernel.shape.numel() as f32 * 0.6).round() as usize
    );
}

#[test]
fn pruning_keeps_a_trained_models_weights_and_selects_layers_by_name_or_kind() {
    let (x, y) = classification(128, &[20], 3, 4);
    let mut trained = mlp(20, 16, 3);
    compile(&mut trained, 0.01);
    trained.fit(&x, &y, options(1, 32)).unwrap();
    let weights = trained.get_weights().unwrap();
    let mut pruned = prune_layers(
        trained,
        PruningParams::default(),
        LayerSelection::Names(vec!["dense_1".into()]),
    )
    .unwrap();
    let kinds: Vec<&str> = pruned.layers().iter().map(|l| l.kind()).collect();
    assert_eq!(kinds, ["Dense", "PruneLowMagnitude"]);
    let now = pruned.get_weights().unwrap();
    for (name, t) in &weights {
        assert_eq!(t.data, now[name].data, "{name} kept");
    }
    let err = prune_layers(
        mlp(20, 4, 3),
        PruningParams::default(),
        LayerSelection::Names(vec!["nope".into()]),
    )
    .expect_err("unknown layer");
    assert!(err.to_string().contains("no layer named \"nope\""), "{err}");
    let mut flat = Sequential::new();
    flat.add(Flatten::new().input_shape([4, 5]));
    flat.add(Dense::new(3));
    let err = prune_layers(
        flat,
        PruningParams::default(),
        LayerSelection::Names(vec!["flatten".into()]),
    )
    .expect_err("flatten has no kernel");
    assert!(err.to_string().contains("cannot be pruned"), "{err}");
    let err = prune_layers(
        mlp(20, 4, 3),
        PruningParams::default(),
        LayerSelection::Kinds(vec!["Dropout".into()]),
    )
    .expect_err("dropout has no kernel");
    assert!(err.to_string().contains("Dropout"), "{err}");
}

#[test]
fn two_of_four_sparsity_trains_and_keeps_its_structure() {
    let (x, y) = classification(256, &[16], 2, 5);
    let params = PruningParams::new(ConstantSparsity::new(0.5, 0).frequency(8)).m_by_n(2, 4);
    let mut model = prune_layers(
        mlp(16, 8, 2),
        params,
        LayerSelection::Names(vec!["dense".into()]),
    )
    .unwrap();
    compile(&mut model, 0.01);
    model.fit(&x, &y, options(2, 32)).unwrap();
    let kernel = values(&model.get_weights().unwrap()["dense/kernel"]);
    for col in 0..8 {
        for group in 0..4 {
            let nonzero = (0..4)
                .filter(|t| kernel[(group * 4 + t) * 8 + col] != 0.0)
                .count();
            assert!(
                nonzero <= 2,
                "column {col} group {group}: {nonzero} nonzeros"
            );
        }
    }
}
