//! Matrix products as `stablehlo.dot_general` over the last two dims, leading dims batched.
//! Precision is `HIGHEST`, so TPUs compute in full `f32` as the CPU backend does.

use super::builder::{Builder, V};

/// The `[#stablehlo<precision HIGHEST>, …]` config of a two-operand op.
pub(crate) const HIGHEST: &str =
    "precision_config = [#stablehlo<precision HIGHEST>, #stablehlo<precision HIGHEST>]";

/// `op(a) @ op(b)`; `dims` is the product's shape.
pub(crate) fn matmul(b: &mut Builder, x: &V, y: &V, ta: bool, tb: bool, dims: &[usize]) -> V {
    let r = x.rank();
    let batch: Vec<String> = (0..r - 2).map(|i| i.to_string()).collect();
    let batch = batch.join(", ");
    let lc = if ta { r - 2 } else { r - 1 };
    let rc = if tb { r - 1 } else { r - 2 };
    let attr = format!(
        "dot_dimension_numbers = #stablehlo.dot<lhs_batching_dimensions = [{batch}], rhs_batching_dimensions = [{batch}], lhs_contracting_dimensions = [{lc}], rhs_contracting_dimensions = [{rc}]>, {HIGHEST}"
    );
    b.op("dot_general", &[x, y], &attr, dims, x.dtype)
}
