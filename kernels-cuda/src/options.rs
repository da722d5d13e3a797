//! Options of the CUDA backend.

/// How the CUDA backend compiles a graph.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CudaOptions {
    /// Let GEMMs use TF32 tensor cores (about 10 mantissa bits per product: faster, but results
    /// no longer match the CPU backend's fp32 to 1e-5). Off by default.
    pub tf32: bool,
}
