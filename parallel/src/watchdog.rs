//! A watchdog for collective steps across processes: a rank that dies or hangs leaves the
//! others blocked in an all-reduce forever, so a step that runs past the timeout ends the
//! whole job (`MPI_Abort`) with a message instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When the current step began (milliseconds after `origin`, plus one), or 0 between steps.
#[derive(Debug)]
pub(crate) struct Watchdog {
    origin: Instant,
    began: AtomicU64,
}

impl Watchdog {
    /// Starts a thread that calls `abort` (which must not return) once a step has run longer
    /// than `timeout`.
    pub fn start(timeout: Duration, abort: impl Fn(Duration) + Send + 'static) -> Arc<Self> {
        let dog = Arc::new(Watchdog {
            origin: Instant::now(),
            began: AtomicU64::new(0),
        });
        let watched = Arc::clone(&dog);
        let tick = (timeout / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
        std::thread::Builder::new()
            .name("hasten-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(tick);
                if let Some(running) = watched.running() {
                    if running > timeout {
                        abort(running);
                    }
                }
            })
            .ok();
        dog
    }

    /// Marks the start of a collective step.
    pub fn begin(&self) {
        let now = self.origin.elapsed().as_millis() as u64 + 1;
        self.began.store(now, Ordering::Release);
    }

    /// Marks its end.
    pub fn end(&self) {
        self.began.store(0, Ordering::Release);
    }

    /// How long the current step has run, if one is running.
    fn running(&self) -> Option<Duration> {
        match self.began.load(Ordering::Acquire) {
            0 => None,
            began => {
                let now = self.origin.elapsed().as_millis() as u64 + 1;
                Some(Duration::from_millis(now.saturating_sub(began)))
            }
        }
    }
}
