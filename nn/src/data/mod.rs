//! Datasets: reading them from disk, checking them, and cutting them into mini-batches.
//!
//! * [`mnist`]: a strict IDX reader (raw or gzip) with SHA-256 verification, and the
//!   [`Mnist`] dataset with [`Mnist::locate`] to find it.
//! * [`batches`]: [`BatchIterator`], deterministic shuffled mini-batches with optional
//!   background prefetching and buffer reuse.
//!
//! Every fallible function returns a [`DataError`] that names the file involved and
//! says what was expected and what was found.

pub mod batches;
mod error;
pub mod mnist;

pub use batches::{Batch, BatchIterator, Epoch, Recycler};
pub use error::DataError;
pub use mnist::{
    read_idx_images, read_idx_labels, sha256_hex, verify_sha256, IdxImages, IdxLabels, Mnist,
};
