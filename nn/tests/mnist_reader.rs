//! Tests of the IDX / MNIST reader: the real data set loads, and every kind of damaged
//! input is reported with its specific error.

mod common;

use common::TempDir;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use flate2::write::GzEncoder;
use flate2::Compression;
use hasten_nn::data::mnist::{
    self, IMAGES_MAGIC, LABELS_MAGIC, SUMS_FILE, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES,
    TRAIN_LABELS,
};
use hasten_nn::data::{
    read_idx_images, read_idx_labels, sha256_hex, verify_sha256, DataError, Mnist,
};
use sha2::{Digest, Sha256};

/// Asserts that `err` matches a pattern (with an optional `if` guard), showing it if not.
macro_rules! assert_matches {
    ($err:expr, $pattern:pat $(if $guard:expr)?) => {
        assert!(matches!($err, $pattern $(if $guard)?), "{:?}", $err)
    };
}

/// An IDX file: magic, big-endian dims, payload.
fn idx(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

/// Lower-case hex SHA-256, as `sha256sum` prints it.
fn sha_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `count` images of `rows x cols` with pixel `(i * 7 + k) % 256` and labels `i % 10`.
fn images_and_labels(count: u32, rows: u32, cols: u32) -> (Vec<u8>, Vec<u8>) {
    let n = (count * rows * cols) as usize;
    let pixels: Vec<u8> = (0..n).map(|k| (k * 7 % 256) as u8).collect();
    let labels: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
    (
        idx(IMAGES_MAGIC, &[count, rows, cols], &pixels),
        idx(LABELS_MAGIC, &[count], &labels),
    )
}

/// Writes a complete small MNIST-like directory (gzipped files) with a correct
/// SHA256SUMS, and returns it.
fn synthetic_mnist(name: &str) -> TempDir {
    let dir = TempDir::new("mnist-reader", name);
    let (train_x, train_y) = images_and_labels(30, 4, 3);
    let (test_x, test_y) = images_and_labels(12, 4, 3);
    let mut sums = String::new();
    for (file, raw) in [
        (TRAIN_IMAGES, &train_x),
        (TRAIN_LABELS, &train_y),
        (TEST_IMAGES, &test_x),
        (TEST_LABELS, &test_y),
    ] {
        dir.write(&format!("{file}.gz"), &gzip(raw));
        sums.push_str(&format!("{}  {file}\n", sha_hex(raw)));
    }
    dir.write(SUMS_FILE, sums.as_bytes());
    dir
}

/// Rewrites one file of a synthetic directory (gzipped) and fixes its SHA256SUMS line,
/// so that the structural check, not the checksum, is what fails.
fn replace_file(dir: &TempDir, file: &str, raw: &[u8]) {
    dir.write(&format!("{file}.gz"), &gzip(raw));
    let digest = sha_hex(raw);
    let sums_path = dir.path().join(SUMS_FILE);
    let sums = std::fs::read_to_string(&sums_path).expect("read sums");
    let sums: String = sums
        .lines()
        .map(|line| {
            if line.ends_with(&format!("  {file}")) {
                format!("{digest}  {file}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    std::fs::write(sums_path, sums).expect("write sums");
}

#[test]
fn real_mnist_loads() {
    let dir = Mnist::locate().expect("MNIST data must be present in data/mnist");
    let start = Instant::now();
    let mnist = Mnist::load(&dir).expect("load MNIST");
    let elapsed = start.elapsed();
    eprintln!("loaded MNIST from {} in {elapsed:?}", dir.display());

    assert_eq!((mnist.rows, mnist.cols), (28, 28));
    assert_eq!(mnist.train_len(), 60_000);
    assert_eq!(mnist.test_len(), 10_000);
    assert_eq!(mnist.train_images.len(), 60_000 * 784);
    assert_eq!(mnist.test_images.len(), 10_000 * 784);

    for labels in [&mnist.train_labels, &mnist.test_labels] {
        let mut counts = [0usize; 10];
        for &l in labels.iter() {
            assert!((0..=9).contains(&l), "label {l} out of range");
            counts[l as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| c > 0),
            "every digit occurs: {counts:?}"
        );
    }
    for images in [&mnist.train_images, &mnist.test_images] {
        let (min, max) = images
            .iter()
            .fold((f32::MAX, f32::MIN), |(lo, hi), &p| (lo.min(p), hi.max(p)));
        assert_eq!((min, max), (0.0, 1.0));
    }
    // The well-known mean pixel intensity of the MNIST training set.
    let mean = mnist
        .train_images
        .iter()
        .map(|&p| f64::from(p))
        .sum::<f64>()
        / mnist.train_images.len() as f64;
    assert!((mean - 0.1307).abs() < 1e-3, "mean pixel {mean}");
    // The first training label of MNIST is a 5.
    assert_eq!(mnist.train_labels[0], 5);
}

#[test]
fn real_files_match_their_checksums() {
    let dir = Mnist::locate().expect("MNIST data must be present in data/mnist");
    for file in [TEST_IMAGES, TEST_LABELS, TRAIN_LABELS] {
        verify_sha256(dir.join(format!("{file}.gz")), dir.join(SUMS_FILE)).expect(file);
    }
    let labels = read_idx_labels(dir.join(format!("{TEST_LABELS}.gz"))).expect("labels");
    assert_eq!(labels.labels.len(), 10_000);
}

#[test]
fn synthetic_directory_loads_gzipped_and_raw() {
    let dir = synthetic_mnist("synthetic");
    let mnist = Mnist::load(dir.path()).expect("load synthetic");
    assert_eq!(
        (mnist.rows, mnist.cols, mnist.train_len(), mnist.test_len()),
        (4, 3, 30, 12)
    );
    assert_eq!(mnist.train_images[1], 7.0 / 255.0);
    assert_eq!(mnist.train_labels[..3], [0, 1, 2]);

    // The same files uncompressed load identically.
    let (x, _) = images_and_labels(30, 4, 3);
    std::fs::remove_file(dir.path().join(format!("{TRAIN_IMAGES}.gz"))).expect("rm");
    dir.write(TRAIN_IMAGES, &x);
    let raw = Mnist::load(dir.path()).expect("load raw");
    assert_eq!(raw, mnist);

    let images = read_idx_images(dir.path().join(TRAIN_IMAGES)).expect("read raw images");
    assert_eq!((images.count, images.rows, images.cols), (30, 4, 3));
    assert_eq!(images.pixels.len(), 360);
}

#[test]
fn wrong_magic_is_bad_magic() {
    let dir = TempDir::new("mnist-reader", "magic");
    let (_, labels) = images_and_labels(3, 2, 2);
    let path = dir.write("images", &labels);
    let err = read_idx_images(&path).unwrap_err();
    assert_matches!(
        err,
        DataError::BadMagic {
            expected: 0x803,
            found: 0x801,
            ..
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("0x00000803") && msg.contains("0x00000801"),
        "{msg}"
    );

    let path = dir.write("junk.gz", &gzip(b"\x00\x00\x0d\x03rest"));
    let err = read_idx_images(&path).unwrap_err();
    assert_matches!(err, DataError::BadMagic { found: 0x0d03, .. });
}

#[test]
fn truncated_payload_is_truncated() {
    let dir = TempDir::new("mnist-reader", "truncated");
    let (images, _) = images_and_labels(3, 2, 2);
    let cut = &images[..images.len() - 5];
    for path in [dir.write("images", cut), dir.write("images.gz", &gzip(cut))] {
        let err = read_idx_images(&path).unwrap_err();
        assert_matches!(
            err,
            DataError::Truncated {
                expected_bytes: 28,
                found_bytes: 23,
                ..
            }
        );
    }
    // A header cut short.
    let path = dir.write("header", &images[..9]);
    let err = read_idx_images(&path).unwrap_err();
    assert_matches!(
        err,
        DataError::Truncated {
            expected_bytes: 16,
            found_bytes: 9,
            ..
        }
    );
    let path = dir.write("empty", b"");
    let err = read_idx_labels(&path).unwrap_err();
    assert_matches!(err, DataError::Truncated { found_bytes: 0, .. });
}

#[test]
fn extra_bytes_are_trailing_bytes() {
    let dir = TempDir::new("mnist-reader", "extra");
    let (_, mut labels) = images_and_labels(3, 2, 2);
    labels.extend_from_slice(&[1, 2]);
    for path in [
        dir.write("labels", &labels),
        dir.write("labels.gz", &gzip(&labels)),
    ] {
        let err = read_idx_labels(&path).unwrap_err();
        assert_matches!(
            err,
            DataError::TrailingBytes {
                expected_bytes: 11,
                found_bytes: 13,
                ..
            }
        );
    }
}

#[test]
fn inconsistent_header_dims_are_rejected() {
    let dir = TempDir::new("mnist-reader", "dims");
    // The product of the dimensions does not fit in memory.
    let path = dir.write("huge", &idx(IMAGES_MAGIC, &[u32::MAX; 3], &[0; 8]));
    let err = read_idx_images(&path).unwrap_err();
    assert_matches!(err, DataError::InvalidHeader { .. });
    // Images with no columns.
    let path = dir.write("flat", &idx(IMAGES_MAGIC, &[5, 28, 0], &[]));
    let err = read_idx_images(&path).unwrap_err();
    assert_matches!(err, DataError::InvalidHeader { ref dims, .. } if dims == &[5, 28, 0]);
    // A header promising far more than a tiny gzip file holds: no huge allocation, just
    // a truncation error.
    let path = dir.write(
        "liar.gz",
        &gzip(&idx(IMAGES_MAGIC, &[1 << 20, 1 << 10, 1 << 10], &[1; 64])),
    );
    let err = read_idx_images(&path).unwrap_err();
    assert_matches!(err, DataError::Truncated { .. });
}

/// Loads a [`synthetic_mnist`] directory named `name` after [`replace_file`] has put `raw` in
/// place of `file`, and returns the error the load fails with.
fn load_with_replaced(name: &str, file: &str, raw: &[u8]) -> DataError {
    let dir = synthetic_mnist(name);
    replace_file(&dir, file, raw);
    Mnist::load(dir.path()).unwrap_err()
}

#[test]
fn train_and_test_of_different_sizes_are_dim_mismatch() {
    let (test_x, _) = images_and_labels(12, 3, 4);
    let err = load_with_replaced("dim-mismatch", TEST_IMAGES, &test_x);
    assert_matches!(
        err,
        DataError::DimMismatch {
            what: "image rows",
            expected: 4,
            found: 3,
            ..
        }
    );
}

#[test]
fn image_and_label_counts_must_agree() {
    let (_, labels) = images_and_labels(29, 4, 3);
    let err = load_with_replaced("count-mismatch", TRAIN_LABELS, &labels);
    assert_matches!(
        err,
        DataError::LengthMismatch {
            images: 30,
            labels: 29,
            ..
        }
    );
}

#[test]
fn label_out_of_range_is_bad_label() {
    let mut labels: Vec<u8> = (0..12).map(|i| i % 10).collect();
    labels[7] = 10;
    let err = load_with_replaced("bad-label", TEST_LABELS, &idx(LABELS_MAGIC, &[12], &labels));
    assert_matches!(
        err,
        DataError::BadLabel {
            index: 7,
            label: 10,
            max: 9,
            ..
        }
    );
}

#[test]
fn corrupt_gzip_is_gzip_error() {
    let dir = TempDir::new("mnist-reader", "gzip");
    let (images, _) = images_and_labels(20, 8, 8);
    let good = gzip(&images);

    // A flipped byte inside the deflate stream (caught by the decoder or the CRC).
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    // A stream cut short, losing its trailer.
    let cut = &good[..good.len() - 6];
    // A `.gz` file that is not gzip at all.
    let not_gzip = images.clone();
    // A damaged CRC in the trailer.
    let mut bad_crc = good.clone();
    let crc_at = bad_crc.len() - 8;
    bad_crc[crc_at] ^= 0xff;

    for (name, bytes) in [
        ("flipped.gz", &flipped[..]),
        ("cut.gz", cut),
        ("plain.gz", &not_gzip[..]),
        ("crc.gz", &bad_crc[..]),
    ] {
        let path = dir.write(name, bytes);
        let err = read_idx_images(&path).unwrap_err();
        assert!(matches!(err, DataError::Gzip { .. }), "{name}: {err:?}");
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn checksum_mismatch_is_reported() {
    let dir = synthetic_mnist("checksum");
    // Same structure, different pixels, SHA256SUMS left as it was.
    let (mut x, _) = images_and_labels(30, 4, 3);
    let last = x.len() - 1;
    x[last] ^= 1;
    dir.write(&format!("{TRAIN_IMAGES}.gz"), &gzip(&x));

    let err = Mnist::load(dir.path()).unwrap_err();
    match &err {
        DataError::ChecksumMismatch {
            path,
            expected,
            found,
        } => {
            assert!(path.ends_with(format!("{TRAIN_IMAGES}.gz")));
            assert_eq!((expected.len(), found.len()), (64, 64));
            assert_ne!(expected, found);
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
    let err = verify_sha256(
        dir.path().join(format!("{TRAIN_IMAGES}.gz")),
        dir.path().join(SUMS_FILE),
    )
    .unwrap_err();
    assert_matches!(err, DataError::ChecksumMismatch { .. });
    // The other files still verify.
    verify_sha256(
        dir.path().join(format!("{TEST_IMAGES}.gz")),
        dir.path().join(SUMS_FILE),
    )
    .expect("untouched file verifies");
}

#[test]
fn missing_or_malformed_checksums() {
    let dir = synthetic_mnist("sums");
    let sums_path = dir.path().join(SUMS_FILE);
    let sums = std::fs::read_to_string(&sums_path).expect("read sums");

    // No line for the test labels.
    let without: String = sums
        .lines()
        .filter(|l| !l.ends_with(TEST_LABELS))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&sums_path, without).expect("write");
    let err = Mnist::load(dir.path()).unwrap_err();
    assert_matches!(err, DataError::MissingChecksum { ref name, .. } if name == TEST_LABELS);

    // A line that is not `<hex>  <name>`.
    std::fs::write(
        &sums_path,
        format!("# comment\n\n{sums}deadbeef  {TRAIN_IMAGES}\n"),
    )
    .expect("write");
    let err = Mnist::load(dir.path()).unwrap_err();
    assert_matches!(err, DataError::MalformedChecksums { line: 7, .. });

    // Binary-mode (`*name`) and `./name` entries are accepted.
    let starred = sums
        .replace("  ", " *")
        .replace(&format!("*{TEST_IMAGES}"), &format!("*./{TEST_IMAGES}"));
    std::fs::write(&sums_path, starred).expect("write");
    Mnist::load(dir.path()).expect("binary-mode sums");

    // No SHA256SUMS at all.
    std::fs::remove_file(&sums_path).expect("rm");
    let err = Mnist::load(dir.path()).unwrap_err();
    assert_matches!(err, DataError::Io { ref path, .. } if path == &sums_path);
}

#[test]
fn missing_data_lists_the_places_tried() {
    let base = TempDir::new("mnist-reader", "missing");
    let tried = vec![base.path().join("nope-a"), base.path().join("nope-b")];
    let err = Mnist::locate_in(&tried).unwrap_err();
    match &err {
        DataError::NotFound { tried: t, .. } => assert_eq!(t, &tried),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let msg = err.to_string();
    for place in &tried {
        assert!(msg.contains(&place.display().to_string()), "{msg}");
    }
    assert!(
        msg.contains(mnist::ENV_VAR),
        "the message says how to fix it: {msg}"
    );

    // A directory without the data is skipped in favour of the next candidate.
    let real = Mnist::locate().expect("real data");
    let found = Mnist::locate_in(&[base.path().to_path_buf(), real.clone()]).expect("found");
    assert_eq!(found, real);

    // Loading from a missing directory, or a directory missing one file.
    let err = Mnist::load(base.path().join("nope")).unwrap_err();
    assert_matches!(err, DataError::NotFound { .. });
    let dir = synthetic_mnist("missing-file");
    std::fs::remove_file(dir.path().join(format!("{TEST_LABELS}.gz"))).expect("rm");
    let err = Mnist::load(dir.path()).unwrap_err();
    match &err {
        DataError::NotFound { tried, .. } => assert_eq!(
            tried,
            &[
                dir.path().join(format!("{TEST_LABELS}.gz")),
                dir.path().join(TEST_LABELS)
            ]
        ),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[test]
fn search_dirs_include_the_workspace_data() {
    let dirs = Mnist::search_dirs();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    assert!(
        dirs.contains(&workspace.join("data").join("mnist")),
        "{dirs:?}"
    );
    assert_eq!(
        dirs.last(),
        Some(&Path::new(".").join("data").join("mnist"))
    );
}

#[test]
fn sha256_is_of_the_uncompressed_bytes() {
    let dir = TempDir::new("mnist-reader", "sha");
    let raw = dir.write("file", b"abc");
    let gz = dir.write("file.gz", &gzip(b"abc"));
    let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_eq!(sha256_hex(raw).expect("raw"), expected);
    assert_eq!(sha256_hex(gz).expect("gz"), expected);
    let err = sha256_hex(dir.path().join("absent")).unwrap_err();
    assert_matches!(err, DataError::Io { .. });
}
