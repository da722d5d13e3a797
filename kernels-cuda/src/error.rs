//! The errors of the CUDA backend, converted into [`hasten_tensor::Error`] at the `Backend`
//! boundary.

/// Everything that can go wrong while finding, compiling for or driving a GPU.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// `libcuda` could not be loaded: no NVIDIA driver on this machine.
    #[error("no CUDA driver found (libcuda.so.1 could not be loaded: {0}); the CUDA backend needs an NVIDIA GPU and its driver")]
    NoDriver(String),
    /// The driver loaded but offers fewer devices than the ordinal asks for.
    #[error("CUDA device {requested} requested, {present} present")]
    NoSuchDevice {
        /// The ordinal asked for.
        requested: usize,
        /// How many devices the driver reports.
        present: usize,
    },
    /// NVRTC could not be loaded, so no kernel can be compiled.
    #[error("NVRTC not found ({0}); install it with `python3 -m pip install --no-deps --target DIR nvidia-cuda-nvrtc==13.0.88` and set HASTEN_NVRTC=DIR/nvidia/cu13/lib/libnvrtc.so.13 (or put that folder on LD_LIBRARY_PATH)")]
    NoNvrtc(String),
    /// NVRTC rejected a generated kernel source.
    #[error("NVRTC could not compile the generated kernels ({arch}): {log}")]
    Compile {
        /// The target architecture.
        arch: String,
        /// The compiler's log.
        log: String,
    },
    /// A CUDA driver call failed.
    #[error("CUDA driver: {0}")]
    Driver(String),
    /// A cuBLASLt call failed.
    #[error("cuBLASLt: {0}")]
    Blas(String),
    /// The graph uses something this backend does not lower (yet).
    #[error("{0}")]
    Unsupported(String),
    /// The graph was rejected by a shared pass or check.
    #[error(transparent)]
    Graph(#[from] hasten_tensor::Error),
    /// The driver library panicked (caught at the boundary).
    #[error("the CUDA library panicked: {0}")]
    Panicked(String),
}

impl From<CudaError> for hasten_tensor::Error {
    fn from(e: CudaError) -> Self {
        match e {
            CudaError::Unsupported(what) => hasten_tensor::Error::Unsupported {
                backend: "cuda",
                what,
            },
            CudaError::Graph(e) => e,
            other => hasten_tensor::Error::Device {
                backend: "cuda",
                detail: other.to_string(),
            },
        }
    }
}

impl From<cudarc::driver::DriverError> for CudaError {
    fn from(e: cudarc::driver::DriverError) -> Self {
        CudaError::Driver(e.to_string())
    }
}

impl From<cudarc::cublaslt::result::CublasError> for CudaError {
    fn from(e: cudarc::cublaslt::result::CublasError) -> Self {
        CudaError::Blas(format!("{e:?}"))
    }
}

/// Result with [`CudaError`].
pub type CudaResult<T> = std::result::Result<T, CudaError>;
