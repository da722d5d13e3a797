//! The error type of the dataset layer.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while finding, reading, verifying or batching a dataset.
///
/// Each variant names the file involved and says what was expected and what was found,
/// so that the message alone is enough to fix the problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file could not be opened or read.
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A gzip file could not be decompressed (bad header, corrupt deflate stream,
    /// CRC or length mismatch in the trailer, or a stream cut short).
    #[error("corrupt gzip data in {}: {source}", .path.display())]
    Gzip {
        /// The compressed file.
        path: PathBuf,
        /// The error reported by the decompressor.
        #[source]
        source: std::io::Error,
    },
    /// An IDX file started with the wrong magic number.
    #[error(
        "bad IDX magic number in {}: expected {expected:#010x} ({what}), found {found:#010x}{}",
        .path.display(),
        magic_hint(*.found)
    )]
    BadMagic {
        /// The (uncompressed) IDX file.
        path: PathBuf,
        /// What the expected magic number denotes, e.g. `"u8 images, 3 dimensions"`.
        what: &'static str,
        /// The expected magic number.
        expected: u32,
        /// The magic number found in the file.
        found: u32,
    },
    /// An IDX file ended before its header or its payload was complete.
    #[error(
        "truncated IDX file {}: expected {expected_bytes} bytes (uncompressed), found only {found_bytes}",
        .path.display()
    )]
    Truncated {
        /// The IDX file.
        path: PathBuf,
        /// The number of uncompressed bytes the header promises (or the header size when
        /// the header itself is incomplete).
        expected_bytes: u64,
        /// The number of uncompressed bytes actually present.
        found_bytes: u64,
    },
    /// An IDX file holds more bytes than its header accounts for.
    #[error(
        "IDX file {} is longer than its header says: expected exactly {expected_bytes} bytes \
         (uncompressed), found {found_bytes}",
        .path.display()
    )]
    TrailingBytes {
        /// The IDX file.
        path: PathBuf,
        /// The number of uncompressed bytes the header promises.
        expected_bytes: u64,
        /// The number of uncompressed bytes actually present.
        found_bytes: u64,
    },
    /// An IDX header has dimensions that cannot describe a real payload
    /// (zero-sized rows or columns, or a product that overflows).
    #[error("invalid IDX header in {}: dimensions {dims:?}: {reason}", .path.display())]
    InvalidHeader {
        /// The IDX file.
        path: PathBuf,
        /// The dimensions read from the header.
        dims: Vec<u32>,
        /// Why they are invalid.
        reason: &'static str,
    },
    /// Two files that must agree on a dimension do not (e.g. train and test images of
    /// different sizes).
    #[error(
        "dimension mismatch: {what} is {expected} in {} but {found} in {}",
        .expected_path.display(),
        .found_path.display()
    )]
    DimMismatch {
        /// The dimension, e.g. `"image rows"`.
        what: &'static str,
        /// The file whose value is taken as the reference.
        expected_path: PathBuf,
        /// The reference value.
        expected: usize,
        /// The file that disagrees.
        found_path: PathBuf,
        /// The value found in it.
        found: usize,
    },
    /// An images file and its labels file hold different numbers of samples.
    #[error(
        "{} holds {images} images but {} holds {labels} labels; they must match",
        .images_path.display(),
        .labels_path.display()
    )]
    LengthMismatch {
        /// The images file.
        images_path: PathBuf,
        /// The number of images.
        images: usize,
        /// The labels file.
        labels_path: PathBuf,
        /// The number of labels.
        labels: usize,
    },
    /// A label is outside the range of classes the dataset defines.
    #[error(
        "label {label} at index {index} in {} is out of range: expected 0..={max}",
        .path.display()
    )]
    BadLabel {
        /// The labels file.
        path: PathBuf,
        /// The index of the offending label.
        index: usize,
        /// The offending label.
        label: u8,
        /// The largest valid label.
        max: u8,
    },
    /// The SHA-256 of a file's uncompressed contents differs from the recorded one.
    #[error(
        "SHA-256 mismatch for {} (uncompressed contents): expected {expected}, found {found}; \
         the file is corrupt or not the one SHA256SUMS describes",
        .path.display()
    )]
    ChecksumMismatch {
        /// The file that was hashed.
        path: PathBuf,
        /// The digest recorded in the checksum file (lower-case hex).
        expected: String,
        /// The digest of the file's uncompressed contents (lower-case hex).
        found: String,
    },
    /// The checksum file has no entry for a file.
    #[error(
        "no SHA-256 entry for {name:?} in {}; add the line `<sha256 of the uncompressed file>  {name}`",
        .sums_path.display()
    )]
    MissingChecksum {
        /// The checksum file.
        sums_path: PathBuf,
        /// The file name that was looked up (without `.gz`).
        name: String,
    },
    /// A line of a checksum file is not of the form `<64 hex digits>  <file name>`.
    #[error(
        "malformed line {line} in checksum file {}: expected `<64 hex digits>  <file name>`, found {text:?}",
        .path.display()
    )]
    MalformedChecksums {
        /// The checksum file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The offending line.
        text: String,
    },
    /// A file or directory could not be found in any of the places searched.
    #[error("{what} not found; looked in: {}. {hint}", list_paths(.tried))]
    NotFound {
        /// What was being looked for.
        what: String,
        /// Every path that was tried, in order.
        tried: Vec<PathBuf>,
        /// How to fix it.
        hint: String,
    },
    /// A feature buffer does not hold `row_len` values for every label.
    #[error(
        "features and labels disagree: {features} feature values with row length {row_len} \
         is not {labels} rows (expected {expected} values)"
    )]
    FeatureLabelMismatch {
        /// The number of feature values.
        features: usize,
        /// The number of values per sample.
        row_len: usize,
        /// The number of labels.
        labels: usize,
        /// `labels * row_len`, or `usize::MAX` if that overflows.
        expected: usize,
    },
    /// An argument was out of range.
    #[error("invalid {name}: {reason}")]
    InvalidArgument {
        /// The argument's name.
        name: &'static str,
        /// What was wrong with it.
        reason: String,
    },
}

/// Explains the most common wrong magic numbers.
fn magic_hint(found: u32) -> &'static str {
    match found {
        0x0000_0801 => " (this is a u8 labels file)",
        0x0000_0803 => " (this is a u8 images file)",
        _ => "",
    }
}

/// Formats a list of paths as `a, b, c`.
fn list_paths(paths: &[PathBuf]) -> String {
    let mut out = String::new();
    for (i, p) in paths.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "{}", p.display());
    }
    out
}

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
