//! Index arithmetic written into kernels: a flat output index split into coordinates, and
//! operand offsets from coordinates and strides (all constants baked into the source).

use std::fmt::Write;

/// Row-major strides of `dims`.
pub fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for j in (0..dims.len().saturating_sub(1)).rev() {
        s[j] = s[j + 1] * dims[j + 1];
    }
    s
}

/// Statements declaring `c0..c{r-1}` (prefixed `prefix`), the coordinates of flat index
/// `flat` in `dims`.
pub fn coords(prefix: &str, flat: &str, dims: &[usize]) -> String {
    let mut out = format!("u32 {prefix}rem = {flat};\n");
    for j in (0..dims.len()).rev() {
        let _ = writeln!(
            out,
            "u32 {prefix}{j} = {prefix}rem % {d}u; {prefix}rem /= {d}u;",
            d = dims[j].max(1)
        );
    }
    out
}

/// `sum_j coord_j * stride_j` over the dims whose stride is not zero, or `0`.
pub fn dot(prefix: &str, strides: &[usize]) -> String {
    let terms: Vec<String> = strides
        .iter()
        .enumerate()
        .filter(|(_, &s)| s != 0)
        .map(|(j, s)| format!("{prefix}{j} * {s}u"))
        .collect();
    if terms.is_empty() {
        "0u".to_string()
    } else {
        terms.join(" + ")
    }
}

/// Strides of an operand of dims `od` broadcast (numpy rules, right-aligned) to `dims`: zero
/// where the operand's dim is 1 or missing.
pub fn broadcast_strides(od: &[usize], dims: &[usize]) -> Vec<usize> {
    let own = strides(od);
    let shift = dims.len() - od.len();
    (0..dims.len())
        .map(|j| {
            if j < shift || od[j - shift] == 1 {
                0
            } else {
                own[j - shift]
            }
        })
        .collect()
}
