//! [`CudaBackend`]: compiles whole graphs for one NVIDIA GPU.

use crate::device::context::Device;
use crate::error::CudaResult;
use crate::executable::CudaExecutable;
use crate::plan::KernelPlan;
use crate::probe;
use crate::CudaOptions;
use hasten_tensor::{Backend, Executable, Graph, Result};

/// A backend over one CUDA device.
pub struct CudaBackend {
    device: Device,
    options: CudaOptions,
}

impl CudaBackend {
    /// Opens device `ordinal` with default options. Without a driver, or with fewer devices,
    /// this is an error that says which ("no CUDA driver found …", "CUDA device 3 requested,
    /// 1 present"), never a panic; NVRTC is checked too, since every graph needs it.
    pub fn new(ordinal: usize) -> CudaResult<Self> {
        Self::with_options(ordinal, CudaOptions::default())
    }

    /// Opens device `ordinal` with `options`.
    pub fn with_options(ordinal: usize, options: CudaOptions) -> CudaResult<Self> {
        let device = Device::open(ordinal)?;
        probe::nvrtc()?;
        Ok(CudaBackend { device, options })
    }

    /// The device's name.
    pub fn device_name(&self) -> CudaResult<String> {
        self.device.name()
    }

    /// The device's fp32 peak without tensor cores, in TFLOP/s.
    pub fn fp32_peak_tflops(&self) -> CudaResult<f64> {
        self.device.fp32_peak_tflops()
    }

    /// The device's compute capability.
    pub fn compute_capability(&self) -> CudaResult<(i32, i32)> {
        self.device.compute_capability()
    }

    /// Compiles `graph` into a concrete executable (for tests that read its counters).
    pub fn compile_cuda(&self, graph: &Graph) -> CudaResult<CudaExecutable> {
        let plan = KernelPlan::build(graph)?;
        probe::guarded(|| CudaExecutable::load(plan, self.device.clone(), self.options))
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn compile(&self, graph: &Graph) -> Result<Box<dyn Executable>> {
        Ok(Box::new(self.compile_cuda(graph)?))
    }
}
