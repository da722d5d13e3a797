//! The device arena: one allocation per compiled graph, made at compile and counted, so a
//! test can prove that a step allocates nothing.

use crate::error::CudaResult;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Device allocations this process has made through [`DeviceArena::new`].
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

/// Device allocations made so far by every arena of this process.
pub fn allocations() -> usize {
    ALLOCATIONS.load(Ordering::SeqCst)
}

/// One device allocation and its base address.
#[derive(Debug)]
pub struct DeviceArena {
    _memory: CudaSlice<u8>,
    /// The first byte's device address.
    pub base: u64,
    /// Size in bytes.
    pub bytes: usize,
}

impl DeviceArena {
    /// Allocates `bytes` (at least one) of zeroed device memory.
    pub fn new(stream: &std::sync::Arc<CudaStream>, bytes: usize) -> CudaResult<Self> {
        let memory = stream.alloc_zeros::<u8>(bytes.max(1))?;
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        let base = {
            let (base, _guard) = memory.device_ptr(stream);
            base
        };
        Ok(DeviceArena {
            base,
            bytes,
            _memory: memory,
        })
    }

    /// The device address `offset` bytes in.
    pub fn at(&self, offset: usize) -> u64 {
        debug_assert!(offset <= self.bytes);
        self.base + offset as u64
    }
}
