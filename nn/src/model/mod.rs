//! The Keras-style model: [`Sequential`] with `compile`, `fit`, `evaluate`, `predict`.

pub mod finite;
mod fit;
mod graphs;
mod input;
mod maintenance;
mod runtime;
mod sequential;
mod summary;

pub use fit::{FitOptions, Verbosity};
pub(crate) use graphs::{ITERATIONS, LEARNING_RATE};
pub use sequential::Sequential;
