//! The intermediate representation: a graph of primitive ops with static shapes.

mod graph;
pub mod infer;
mod op;

pub use graph::{Graph, Node, NodeId};
pub use op::{
    BinaryOp, CompareOp, Conv2dAttrs, Op, Padding2d, PaddingMode, Pool2dAttrs, ReduceOp, UnaryOp,
};
