//! Runs a [`KernelPlan`] on the host, without a GPU, to check what the generated kernels
//! compute (not only that they compile): the CUDA C is compiled as C++ with a small shim
//! (`blockIdx`/`threadIdx` per emulated thread, `__shared__` as a static, `__syncthreads` as a
//! barrier across a block's threads), products are computed by a plain loop over cuBLASLt's
//! column-major description, and copies are byte copies, all over one host arena laid out as
//! the device's would be.

use hasten_cuda::plan::{bytes_of, Gemm, KernelPlan, Step};
use hasten_tensor::{HostData, HostTensor};
use std::ffi::c_void;
use std::fmt::Write;
use std::path::PathBuf;
use std::process::Command;

const SHIM: &str = r#"
#include <math.h>
#include <cmath>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>
#include <pthread.h>
struct hasten_dim3 { unsigned x, y, z; };
static thread_local hasten_dim3 threadIdx, blockIdx;
static hasten_dim3 blockDim, gridDim;
static pthread_barrier_t hasten_barrier;
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define isnan(x) std::isnan(x)
static inline void __syncthreads() { pthread_barrier_wait(&hasten_barrier); }
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
static inline float __int_as_float(int x) { float f; std::memcpy(&f, &x, 4); return f; }
template <class... A, std::size_t... I>
static void hasten_call(void (*f)(A...), void** a, std::index_sequence<I...>) { f(((A)a[I])...); }
template <class... A>
static void hasten_run(void (*f)(A...), void** a, unsigned grid, unsigned block, bool sync) {
  gridDim = {grid, 1, 1}; blockDim = {block, 1, 1};
  for (unsigned b = 0; b < grid; ++b) {
    if (!sync) {
      for (unsigned t = 0; t < block; ++t) {
        blockIdx = {b, 0, 0}; threadIdx = {t, 0, 0};
        hasten_call(f, a, std::index_sequence_for<A...>{});
      }
      continue;
    }
    pthread_barrier_init(&hasten_barrier, nullptr, block);
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < block; ++t)
      ts.emplace_back([=] { blockIdx = {b, 0, 0}; threadIdx = {t, 0, 0}; hasten_call(f, a, std::index_sequence_for<A...>{}); });
    for (auto& th : ts) th.join();
    pthread_barrier_destroy(&hasten_barrier);
  }
}
"#;

/// The launcher symbol of kernel `name` of plan `p`.
fn launcher(p: usize, name: &str) -> String {
    format!("p{p}_launch_{name}")
}

/// A host library holding the kernels of several plans.
pub struct Library {
    lib: libloading::Library,
    _dir: PathBuf,
}

type Launch = unsafe extern "C" fn(*mut *mut c_void, u32, u32);

/// Whether a host C++ compiler is available.
pub fn have_compiler() -> bool {
    Command::new("c++")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

impl Library {
    /// Compiles every plan's kernels (plan `p` in namespace `p{p}`) into one shared library.
    pub fn build(plans: &[&KernelPlan], tag: &str) -> Library {
        let mut src = String::from(SHIM);
        src.push_str(
            &hasten_cuda::codegen::prelude::PRELUDE
                .replace("__device__ __forceinline__", "static inline"),
        );
        for (p, plan) in plans.iter().enumerate() {
            let _ = writeln!(src, "namespace p{p} {{");
            for k in &plan.kernels {
                src.push_str(&k.source.replace("extern \"C\" ", ""));
                let sync = k.source.contains("__syncthreads");
                let _ = writeln!(
                    src,
                    "extern \"C\" void {}(void** a, unsigned g, unsigned b) {{ hasten_run({}, a, g, b, {sync}); }}",
                    launcher(p, &k.name),
                    k.name
                );
            }
            let _ = writeln!(src, "}}");
        }
        let dir = std::env::temp_dir().join(format!("hasten-emulate-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cpp, so) = (dir.join("kernels.cpp"), dir.join("kernels.so"));
        std::fs::write(&cpp, &src).unwrap();
        let out = Command::new("c++")
            .args([
                "-std=c++17",
                "-O1",
                "-shared",
                "-fPIC",
                "-pthread",
                "-w",
                "-o",
            ])
            .arg(&so)
            .arg(&cpp)
            .output()
            .expect("c++ runs");
        assert!(
            out.status.success(),
            "host compile of the kernels failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // SAFETY: the library was just built from the kernels and the shim above.
        let lib = unsafe { libloading::Library::new(&so) }.unwrap();
        Library { lib, _dir: dir }
    }

    fn launch(&self, p: usize, name: &str) -> Launch {
        // SAFETY: every launcher has this signature.
        unsafe {
            *self
                .lib
                .get::<Launch>(launcher(p, name).as_bytes())
                .unwrap()
        }
    }
}

/// A plan's values on the host: the arena, as the device would hold it.
pub struct Emulated<'a> {
    plan: &'a KernelPlan,
    index: usize,
    lib: &'a Library,
    arena: Vec<u64>,
    /// Run each product's epilogue as its generated fallback kernel, as the device does when
    /// cuBLASLt has no algorithm with the epilogue.
    pub fallback_epilogues: bool,
}

impl<'a> Emulated<'a> {
    /// Plan `index` of `lib`, with its constants uploaded and every other byte zero.
    pub fn new(plan: &'a KernelPlan, index: usize, lib: &'a Library) -> Self {
        let mut e = Emulated {
            plan,
            index,
            lib,
            arena: vec![0; plan.layout.arena_bytes.div_ceil(8) + 1],
            fallback_epilogues: false,
        };
        for (off, bytes) in &plan.layout.constants {
            e.bytes_mut()[*off..*off + bytes.len()].copy_from_slice(bytes);
        }
        e
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: a u64 buffer viewed as bytes.
        unsafe {
            std::slice::from_raw_parts_mut(self.arena.as_mut_ptr() as *mut u8, self.arena.len() * 8)
        }
    }

    fn ptr(&mut self, id: hasten_tensor::NodeId) -> *mut u8 {
        let off = self.plan.layout.offset(id);
        // SAFETY: offsets lie inside the arena.
        unsafe { (self.arena.as_mut_ptr() as *mut u8).add(off) }
    }

    /// Writes a value (input or state) into node `id`'s buffer.
    pub fn write(&mut self, id: hasten_tensor::NodeId, value: &HostData) {
        let bytes = value.as_slice().as_bytes();
        let off = self.plan.layout.offset(id);
        self.bytes_mut()[off..off + bytes.len()].copy_from_slice(bytes);
    }

    /// Reads node `id`'s buffer.
    pub fn read(&mut self, id: hasten_tensor::NodeId) -> HostTensor {
        let node = &self.plan.graph.nodes()[id.0];
        let mut data = HostData::zeros(node.dtype, node.shape.numel()).unwrap();
        let n = bytes_of(&self.plan.graph, id);
        let src = self.ptr(id);
        let dst: *mut u8 = match &mut data {
            HostData::F32(v) => v.as_mut_ptr() as *mut u8,
            HostData::I32(v) => v.as_mut_ptr() as *mut u8,
            HostData::U8(v) => v.as_mut_ptr(),
            HostData::Bool(v) => v.as_mut_ptr() as *mut u8,
        };
        // SAFETY: both hold `n` bytes.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, n) };
        HostTensor::new(node.shape.clone(), data).unwrap()
    }

    /// Runs one step: every kernel, product and state copy in order.
    pub fn step(&mut self) {
        for step in &self.plan.steps {
            match step {
                Step::Kernel {
                    kernel,
                    reads,
                    writes,
                } => {
                    let ids: Vec<_> = reads.iter().chain(writes).copied().collect();
                    self.kernel(*kernel, &ids);
                }
                Step::Gemm(g) => match (g.fallback, g.bias) {
                    (Some(k), Some(bias)) if self.fallback_epilogues => {
                        self.gemm(&Gemm {
                            bias: None,
                            relu: false,
                            ..*g
                        });
                        self.kernel(k, &[bias, g.out]);
                    }
                    _ => self.gemm(g),
                },
            }
        }
        for c in &self.plan.copies {
            self.bytes_mut().copy_within(c.src..c.src + c.bytes, c.dst);
        }
    }

    /// Runs generated kernel `kernel` on the buffers of `ids`.
    fn kernel(&mut self, kernel: usize, ids: &[hasten_tensor::NodeId]) {
        let k = &self.plan.kernels[kernel];
        let (name, grid, block) = (k.name.clone(), k.grid, k.block);
        let mut args: Vec<*mut c_void> =
            ids.iter().map(|&id| self.ptr(id) as *mut c_void).collect();
        let f = self.lib.launch(self.index, &name);
        // SAFETY: the arguments are the arena buffers the kernel was generated for.
        unsafe { f(args.as_mut_ptr(), grid, block) };
    }

    /// cuBLASLt's column-major `C = op(A)·op(B)` (+ bias per row, ReLU), by loops.
    fn gemm(&mut self, g: &Gemm) {
        let f = |e: &mut Self, id| e.ptr(id) as *mut f32;
        let (a, b, c) = (f(self, g.a), f(self, g.b), f(self, g.out));
        let bias = g.bias.map(|id| f(self, id));
        let (_, _, lda) = g.layout_a();
        let (_, _, ldb) = g.layout_b();
        let (sa, sb, sc) = g.batch_strides();
        let (m, n, k) = (g.m as usize, g.n as usize, g.k as usize);
        let mut out = vec![0f32; m * n];
        for batch in 0..g.batch {
            // SAFETY: indices stay inside the operands' buffers, sized by the plan.
            unsafe {
                let (a, b) = (a.add(batch * sa as usize), b.add(batch * sb as usize));
                let at = |i: usize, p: usize| {
                    if g.trans_a {
                        *a.add(p + i * lda as usize)
                    } else {
                        *a.add(i + p * lda as usize)
                    }
                };
                let bt = |p: usize, j: usize| {
                    if g.trans_b {
                        *b.add(j + p * ldb as usize)
                    } else {
                        *b.add(p + j * ldb as usize)
                    }
                };
                for j in 0..n {
                    for i in 0..m {
                        let mut acc = 0f32;
                        for p in 0..k {
                            acc += at(i, p) * bt(p, j);
                        }
                        if let Some(bias) = bias {
                            acc += *bias.add(i);
                        }
                        if g.relu && acc <= 0.0 {
                            acc = 0.0;
                        }
                        out[i + j * m] = acc;
                    }
                }
                std::ptr::copy_nonoverlapping(out.as_ptr(), c.add(batch * sc as usize), m * n);
            }
        }
    }
}
