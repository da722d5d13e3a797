//! `#[repr(C)]` declarations of the part of the PJRT C API (`pjrt_c_api.h`) that hasten
//! calls: written from the header as a specification, covering only what is used.
//!
//! Every argument struct starts with `struct_size` (the size of the struct as this side
//! knows it, which the plugin uses to tell which fields exist) and an extension chain that
//! hasten leaves empty. [`Api`] is the table of function pointers `GetPjrtApi` returns; its
//! fields are in the header's order, and entries hasten does not call are [`Slot`]s.

#![allow(missing_docs)]

use std::ffi::{c_char, c_int, c_void};

/// The API major version these declarations follow (incompatible changes bump it).
pub const API_MAJOR: i32 = 0;
/// The API minor version these declarations were written against.
pub const API_MINOR: i32 = 81;

/// An opaque object owned by the plugin.
macro_rules! opaque {
    ($($name:ident),*) => {$(
        #[repr(C)]
        pub struct $name {
            _private: [u8; 0],
        }
    )*};
}
opaque!(
    PjrtError,
    PjrtClient,
    PjrtDevice,
    PjrtDeviceDescription,
    PjrtLoadedExecutable,
    PjrtBuffer,
    PjrtEvent,
    ExtensionBase
);

/// A function-table entry hasten never calls (only its size and position matter).
pub type Slot = Option<unsafe extern "C" fn()>;
/// A call that reports failure as an owned error (null on success).
pub type Call<A> = Option<unsafe extern "C" fn(args: *mut A) -> *mut PjrtError>;
/// A call that cannot fail.
pub type VoidCall<A> = Option<unsafe extern "C" fn(args: *mut A)>;

/// `PJRT_Buffer_Type`: element types (only the ones hasten moves are named).
pub mod buffer_type {
    pub const PRED: i32 = 1;
    pub const S32: i32 = 4;
    pub const U8: i32 = 6;
    pub const F32: i32 = 11;
}

/// `PJRT_HostBufferSemantics_kImmutableOnlyDuringCall`: the plugin copies the host data
/// before `BufferFromHostBuffer` returns.
pub const IMMUTABLE_ONLY_DURING_CALL: c_int = 0;

/// The size of an argument struct, as its `struct_size` field wants it.
pub const fn size_of<T>() -> usize {
    std::mem::size_of::<T>()
}

#[repr(C)]
pub struct ApiVersion {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub major_version: c_int,
    pub minor_version: c_int,
}

#[repr(C)]
pub struct ErrorDestroyArgs {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub error: *mut PjrtError,
}

#[repr(C)]
pub struct ErrorMessageArgs {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub error: *const PjrtError,
    pub message: *const c_char,
    pub message_size: usize,
}

#[repr(C)]
pub struct PluginInitializeArgs {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
}

/// The arguments of every call that takes one event (destroy, await).
#[repr(C)]
pub struct EventArgs {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub event: *mut PjrtEvent,
}

/// `PJRT_NamedValue_kInt64`.
pub const NAMED_VALUE_INT64: c_int = 1;

/// `PJRT_NamedValue`: a key and a value (here only the 64-bit integer member of its union,
/// which is as large as the union).
#[repr(C)]
pub struct NamedValue {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub name: *const c_char,
    pub name_size: usize,
    pub type_: c_int,
    pub int64_value: i64,
    pub value_size: usize,
}

#[repr(C)]
pub struct ClientCreateArgs {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub create_options: *const c_void,
    pub num_options: usize,
    pub kv_get_callback: *const c_void,
    pub kv_get_user_arg: *mut c_void,
    pub kv_put_callback: *const c_void,
    pub kv_put_user_arg: *mut c_void,
    pub client: *mut PjrtClient,
    pub kv_try_get_callback: *const c_void,
    pub kv_try_get_user_arg: *mut c_void,
}

#[repr(C)]
pub struct ClientDestroyArgs {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub client: *mut PjrtClient,
}

#[repr(C)]
pub struct ClientPlatformNameArgs {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub client: *mut PjrtClient,
    pub platform_name: *const c_char,
    pub platform_name_size: usize,
}

#[repr(C)]
pub struct ClientAddressableDevicesArgs {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub client: *mut PjrtClient,
    pub addressable_devices: *const *mut PjrtDevice,
    pub num_addressable_devices: usize,
}

#[repr(C)]
pub struct Program {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub code: *mut c_char,
    pub code_size: usize,
    pub format: *const c_char,
    pub format_size: usize,
}

#[repr(C)]
pub struct ClientCompileArgs {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub client: *mut PjrtClient,
    pub program: *const Program,
    pub compile_options: *const c_char,
    pub compile_options_size: usize,
    pub executable: *mut PjrtLoadedExecutable,
}

#[repr(C)]
pub struct BufferFromHostBufferArgs {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub client: *mut PjrtClient,
    pub data: *const c_void,
    pub type_: c_int,
    pub dims: *const i64,
    pub num_dims: usize,
    pub byte_strides: *const i64,
    pub num_byte_strides: usize,
    pub host_buffer_semantics: c_int,
    pub device: *mut PjrtDevice,
    pub memory: *mut c_void,
    pub device_layout: *mut c_void,
    pub done_with_host_buffer: *mut PjrtEvent,
    pub buffer: *mut PjrtBuffer,
}

#[repr(C)]
pub struct DeviceGetDescriptionArgs {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub device: *mut PjrtDevice,
    pub device_description: *mut PjrtDeviceDescription,
}

#[repr(C)]
pub struct DeviceDescriptionKindArgs {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub device_description: *mut PjrtDeviceDescription,
    pub device_kind: *const c_char,
    pub device_kind_size: usize,
}

#[repr(C)]
pub struct LoadedExecutableDestroyArgs {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub executable: *mut PjrtLoadedExecutable,
}

#[repr(C)]
pub struct ExecuteOptions {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub send_callbacks: *mut *mut c_void,
    pub recv_callbacks: *mut *mut c_void,
    pub num_send_ops: usize,
    pub num_recv_ops: usize,
    pub launch_id: c_int,
    pub non_donatable_input_indices: *const i64,
    pub num_non_donatable_input_indices: usize,
    pub context: *mut c_void,
    pub call_location: *const c_char,
    pub num_tasks: usize,
    pub task_ids: *mut c_int,
    pub incarnation_ids: *mut i64,
}

#[repr(C)]
pub struct LoadedExecutableExecuteArgs {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub executable: *mut PjrtLoadedExecutable,
    pub options: *mut ExecuteOptions,
    pub argument_lists: *const *const *mut PjrtBuffer,
    pub num_devices: usize,
    pub num_args: usize,
    pub output_lists: *const *mut *mut PjrtBuffer,
    pub device_complete_events: *mut *mut PjrtEvent,
    pub execute_device: *mut PjrtDevice,
}

#[repr(C)]
pub struct BufferDestroyArgs {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub buffer: *mut PjrtBuffer,
}

#[repr(C)]
pub struct BufferToHostBufferArgs {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub src: *mut PjrtBuffer,
    pub host_layout: *mut c_void,
    pub dst: *mut c_void,
    pub dst_size: usize,
    pub event: *mut PjrtEvent,
}

/// `PJRT_Api`, up to `PJRT_Buffer_ToHostBuffer` (the last entry hasten calls); a plugin's
/// table is at least this long when its `struct_size` says so.
#[repr(C)]
pub struct Api {
    pub struct_size: usize,
    pub extension_start: *mut ExtensionBase,
    pub pjrt_api_version: ApiVersion,

    pub error_destroy: VoidCall<ErrorDestroyArgs>,
    pub error_message: VoidCall<ErrorMessageArgs>,
    pub error_get_code: Slot,

    pub plugin_initialize: Call<PluginInitializeArgs>,
    pub plugin_attributes: Slot,

    pub event_destroy: Call<EventArgs>,
    pub event_is_ready: Slot,
    pub event_error: Slot,
    pub event_await: Call<EventArgs>,
    pub event_on_ready: Slot,

    pub client_create: Call<ClientCreateArgs>,
    pub client_destroy: Call<ClientDestroyArgs>,
    pub client_platform_name: Call<ClientPlatformNameArgs>,
    pub client_process_index: Slot,
    pub client_platform_version: Slot,
    pub client_devices: Slot,
    pub client_addressable_devices: Call<ClientAddressableDevicesArgs>,
    pub client_lookup_device: Slot,
    pub client_lookup_addressable_device: Slot,
    pub client_addressable_memories: Slot,
    pub client_compile: Call<ClientCompileArgs>,
    pub client_default_device_assignment: Slot,
    pub client_buffer_from_host_buffer: Call<BufferFromHostBufferArgs>,

    pub device_description_id: Slot,
    pub device_description_process_index: Slot,
    pub device_description_attributes: Slot,
    pub device_description_kind: Call<DeviceDescriptionKindArgs>,
    pub device_description_debug_string: Slot,
    pub device_description_to_string: Slot,

    pub device_get_description: Call<DeviceGetDescriptionArgs>,
    pub device_is_addressable: Slot,
    pub device_local_hardware_id: Slot,
    pub device_addressable_memories: Slot,
    pub device_default_memory: Slot,
    pub device_memory_stats: Slot,

    pub memory_slots: [Slot; 5],

    pub executable_slots: [Slot; 10],

    pub loaded_executable_destroy: Call<LoadedExecutableDestroyArgs>,
    pub loaded_executable_get_executable: Slot,
    pub loaded_executable_addressable_devices: Slot,
    pub loaded_executable_delete: Slot,
    pub loaded_executable_is_deleted: Slot,
    pub loaded_executable_execute: Call<LoadedExecutableExecuteArgs>,
    pub executable_deserialize_and_load: Slot,
    pub loaded_executable_fingerprint: Slot,

    pub buffer_destroy: Call<BufferDestroyArgs>,
    pub buffer_slots: [Slot; 11],
    pub buffer_to_host_buffer: Call<BufferToHostBufferArgs>,
}

/// The entry point every PJRT plugin exports.
pub type GetPjrtApi = unsafe extern "C" fn() -> *const Api;
