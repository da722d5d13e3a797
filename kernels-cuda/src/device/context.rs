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

    /// Compute capability (major, minor).
    pub fn compute_capability(&self) -> CudaResult<(i32, i32)> {
        Ok(self.ctx.compute_capability()?)
    }
}
