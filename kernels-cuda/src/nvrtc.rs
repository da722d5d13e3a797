//! Compiling generated CUDA C to PTX with NVRTC (loaded at run time; no device needed).

use crate::error::{CudaError, CudaResult};
use crate::probe;
use cudarc::nvrtc::{CompileError, CompileOptions, Ptx};

/// Compiles a module's source for `arch` (`"compute_90"`, `"sm_80"`, …). Products are not
/// contracted into FMAs (`--fmad=false`), so elementwise results round as the CPU's do.
pub fn compile(source: &str, arch: &'static str) -> CudaResult<Ptx> {
    probe::nvrtc()?;
    let options = CompileOptions {
        fmad: Some(false),
        arch: Some(arch),
        name: Some("hasten_step.cu".to_string()),
        ..Default::default()
    };
    probe::guarded(|| {
        cudarc::nvrtc::compile_ptx_with_opts(source, options).map_err(|e| match e {
            CompileError::CompileError { log, .. } => CudaError::Compile {
                arch: arch.to_string(),
                log: log.to_string_lossy().into_owned(),
            },
            other => CudaError::Compile {
                arch: arch.to_string(),
                log: other.to_string(),
            },
        })
    })
}

/// The PTX text of a compiled module.
pub fn ptx_text(ptx: &Ptx) -> String {
    ptx.to_src()
}
