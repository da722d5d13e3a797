//! Graph passes shared by every backend: they simplify the graph and describe how to execute
//! it (fusion groups, memory plan) without knowing any device.

pub mod affine;
mod const_fold;
mod dce;
pub mod fusion;
pub mod memory_plan;
pub mod pipeline;

pub use const_fold::fold_constants;
pub use dce::eliminate_dead_nodes;

use crate::ir::Graph;
use crate::Result;

/// The standard clean-up before compiling: constant folding, then dead-node elimination.
pub fn simplify(graph: &Graph) -> Result<Graph> {
    let folded = fold_constants(graph)?;
    Ok(eliminate_dead_nodes(&folded).0)
}
