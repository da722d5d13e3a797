//! The check that `fit`, `evaluate` and `predict` make once, before any step: every input
//! value is finite. One NaN pixel otherwise poisons the weights it touches (its loss is NaN,
//! and so are the gradients), and the run is lost.
//!
//! The scan reads the exponent field of each value, 4,096 values at a time, counting the
//! all-ones exponents without a branch so that the compiler vectorises it; only a chunk that
//! holds a NaN or an infinity is searched again for the first one. Training copies its samples anyway, so there the scan
//! runs on each chunk right after copying it, while the chunk is in L1.

use crate::Error;
use hasten_tensor::Shape;

/// Values scanned per pass.
const CHUNK: usize = 4096;
/// The exponent bits of an `f32`: all ones for NaN and ±infinity only.
const EXPONENT: u32 = 0x7f80_0000;

/// Whether `values` holds a NaN or an infinity. Counting exponent matches compiles to a mask,
/// a compare for equality and a subtract per vector even for baseline x86-64 (SSE2), where an
/// unsigned maximum has no instruction.
fn has_non_finite(values: &[f32]) -> bool {
    values
        .iter()
        .map(|v| u32::from(v.to_bits() & EXPONENT == EXPONENT))
        .sum::<u32>()
        > 0
}

/// The index of the first NaN or infinity in `values`.
pub fn first_non_finite(values: &[f32]) -> Option<usize> {
    values.chunks(CHUNK).position(has_non_finite).and_then(|c| {
        let start = c * CHUNK;
        values[start..]
            .iter()
            .position(|v| !v.is_finite())
            .map(|i| start + i)
    })
}

/// A copy of `values` and the index of its first NaN or infinity, in one pass.
pub fn copy_and_find_non_finite(values: &[f32]) -> (Vec<f32>, Option<usize>) {
    let mut copy = Vec::with_capacity(values.len());
    let first = append_and_find_non_finite(values, &mut copy);
    (copy, first)
}

/// Appends `values` to `out` chunk by chunk, scanning each chunk while it is in cache;
/// returns the index (in `values`) of the first NaN or infinity.
pub fn append_and_find_non_finite(values: &[f32], out: &mut Vec<f32>) -> Option<usize> {
    out.reserve(values.len());
    let mut first = None;
    for (c, chunk) in values.chunks(CHUNK).enumerate() {
        out.extend_from_slice(chunk);
        if first.is_none() && has_non_finite(chunk) {
            first = first_non_finite(chunk).map(|i| c * CHUNK + i);
        }
    }
    first
}

/// Where the non-finite value at flat `index` of `x` (dims `[samples, ..]`) is, by sample
/// and position within the sample: "x[100] has NaN at (10, 20, 0)".
pub fn describe_non_finite(role: &str, shape: &Shape, index: usize, value: f32) -> String {
    let per_sample = &shape.dims()[1.min(shape.rank())..];
    let len: usize = per_sample.iter().product::<usize>().max(1);
    let (sample, mut offset) = (index / len, index % len);
    let mut position = vec![0; per_sample.len()];
    for (p, &d) in position.iter_mut().zip(per_sample).rev() {
        *p = offset % d.max(1);
        offset /= d.max(1);
    }
    let what = if value.is_nan() {
        "NaN"
    } else if value > 0.0 {
        "+Inf"
    } else {
        "-Inf"
    };
    let position: Vec<String> = position.iter().map(|p| p.to_string()).collect();
    format!("{role}[{sample}] has {what} at ({})", position.join(", "))
}

/// The error for the non-finite value at flat `index` of `x`, saying how to run anyway.
pub(crate) fn non_finite_error(role: &str, shape: &Shape, index: usize, value: f32) -> Error {
    Error::BadData(format!(
        "{}; nothing was run. Clean the data, or pass `FitOptions::check_finite(false)` \
         (`Sequential::set_check_finite(false)` for evaluate and predict) to run on it anyway",
        describe_non_finite(role, shape, index, value)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_special_in_any_chunk_and_lane() {
        for len in [1, 7, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5] {
            for special in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::NAN] {
                for at in [0, len / 2, len - 1] {
                    let mut v: Vec<f32> = (0..len).map(|i| i as f32 * 1e30).collect();
                    v.iter_mut().for_each(|x| *x = x.min(f32::MAX));
                    v[at] = special;
                    if at + 1 < len {
                        v[len - 1] = f32::NAN;
                    }
                    assert_eq!(first_non_finite(&v), Some(at), "len {len} at {at}");
                    let (copy, found) = copy_and_find_non_finite(&v);
                    assert_eq!(found, Some(at));
                    assert_eq!(copy.len(), len);
                    assert!(copy.iter().zip(&v).all(|(a, b)| a.to_bits() == b.to_bits()));
                }
            }
        }
    }

    #[test]
    fn finite_extremes_pass() {
        let v = [f32::MAX, f32::MIN, f32::MIN_POSITIVE, -0.0, 1e-45, 0.0];
        assert_eq!(first_non_finite(&v), None);
        assert_eq!(copy_and_find_non_finite(&v).1, None);
    }

    #[test]
    fn the_error_names_sample_and_position() {
        let shape = Shape::new(vec![2048, 28, 28, 1]);
        let index = 100 * 784 + 10 * 28 + 20;
        let e = non_finite_error("x", &shape, index, f32::NAN).to_string();
        assert!(e.contains("x[100] has NaN at (10, 20, 0)"), "{e}");
        let e = non_finite_error("x", &Shape::new(vec![5, 3]), 7, f32::NEG_INFINITY);
        assert!(e.to_string().contains("x[2] has -Inf at (1)"), "{e}");
    }
}
