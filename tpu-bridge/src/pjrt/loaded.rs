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
    replicas: usize,
}

// SAFETY: PJRT executables may be run from any thread.
unsafe impl Send for LoadedExecutable {}
// SAFETY: as above.
unsafe impl Sync for LoadedExecutable {}

impl LoadedExecutable {
    pub(crate) fn new(
        client: Arc<Client>,
        raw: *mut ffi::PjrtLoadedExecutable,
        replicas: usize,
    ) -> Self {
        LoadedExecutable {
            client,
            raw,
            replicas,
        }
    }

    /// Runs the program once on each of its replicas' devices and waits for all of them.
    /// `args[r]` are replica r's arguments (on its device); `outputs` gives the dtype and dims
    /// of each result, in order (hasten's emitter knows them; the plugin is not asked). The
    /// results come back per replica.
    pub fn execute(
        &self,
        args: &[Vec<&Buffer>],
        outputs: &[(DType, Vec<usize>)],
    ) -> PjrtResult<Vec<Vec<Buffer>>> {
        if args.len() != self.replicas {
            return Err(PjrtError::Protocol(format!(
                "{} argument lists given to a program of {} replicas",
                args.len(),
                self.replicas
            )));
        }
        let p = self.client.raw_plugin();
        let f = p.entry(
            p.api().loaded_executable_execute,
            "PJRT_LoadedExecutable_Execute",
        )?;
        let arg_ptrs: Vec<Vec<*mut ffi::PjrtBuffer>> = args
            .iter()
            .map(|list| list.iter().map(|b| b.raw()).collect())
            .collect();
        let arg_lists: Vec<*const *mut ffi::PjrtBuffer> =
            arg_ptrs.iter().map(|l| l.as_ptr()).collect();
        let mut out_ptrs: Vec<Vec<*mut ffi::PjrtBuffer>> =
            vec![vec![null_mut(); outputs.len()]; self.replicas];
        let out_lists: Vec<*mut *mut ffi::PjrtBuffer> =
            out_ptrs.iter_mut().map(|l| l.as_mut_ptr()).collect();
        let mut done: Vec<*mut ffi::PjrtEvent> = vec![null_mut(); self.replicas];
        let mut options = execute_options();
        let mut call = ffi::LoadedExecutableExecuteArgs {
            struct_size: ffi::size_of::<ffi::LoadedExecutableExecuteArgs>(),
            extension_start: null_mut(),
            executable: self.raw,
            options: &mut options,
            argument_lists: arg_lists.as_ptr(),
            num_devices: self.replicas,
            num_args: arg_ptrs[0].len(),
            output_lists: out_lists.as_ptr(),
            device_complete_events: done.as_mut_ptr(),
            execute_device: null_mut(),
        };
        // SAFETY: every list outlives the call and has the lengths given; the argument
        // buffers are live (borrowed) and not donated.
        p.check("PJRT_LoadedExecutable_Execute", unsafe { f(&mut call) })?;
        // Own every output first, so that each is destroyed even if one is missing or
        // waiting fails.
        let owned: Vec<Vec<Buffer>> = out_ptrs
            .iter()
            .map(|list| self.own(list, outputs))
            .collect();
        // Own every event too, so that those after a failed wait are still destroyed.
        let events: Vec<Event> = done.iter().map(|&e| Event::new(p, e)).collect();
        for event in events {
            event.wait("PJRT_LoadedExecutable_Execute (completion)")?;
        }
        if owned.iter().any(|o| o.len() != outputs.len()) {
            return Err(PjrtError::Protocol(format!(
                "PJRT_LoadedExecutable_Execute gave fewer than {} outputs per replica",
                outputs.len()
            )));
        }
        Ok(owned)
    }

    /// The non-null result pointers of one replica as owned buffers.
    fn own(&self, raw: &[*mut ffi::PjrtBuffer], outputs: &[(DType, Vec<usize>)]) -> Vec<Buffer> {
        raw.iter()
            .zip(outputs)
            .filter(|(raw, _)| !raw.is_null())
            .map(|(&raw, (dtype, dims))| {
                Buffer::new(self.client.clone(), raw, *dtype, dims.clone())
            })
            .collect()
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
