//! cuBLASLt products: descriptors, layouts and the algorithm chosen once at compile, with the
//! bias and ReLU epilogue and fp32 (or, when asked, TF32) compute. (cudarc's safe wrapper
//! always computes f32 products in TF32 and re-plans every call, hence this one.)

use crate::error::CudaResult;
use crate::plan::Gemm;
use cudarc::cublaslt::result as lt;
use cudarc::cublaslt::sys;
use cudarc::driver::CudaStream;
use std::ffi::c_void;
use std::mem::size_of;

/// Bytes of cuBLASLt workspace every product may use (NVIDIA's recommendation for Hopper).
pub const WORKSPACE_BYTES: usize = 32 << 20;

/// A cuBLASLt handle.
#[derive(Debug)]
pub struct Blas {
    handle: sys::cublasLtHandle_t,
}

// SAFETY: the handle is used by one executable at a time, under `&mut`.
unsafe impl Send for Blas {}

impl Blas {
    /// Creates a handle.
    pub fn new() -> CudaResult<Self> {
        Ok(Blas {
            handle: lt::create_handle()?,
        })
    }
}

impl Drop for Blas {
    fn drop(&mut self) {
        // SAFETY: the handle was created by `new` and is destroyed once.
        let _ = unsafe { lt::destroy_handle(self.handle) };
    }
}

/// Device addresses of one product's buffers.
#[derive(Clone, Copy, Debug)]
pub struct GemmPtrs {
    /// cuBLASLt's `A`.
    pub a: u64,
    /// cuBLASLt's `B`.
    pub b: u64,
    /// The result.
    pub c: u64,
    /// The bias, if any.
    pub bias: Option<u64>,
    /// The workspace.
    pub workspace: u64,
}

/// One product, planned.
#[derive(Debug)]
pub struct PlannedGemm {
    desc: sys::cublasLtMatmulDesc_t,
    layouts: [sys::cublasLtMatrixLayout_t; 3],
    algo: sys::cublasLtMatmulAlgo_t,
    ptrs: GemmPtrs,
}

// SAFETY: the descriptors are plain host objects owned by this value.
unsafe impl Send for PlannedGemm {}

unsafe fn set_desc<T>(
    desc: sys::cublasLtMatmulDesc_t,
    attr: sys::cublasLtMatmulDescAttributes_t,
    v: &T,
) -> CudaResult<()> {
    lt::set_matmul_desc_attribute(desc, attr, v as *const T as *const c_void, size_of::<T>())?;
    Ok(())
}

fn layout(
    rows: u64,
    cols: u64,
    ld: i64,
    batch: usize,
    stride: i64,
) -> CudaResult<sys::cublasLtMatrixLayout_t> {
    let l = lt::create_matrix_layout(sys::cudaDataType_t::CUDA_R_32F, rows, cols, ld)?;
    if batch > 1 {
        let count = batch as i32;
        use sys::cublasLtMatrixLayoutAttribute_t as A;
        // SAFETY: `l` is a live layout; the values outlive the calls.
        unsafe {
            lt::set_matrix_layout_attribute(
                l,
                A::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                &count as *const i32 as *const c_void,
                size_of::<i32>(),
            )?;
            lt::set_matrix_layout_attribute(
                l,
                A::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                &stride as *const i64 as *const c_void,
                size_of::<i64>(),
            )?;
        }
    }
    Ok(l)
}

impl PlannedGemm {
    /// Describes `gemm` on the buffers `ptrs` and asks cuBLASLt for its best algorithm.
    pub fn new(blas: &Blas, gemm: &Gemm, ptrs: GemmPtrs, tf32: bool) -> CudaResult<Self> {
        use sys::cublasLtMatmulDescAttributes_t as D;
        let compute = if tf32 {
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32
        } else {
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F
        };
        let desc = lt::create_matmul_desc(compute, sys::cudaDataType_t::CUDA_R_32F)?;
        let (ta, tb) = (i32::from(gemm.trans_a), i32::from(gemm.trans_b));
        let epilogue = match (ptrs.bias, gemm.relu) {
            (Some(_), true) => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_RELU_BIAS,
            (Some(_), false) => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS,
            (None, true) => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_RELU,
            (None, false) => sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_DEFAULT,
        };
        // SAFETY: `desc` is live; each value has the attribute's type.
        unsafe {
            set_desc(desc, D::CUBLASLT_MATMUL_DESC_TRANSA, &ta)?;
            set_desc(desc, D::CUBLASLT_MATMUL_DESC_TRANSB, &tb)?;
            set_desc(desc, D::CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue)?;
            if let Some(bias) = ptrs.bias {
                set_desc(desc, D::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias)?;
            }
        }
        let (sa, sb, sc) = gemm.batch_strides();
        let (ar, ac, al) = gemm.layout_a();
        let (br, bc, bl) = gemm.layout_b();
        let layouts = [
            layout(ar, ac, al, gemm.batch, sa)?,
            layout(br, bc, bl, gemm.batch, sb)?,
            layout(gemm.m, gemm.n, gemm.m as i64, gemm.batch, sc)?,
        ];
        let pref = lt::create_matmul_pref()?;
        let heuristic = unsafe {
            // SAFETY: every descriptor is live.
            lt::set_matmul_pref_attribute(
                pref,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                &WORKSPACE_BYTES as *const usize as *const c_void,
                size_of::<usize>(),
            )?;
            let h = lt::get_matmul_algo_heuristic(
                blas.handle,
                desc,
                layouts[0],
                layouts[1],
                layouts[2],
                layouts[2],
                pref,
            );
            let _ = lt::destroy_matmul_pref(pref);
            h?
        };
        Ok(PlannedGemm {
            desc,
            layouts,
            algo: heuristic.algo,
            ptrs,
        })
    }

    /// Queues the product on `stream`.
    pub fn launch(&self, blas: &Blas, stream: &CudaStream) -> CudaResult<()> {
        let (alpha, beta) = (1.0f32, 0.0f32);
        let p = self.ptrs;
        // SAFETY: the descriptors are live and the pointers lie in the arena, sized by the plan.
        unsafe {
            lt::matmul(
                blas.handle,
                self.desc,
                &alpha as *const f32 as *const c_void,
                &beta as *const f32 as *const c_void,
                p.a as *const c_void,
                self.layouts[0],
                p.b as *const c_void,
                self.layouts[1],
                p.c as *const c_void,
                self.layouts[2],
                p.c as *mut c_void,
                self.layouts[2],
                &self.algo,
                p.workspace as *mut c_void,
                WORKSPACE_BYTES,
                stream.cu_stream() as sys::cudaStream_t,
            )?;
        }
        Ok(())
    }
}

impl Drop for PlannedGemm {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed once.
        unsafe {
            for l in self.layouts {
                let _ = lt::destroy_matrix_layout(l);
            }
            let _ = lt::destroy_matmul_desc(self.desc);
        }
    }
}
