//! The Keras-style model: [`Sequential`] with `compile`, `fit`, `evaluate`, `predict`.

mod fit;
mod graphs;
mod runtime;
mod sequential;
mod summary;

pub use fit::{FitOptions, Verbosity};
pub use sequential::Sequential;
