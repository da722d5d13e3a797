//! Optimizers: each appends its update rule to the train-step graph, with its slots as state,
//! so the whole update runs inside the compiled step on any backend.

mod adam;
mod adamw;
mod rmsprop;
pub mod schedules;
mod sgd;

pub use adam::Adam;
pub use adamw::AdamW;
pub use rmsprop::RmsProp;
pub use schedules::LearningRateSchedule;
pub use sgd::Sgd;

use crate::Result;
use hasten_tensor::{DType, Graph, NodeId};

/// Graph values every optimizer can use.
#[derive(Clone, Copy, Debug)]
pub struct Hyper {
    /// The current learning rate (state, so schedules and callbacks can change it).
    pub learning_rate: NodeId,
    /// The step number `t`, counting from 1 for the first step.
    pub step: NodeId,
}

/// A trainable parameter and its gradient.
#[derive(Clone, Debug)]
pub struct ParamGrad {
    /// The parameter's state name ("dense/kernel").
    pub name: String,
    /// The parameter.
    pub param: NodeId,
    /// Its gradient.
    pub grad: NodeId,
}

/// An optimizer.
pub trait Optimizer: Send + Sync + std::fmt::Debug {
    /// The Keras name.
    fn name(&self) -> &'static str;

    /// The initial learning rate.
    fn learning_rate(&self) -> f32;

    /// The configuration, for saving.
    fn config(&self) -> serde_json::Value;

    /// Appends the update of every parameter (with `g.update`).
    fn apply(&self, g: &mut Graph, params: &[ParamGrad], hyper: Hyper) -> Result<()>;
}

/// A slot (zero-initialised state) for a parameter: `optimizer/<param>/<slot>`.
pub(crate) fn slot(g: &mut Graph, p: &ParamGrad, slot: &str) -> Result<NodeId> {
    let shape = g.shape(p.param)?.clone();
    Ok(g.parameter(&format!("optimizer/{}/{slot}", p.name), shape, DType::F32)?)
}

/// `a·x + b·y` for scalar constants `a`, `b`.
pub(crate) fn blend(g: &mut Graph, a: f32, x: NodeId, b: f32, y: NodeId) -> Result<NodeId> {
    let ax = g.scale(x, a)?;
    let by = g.scale(y, b)?;
    Ok(g.add(ax, by)?)
}

/// Rebuilds an optimizer from its saved configuration.
pub fn from_config(config: &serde_json::Value) -> Result<Box<dyn Optimizer>> {
    let name = config
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or_default();
    let parse =
        |e: serde_json::Error| crate::Error::config(format!("bad optimizer configuration: {e}"));
    Ok(match name {
        "adam" => Box::new(serde_json::from_value::<Adam>(config.clone()).map_err(parse)?),
        "sgd" => Box::new(serde_json::from_value::<Sgd>(config.clone()).map_err(parse)?),
        "rmsprop" => Box::new(serde_json::from_value::<RmsProp>(config.clone()).map_err(parse)?),
        "adamw" => Box::new(serde_json::from_value::<AdamW>(config.clone()).map_err(parse)?),
        other => return Err(crate::Error::config(format!("unknown optimizer {other:?}"))),
    })
}
