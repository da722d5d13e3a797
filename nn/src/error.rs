//! The one error type of `hasten-nn`.

use crate::data::DataError;

/// Everything that can go wrong while building, training, saving or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A graph, backend or tensor error.
    #[error(transparent)]
    Tensor(#[from] hasten_tensor::Error),
    /// A dataset error.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A model or layer was configured in a way that cannot work; the message says how to fix it.
    #[error("{0}")]
    Config(String),
    /// Training data did not match the model.
    #[error("data: {0}")]
    BadData(String),
    /// The model was used before `compile`.
    #[error("the model is not compiled: call `compile(optimizer, loss, metrics)` first")]
    NotCompiled,
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file was malformed.
    #[error("{path}: {detail}")]
    Format {
        /// The file.
        path: String,
        /// What was wrong.
        detail: String,
    },
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A configuration error.
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }
}
