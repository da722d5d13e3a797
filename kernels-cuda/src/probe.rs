//! Finding the CUDA libraries without panicking: cudarc loads them lazily and panics when one
//! is missing, so every entry point checks here first.

use crate::error::{CudaError, CudaResult};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

/// The environment variable naming a `libnvrtc.so` to load (for machines where NVRTC is not
/// on the loader's path, like CI's copy from the `nvidia-cuda-nvrtc` wheel).
pub const NVRTC_ENV: &str = "HASTEN_NVRTC";

/// Runs a call into cudarc, turning a panic (a library or symbol missing) into an error.
pub fn guarded<T>(f: impl FnOnce() -> CudaResult<T>) -> CudaResult<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let text = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".to_string());
        Err(CudaError::Panicked(text))
    })
}

/// Checks that the driver library loads, with the loader's message when it does not.
pub fn driver() -> CudaResult<()> {
    // SAFETY: loading the driver runs its initialisers only, which have no preconditions.
    if unsafe { cudarc::driver::sys::is_culib_present() } {
        return Ok(());
    }
    // SAFETY: as above; the handle is dropped at once.
    let detail = match unsafe { libloading::Library::new("libcuda.so.1") } {
        Ok(_) => "found but unusable".to_string(),
        Err(e) => e.to_string(),
    };
    Err(CudaError::NoDriver(detail))
}

/// Number of CUDA devices the driver reports.
pub fn device_count() -> CudaResult<usize> {
    driver()?;
    guarded(|| {
        cudarc::driver::result::init()?;
        let count = cudarc::driver::CudaContext::device_count()?;
        Ok(usize::try_from(count).unwrap_or(0))
    })
}

/// Checks that device `ordinal` exists.
pub fn device(ordinal: usize) -> CudaResult<()> {
    let present = device_count()?;
    if ordinal >= present {
        return Err(CudaError::NoSuchDevice {
            requested: ordinal,
            present,
        });
    }
    Ok(())
}

/// Loads NVRTC: first the file `$HASTEN_NVRTC` names (kept loaded, so that cudarc's own
/// lookup by soname finds it), then the loader's search path.
pub fn nvrtc() -> CudaResult<()> {
    static PRELOADED: OnceLock<Result<Vec<libloading::Library>, String>> = OnceLock::new();
    let preloaded = PRELOADED.get_or_init(|| match std::env::var_os(NVRTC_ENV) {
        Some(path) => preload(std::path::Path::new(&path)),
        None => Ok(Vec::new()),
    });
    if let Err(e) = preloaded {
        return Err(CudaError::NoNvrtc(e.clone()));
    }
    // SAFETY: as above.
    if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(CudaError::NoNvrtc(format!(
            "libnvrtc is not on the loader's path and {NVRTC_ENV} is not set"
        )))
    }
}

/// Loads NVRTC from `path` and, first, its builtins library from the same folder (NVRTC opens
/// it by name, which the loader would look for on its search path only).
fn preload(path: &std::path::Path) -> Result<Vec<libloading::Library>, String> {
    let shown = || format!("{NVRTC_ENV}={}", path.display());
    let dir = path
        .parent()
        .ok_or_else(|| format!("{}: not a file", shown()))?;
    let mut builtins: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", shown()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("libnvrtc-builtins.so")
        })
        .collect();
    builtins.sort();
    let mut libs = Vec::new();
    for lib in builtins
        .iter()
        .take(1)
        .chain(std::iter::once(&path.to_path_buf()))
    {
        // SAFETY: NVRTC's initialisers have no preconditions.
        libs.push(
            unsafe { libloading::Library::new(lib) }.map_err(|e| format!("{}: {e}", shown()))?,
        );
    }
    Ok(libs)
}
