//! `History` export: JSON round trips (non-finite values included), CSV text, atomic saves
//! and the PNG learning-curve plot.

mod common;

use common::mlp_classifier;
use hasten_nn::history::{plot_font_available, History, PlotOptions};
use hasten_nn::prelude::*;
use hasten_nn::Error;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("hasten-history-tests")
        .join(format!("{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn logs(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// A four-epoch classification history with falling losses and rising accuracies.
fn sample_history() -> History {
    let mut h = History::default();
    let rows = [
        (1.2, 0.55, 1.3, 0.5),
        (0.7, 0.75, 0.8, 0.7),
        (0.45, 0.85, 0.6, 0.78),
        (0.3, 0.9, 0.62, 0.8),
    ];
    for (e, (loss, acc, val_loss, val_acc)) in rows.into_iter().enumerate() {
        h.push(
            e,
            0.25 + e as f64 * 0.01,
            &logs(&[
                ("loss", loss),
                ("accuracy", acc),
                ("val_loss", val_loss),
                ("val_accuracy", val_acc),
            ]),
        );
    }
    h
}

/// A tiny classification run, so the files come from a real `fit`.
fn fitted_history(epochs: usize) -> History {
    let n = 64;
    let x: Vec<f32> = (0..n * 4)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let y: Vec<i32> = (0..n)
        .map(|i| i32::from(x[i * 4] + x[i * 4 + 1] > 0.0))
        .collect();
    let x = HostTensor::f32([n, 4], x).unwrap();
    let y = HostTensor::i32([n], y).unwrap();
    mlp_classifier(Sequential::new().seed(5), 4, 8, 2, 0.05)
        .fit(
            &x,
            &y,
            FitOptions::epochs(epochs)
                .batch_size(16)
                .validation_split(0.25)
                .verbose(Verbosity::Silent),
        )
        .unwrap()
}

/// The PNG's width and height from its IHDR chunk, after checking the signature.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.len() > 24, "a PNG of {} bytes", bytes.len());
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

#[test]
fn json_round_trips_a_real_history() {
    let history = fitted_history(3);
    assert_eq!(history.epochs, vec![0, 1, 2]);
    let json = history.to_json();
    let back = History::from_json(&json).unwrap();
    assert_eq!(back, history);
    // It is ordinary JSON with the three fields.
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["epochs"], serde_json::json!([0, 1, 2]));
    assert_eq!(
        value["metrics"]["val_accuracy"].as_array().unwrap().len(),
        3
    );
    assert_eq!(value["seconds"].as_array().unwrap().len(), 3);
}

#[test]
fn json_keeps_nan_and_infinities() {
    let mut h = History::default();
    h.push(0, 0.5, &logs(&[("loss", 0.25)]));
    h.push(1, 0.5, &logs(&[("loss", f64::NAN)]));
    h.push(2, f64::INFINITY, &logs(&[("loss", f64::NEG_INFINITY)]));
    let json = h.to_json();
    assert!(json.contains("\"NaN\""), "{json}");
    assert!(json.contains("\"-Infinity\""), "{json}");
    let back = History::from_json(&json).unwrap();
    let loss = back.get("loss").unwrap();
    assert_eq!(loss[0], 0.25);
    assert!(loss[1].is_nan());
    assert_eq!(loss[2], f64::NEG_INFINITY);
    assert_eq!(back.seconds[2], f64::INFINITY);
    // null also reads as NaN.
    let back =
        History::from_json(r#"{"epochs":[0],"seconds":[null],"metrics":{"loss":[null]}}"#).unwrap();
    assert!(back.seconds[0].is_nan() && back.last("loss").unwrap().is_nan());
}

#[test]
fn json_reads_keras_history_dicts() {
    let h =
        History::from_json(r#"{"loss": [0.9, 0.5, 0.25], "val_loss": [1.0, 0.6, 0.5]}"#).unwrap();
    assert_eq!(h.epochs, vec![0, 1, 2]);
    assert!(h.seconds.is_empty());
    assert_eq!(h.get("val_loss").unwrap(), &[1.0, 0.6, 0.5]);
}

#[test]
fn json_errors_are_format_errors() {
    for bad in [
        "",
        "[1, 2]",
        "{\"epochs\": [0], \"metrics\": {\"loss\": [1, 2]}}",
        "{\"epochs\": \"no\"}",
        "{\"loss\": [\"hello\"]}",
    ] {
        match History::from_json(bad) {
            Err(Error::Format { detail, .. }) => assert!(!detail.is_empty()),
            other => panic!("{bad:?}: expected a Format error, got {other:?}"),
        }
    }
}

#[test]
fn csv_text_has_a_sorted_header_and_one_row_per_epoch() {
    let h = sample_history();
    assert_eq!(
        h.to_csv(),
        "epoch,seconds,accuracy,loss,val_accuracy,val_loss\n\
         0,0.25,0.55,1.2,0.5,1.3\n\
         1,0.26,0.75,0.7,0.7,0.8\n\
         2,0.27,0.85,0.45,0.78,0.6\n\
         3,0.28,0.9,0.3,0.8,0.62\n"
    );
    let mut odd = History::default();
    odd.push(0, 1.0, &logs(&[("a,b", f64::NAN)]));
    odd.push(1, 1.0, &logs(&[]));
    assert_eq!(odd.to_csv(), "epoch,seconds,\"a,b\"\n0,1,NaN\n1,1,NA\n");
    assert_eq!(History::default().to_csv(), "epoch,seconds\n");
}

#[test]
fn save_json_and_csv_write_whole_files_and_nothing_else() {
    let dir = scratch_dir("save");
    let h = fitted_history(2);
    let json = dir.join("history.json");
    let csv = dir.join("nested").join("history.csv");
    h.save_json(&json).unwrap();
    h.save_csv(&csv).unwrap();
    assert_eq!(History::load_json(&json).unwrap(), h);
    assert_eq!(std::fs::read_to_string(&csv).unwrap(), h.to_csv());
    // Overwriting replaces the file; no temporary files stay behind.
    sample_history().save_json(&json).unwrap();
    assert_eq!(History::load_json(&json).unwrap(), sample_history());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["history.json", "nested"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn save_errors_name_the_path() {
    let dir = scratch_dir("errors");
    let file = dir.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let inside = file.join("history.json");
    let err = sample_history().save_json(&inside).unwrap_err();
    assert!(err.to_string().contains("a-file"), "{err}");
    let err = History::load_json(dir.join("missing.json")).unwrap_err();
    match &err {
        Error::Io { path, .. } => assert!(path.ends_with("missing.json"), "{path}"),
        other => panic!("expected Error::Io, got {other:?}"),
    }
    std::fs::write(dir.join("bad.json"), "{").unwrap();
    match History::load_json(dir.join("bad.json")) {
        Err(Error::Format { path, .. }) => assert!(path.ends_with("bad.json"), "{path}"),
        other => panic!("expected Error::Format, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn save_plot_writes_a_png_with_a_panel_per_kind_of_curve() {
    let dir = scratch_dir("plot");
    println!("a font for plot text: {}", plot_font_available());
    let with_accuracy = dir.join("curves.png");
    sample_history().save_plot(&with_accuracy).unwrap();
    let bytes = std::fs::read(&with_accuracy).unwrap();
    assert_eq!(png_size(&bytes), (2 * 640, 480), "two panels");
    assert!(bytes.len() > 2000, "{} bytes", bytes.len());

    // Loss only: one panel.
    let mut loss_only = History::default();
    for (e, l) in [2.0, 1.0, 0.8, f64::NAN, 0.5].into_iter().enumerate() {
        loss_only.push(e, 0.1, &logs(&[("loss", l), ("val_loss", l * 1.1)]));
    }
    let one = dir.join("loss.png");
    loss_only.save_plot(&one).unwrap();
    assert_eq!(png_size(&std::fs::read(&one).unwrap()), (640, 480));

    // A real run, a single epoch, and drawing without text all work too.
    let real = dir.join("real.png");
    fitted_history(4).save_plot(&real).unwrap();
    png_size(&std::fs::read(&real).unwrap());
    let single = dir.join("single.png");
    fitted_history(1).save_plot(&single).unwrap();
    png_size(&std::fs::read(&single).unwrap());
    let plain = dir.join("plain.png");
    let options = PlotOptions {
        panel_width: 300,
        height: 200,
        text: false,
    };
    sample_history().save_plot_with(&plain, &options).unwrap();
    assert_eq!(png_size(&std::fs::read(&plain).unwrap()), (600, 200));

    // Whatever the extension, the file is a PNG, and no temporary file stays behind.
    let odd = dir.join("curves.img");
    sample_history().save_plot(&odd).unwrap();
    png_size(&std::fs::read(&odd).unwrap());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "curves.img",
            "curves.png",
            "loss.png",
            "plain.png",
            "real.png",
            "single.png"
        ]
    );
    if std::env::var_os("HASTEN_KEEP_PLOTS").is_none() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn save_plot_of_an_empty_history_is_an_error() {
    let dir = scratch_dir("empty");
    let err = History::default()
        .save_plot(dir.join("empty.png"))
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(!dir.join("empty.png").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
