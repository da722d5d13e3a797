//! `PJRT_Client`: created once per backend; lists devices, compiles programs and makes
//! device buffers from host data.

use super::buffer::Buffer;
use super::event::Event;
use super::ffi;
use super::loaded::LoadedExecutable;
use super::plugin::{c_bytes, Plugin};
use crate::error::{PjrtError, PjrtResult};
use hasten_tensor::DType;
use std::ptr::null_mut;
use std::sync::Arc;

/// A serialized `CompileOptionsProto` asking for `replicas` replicas (1 to 127) and one
/// partition: field 3 (`executable_build_options`), holding field 4 (`num_replicas`) and
/// field 5 (`num_partitions = 1`). Plugins abort on empty options.
fn compile_options(replicas: usize) -> PjrtResult<[u8; 6]> {
    match u8::try_from(replicas) {
        Ok(n @ 1..=127) => Ok([0x1a, 0x04, 0x20, n, 0x28, 0x01]),
        _ => Err(PjrtError::Protocol(format!(
            "{replicas} replicas requested; a step runs on 1 to 127"
        ))),
    }
}

/// A client of a plugin, with its addressable devices. Destroyed when the last buffer and
/// executable made from it are gone (they hold an `Arc`).
pub struct Client {
    plugin: Arc<Plugin>,
    raw: *mut ffi::PjrtClient,
    devices: Vec<*mut ffi::PjrtDevice>,
}

// SAFETY: PJRT clients are thread-safe; the device pointers are owned by the client.
unsafe impl Send for Client {}
// SAFETY: as above.
unsafe impl Sync for Client {}

impl Client {
    /// Creates a client of `plugin` with default options.
    pub fn new(plugin: Arc<Plugin>) -> PjrtResult<Arc<Client>> {
        Self::with_options(plugin, &[])
    }

    /// Creates a client of `plugin` with integer create options (such as the CPU plugin's
    /// `cpu_device_count`).
    pub fn with_options(plugin: Arc<Plugin>, options: &[(&str, i64)]) -> PjrtResult<Arc<Client>> {
        let f = plugin.entry(plugin.api().client_create, "PJRT_Client_Create")?;
        let named: Vec<ffi::NamedValue> = options
            .iter()
            .map(|(name, value)| ffi::NamedValue {
                struct_size: ffi::size_of::<ffi::NamedValue>(),
                extension_start: null_mut(),
                name: name.as_ptr().cast(),
                name_size: name.len(),
                type_: ffi::NAMED_VALUE_INT64,
                int64_value: *value,
                value_size: 1,
            })
            .collect();
        let mut args = ffi::ClientCreateArgs {
            struct_size: ffi::size_of::<ffi::ClientCreateArgs>(),
            extension_start: null_mut(),
            create_options: named.as_ptr().cast(),
            num_options: named.len(),
            kv_get_callback: std::ptr::null(),
            kv_get_user_arg: null_mut(),
            kv_put_callback: std::ptr::null(),
            kv_put_user_arg: null_mut(),
            client: null_mut(),
            kv_try_get_callback: std::ptr::null(),
            kv_try_get_user_arg: null_mut(),
        };
        // SAFETY: `args` is fully initialized; the options and their names outlive the call.
        plugin.check("PJRT_Client_Create", unsafe { f(&mut args) })?;
        if args.client.is_null() {
            return Err(PjrtError::Protocol(
                "PJRT_Client_Create gave no client".into(),
            ));
        }
        let mut client = Client {
            plugin,
            raw: args.client,
            devices: Vec::new(),
        };
        client.devices = client.addressable_devices()?;
        if client.devices.is_empty() {
            return Err(PjrtError::Protocol(
                "the plugin's client has no addressable device".into(),
            ));
        }
        Ok(Arc::new(client))
    }

    /// The plugin this client belongs to.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// Number of addressable devices.
    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    fn addressable_devices(&self) -> PjrtResult<Vec<*mut ffi::PjrtDevice>> {
        let p = &self.plugin;
        let f = p.entry(
            p.api().client_addressable_devices,
            "PJRT_Client_AddressableDevices",
        )?;
        let mut args = ffi::ClientAddressableDevicesArgs {
            struct_size: ffi::size_of::<ffi::ClientAddressableDevicesArgs>(),
            extension_start: null_mut(),
            client: self.raw,
            addressable_devices: std::ptr::null(),
            num_addressable_devices: 0,
        };
        // SAFETY: the client is live; `args` is fully initialized.
        p.check("PJRT_Client_AddressableDevices", unsafe { f(&mut args) })?;
        if args.addressable_devices.is_null() {
            return Ok(Vec::new());
        }
        // SAFETY: the plugin returns `num_addressable_devices` pointers owned by the client.
        let list = unsafe {
            std::slice::from_raw_parts(args.addressable_devices, args.num_addressable_devices)
        };
        Ok(list.to_vec())
    }

    /// The platform's name ("cpu", "cuda", "tpu", …).
    pub fn platform_name(&self) -> PjrtResult<String> {
        let p = &self.plugin;
        let f = p.entry(p.api().client_platform_name, "PJRT_Client_PlatformName")?;
        let mut args = ffi::ClientPlatformNameArgs {
            struct_size: ffi::size_of::<ffi::ClientPlatformNameArgs>(),
            extension_start: null_mut(),
            client: self.raw,
            platform_name: std::ptr::null(),
            platform_name_size: 0,
        };
        // SAFETY: the client is live.
        p.check("PJRT_Client_PlatformName", unsafe { f(&mut args) })?;
        // SAFETY: the name is owned by the client, `platform_name_size` bytes long.
        Ok(unsafe { c_bytes(args.platform_name.cast(), args.platform_name_size) })
    }

    /// The kind of addressable device `index` ("cpu", "TPU v4", "NVIDIA H100 …").
    pub fn device_kind(&self, index: usize) -> PjrtResult<String> {
        let device = *self.devices.get(index).ok_or_else(|| {
            PjrtError::Protocol(format!(
                "device {index} requested, the client has {}",
                self.devices.len()
            ))
        })?;
        let p = &self.plugin;
        let get = p.entry(p.api().device_get_description, "PJRT_Device_GetDescription")?;
        let mut d = ffi::DeviceGetDescriptionArgs {
            struct_size: ffi::size_of::<ffi::DeviceGetDescriptionArgs>(),
            extension_start: null_mut(),
            device,
            device_description: null_mut(),
        };
        // SAFETY: the device belongs to the live client.
        p.check("PJRT_Device_GetDescription", unsafe { get(&mut d) })?;
        let kind = p.entry(
            p.api().device_description_kind,
            "PJRT_DeviceDescription_Kind",
        )?;
        let mut k = ffi::DeviceDescriptionKindArgs {
            struct_size: ffi::size_of::<ffi::DeviceDescriptionKindArgs>(),
            extension_start: null_mut(),
            device_description: d.device_description,
            device_kind: std::ptr::null(),
            device_kind_size: 0,
        };
        // SAFETY: the description is owned by the device.
        p.check("PJRT_DeviceDescription_Kind", unsafe { kind(&mut k) })?;
        // SAFETY: the kind string is owned by the device, `device_kind_size` bytes long.
        Ok(unsafe { c_bytes(k.device_kind.cast(), k.device_kind_size) })
    }

    /// Compiles a StableHLO program given as MLIR text, for `replicas` devices (the first
    /// ones), each running it on its own arguments.
    pub fn compile(self: &Arc<Self>, mlir: &str, replicas: usize) -> PjrtResult<LoadedExecutable> {
        if replicas > self.devices.len() {
            return Err(PjrtError::Protocol(format!(
                "{replicas} replicas requested, the plugin's client has {} device(s)",
                self.devices.len()
            )));
        }
        let options = compile_options(replicas)?;
        let p = &self.plugin;
        let f = p.entry(p.api().client_compile, "PJRT_Client_Compile")?;
        let format = b"mlir";
        // The CPU plugin's parser reads past `code_size` to a NUL (measured: a program
        // "garbage" was reported as "garbageunsafe"), so the text is passed NUL-terminated.
        let mut code = Vec::with_capacity(mlir.len() + 1);
        code.extend_from_slice(mlir.as_bytes());
        code.push(0);
        let program = ffi::Program {
            struct_size: ffi::size_of::<ffi::Program>(),
            extension_start: null_mut(),
            code: code.as_mut_ptr().cast(),
            code_size: mlir.len(),
            format: format.as_ptr().cast(),
            format_size: format.len(),
        };
        let mut args = ffi::ClientCompileArgs {
            struct_size: ffi::size_of::<ffi::ClientCompileArgs>(),
            extension_start: null_mut(),
            client: self.raw,
            program: &program,
            compile_options: options.as_ptr().cast(),
            compile_options_size: options.len(),
            executable: null_mut(),
        };
        // SAFETY: the program text and options outlive the call; the plugin only reads them.
        p.check("PJRT_Client_Compile", unsafe { f(&mut args) })?;
        if args.executable.is_null() {
            return Err(PjrtError::Protocol(
                "PJRT_Client_Compile gave no executable".into(),
            ));
        }
        Ok(LoadedExecutable::new(
            self.clone(),
            args.executable,
            replicas,
        ))
    }

    /// Copies host bytes into a new buffer on addressable device `device`; `bytes` must hold
    /// exactly `dims`' element count of `dtype` (checked here: the plugin checks only byte
    /// sizes).
    pub fn buffer_from_host(
        self: &Arc<Self>,
        bytes: &[u8],
        dtype: DType,
        dims: &[usize],
        device: usize,
    ) -> PjrtResult<Buffer> {
        let device = *self.devices.get(device).ok_or_else(|| {
            PjrtError::Protocol(format!(
                "device {device} requested, the client has {}",
                self.devices.len()
            ))
        })?;
        let want = dims.iter().product::<usize>() * dtype.size_in_bytes();
        if bytes.len() != want {
            return Err(PjrtError::Protocol(format!(
                "{} bytes given for a {dtype} buffer of dims {dims:?} ({want} bytes)",
                bytes.len()
            )));
        }
        let p = &self.plugin;
        let f = p.entry(
            p.api().client_buffer_from_host_buffer,
            "PJRT_Client_BufferFromHostBuffer",
        )?;
        let dims64: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        let mut args = ffi::BufferFromHostBufferArgs {
            struct_size: ffi::size_of::<ffi::BufferFromHostBufferArgs>(),
            extension_start: null_mut(),
            client: self.raw,
            data: bytes.as_ptr().cast(),
            type_: buffer_type(dtype)?,
            dims: dims64.as_ptr(),
            num_dims: dims64.len(),
            byte_strides: std::ptr::null(),
            num_byte_strides: 0,
            host_buffer_semantics: ffi::IMMUTABLE_ONLY_DURING_CALL,
            device,
            memory: null_mut(),
            device_layout: null_mut(),
            done_with_host_buffer: null_mut(),
            buffer: null_mut(),
        };
        // SAFETY: `bytes` and `dims64` outlive the call; the data is only read during it.
        p.check("PJRT_Client_BufferFromHostBuffer", unsafe { f(&mut args) })?;
        let done = Event::new(p, args.done_with_host_buffer);
        if args.buffer.is_null() {
            return Err(PjrtError::Protocol(
                "BufferFromHostBuffer gave no buffer".into(),
            ));
        }
        let buffer = Buffer::new(self.clone(), args.buffer, dtype, dims.to_vec());
        done.wait("PJRT_Client_BufferFromHostBuffer (transfer)")?;
        Ok(buffer)
    }

    pub(crate) fn raw_plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }
}

/// The PJRT element type of a dtype hasten moves.
fn buffer_type(dtype: DType) -> PjrtResult<i32> {
    Ok(match dtype {
        DType::F32 => ffi::buffer_type::F32,
        DType::I32 => ffi::buffer_type::S32,
        DType::U8 => ffi::buffer_type::U8,
        DType::Bool => ffi::buffer_type::PRED,
        other => {
            return Err(PjrtError::Protocol(format!(
                "hasten moves no {other} buffers to PJRT devices"
            )))
        }
    })
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(f) = self.plugin.api().client_destroy {
            let mut args = ffi::ClientDestroyArgs {
                struct_size: ffi::size_of::<ffi::ClientDestroyArgs>(),
                extension_start: null_mut(),
                client: self.raw,
            };
            // SAFETY: the client is live and destroyed exactly once, here; every buffer and
            // executable made from it is gone (they hold an `Arc` of it).
            let err = unsafe { f(&mut args) };
            let _ = self.plugin.check("PJRT_Client_Destroy", err);
        }
    }
}
