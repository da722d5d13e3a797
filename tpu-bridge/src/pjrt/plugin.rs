//! Loading a PJRT plugin: the shared library, its `GetPjrtApi` table, the version check and
//! `PJRT_Plugin_Initialize`; and the one place where a returned `PJRT_Error` becomes a
//! [`PjrtError`] (its message copied, the error destroyed).

use super::ffi::{self, Api};
use crate::error::{PjrtError, PjrtResult};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The environment variable naming the plugin when no path is given.
pub const PLUGIN_ENV: &str = "HASTEN_PJRT_PLUGIN";

/// The oldest API minor version whose function table holds every entry hasten calls.
pub const API_MINOR_MIN: i32 = 40;

/// A loaded and initialized PJRT plugin. The library stays loaded while any client, buffer or
/// executable made from it lives (they hold an `Arc` of it).
pub struct Plugin {
    api: *const Api,
    path: PathBuf,
    // Dropped last: `api` points into it.
    _library: libloading::Library,
}

// SAFETY: the PJRT C API is thread-safe (every object may be used from any thread), and the
// table `api` points to is immutable for the life of the library.
unsafe impl Send for Plugin {}
// SAFETY: as above.
unsafe impl Sync for Plugin {}

impl Plugin {
    /// Loads the plugin at `path`, or at `$HASTEN_PJRT_PLUGIN` when `path` is `None`.
    pub fn load(path: Option<&Path>) -> PjrtResult<Arc<Plugin>> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => std::env::var_os(PLUGIN_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .ok_or(PjrtError::NoPlugin)?,
        };
        if !path.is_file() {
            return Err(PjrtError::NotFound(path));
        }
        let not_plugin = |detail: String| PjrtError::NotAPlugin {
            path: path.clone(),
            detail,
        };
        // SAFETY: loading a library runs its initializers; a PJRT plugin's are benign, and
        // this is the documented way to use one.
        let library =
            unsafe { libloading::Library::new(&path) }.map_err(|e| not_plugin(e.to_string()))?;
        // SAFETY: `GetPjrtApi` has this signature in every PJRT plugin.
        let api = unsafe {
            let get: libloading::Symbol<ffi::GetPjrtApi> = library
                .get(b"GetPjrtApi\0")
                .map_err(|e| not_plugin(e.to_string()))?;
            get()
        };
        if api.is_null() {
            return Err(not_plugin("GetPjrtApi returned null".into()));
        }
        let plugin = Plugin {
            api,
            path,
            _library: library,
        };
        plugin.check_version()?;
        plugin.initialize()?;
        Ok(Arc::new(plugin))
    }

    /// The plugin file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The plugin's `(major, minor)` API version.
    pub fn version(&self) -> (i32, i32) {
        let v = &self.api().pjrt_api_version;
        (v.major_version, v.minor_version)
    }

    /// The function table.
    pub(crate) fn api(&self) -> &Api {
        // SAFETY: non-null (checked at load) and valid while the library is loaded.
        unsafe { &*self.api }
    }

    fn check_version(&self) -> PjrtResult<()> {
        let (major, minor) = self.version();
        check_version(&self.path, major, minor, self.api().struct_size)
    }

    fn initialize(&self) -> PjrtResult<()> {
        let mut args = ffi::PluginInitializeArgs {
            struct_size: ffi::size_of::<ffi::PluginInitializeArgs>(),
            extension_start: std::ptr::null_mut(),
        };
        let f = self.entry(self.api().plugin_initialize, "PJRT_Plugin_Initialize")?;
        // SAFETY: `args` is a valid, fully initialized argument struct.
        self.check("PJRT_Plugin_Initialize", unsafe { f(&mut args) })
    }

    /// A function from the table, or an error if the plugin left the entry empty.
    pub(crate) fn entry<F>(&self, f: Option<F>, name: &'static str) -> PjrtResult<F> {
        f.ok_or_else(|| PjrtError::Protocol(format!("the plugin does not implement {name}")))
    }

    /// Turns a returned error pointer into a result, copying the plugin's message and
    /// destroying the error.
    pub(crate) fn check(&self, call: &'static str, error: *mut ffi::PjrtError) -> PjrtResult<()> {
        if error.is_null() {
            return Ok(());
        }
        let api = self.api();
        let mut msg = ffi::ErrorMessageArgs {
            struct_size: ffi::size_of::<ffi::ErrorMessageArgs>(),
            extension_start: std::ptr::null_mut(),
            error,
            message: std::ptr::null(),
            message_size: 0,
        };
        let message = match api.error_message {
            Some(f) => {
                // SAFETY: `error` is a live error returned by the plugin.
                unsafe { f(&mut msg) };
                // SAFETY: the plugin returns `message_size` bytes at `message`, alive until
                // the error is destroyed below.
                unsafe { c_bytes(msg.message.cast(), msg.message_size) }
            }
            None => "(the plugin gives no message)".to_string(),
        };
        if let Some(destroy) = api.error_destroy {
            let mut args = ffi::ErrorDestroyArgs {
                struct_size: ffi::size_of::<ffi::ErrorDestroyArgs>(),
                extension_start: std::ptr::null_mut(),
                error,
            };
            // SAFETY: the error is live and destroyed exactly once, here.
            unsafe { destroy(&mut args) };
        }
        Err(PjrtError::Call { call, message })
    }
}

/// Accepts a plugin of API `major.minor` whose function table is `table_size` bytes long
/// only if these bindings can drive it: the same major version, a minor version at least
/// [`API_MINOR_MIN`], and a table holding every entry declared in `ffi::Api`.
fn check_version(path: &Path, major: i32, minor: i32, table_size: usize) -> PjrtResult<()> {
    let table_ok = table_size >= std::mem::size_of::<Api>();
    if major != ffi::API_MAJOR || minor < API_MINOR_MIN || !table_ok {
        return Err(PjrtError::IncompatibleVersion {
            path: path.to_path_buf(),
            found_major: major,
            found_minor: minor,
            want_major: ffi::API_MAJOR,
            want_minor_min: API_MINOR_MIN,
            want_minor: ffi::API_MINOR,
        });
    }
    Ok(())
}

/// A string the plugin returns as pointer and length (lossy UTF-8; empty when null).
///
/// # Safety
/// `ptr` must be null or valid for reads of `len` bytes.
pub(crate) unsafe fn c_bytes(ptr: *const u8, len: usize) -> String {
    if ptr.is_null() {
        return String::new();
    }
    String::from_utf8_lossy(std::slice::from_raw_parts(ptr, len)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: usize = std::mem::size_of::<Api>();

    #[test]
    fn the_declared_version_is_accepted() {
        assert!(check_version(Path::new("p.so"), ffi::API_MAJOR, ffi::API_MINOR, FULL).is_ok());
    }

    #[test]
    fn old_or_other_major_versions_are_refused_naming_both() {
        for (major, minor) in [(0, API_MINOR_MIN - 1), (1, 0), (1, 90)] {
            let e = check_version(Path::new("old.so"), major, minor, FULL).unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains(&format!("implements API {major}.{minor}")),
                "{text}"
            );
            assert!(
                text.contains(&format!("(its bindings follow 0.{})", ffi::API_MINOR)),
                "{text}"
            );
            assert!(text.contains("old.so"), "{text}");
        }
    }

    #[test]
    fn a_short_function_table_is_refused() {
        let e = check_version(Path::new("p.so"), 0, API_MINOR_MIN, FULL - 8).unwrap_err();
        assert!(matches!(e, PjrtError::IncompatibleVersion { .. }));
    }
}
