//! The errors of the PJRT binding, converted into [`hasten_tensor::Error::Device`] at the
//! `Backend` boundary.

use std::path::PathBuf;

/// Everything that can go wrong while loading a PJRT plugin or calling it.
#[derive(Debug, thiserror::Error)]
pub enum PjrtError {
    /// No plugin path was given and `HASTEN_PJRT_PLUGIN` is not set.
    #[error("no PJRT plugin given: pass its path or set HASTEN_PJRT_PLUGIN (the CPU plugin: `pip install --no-deps --target DIR xla-cpu-pjrt`, file xla_plugins/xla_cpu_pjrt/xla_cpu_pjrt.so)")]
    NoPlugin,
    /// The plugin file does not exist.
    #[error("PJRT plugin {0} does not exist")]
    NotFound(PathBuf),
    /// The file could not be loaded as a shared library, or lacks `GetPjrtApi`.
    #[error("{path} is not a PJRT plugin: {detail}")]
    NotAPlugin {
        /// The file.
        path: PathBuf,
        /// What the loader said.
        detail: String,
    },
    /// The plugin's API version cannot be driven by these bindings.
    #[error("PJRT plugin {path} implements API {found_major}.{found_minor}; hasten needs {want_major}.x with x >= {want_minor_min} (its bindings follow {want_major}.{want_minor})")]
    IncompatibleVersion {
        /// The file.
        path: PathBuf,
        /// The plugin's major version.
        found_major: i32,
        /// The plugin's minor version.
        found_minor: i32,
        /// The major version hasten speaks.
        want_major: i32,
        /// The oldest minor version with every call hasten uses.
        want_minor_min: i32,
        /// The minor version hasten's declarations were written against.
        want_minor: i32,
    },
    /// A PJRT call failed; the plugin's message is kept.
    #[error("{call} failed: {message}")]
    Call {
        /// The C API function.
        call: &'static str,
        /// The plugin's message.
        message: String,
    },
    /// The plugin returned something hasten cannot use (a null pointer, too few devices, …).
    #[error("{0}")]
    Protocol(String),
}

impl From<PjrtError> for hasten_tensor::Error {
    fn from(e: PjrtError) -> Self {
        hasten_tensor::Error::Device {
            backend: "pjrt",
            detail: e.to_string(),
        }
    }
}

/// Result with [`PjrtError`].
pub type PjrtResult<T> = std::result::Result<T, PjrtError>;
