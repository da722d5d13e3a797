//! `PJRT_LoadedExecutable`: a compiled program on one device, run with device buffers.

use super::buffer::Buffer;
use super::client::Client;
use super::event::Event;
use super::ffi;
use crate::error::{PjrtError, PjrtResult};
use hasten_tensor::DType;
use std::ptr::null_mut;
use std::sync::Arc;

/// An owned compiled program, destroyed exactly once on drop.
pub struct LoadedExecutable {
    client: Arc<Client>,
    raw: *mut ffi::PjrtLoadedExecutable,
}

// SAFETY: PJRT executables may be run from any thread.
unsafe impl Send for LoadedExecutable {}
// SAFETY: as above.
unsafe impl Sync for LoadedExecutable {}

impl LoadedExecutable {
    pub(crate) fn new(client: Arc<Client>, raw: *mut ffi::PjrtLoadedExecutable) -> Self {
        LoadedExecutable { client, raw }
    }

    /// Runs the program once on device 0 and waits for it. `outputs` gives the dtype and dims
    /// of each result, in order (hasten's emitter knows them; the plugin is not asked).
    pub fn execute(
        &self,
        args: &[&Buffer],
        outputs: &[(DType, Vec<usize>)],
    ) -> PjrtResult<Vec<Buffer>> {
        let p = self.client.raw_plugin();
        let f = p.entry(
            p.api().loaded_executable_execute,
            "PJRT_LoadedExecutable_Execute",
        )?;
        let arg_ptrs: Vec<*mut ffi::PjrtBuffer> = args.iter().map(|b| b.raw()).collect();
        let arg_lists = [arg_ptrs.as_ptr()];
        let mut out_ptrs: Vec<*mut ffi::PjrtBuffer> = vec![null_mut(); outputs.len()];
        let out_lists = [out_ptrs.as_mut_ptr()];
        let mut done: [*mut ffi::PjrtEvent; 1] = [null_mut()];
        let mut options = execute_options();
        let mut call = ffi::LoadedExecutableExecuteArgs {
            struct_size: ffi::size_of::<ffi::LoadedExecutableExecuteArgs>(),
            extension_start: null_mut(),
            executable: self.raw,
            options: &mut options,
            argument_lists: arg_lists.as_ptr(),
            num_devices: 1,
            num_args: arg_ptrs.len(),
            output_lists: out_lists.as_ptr(),
            device_complete_events: done.as_mut_ptr(),
            execute_device: null_mut(),
        };
        // SAFETY: every list outlives the call and has the lengths given; the argument
        // buffers are live (borrowed) and not donated.
        p.check("PJRT_LoadedExecutable_Execute", unsafe { f(&mut call) })?;
        // Own every output first, so that each is destroyed even if one is missing or
        // waiting fails.
        let owned: Vec<Buffer> = out_ptrs
            .iter()
            .zip(outputs)
            .filter(|(raw, _)| !raw.is_null())
            .map(|(&raw, (dtype, dims))| {
                Buffer::new(self.client.clone(), raw, *dtype, dims.clone())
            })
            .collect();
        Event::new(p, done[0]).wait("PJRT_LoadedExecutable_Execute (completion)")?;
        if owned.len() != outputs.len() {
            return Err(PjrtError::Protocol(format!(
                "PJRT_LoadedExecutable_Execute gave {} of {} outputs",
                owned.len(),
                outputs.len()
            )));
        }
        Ok(owned)
    }
}

fn execute_options() -> ffi::ExecuteOptions {
    ffi::ExecuteOptions {
        struct_size: ffi::size_of::<ffi::ExecuteOptions>(),
        extension_start: null_mut(),
        send_callbacks: null_mut(),
        recv_callbacks: null_mut(),
        num_send_ops: 0,
        num_recv_ops: 0,
        launch_id: 0,
        non_donatable_input_indices: std::ptr::null(),
        num_non_donatable_input_indices: 0,
        context: null_mut(),
        call_location: std::ptr::null(),
        num_tasks: 0,
        task_ids: null_mut(),
        incarnation_ids: null_mut(),
    }
}

impl Drop for LoadedExecutable {
    fn drop(&mut self) {
        let p = self.client.raw_plugin();
        if let Some(f) = p.api().loaded_executable_destroy {
            let mut args = ffi::LoadedExecutableDestroyArgs {
                struct_size: ffi::size_of::<ffi::LoadedExecutableDestroyArgs>(),
                extension_start: null_mut(),
                executable: self.raw,
            };
            // SAFETY: the executable is live and destroyed exactly once, here.
            let err = unsafe { f(&mut args) };
            let _ = p.check("PJRT_LoadedExecutable_Destroy", err);
        }
    }
}
