//! What every backend's tests share, so that each backend is held to the same cases: one
//! small graph per op of the IR's closed set ([`op_cases`]), each compared with the CPU
//! backend by the backend's own test, and the seed's reference models ([`models`]).

pub mod models;
pub mod op_cases;
