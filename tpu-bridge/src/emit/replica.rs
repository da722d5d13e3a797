//! What differs between the replicas of one replicated program: slices of a value that spans
//! the whole batch (a shared random draw, a broadcast zero) cut at each replica's rows. One
//! program serves every replica, so such a slice starts at `replica_id · rows`.

use super::builder::{dims_array, Builder, Scalar, V};
use hasten_tensor::ir::{Graph, Op};
use hasten_tensor::{DType, Error, Result};
use std::collections::HashMap;

/// A slice that follows the replica: on `axis`, replica r starts `r · rows` after replica 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaSlice {
    /// The axis the replicas' starts differ on.
    pub axis: usize,
    /// How far apart consecutive replicas' starts are.
    pub rows: usize,
}

/// Per node index of the first replica's graph, the slices that follow the replica.
pub type ReplicaSlices = HashMap<usize, ReplicaSlice>;

/// Compares the graphs of replicas 0 and 1 (the transform's output for shards `rows` apart):
/// they must be the same node for node, except slices whose starts differ by `rows` on one
/// axis. Anything else is an error naming the node.
pub fn replica_slices(first: &Graph, second: &Graph, rows: usize) -> Result<ReplicaSlices> {
    let (a, b) = (first.nodes(), second.nodes());
    let differ = |what: String| Error::Unsupported {
        backend: "pjrt",
        what: format!("a replicated step whose replicas' graphs differ ({what})"),
    };
    if a.len() != b.len() {
        return Err(differ(format!("{} and {} nodes", a.len(), b.len())));
    }
    let mut slices = ReplicaSlices::new();
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if format!("{x:?}") == format!("{y:?}") {
            continue;
        }
        let moved = match (&x.op, &y.op) {
            (Op::Slice { starts: s0, .. }, Op::Slice { starts: s1, .. })
                if x.inputs == y.inputs && x.shape == y.shape =>
            {
                let axes: Vec<usize> = (0..s0.len()).filter(|&d| s0[d] != s1[d]).collect();
                match axes[..] {
                    [axis] if s1[axis] == s0[axis] + rows => Some(axis),
                    _ => None,
                }
            }
            _ => None,
        };
        let axis = moved.ok_or_else(|| differ(format!("node %{i}: {:?}", x.op)))?;
        slices.insert(i, ReplicaSlice { axis, rows });
    }
    Ok(slices)
}

/// The slice `starts` + `sizes` of `x`, its start on `s.axis` moved by `replica_id · s.rows`.
pub(crate) fn slice(
    b: &mut Builder,
    x: &V,
    starts: &[usize],
    sizes: &[usize],
    s: ReplicaSlice,
) -> V {
    let id = b.op_typed("replica_id", &[], "", "tensor<ui32>");
    let id = b.op_typed(
        "convert",
        &[(&id, "tensor<ui32>".into())],
        "",
        "tensor<i32>",
    );
    let id = V {
        name: id,
        dims: vec![],
        dtype: DType::I32,
    };
    let rows = b.scalar(Scalar::I32(s.rows as i32), DType::I32);
    let offset = b.same("multiply", &[&id, &rows]);
    let indices: Vec<V> = starts
        .iter()
        .enumerate()
        .map(|(d, &start)| {
            let start = b.scalar(Scalar::I32(start as i32), DType::I32);
            if d == s.axis {
                b.same("add", &[&start, &offset])
            } else {
                start
            }
        })
        .collect();
    let mut operands = vec![x];
    operands.extend(indices.iter());
    let attr = format!("slice_sizes = {}", dims_array(sizes));
    b.op("dynamic_slice", &operands, &attr, sizes, x.dtype)
}
