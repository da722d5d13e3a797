//! A small, allocation-free worker pool for the CPU backend's kernels.
//!
//! Why not rayon here: a step runs every few tens of microseconds, and rayon's entry from a
//! non-pool thread injects a job through a global queue that allocates a block every few dozen
//! jobs and wakes sleeping workers with some latency. This pool keeps its workers spinning
//! briefly between steps (then parks them), hands out task indices through one atomic word, and
//! never allocates after it starts. Rayon is still used for work outside the step.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, Thread};

/// Spins before a worker parks (about 50 µs on a current core).
const SPIN_ROUNDS: usize = 20_000;

/// Width mask of the task-count and next-index fields of the cursor.
const FIELD_MASK: usize = (1 << 20) - 1;
const EPOCH_SHIFT: u32 = 40;

type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// Epoch (high 24 bits), task count (middle 20 bits) and next task index (low 20 bits),
    /// in one word so that a claim always sees the count of its own epoch.
    cursor: AtomicU64,
    /// Tasks finished in the current epoch.
    finished: AtomicUsize,
    /// The current job, valid while the epoch's tasks are unfinished.
    job: Mutex<Option<JobPtr>>,
    /// Workers currently parked.
    sleeping: AtomicUsize,
    /// Workers that have started (and prepared their per-thread buffers).
    started: AtomicUsize,
}

#[derive(Clone, Copy)]
struct JobPtr(Job);
// SAFETY: the pointee is `Sync`, and the pointer is only dereferenced while the caller of
// `run` keeps it alive (it waits for every task to finish).
unsafe impl Send for JobPtr {}

/// A fixed set of worker threads plus the calling thread.
pub struct WorkerPool {
    shared: Arc<Shared>,
    workers: Vec<Thread>,
    busy: Mutex<()>,
}

impl WorkerPool {
    /// A pool whose `run` uses `threads` threads in all (the caller and `threads - 1` workers).
    pub fn new(threads: usize) -> Self {
        let shared = Arc::new(Shared {
            cursor: AtomicU64::new(0),
            finished: AtomicUsize::new(0),
            job: Mutex::new(None),
            sleeping: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
        });
        let workers = (1..threads.max(1))
            .filter_map(|i| {
                let shared = Arc::clone(&shared);
                thread::Builder::new()
                    .name(format!("hasten-cpu-{i}"))
                    .spawn(move || worker_loop(&shared))
                    .ok()
                    .map(|h| h.thread().clone())
            })
            .collect::<Vec<Thread>>();
        // Wait until every worker runs, so none prepares its buffers during a later step.
        while shared.started.load(Ordering::Acquire) < workers.len() {
            thread::yield_now();
        }
        WorkerPool {
            shared,
            workers,
            busy: Mutex::new(()),
        }
    }

    /// Threads that share the work of one `run`, the caller included.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Calls `f(i)` for every `i` in `0..tasks`, spread over the pool, and returns when all are
    /// done. If another thread is using the pool, the caller does all the tasks itself.
    pub fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        let guard = match self.busy.try_lock() {
            Ok(g) if tasks > 1 && tasks <= FIELD_MASK && !self.workers.is_empty() => g,
            _ => {
                (0..tasks).for_each(f);
                return;
            }
        };
        let s = &*self.shared;
        // SAFETY: the job pointer outlives its use: this function does not return before every
        // task has finished, and workers only dereference it after claiming a task.
        let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(f) };
        *s.job.lock().unwrap_or_else(|e| e.into_inner()) = Some(JobPtr(job));
        s.finished.store(0, Ordering::SeqCst);
        let epoch = (s.cursor.load(Ordering::SeqCst) >> EPOCH_SHIFT) + 1;
        s.cursor.store(
            (epoch << EPOCH_SHIFT) | ((tasks as u64) << 20),
            Ordering::SeqCst,
        );
        if s.sleeping.load(Ordering::SeqCst) > 0 {
            self.workers.iter().for_each(Thread::unpark);
        }
        while let Some(i) = claim(s) {
            f(i);
            s.finished.fetch_add(1, Ordering::AcqRel);
        }
        while s.finished.load(Ordering::Acquire) < tasks {
            std::hint::spin_loop();
        }
        drop(guard);
    }
}

/// Claims the next task of the current epoch, if any is left.
fn claim(s: &Shared) -> Option<usize> {
    let mut cur = s.cursor.load(Ordering::Acquire);
    loop {
        let tasks = ((cur >> 20) & FIELD_MASK as u64) as usize;
        let next = (cur & FIELD_MASK as u64) as usize;
        if next >= tasks {
            return None;
        }
        match s
            .cursor
            .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return Some(next),
            Err(now) => cur = now,
        }
    }
}

fn worker_loop(s: &Shared) {
    super::denormals::flush_forever();
    super::gemm::reserve_thread_buffers();
    super::kernels::fused::reserve_thread_scratch();
    s.started.fetch_add(1, Ordering::Release);
    let mut seen = 0u64;
    loop {
        let mut spins = 0;
        let epoch = loop {
            let e = s.cursor.load(Ordering::Acquire) >> EPOCH_SHIFT;
            if e != seen {
                break e;
            }
            spins += 1;
            if spins < SPIN_ROUNDS {
                std::hint::spin_loop();
            } else {
                s.sleeping.fetch_add(1, Ordering::SeqCst);
                if s.cursor.load(Ordering::SeqCst) >> EPOCH_SHIFT == seen {
                    thread::park();
                }
                s.sleeping.fetch_sub(1, Ordering::SeqCst);
                spins = 0;
            }
        };
        seen = epoch;
        while let Some(i) = claim(s) {
            let job = *s.job.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(JobPtr(job)) = job {
                // SAFETY: a claimed task of the current epoch means `run` is still waiting, so
                // the closure it lent is alive.
                unsafe { (*job)(i) };
            }
            s.finished.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// The process-wide pool: one thread per core, or `HASTEN_NUM_THREADS`.
pub fn global() -> &'static WorkerPool {
    static POOL: OnceLock<WorkerPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::env::var("HASTEN_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()));
        WorkerPool::new(threads)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_exactly_once() {
        let pool = WorkerPool::new(3);
        for tasks in [0, 1, 2, 7, 100] {
            let counts: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
            pool.run(tasks, &|i| {
                counts[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn concurrent_callers_both_finish() {
        let pool = Arc::new(WorkerPool::new(2));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let pool = Arc::clone(&pool);
                thread::spawn(move || {
                    let sum = AtomicUsize::new(0);
                    for _ in 0..200 {
                        pool.run(5, &|i| {
                            sum.fetch_add(i, Ordering::Relaxed);
                        });
                    }
                    sum.load(Ordering::Relaxed)
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 200 * 10);
        }
    }
}

/// A buffer that the tasks of one [`WorkerPool::run`] write, each its own disjoint part: the
/// address of its first element, which (unlike a raw pointer) closures may share.
#[derive(Debug)]
pub struct SharedMut<T = f32>(*mut T);

impl<T> Clone for SharedMut<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedMut<T> {}

// SAFETY: tasks only write the disjoint parts their callers hand them (see `slice`).
unsafe impl<T> Send for SharedMut<T> {}
unsafe impl<T> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// The buffer starting at `first`.
    pub fn new(first: *mut T) -> Self {
        SharedMut(first)
    }

    /// The address of element `i`; a method, so that closures capture the whole wrapper.
    pub fn at(self, i: usize) -> *mut T {
        self.0.wrapping_add(i)
    }

    /// Elements `at..at + len`.
    ///
    /// # Safety
    /// The range must lie inside the buffer, and no other task may touch it meanwhile.
    pub unsafe fn slice<'a>(self, at: usize, len: usize) -> &'a mut [T] {
        std::slice::from_raw_parts_mut(self.at(at), len)
    }
}
