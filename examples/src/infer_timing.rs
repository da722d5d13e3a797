//! Inference timing shared by the runners of the peer benchmark: hasten's `bench_train` uses
//! it as a module of this crate, the candle runner (a workspace of its own, without hasten)
//! includes this file by path. The Python runners follow the same rule
//! (`bench/peers/common.py`). Plain `std`, so that both can build it.

use std::time::Instant;

/// Most timed passes.
const PASSES: usize = 5;
/// No pass starts once this many seconds are spent (at least one always runs).
const BUDGET_SECONDS: f64 = 2.0;

/// Median seconds of `predict` (one pass over the test set): a warm-up pass, then timed
/// passes until [`PASSES`] are done or [`BUDGET_SECONDS`] are spent.
pub fn time_inference<E>(mut predict: impl FnMut() -> Result<(), E>) -> Result<f64, E> {
    predict()?; // compile and warm up
    let mut times = Vec::with_capacity(PASSES);
    while times.len() < PASSES && times.iter().sum::<f64>() < BUDGET_SECONDS {
        let started = Instant::now();
        predict()?;
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
