//! The one error type of `hasten-compress`.

/// Everything that can go wrong while pruning, exporting or running a sparse model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model error (building, training, weights).
    #[error(transparent)]
    Nn(#[from] hasten_nn::Error),
    /// A tensor error.
    #[error(transparent)]
    Tensor(#[from] hasten_tensor::Error),
    /// Pruning was configured in a way that cannot work; the message says how to fix it.
    #[error("{0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A sparse model file was malformed.
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

impl From<Error> for hasten_nn::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Nn(e) => e,
            Error::Tensor(e) => hasten_nn::Error::Tensor(e),
            other => hasten_nn::Error::config(other.to_string()),
        }
    }
}
