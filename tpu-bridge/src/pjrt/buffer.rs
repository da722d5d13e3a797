//! `PJRT_Buffer`: a device array with the dtype and dims hasten gave it.

use super::client::Client;
use super::event::Event;
use super::ffi;
use crate::error::{PjrtError, PjrtResult};
use hasten_tensor::DType;
use std::sync::Arc;

/// An owned device buffer, destroyed exactly once on drop.
pub struct Buffer {
    client: Arc<Client>,
    raw: *mut ffi::PjrtBuffer,
    dtype: DType,
    dims: Vec<usize>,
}

// SAFETY: PJRT buffers may be used from any thread.
unsafe impl Send for Buffer {}
// SAFETY: as above; `&Buffer` methods only read.
unsafe impl Sync for Buffer {}

impl Buffer {
    /// Takes ownership of a buffer the plugin returned, with the type hasten knows it has.
    pub(crate) fn new(
        client: Arc<Client>,
        raw: *mut ffi::PjrtBuffer,
        dtype: DType,
        dims: Vec<usize>,
    ) -> Self {
        Buffer {
            client,
            raw,
            dtype,
            dims,
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The dims.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// Size in bytes of the dense host copy.
    pub fn byte_len(&self) -> usize {
        self.dims.iter().product::<usize>() * self.dtype.size_in_bytes()
    }

    pub(crate) fn raw(&self) -> *mut ffi::PjrtBuffer {
        self.raw
    }

    /// Copies the buffer into `dst` (exactly [`Buffer::byte_len`] bytes) and waits for it.
    pub fn to_host(&self, dst: &mut [u8]) -> PjrtResult<()> {
        if dst.len() != self.byte_len() {
            return Err(PjrtError::Protocol(format!(
                "a {} buffer of dims {:?} needs {} host bytes, {} given",
                self.dtype,
                self.dims,
                self.byte_len(),
                dst.len()
            )));
        }
        if dst.is_empty() {
            return Ok(());
        }
        let p = self.client.raw_plugin();
        let f = p.entry(p.api().buffer_to_host_buffer, "PJRT_Buffer_ToHostBuffer")?;
        let mut args = ffi::BufferToHostBufferArgs {
            struct_size: ffi::size_of::<ffi::BufferToHostBufferArgs>(),
            extension_start: std::ptr::null_mut(),
            src: self.raw,
            host_layout: std::ptr::null_mut(),
            dst: dst.as_mut_ptr().cast(),
            dst_size: dst.len(),
            event: std::ptr::null_mut(),
        };
        // SAFETY: `dst` stays borrowed until the event below has been awaited.
        p.check("PJRT_Buffer_ToHostBuffer", unsafe { f(&mut args) })?;
        Event::new(p, args.event).wait("PJRT_Buffer_ToHostBuffer (transfer)")
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let p = self.client.raw_plugin();
        if let Some(f) = p.api().buffer_destroy {
            let mut args = ffi::BufferDestroyArgs {
                struct_size: ffi::size_of::<ffi::BufferDestroyArgs>(),
                extension_start: std::ptr::null_mut(),
                buffer: self.raw,
            };
            // SAFETY: the buffer is live and destroyed exactly once, here.
            let err = unsafe { f(&mut args) };
            let _ = p.check("PJRT_Buffer_Destroy", err);
        }
    }
}
