//! Shared by the CUDA backend's tests: the gates (NVRTC, GPU), the reference models, a
//! backend that records the graphs a model compiles, and the per-op cases.

#![allow(dead_code)]

#[allow(unused_imports)] // not every test binary uses the cases
pub use hasten_testkit::op_cases as cases;
pub mod emulator;
pub mod models;

use hasten_cuda::{probe, CudaBackend};
use hasten_tensor::HostTensor;

/// Whether NVRTC loads. Under `CI=true` a missing NVRTC fails the test; otherwise the test is
/// skipped with a message saying how to get it.
pub fn nvrtc_or_skip(test: &str) -> bool {
    match probe::nvrtc() {
        Ok(()) => true,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: CI=true but NVRTC is missing: {e}")
        }
        Err(e) => {
            eprintln!("skipped {test}: {e}");
            false
        }
    }
}

/// The GPU backend on device 0, or `None` (with a message) when this machine has no GPU.
/// With `HASTEN_REQUIRE_GPU=1` (set by `bench/cuda/run_on_device.sh`) a missing GPU fails.
pub fn gpu_or_skip(test: &str) -> Option<CudaBackend> {
    match CudaBackend::new(0) {
        Ok(b) => Some(b),
        Err(e) if std::env::var("HASTEN_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("{test}: HASTEN_REQUIRE_GPU=1 but {e}")
        }
        Err(e) => {
            eprintln!("skipped {test}: needs an NVIDIA GPU ({e})");
            None
        }
    }
}

/// `Ok` when every element of `got` is within `tol` relative (to `max(1, |want|)`) of `want`;
/// NaN must match NaN.
pub fn same(got: &HostTensor, want: &HostTensor, tol: f64) -> Result<(), String> {
    if got.shape != want.shape || got.dtype() != want.dtype() {
        return Err(format!(
            "shape/dtype {:?} {} vs {:?} {}",
            got.shape,
            got.dtype(),
            want.shape,
            want.dtype()
        ));
    }
    let (g, w) = (values(got), values(want));
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        // Equal values (the same infinity included) match; NaN matches NaN.
        let ok = a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= tol * b.abs().max(1.0);
        if !ok {
            return Err(format!("element {i}: {a} vs {b}"));
        }
    }
    Ok(())
}

fn values(t: &HostTensor) -> Vec<f64> {
    use hasten_tensor::HostData;
    match &t.data {
        HostData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        HostData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        HostData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        HostData::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
    }
}
