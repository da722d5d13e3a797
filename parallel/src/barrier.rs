//! A reusable barrier that can be broken: a rank that fails breaks it, and every rank waiting
//! on it (or arriving later) gets an error instead of waiting forever.

use hasten_tensor::{Error, Result};
use std::sync::{Condvar, Mutex};

#[derive(Debug, Default)]
struct State {
    /// Ranks arrived in the current generation.
    arrived: usize,
    /// Generations completed.
    generation: u64,
    /// Why the barrier is broken, if it is.
    broken: Option<String>,
}

/// A barrier for `size` ranks.
#[derive(Debug)]
pub(crate) struct Barrier {
    size: usize,
    state: Mutex<State>,
    wake: Condvar,
}

impl Barrier {
    /// A barrier for `size` ranks.
    pub fn new(size: usize) -> Self {
        Barrier {
            size,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        }
    }

    /// Waits until every rank has arrived, or fails once the barrier is broken.
    pub fn wait(&self) -> Result<()> {
        let mut s = self.lock()?;
        check(&s)?;
        s.arrived += 1;
        if s.arrived == self.size {
            s.arrived = 0;
            s.generation += 1;
            self.wake.notify_all();
            return Ok(());
        }
        let generation = s.generation;
        while s.generation == generation && s.broken.is_none() {
            s = self.wake.wait(s).map_err(|_| poisoned())?;
        }
        if s.generation == generation {
            check(&s)?;
        }
        Ok(())
    }

    /// Breaks the barrier: every waiting and later [`Barrier::wait`] fails with `why`.
    pub fn break_with(&self, why: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.broken.get_or_insert_with(|| why.to_string());
            self.wake.notify_all();
        }
    }

    /// Mends a broken barrier, for the next step; only while no rank waits on it.
    pub fn mend(&self) {
        if let Ok(mut s) = self.state.lock() {
            *s = State::default();
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| poisoned())
    }
}

fn check(s: &State) -> Result<()> {
    match &s.broken {
        Some(why) => Err(Error::Collective(format!(
            "the replica group was broken: {why}"
        ))),
        None => Ok(()),
    }
}

fn poisoned() -> Error {
    Error::Collective("a replica thread panicked inside a collective".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_broken_barrier_releases_its_waiters_with_an_error() {
        let b = Arc::new(Barrier::new(2));
        let waiter = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || b.wait())
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        b.break_with("rank 1 failed");
        let err = waiter.join().unwrap().unwrap_err();
        assert!(err.to_string().contains("rank 1 failed"), "{err}");
        assert!(b.wait().is_err());
        b.mend();
        let other = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || b.wait())
        };
        b.wait().unwrap();
        other.join().unwrap().unwrap();
    }
}
