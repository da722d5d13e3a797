//! What needs a GPU: the context and stream, the arena, cuBLASLt products and launches.

pub mod arena;
pub mod blas;
pub mod context;
