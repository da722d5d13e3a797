//! The one error type of `hasten-tensor`.

use crate::{DType, Shape};

/// Everything that can go wrong while building, transforming, compiling or running a graph.
///
/// Each variant says what was expected and what was found, so a user can fix the call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Two shapes that had to agree did not.
    #[error("{op}: shape mismatch: {detail}")]
    ShapeMismatch {
        /// The operation that was being built.
        op: &'static str,
        /// What was expected and what was found.
        detail: String,
    },
    /// An operand had a dtype the operation does not accept.
    #[error("{op}: expected dtype {expected}, found {found}")]
    DTypeMismatch {
        /// The operation that was being built.
        op: &'static str,
        /// The dtype (or family) that was expected.
        expected: String,
        /// The dtype that was found.
        found: DType,
    },
    /// An attribute (axis, permutation, stride, …) was out of range or inconsistent.
    #[error("{op}: invalid argument: {detail}")]
    InvalidArgument {
        /// The operation that was being built.
        op: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A node id did not belong to the graph.
    #[error("node {0} does not exist in this graph")]
    UnknownNode(usize),
    /// A name (input, parameter, output, state) was not found.
    #[error("no {kind} named {name:?}; known: {known}")]
    UnknownName {
        /// What kind of name ("input", "state", …).
        kind: &'static str,
        /// The name that was asked for.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// A name was used twice.
    #[error("{kind} {name:?} is defined twice")]
    DuplicateName {
        /// What kind of name.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// Autodiff met an op that has no gradient rule, or a non-float value.
    #[error("cannot differentiate through {0}")]
    NotDifferentiable(String),
    /// A backend cannot run a graph (an op or dtype it does not support).
    #[error("backend {backend} does not support {what}")]
    Unsupported {
        /// The backend's name.
        backend: &'static str,
        /// What it does not support.
        what: String,
    },
    /// Data handed to or read from an executable had the wrong shape, size or dtype.
    #[error("{what}: expected {expected_dtype} {expected_shape}, found {found}")]
    BadData {
        /// Which input, output or state.
        what: String,
        /// The dtype the graph declares.
        expected_dtype: DType,
        /// The shape the graph declares.
        expected_shape: Shape,
        /// What was given.
        found: String,
    },
    /// The wrong number of inputs was given to a step.
    #[error("expected {expected} inputs ({names}), found {found}")]
    InputCount {
        /// How many inputs the graph has.
        expected: usize,
        /// The inputs' names, in order.
        names: String,
        /// How many were given.
        found: usize,
    },
    /// A safetensors file could not be read or written.
    #[error("safetensors file {path}: {detail}")]
    Safetensors {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// An I/O error, with the path it concerned.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A device runtime (a PJRT plugin, a driver) could not be loaded or reported a failure.
    #[error("{backend}: {detail}")]
    Device {
        /// The backend's name.
        backend: &'static str,
        /// What failed, with the runtime's own message.
        detail: String,
    },
    /// A collective (all-reduce) failed: a rank left or failed, or the ranks disagreed.
    #[error("collective: {0}")]
    Collective(String),
    /// An error from candle-core while converting host tensors.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn shape(op: &'static str, detail: impl Into<String>) -> Self {
        Error::ShapeMismatch {
            op,
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid(op: &'static str, detail: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            detail: detail.into(),
        }
    }
}
