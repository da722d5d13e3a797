//! An opt-in per-kernel profile of a CPU executable: with `HASTEN_PROFILE=1` in the
//! environment, every step is timed and a table of where the time went is printed to stderr
//! when the executable is dropped. Off (the default), it costs one branch per step.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Time spent in each kernel launch of one executable.
pub(crate) struct Profile {
    labels: Vec<String>,
    totals: Vec<Duration>,
    /// For a launch that runs several kernels on tiles: each kernel's label and the thread
    /// time spent in it (nanoseconds, summed over threads).
    parts: Vec<Vec<(String, AtomicU64)>>,
    runs: u64,
}

impl Profile {
    /// A profile for these launches (each a label and the labels of its parts) when
    /// `HASTEN_PROFILE` is set (and not `0`).
    pub(crate) fn from_env(labels: impl FnOnce() -> Vec<(String, Vec<String>)>) -> Option<Self> {
        let on = std::env::var("HASTEN_PROFILE").is_ok_and(|v| !v.is_empty() && v != "0");
        on.then(|| {
            let (labels, parts): (Vec<String>, Vec<Vec<String>>) = labels().into_iter().unzip();
            Profile {
                totals: vec![Duration::ZERO; labels.len()],
                labels,
                parts: parts
                    .into_iter()
                    .map(|p| p.into_iter().map(|l| (l, AtomicU64::new(0))).collect())
                    .collect(),
                runs: 0,
            }
        })
    }

    /// Adds the time since `start` to part `part` of launch `step` (from any thread).
    pub(crate) fn record_part(&self, step: usize, part: usize, start: Instant) {
        let nanos = start.elapsed().as_nanos() as u64;
        self.parts[step][part].1.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Adds the time since `start` to kernel `step`.
    pub(crate) fn record(&mut self, step: usize, start: Instant) {
        self.totals[step] += start.elapsed();
    }

    /// Counts one run of the whole executable.
    pub(crate) fn finish_run(&mut self) {
        self.runs += 1;
    }

    /// Runs recorded so far.
    pub(crate) fn runs(&self) -> u64 {
        self.runs
    }

    /// The table: kernels by total time, with their share and mean per run.
    pub(crate) fn report(&self) -> String {
        let total: Duration = self.totals.iter().sum();
        let mut order: Vec<usize> = (0..self.totals.len()).collect();
        order.sort_by_key(|&k| std::cmp::Reverse(self.totals[k]));
        let runs = self.runs.max(1) as f64;
        let mut out = format!(
            "hasten profile: {} runs, {:.3} ms per run in {} kernels\n  share   µs/run  kernel\n",
            self.runs,
            total.as_secs_f64() * 1e3 / runs,
            self.totals.len()
        );
        for k in order {
            let t = self.totals[k].as_secs_f64();
            if t == 0.0 {
                continue;
            }
            out += &format!(
                "  {:5.1}%  {:7.1}  {}\n",
                100.0 * t / total.as_secs_f64().max(f64::MIN_POSITIVE),
                t * 1e6 / runs,
                self.labels[k]
            );
            for (label, nanos) in &self.parts[k] {
                let t = nanos.load(Ordering::Relaxed) as f64 * 1e-9;
                out += &format!("         {:7.1}  thread time in {label}\n", t * 1e6 / runs);
            }
        }
        out
    }
}
