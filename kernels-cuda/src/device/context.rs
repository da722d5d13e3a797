//! A CUDA context on one device and the stream every step runs on.

use crate::error::CudaResult;
use crate::probe;
use cudarc::driver::{CudaContext, CudaStream};
use std::sync::Arc;

/// A device's context and a non-default stream (capture needs one).
#[derive(Clone, Debug)]
pub struct Device {
    /// The context.
    pub ctx: Arc<CudaContext>,
    /// The stream steps are queued on and captured from.
    pub stream: Arc<CudaStream>,
}

impl Device {
    /// Opens device `ordinal`, checking first that the driver and the device exist.
    pub fn open(ordinal: usize) -> CudaResult<Self> {
        probe::device(ordinal)?;
        probe::guarded(|| {
            let ctx = CudaContext::new(ordinal)?;
            // One stream does all the work, so cudarc's cross-stream events are not needed
            // (and would be recorded into captured graphs).
            // SAFETY: nothing has been allocated on this context yet.
            unsafe { ctx.disable_event_tracking() };
            let stream = ctx.new_stream()?;
            Ok(Device { ctx, stream })
        })
    }

    /// The device's name ("NVIDIA H100 80GB HBM3", …).
    pub fn name(&self) -> CudaResult<String> {
        Ok(self.ctx.name()?)
    }

    /// The device's fp32 peak without tensor cores, in TFLOP/s: SMs × fp32 lanes per SM ×
    /// 2 (a fused multiply-add) × the boost clock.
    pub fn fp32_peak_tflops(&self) -> CudaResult<f64> {
        use cudarc::driver::sys::CUdevice_attribute as A;
        let sms = self
            .ctx
            .attribute(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
        let khz = self.ctx.attribute(A::CU_DEVICE_ATTRIBUTE_CLOCK_RATE)?;
        let lanes = match self.compute_capability()? {
            (8, 0) | (6, 0) | (7, _) => 64.0,
            _ => 128.0,
        };
        Ok(f64::from(sms) * lanes * 2.0 * f64::from(khz) * 1e3 / 1e12)
    }

    /// Compute capability (major, minor).
    pub fn compute_capability(&self) -> CudaResult<(i32, i32)> {
        Ok(self.ctx.compute_capability()?)
    }
}
