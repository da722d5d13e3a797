//! The PJRT binding: a plugin loaded with `libloading`, its client, device buffers, compiled
//! executables and events, each an owning Rust value destroyed exactly once.

mod buffer;
mod client;
mod event;
pub(crate) mod ffi;
mod loaded;
mod plugin;

pub use buffer::Buffer;
pub use client::Client;
pub use loaded::LoadedExecutable;
pub use plugin::{Plugin, API_MINOR_MIN, PLUGIN_ENV};
