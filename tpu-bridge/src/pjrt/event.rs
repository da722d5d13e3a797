//! `PJRT_Event`: awaited once, destroyed exactly once.

use super::ffi;
use super::plugin::Plugin;
use crate::error::PjrtResult;

/// An owned event the plugin returned.
pub(crate) struct Event<'p> {
    plugin: &'p Plugin,
    raw: *mut ffi::PjrtEvent,
}

impl<'p> Event<'p> {
    /// Takes ownership of `raw` (which may be null: there is then nothing to wait for).
    pub(crate) fn new(plugin: &'p Plugin, raw: *mut ffi::PjrtEvent) -> Self {
        Event { plugin, raw }
    }

    /// Blocks until the event is ready; returns its error, if any. The event is destroyed.
    pub(crate) fn wait(self, what: &'static str) -> PjrtResult<()> {
        if self.raw.is_null() {
            return Ok(());
        }
        let f = self
            .plugin
            .entry(self.plugin.api().event_await, "PJRT_Event_Await")?;
        let mut args = event_args(self.raw);
        // SAFETY: the event is live (owned by `self`).
        let err = unsafe { f(&mut args) };
        self.plugin.check(what, err)
    }
}

fn event_args(event: *mut ffi::PjrtEvent) -> ffi::EventArgs {
    ffi::EventArgs {
        struct_size: ffi::size_of::<ffi::EventArgs>(),
        extension_start: std::ptr::null_mut(),
        event,
    }
}

impl Drop for Event<'_> {
    fn drop(&mut self) {
        if self.raw.is_null() {
            return;
        }
        if let Some(f) = self.plugin.api().event_destroy {
            let mut args = event_args(self.raw);
            // SAFETY: the event is live and destroyed only here.
            let err = unsafe { f(&mut args) };
            // A failed destroy leaves nothing to recover; its error is freed.
            let _ = self.plugin.check("PJRT_Event_Destroy", err);
        }
    }
}
