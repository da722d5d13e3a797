//! A [`KernelPlan`] loaded on a GPU: the arena (the only device allocation, made here), the
//! compiled module, the planned products, and after the first step the step captured as a
//! CUDA graph that every later step replays.

use crate::device::arena::{self, DeviceArena};
use crate::device::blas::{Blas, GemmPtrs, PlannedGemm, WORKSPACE_BYTES};
use crate::device::context::Device;
use crate::error::{CudaError, CudaResult};
use crate::host_io;
use crate::nvrtc;
use crate::plan::{Gemm, KernelPlan, Step};
use crate::CudaOptions;
use cudarc::driver::result as drv;
use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{CudaFunction, CudaGraph, LaunchConfig, PushKernelArg};
use hasten_tensor::host::{HostData, HostSlice, HostTensor};
use hasten_tensor::{check_inputs, check_value};
use hasten_tensor::{Error, Executable, Result};

/// A graph compiled for one GPU, holding its state in the device arena between steps.
pub struct CudaExecutable {
    plan: KernelPlan,
    device: Device,
    arena: DeviceArena,
    functions: Vec<CudaFunction>,
    blas: Blas,
    /// The planned product of each `Step::Gemm`, by step index, and whether its epilogue
    /// runs as the plan's fallback kernel (cuBLASLt had no algorithm with it).
    gemms: Vec<Option<(PlannedGemm, bool)>>,
    /// The step as a CUDA graph, captured after the first step.
    captured: Option<CudaGraph>,
    steps_run: usize,
    input_names: Vec<String>,
    output_names: Vec<String>,
    state_names: Vec<String>,
    outputs: Vec<HostData>,
}

// SAFETY: the CUDA handles (context, module, graph, cuBLASLt descriptors) may be used from any
// thread once the context is bound, which cudarc does before each call; the executable is
// driven by one thread at a time (`&mut self`).
unsafe impl Send for CudaExecutable {}

/// Plans a product with its epilogue, or, when cuBLASLt has no algorithm with it and the plan
/// has a fallback kernel, without it (`true`: launch the fallback after the product).
fn plan_gemm(blas: &Blas, g: &Gemm, ptrs: GemmPtrs, tf32: bool) -> CudaResult<(PlannedGemm, bool)> {
    match PlannedGemm::new(blas, g, ptrs, tf32) {
        Ok(p) => Ok((p, false)),
        Err(e) if g.fallback.is_some() => {
            let plain = Gemm {
                bias: None,
                relu: false,
                ..*g
            };
            let ptrs = GemmPtrs { bias: None, ..ptrs };
            PlannedGemm::new(blas, &plain, ptrs, tf32)
                .map(|p| (p, true))
                .map_err(|_| e)
        }
        Err(e) => Err(e),
    }
}

/// The PTX target for a device of compute capability `(major, minor)`.
fn arch(cc: (i32, i32)) -> &'static str {
    match cc {
        (10, _) => "compute_100",
        (9, _) => "compute_90",
        (8, 9) => "compute_89",
        (8, 6) => "compute_86",
        (8, _) => "compute_80",
        _ => "compute_75",
    }
}

impl CudaExecutable {
    /// Loads `plan` on `device`: allocates the arena, uploads the constants, compiles the
    /// module and plans every product.
    pub fn load(plan: KernelPlan, device: Device, options: CudaOptions) -> CudaResult<Self> {
        let ptx = nvrtc::compile(&plan.source(), arch(device.compute_capability()?))?;
        let module = device.ctx.load_module(ptx)?;
        let functions = plan
            .kernels
            .iter()
            .map(|k| module.load_function(&k.name))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let workspace_at = plan.layout.arena_bytes.next_multiple_of(256);
        let arena = DeviceArena::new(&device.stream, workspace_at + WORKSPACE_BYTES)?;
        for (offset, bytes) in &plan.layout.constants {
            // SAFETY: the constant's bytes lie inside the arena (the layout sized it).
            unsafe { drv::memcpy_htod_async(arena.at(*offset), bytes, device.stream.cu_stream())? };
        }
        let blas = Blas::new()?;
        let gemms = plan
            .steps
            .iter()
            .map(|step| match step {
                Step::Gemm(g) => {
                    let at = |id| arena.at(plan.layout.offset(id));
                    let ptrs = GemmPtrs {
                        a: at(g.a),
                        b: at(g.b),
                        c: at(g.out),
                        bias: g.bias.map(at),
                        workspace: arena.at(workspace_at),
                    };
                    plan_gemm(&blas, g, ptrs, options.tf32).map(Some)
                }
                Step::Kernel { .. } => Ok(None),
            })
            .collect::<CudaResult<Vec<_>>>()?;
        device.stream.synchronize()?;
        let outputs = plan
            .outputs
            .iter()
            .map(|(_, id)| {
                let node = &plan.graph.nodes()[id.0];
                HostData::zeros(node.dtype, node.shape.numel())
            })
            .collect::<Result<Vec<_>>>()
            .map_err(|e| CudaError::Unsupported(e.to_string()))?;
        Ok(CudaExecutable {
            input_names: plan.inputs.iter().map(|(s, _)| s.clone()).collect(),
            output_names: plan.outputs.iter().map(|(s, _)| s.clone()).collect(),
            state_names: plan.states.iter().map(|s| s.name.clone()).collect(),
            plan,
            device,
            arena,
            functions,
            blas,
            gemms,
            captured: None,
            steps_run: 0,
            outputs,
        })
    }

    /// The plan this executable runs.
    pub fn plan(&self) -> &KernelPlan {
        &self.plan
    }

    /// Device allocations made by every arena of this process so far (a step makes none).
    pub fn device_allocations() -> usize {
        arena::allocations()
    }

    /// Whether the step now replays a captured CUDA graph.
    pub fn is_captured(&self) -> bool {
        self.captured.is_some()
    }

    /// Queues every step's work on the stream (eagerly, or into a capture).
    fn enqueue(&self) -> CudaResult<()> {
        let stream = &self.device.stream;
        let at = |id| self.arena.at(self.plan.layout.offset(id));
        for (s, step) in self.plan.steps.iter().enumerate() {
            match step {
                Step::Kernel {
                    kernel,
                    reads,
                    writes,
                } => {
                    let ptrs: Vec<u64> = reads.iter().chain(writes).map(|&id| at(id)).collect();
                    self.launch_kernel(*kernel, &ptrs)?;
                }
                Step::Gemm(g) => {
                    if let Some((planned, unfused)) = &self.gemms[s] {
                        planned.launch(&self.blas, stream)?;
                        if let (true, Some(k), Some(bias)) = (*unfused, g.fallback, g.bias) {
                            self.launch_kernel(k, &[at(bias), at(g.out)])?;
                        }
                    }
                }
            }
        }
        for c in &self.plan.copies {
            // SAFETY: both ranges lie in the arena.
            unsafe {
                drv::memcpy_dtod_async(
                    self.arena.at(c.dst),
                    self.arena.at(c.src),
                    c.bytes,
                    stream.cu_stream(),
                )?
            };
        }
        Ok(())
    }

    /// Queues generated kernel `kernel` on the buffers at `ptrs`.
    fn launch_kernel(&self, kernel: usize, ptrs: &[u64]) -> CudaResult<()> {
        let k = &self.plan.kernels[kernel];
        let mut launch = self.device.stream.launch_builder(&self.functions[kernel]);
        for p in ptrs {
            launch.arg(p);
        }
        let cfg = LaunchConfig {
            grid_dim: (k.grid, 1, 1),
            block_dim: (k.block, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the parameters are arena buffers of the sizes the kernel was generated for.
        unsafe { launch.launch(cfg)? };
        Ok(())
    }

    /// Captures the step as a CUDA graph.
    fn capture(&mut self) -> CudaResult<()> {
        let stream = &self.device.stream;
        stream.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)?;
        let queued = self.enqueue();
        let graph = stream.end_capture(CUgraphInstantiate_flags(0))?;
        queued?;
        self.captured = graph;
        Ok(())
    }

    /// Runs one step on checked inputs.
    fn step(&mut self, inputs: &[HostSlice<'_>]) -> CudaResult<()> {
        let stream = self.device.stream.clone();
        for ((_, id), x) in self.plan.inputs.iter().zip(inputs) {
            // SAFETY: the input's slot holds exactly its bytes (checked by the caller).
            unsafe {
                drv::memcpy_htod_async(
                    self.arena.at(self.plan.layout.offset(*id)),
                    x.as_bytes(),
                    stream.cu_stream(),
                )?
            };
        }
        if self.captured.is_none() && self.steps_run > 0 {
            self.capture()?;
        }
        match &self.captured {
            Some(graph) => graph.launch()?,
            None => self.enqueue()?,
        }
        for (k, (_, id)) in self.plan.outputs.iter().enumerate() {
            let src = self.arena.at(self.plan.layout.offset(*id));
            // SAFETY: the host buffer holds exactly the output's bytes.
            unsafe {
                drv::memcpy_dtoh_async(
                    host_io::bytes_mut(&mut self.outputs[k]),
                    src,
                    stream.cu_stream(),
                )?
            };
        }
        stream.synchronize()?;
        self.steps_run += 1;
        Ok(())
    }

    /// Seconds per step of the on-device work alone, over `reps` replays of the captured step
    /// on the inputs of the last step (no host copies): for benchmarks. Needs one `run` first.
    pub fn time_replays(&mut self, reps: usize) -> CudaResult<f64> {
        if self.captured.is_none() {
            self.capture()?;
        }
        let graph = self.captured.as_ref().expect("captured above");
        graph.launch()?;
        self.device.stream.synchronize()?;
        let start = std::time::Instant::now();
        for _ in 0..reps {
            graph.launch()?;
        }
        self.device.stream.synchronize()?;
        Ok(start.elapsed().as_secs_f64() / reps.max(1) as f64)
    }

    fn state_index(&self, name: &str) -> Result<usize> {
        self.state_names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| Error::UnknownName {
                kind: "state",
                name: name.to_string(),
                known: self.state_names.join(", "),
            })
    }
}

impl Executable for CudaExecutable {
    fn input_names(&self) -> &[String] {
        &self.input_names
    }

    fn output_names(&self) -> &[String] {
        &self.output_names
    }

    fn state_names(&self) -> &[String] {
        &self.state_names
    }

    fn run(&mut self, inputs: &[HostSlice<'_>]) -> Result<()> {
        check_inputs(
            &self.plan.graph,
            self.plan.inputs.iter().map(|(_, id)| *id),
            &self.input_names,
            inputs,
        )?;
        Ok(self.step(inputs)?)
    }

    fn output_slice(&mut self, index: usize) -> Result<HostSlice<'_>> {
        let known = self.output_names.join(", ");
        self.outputs
            .get(index)
            .map(HostData::as_slice)
            .ok_or(Error::UnknownName {
                kind: "output",
                name: index.to_string(),
                known,
            })
    }

    fn read_state(&mut self, name: &str) -> Result<HostTensor> {
        let slot = &self.plan.states[self.state_index(name)?];
        let node = &self.plan.graph.nodes()[slot.node.0];
        let mut data = HostData::zeros(node.dtype, node.shape.numel())?;
        let src = self.arena.at(self.plan.layout.offset(slot.node));
        let stream = &self.device.stream;
        // SAFETY: the host buffer holds exactly the state's bytes.
        unsafe { drv::memcpy_dtoh_async(host_io::bytes_mut(&mut data), src, stream.cu_stream()) }
            .map_err(CudaError::from)?;
        stream.synchronize().map_err(CudaError::from)?;
        HostTensor::new(node.shape.clone(), data)
    }

    fn write_state(&mut self, name: &str, value: HostSlice<'_>) -> Result<()> {
        let slot = &self.plan.states[self.state_index(name)?];
        check_value(
            &self.plan.graph,
            slot.node,
            || format!("state {name:?}"),
            value,
        )?;
        let dst = self.arena.at(self.plan.layout.offset(slot.node));
        let stream = &self.device.stream;
        // SAFETY: the state's slot holds exactly these bytes.
        unsafe { drv::memcpy_htod_async(dst, value.as_bytes(), stream.cu_stream()) }
            .map_err(CudaError::from)?;
        stream.synchronize().map_err(CudaError::from)?;
        Ok(())
    }

    fn output(&mut self, name: &str) -> Result<HostTensor> {
        let index = self.output_index(name)?;
        let id = self.plan.outputs[index].1;
        let shape = self.plan.graph.nodes()[id.0].shape.clone();
        HostTensor::new(shape, self.outputs[index].clone())
    }
}
