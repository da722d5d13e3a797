//! # hasten-nn
//!
//! Keras-style models on hasten's IR: layers build graph nodes, autodiff supplies the
//! gradients, and a backend compiles the whole train step. A model runs on whatever
//! [`hasten_tensor::Backend`] it is given.

pub mod activations;
pub mod callbacks;
pub mod checkpoint;
pub mod data;
mod error;
pub mod history;
pub mod initializers;
pub mod layers;
pub mod losses;
pub mod metrics;
pub mod model;
pub mod optimizers;

pub use error::{Error, Result};
pub use model::{FitOptions, Sequential, Verbosity};

/// Everything a training script needs.
pub mod prelude {
    pub use crate::activations::Activation;
    pub use crate::callbacks::{
        Callback, Control, CsvLogger, EarlyStopping, LearningRateScheduler, Logs, ModelCheckpoint,
        ReduceLROnPlateau, TerminateOnNaN,
    };
    pub use crate::data::Mnist;
    pub use crate::history::History;
    pub use crate::initializers::Initializer;
    pub use crate::layers::{
        ActivationLayer, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten,
        Layer, MaxPooling2D, Padding, Softmax,
    };
    pub use crate::losses::Loss;
    pub use crate::metrics::Metric;
    pub use crate::optimizers::schedules::{CosineDecay, ExponentialDecay, PiecewiseConstantDecay};
    pub use crate::optimizers::{Adam, AdamW, LearningRateSchedule, Optimizer, RmsProp, Sgd};
    pub use crate::{FitOptions, Sequential, Verbosity};
    pub use hasten_tensor::HostTensor;
}
