//! The MNIST handwritten-digit dataset, stored in the IDX format.
//!
//! An IDX file is a big-endian header followed by a dense payload:
//!
//! | bytes        | content                                                        |
//! |--------------|----------------------------------------------------------------|
//! | 0..4         | magic: `0x00 0x00 <type> <ndims>`; type `0x08` is `u8`          |
//! | 4..4+4*ndims | the dimensions, one big-endian `u32` each                       |
//! | rest         | the values, row-major; exactly the product of the dimensions   |
//!
//! MNIST images use magic [`IMAGES_MAGIC`] (`u8`, 3 dimensions: count, rows, columns)
//! and labels use [`LABELS_MAGIC`] (`u8`, 1 dimension: count). Files may be stored raw
//! or gzip-compressed (`.gz`); either way the readers here check the structure strictly,
//! and [`Mnist::load`] also checks the SHA-256 of each file's *uncompressed* contents
//! against the `SHA256SUMS` file next to it (the format `sha256sum` writes).
//!
//! ```no_run
//! use hasten_nn::data::mnist::Mnist;
//!
//! let mnist = Mnist::load(Mnist::locate()?)?;
//! assert_eq!(mnist.train_images.len(), mnist.train_len() * mnist.image_len());
//! # Ok::<(), hasten_nn::data::DataError>(())
//! ```

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;
use sha2::{Digest, Sha256};

use super::DataError;

/// Magic number of an IDX file of `u8` values with 3 dimensions (MNIST images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of `u8` values with 1 dimension (MNIST labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// File name (without `.gz`) of the training images.
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
/// File name (without `.gz`) of the training labels.
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
/// File name (without `.gz`) of the test images.
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
/// File name (without `.gz`) of the test labels.
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";
/// Name of the checksum file expected next to the data files.
pub const SUMS_FILE: &str = "SHA256SUMS";
/// Environment variable that, when set, names the directory holding the MNIST files.
pub const ENV_VAR: &str = "HASTEN_MNIST_DIR";
/// Number of classes (digits 0 to 9).
pub const NUM_CLASSES: usize = 10;

/// Deflate cannot expand data by more than about 1032:1; used to cap up-front
/// allocations so a lying header in a tiny file cannot reserve gigabytes.
const MAX_DEFLATE_RATIO: usize = 1032;

/// The contents of an IDX images file (magic [`IMAGES_MAGIC`]).
#[derive(Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// `count * rows * cols` pixel values, row-major, image after image.
    pub pixels: Vec<u8>,
}

impl fmt::Debug for IdxImages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdxImages")
            .field("count", &self.count)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("pixels", &format_args!("[{} bytes]", self.pixels.len()))
            .finish()
    }
}

/// The contents of an IDX labels file (magic [`LABELS_MAGIC`]).
#[derive(Clone, PartialEq, Eq)]
pub struct IdxLabels {
    /// One label per sample.
    pub labels: Vec<u8>,
}

impl fmt::Debug for IdxLabels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdxLabels")
            .field("labels", &format_args!("[{} labels]", self.labels.len()))
            .finish()
    }
}

/// Reads an IDX images file (raw, or gzip-compressed when it ends in `.gz` or starts
/// with the gzip magic bytes) and checks its structure.
///
/// Fails with [`DataError::BadMagic`] unless the magic is [`IMAGES_MAGIC`],
/// [`DataError::Truncated`] / [`DataError::TrailingBytes`] unless the payload is exactly
/// `count * rows * cols` bytes, [`DataError::InvalidHeader`] for zero rows or columns or
/// an overflowing size, and [`DataError::Gzip`] for corrupt compressed data. The checksum
/// is not checked here; see [`verify_sha256`] and [`Mnist::load`].
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<IdxImages, DataError> {
    read_images_hashed(path.as_ref()).map(|(images, _)| images)
}

/// Reads an IDX labels file (raw or gzip-compressed) and checks its structure.
///
/// Fails like [`read_idx_images`], with [`LABELS_MAGIC`] as the expected magic and a
/// payload of exactly `count` bytes. Label values are not range-checked here.
pub fn read_idx_labels(path: impl AsRef<Path>) -> Result<IdxLabels, DataError> {
    read_labels_hashed(path.as_ref()).map(|(labels, _)| labels)
}

/// Returns the SHA-256 (lower-case hex) of a file's uncompressed contents: the file is
/// decompressed first when it is gzip data, so the digest matches what `sha256sum`
/// prints for the uncompressed file.
pub fn sha256_hex(path: impl AsRef<Path>) -> Result<String, DataError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let digest = if is_gzip(path, &bytes) {
        hash_all(MultiGzDecoder::new(&bytes[..])).map_err(|e| gzip_error(path, e))?
    } else {
        hash_all(&bytes[..]).map_err(|e| DataError::io(path, e))?
    };
    Ok(to_hex(&digest))
}

/// Checks a file against a `sha256sum`-style checksum file.
///
/// The digest is that of the file's uncompressed contents, and it is looked up under
/// the file's name with any `.gz` suffix removed (`train-images-idx3-ubyte.gz` is
/// checked against the `train-images-idx3-ubyte` line). Fails with
/// [`DataError::ChecksumMismatch`], [`DataError::MissingChecksum`] when there is no
/// line for the file, or [`DataError::MalformedChecksums`] when the checksum file
/// cannot be parsed.
pub fn verify_sha256(path: impl AsRef<Path>, sums_file: impl AsRef<Path>) -> Result<(), DataError> {
    let path = path.as_ref();
    let sums = Checksums::load(sums_file.as_ref())?;
    let expected = sums.expected_for(path)?;
    let found = sha256_hex(path)?;
    check_digest(path, expected, &found)
}

/// The MNIST dataset, decoded and ready for training.
///
/// Images are `f32` in `[0, 1]` (pixel / 255), row-major, one image of
/// `rows * cols` values after another; labels are the digits 0 to 9.
#[derive(Clone, PartialEq)]
pub struct Mnist {
    /// Training images, `[train_len, rows * cols]` row-major, scaled to `[0, 1]`.
    pub train_images: Vec<f32>,
    /// Training labels, one digit per training image.
    pub train_labels: Vec<i32>,
    /// Test images, `[test_len, rows * cols]` row-major, scaled to `[0, 1]`.
    pub test_images: Vec<f32>,
    /// Test labels, one digit per test image.
    pub test_labels: Vec<i32>,
    /// Rows per image (28 for MNIST).
    pub rows: usize,
    /// Columns per image (28 for MNIST).
    pub cols: usize,
}

impl fmt::Debug for Mnist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mnist")
            .field("train_len", &self.train_len())
            .field("test_len", &self.test_len())
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .finish_non_exhaustive()
    }
}

impl Mnist {
    /// Loads the four standard MNIST files from `dir`.
    ///
    /// Each of [`TRAIN_IMAGES`], [`TRAIN_LABELS`], [`TEST_IMAGES`] and [`TEST_LABELS`] is
    /// read from `<name>.gz` if present, else from `<name>`. Every file's structure is
    /// checked, its uncompressed SHA-256 is checked against `dir/SHA256SUMS`, image and
    /// label counts must agree, train and test images must have the same size, and
    /// labels must be below [`NUM_CLASSES`].
    pub fn load(dir: impl AsRef<Path>) -> Result<Mnist, DataError> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(DataError::NotFound {
                what: "MNIST data directory".to_string(),
                tried: vec![dir.to_path_buf()],
                hint: fix_hint(),
            });
        }
        // Resolve every file before reading anything, so a missing file is reported fast.
        let train_images = resolve_file(dir, TRAIN_IMAGES)?;
        let train_labels = resolve_file(dir, TRAIN_LABELS)?;
        let test_images = resolve_file(dir, TEST_IMAGES)?;
        let test_labels = resolve_file(dir, TEST_LABELS)?;
        let sums = Checksums::load(&dir.join(SUMS_FILE))?;

        // The training images are ~85% of the work: decode them on a second thread
        // while this one handles the three smaller files.
        let (train, rest) = std::thread::scope(|scope| {
            let train = scope.spawn(|| load_split(&train_images, &train_labels, &sums));
            let test = load_split(&test_images, &test_labels, &sums);
            let train = train
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (train, test)
        });
        let train = train?;
        let test = rest?;

        for (what, expected, found) in [
            ("image rows", train.rows, test.rows),
            ("image columns", train.cols, test.cols),
        ] {
            if expected != found {
                return Err(DataError::DimMismatch {
                    what,
                    expected_path: train_images,
                    expected,
                    found_path: test_images,
                    found,
                });
            }
        }

        Ok(Mnist {
            train_images: train.images,
            train_labels: train.labels,
            test_images: test.images,
            test_labels: test.labels,
            rows: train.rows,
            cols: train.cols,
        })
    }

    /// Finds the MNIST directory; see [`Mnist::search_dirs`] for the places searched.
    ///
    /// Fails with [`DataError::NotFound`], listing every place tried and how to fix it.
    pub fn locate() -> Result<PathBuf, DataError> {
        Self::locate_in(&Self::search_dirs())
    }

    /// The directories [`Mnist::locate`] searches: only `$HASTEN_MNIST_DIR` when it is set
    /// and non-empty (a directory the user named must not be silently replaced by another),
    /// otherwise `data/mnist` under the workspace root, then `./data/mnist`.
    pub fn search_dirs() -> Vec<PathBuf> {
        if let Some(dir) = std::env::var_os(ENV_VAR).filter(|d| !d.is_empty()) {
            return vec![PathBuf::from(dir)];
        }
        let mut dirs = Vec::with_capacity(2);
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let workspace = manifest.parent().unwrap_or(manifest);
        dirs.push(workspace.join("data").join("mnist"));
        dirs.push(Path::new(".").join("data").join("mnist"));
        dirs
    }

    /// Returns the first of `candidates` that is a directory holding the training
    /// images (`train-images-idx3-ubyte`, gzipped or not).
    ///
    /// Fails with [`DataError::NotFound`] listing all candidates when none qualifies.
    pub fn locate_in(candidates: &[PathBuf]) -> Result<PathBuf, DataError> {
        candidates
            .iter()
            .find(|dir| {
                dir.join(format!("{TRAIN_IMAGES}.gz")).is_file() || dir.join(TRAIN_IMAGES).is_file()
            })
            .cloned()
            .ok_or_else(|| DataError::NotFound {
                what: "MNIST data directory (one holding train-images-idx3-ubyte[.gz])".to_string(),
                tried: candidates.to_vec(),
                hint: fix_hint(),
            })
    }

    /// Locates the data with [`Mnist::locate`] and loads it with [`Mnist::load`].
    pub fn load_default() -> Result<Mnist, DataError> {
        Self::load(Self::locate()?)
    }

    /// Values per image: `rows * cols`.
    pub fn image_len(&self) -> usize {
        self.rows * self.cols
    }

    /// Number of training samples.
    pub fn train_len(&self) -> usize {
        self.train_labels.len()
    }

    /// Number of test samples.
    pub fn test_len(&self) -> usize {
        self.test_labels.len()
    }
}

/// How to make the MNIST files findable.
fn fix_hint() -> String {
    format!(
        "Put {TRAIN_IMAGES}, {TRAIN_LABELS}, {TEST_IMAGES} and {TEST_LABELS} (each optionally \
         .gz) plus {SUMS_FILE} in one directory and set {ENV_VAR} to it, or place them in \
         data/mnist at the workspace root"
    )
}

/// `dir/name.gz` if it exists, else `dir/name`, else a `NotFound` naming both.
fn resolve_file(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let gz = dir.join(format!("{name}.gz"));
    let raw = dir.join(name);
    if gz.is_file() {
        Ok(gz)
    } else if raw.is_file() {
        Ok(raw)
    } else {
        Err(DataError::NotFound {
            what: format!("MNIST file {name}"),
            tried: vec![gz, raw],
            hint: fix_hint(),
        })
    }
}

/// One decoded split (train or test).
struct Split {
    images: Vec<f32>,
    labels: Vec<i32>,
    rows: usize,
    cols: usize,
}

/// Reads, verifies, cross-checks and converts one images file and its labels file.
fn load_split(
    images_path: &Path,
    labels_path: &Path,
    sums: &Checksums,
) -> Result<Split, DataError> {
    let expected_images = sums.expected_for(images_path)?;
    let expected_labels = sums.expected_for(labels_path)?;

    let (images, digest) = read_images_hashed(images_path)?;
    check_digest(images_path, expected_images, &to_hex(&digest))?;
    let (labels, digest) = read_labels_hashed(labels_path)?;
    check_digest(labels_path, expected_labels, &to_hex(&digest))?;

    if images.count != labels.labels.len() {
        return Err(DataError::LengthMismatch {
            images_path: images_path.to_path_buf(),
            images: images.count,
            labels_path: labels_path.to_path_buf(),
            labels: labels.labels.len(),
        });
    }
    // NUM_CLASSES - 1 = 9 fits in a u8.
    let max = (NUM_CLASSES - 1) as u8;
    if let Some(index) = labels.labels.iter().position(|&l| l > max) {
        return Err(DataError::BadLabel {
            path: labels_path.to_path_buf(),
            index,
            label: labels.labels[index],
            max,
        });
    }

    // A 256-entry table gives exact division (255 maps to exactly 1.0) for the price of
    // a lookup, which is also ~1.7x faster than dividing when this crate is built
    // without loop vectorisation (the dev profile's opt-level 1).
    let mut scale = [0f32; 256];
    for (p, v) in scale.iter_mut().enumerate() {
        *v = p as f32 / 255.0;
    }
    let mut pixels = Vec::with_capacity(images.pixels.len());
    pixels.extend(images.pixels.iter().map(|&p| scale[usize::from(p)]));

    Ok(Split {
        images: pixels,
        labels: labels.labels.iter().map(|&l| i32::from(l)).collect(),
        rows: images.rows,
        cols: images.cols,
    })
}

/// Reads an images file and returns it with the SHA-256 of its uncompressed bytes.
fn read_images_hashed(path: &Path) -> Result<(IdxImages, [u8; 32]), DataError> {
    let raw = read_idx(path, IMAGES_MAGIC, "u8 images, 3 dimensions")?;
    // IMAGES_MAGIC declares 3 dimensions, so `read_idx` returned exactly three.
    let [count, rows, cols] = [raw.dims[0], raw.dims[1], raw.dims[2]];
    if rows == 0 || cols == 0 {
        return Err(DataError::InvalidHeader {
            path: path.to_path_buf(),
            dims: raw.dims,
            reason: "images must have at least one row and one column",
        });
    }
    // u32 -> usize is lossless on the 32- and 64-bit targets this crate supports, and the
    // product was already checked for overflow by `read_idx`.
    let images = IdxImages {
        count: count as usize,
        rows: rows as usize,
        cols: cols as usize,
        pixels: raw.payload,
    };
    Ok((images, raw.sha256))
}

/// Reads a labels file and returns it with the SHA-256 of its uncompressed bytes.
fn read_labels_hashed(path: &Path) -> Result<(IdxLabels, [u8; 32]), DataError> {
    let raw = read_idx(path, LABELS_MAGIC, "u8 labels, 1 dimension")?;
    Ok((
        IdxLabels {
            labels: raw.payload,
        },
        raw.sha256,
    ))
}

/// A structurally valid IDX file.
struct RawIdx {
    /// The dimensions from the header (as many as the magic's last byte says).
    dims: Vec<u32>,
    /// Exactly the product of `dims` bytes.
    payload: Vec<u8>,
    /// SHA-256 of the whole uncompressed file (header and payload).
    sha256: [u8; 32],
}

/// Reads a whole IDX file, decompressing it if needed, and checks its structure.
fn read_idx(path: &Path, magic: u32, what: &'static str) -> Result<RawIdx, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if is_gzip(path, &bytes) {
        let bound = bytes.len().saturating_mul(MAX_DEFLATE_RATIO);
        parse_idx(
            path,
            MultiGzDecoder::new(&bytes[..]),
            magic,
            what,
            bound,
            |e| gzip_error(path, e),
        )
    } else {
        parse_idx(path, &bytes[..], magic, what, bytes.len(), |e| {
            DataError::io(path, e)
        })
    }
}

/// Parses an IDX stream. `size_bound` caps the up-front allocation; `map_err` turns a
/// read error into the right `DataError` (gzip or plain I/O).
fn parse_idx<R: Read>(
    path: &Path,
    reader: R,
    magic: u32,
    what: &'static str,
    size_bound: usize,
    map_err: impl Fn(io::Error) -> DataError,
) -> Result<RawIdx, DataError> {
    let mut reader = HashingReader::new(reader);

    let mut head = [0u8; 4];
    let n = read_full(&mut reader, &mut head).map_err(&map_err)?;
    if n < head.len() {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected_bytes: head.len() as u64,
            found_bytes: n as u64,
        });
    }
    let found = u32::from_be_bytes(head);
    if found != magic {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            what,
            expected: magic,
            found,
        });
    }

    let ndims = (magic & 0xff) as usize;
    let header_len = 4 + 4 * ndims;
    let mut dims_bytes = vec![0u8; 4 * ndims];
    let n = read_full(&mut reader, &mut dims_bytes).map_err(&map_err)?;
    if n < dims_bytes.len() {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected_bytes: header_len as u64,
            found_bytes: (4 + n) as u64,
        });
    }
    let dims: Vec<u32> = dims_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let Some(payload_len) = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
    else {
        return Err(DataError::InvalidHeader {
            path: path.to_path_buf(),
            dims,
            reason: "the product of the dimensions overflows the address space",
        });
    };
    let expected_bytes = header_len as u64 + payload_len as u64;

    let mut payload = Vec::with_capacity(payload_len.min(size_bound));
    (&mut reader)
        .take(payload_len as u64)
        .read_to_end(&mut payload)
        .map_err(&map_err)?;
    if payload.len() < payload_len {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            expected_bytes,
            found_bytes: (header_len + payload.len()) as u64,
        });
    }
    // Read to the very end: counts extra bytes and, for gzip, checks the CRC trailer.
    let extra = io::copy(&mut reader, &mut io::sink()).map_err(&map_err)?;
    if extra > 0 {
        return Err(DataError::TrailingBytes {
            path: path.to_path_buf(),
            expected_bytes,
            found_bytes: expected_bytes + extra,
        });
    }

    Ok(RawIdx {
        dims,
        payload,
        sha256: reader.finish(),
    })
}

/// Whether a file holds gzip data: its name ends in `.gz` or it starts with the gzip
/// magic bytes (IDX files start with two zero bytes, so the two cannot be confused).
fn is_gzip(path: &Path, bytes: &[u8]) -> bool {
    path.extension().is_some_and(|e| e == "gz") || bytes.starts_with(&[0x1f, 0x8b])
}

fn gzip_error(path: &Path, source: io::Error) -> DataError {
    DataError::Gzip {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads until `buf` is full or the stream ends; returns the number of bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// SHA-256 of everything a reader yields.
fn hash_all(reader: impl Read) -> io::Result<[u8; 32]> {
    let mut reader = HashingReader::new(reader);
    io::copy(&mut reader, &mut io::sink())?;
    Ok(reader.finish())
}

/// A reader that hashes every byte passing through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    fn finish(self) -> [u8; 32] {
        self.hasher.finalize().into()
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Lower-case hex of a byte string.
fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

fn check_digest(path: &Path, expected: &str, found: &str) -> Result<(), DataError> {
    if expected.eq_ignore_ascii_case(found) {
        Ok(())
    } else {
        Err(DataError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected: expected.to_ascii_lowercase(),
            found: found.to_string(),
        })
    }
}

/// A parsed `sha256sum`-style checksum file.
struct Checksums {
    path: PathBuf,
    /// `(file name, lower-case hex digest)` pairs in file order.
    entries: Vec<(String, String)>,
}

impl Checksums {
    /// Parses lines of the form `<64 hex digits>  <name>` (or ` *<name>` for binary
    /// mode); blank lines and `#` comments are skipped.
    fn load(path: &Path) -> Result<Checksums, DataError> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.trim_start().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let malformed = || DataError::MalformedChecksums {
                path: path.to_path_buf(),
                line: i + 1,
                text: line.to_string(),
            };
            let (digest, rest) = line.split_once([' ', '\t']).ok_or_else(malformed)?;
            let name = rest.trim_start();
            let name = name.strip_prefix('*').unwrap_or(name);
            if digest.len() != 64
                || !digest.bytes().all(|b| b.is_ascii_hexdigit())
                || name.is_empty()
            {
                return Err(malformed());
            }
            entries.push((name.to_string(), digest.to_ascii_lowercase()));
        }
        Ok(Checksums {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The recorded digest for `file`, looked up by its file name without `.gz`.
    /// Entries written with a directory prefix (`./name`, `dir/name`) also match.
    fn expected_for(&self, file: &Path) -> Result<&str, DataError> {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        self.entries
            .iter()
            .find(|(entry, _)| {
                entry == name || Path::new(entry).file_name().is_some_and(|f| f == name)
            })
            .map(|(_, digest)| digest.as_str())
            .ok_or_else(|| DataError::MissingChecksum {
                sums_path: self.path.clone(),
                name: name.to_string(),
            })
    }
}
