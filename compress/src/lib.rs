//! # hasten-compress
//!
//! Magnitude pruning while training, as TF Model Optimization's
//! `tfmot.sparsity.keras.prune_low_magnitude`: wrap a `Sequential`, compile and `fit` it as
//! usual on any backend, strip the wrappers, then save the model sparsely and run it with
//! sparse CPU kernels.
//!
//! ```no_run
//! use hasten_compress::{prune_low_magnitude, strip_pruning, PolynomialDecay, PruningParams};
//! use hasten_nn::prelude::*;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut model = Sequential::new();
//! model.add(Dense::new(128).activation(Activation::Relu).input_shape([784]));
//! model.add(Dense::new(10).activation(Activation::Softmax));
//! let schedule = PolynomialDecay::new(0.0, 0.9, 0, 1000);
//! let mut pruned = prune_low_magnitude(model, PruningParams::new(schedule))?;
//! pruned.compile(Adam::default(), Loss::sparse_categorical_crossentropy(), &[Metric::Accuracy])?;
//! // pruned.fit(&x, &y, FitOptions::epochs(2))?;
//! let plain = strip_pruning(pruned)?;
//! # Ok(()) }
//! ```

mod error;
pub mod export;
pub mod inference;
pub mod mask;
pub mod params;
pub mod plain;
mod prune;
pub mod schedule;
pub mod sparse;
pub mod wrapper;

pub use error::{Error, Result};
pub use export::{dense_size, load_sparse, save_sparse, sparse_size, Size};
pub use inference::{SparseChoice, SparseModel, MEASURED_CROSSOVER};
pub use params::{BlockPooling, PruningParams};
pub use prune::{
    is_pruned, prune_layers, prune_low_magnitude, register, strip_pruning, LayerSelection,
};
pub use schedule::{ConstantSparsity, PolynomialDecay, PruningSchedule};
pub use wrapper::PruneLowMagnitude;
