//! Row slices of step inputs: a replica's or a worker's share of the global batch.

use super::split::Shard;
use crate::{Error, Graph, HostSlice, Result, Shape};

/// An input of the global step: its elements per row, if it is split between replicas.
#[derive(Clone, Copy, Debug)]
pub struct InputSplit {
    /// Elements per row, for an input cut by rows; `None` for one fed whole.
    pub row: Option<usize>,
    /// Elements of the whole input.
    pub len: usize,
}

/// How each input of `graph` is split when its global batch is `batch`.
pub fn input_splits(graph: &Graph, batch: Option<usize>) -> Result<Vec<(String, InputSplit)>> {
    let mut splits = Vec::new();
    for (name, id) in graph.inputs() {
        let dims = graph.shape(id)?.dims();
        let split = batch.is_some() && dims.first().copied() == batch;
        splits.push((
            name.to_string(),
            InputSplit {
                row: split.then(|| dims[1..].iter().product()),
                len: dims.iter().product(),
            },
        ));
    }
    Ok(splits)
}

/// Checks that each input has its declared element count.
pub fn check_lengths(
    inputs: &[HostSlice<'_>],
    splits: &[InputSplit],
    names: &[String],
) -> Result<()> {
    if inputs.len() != splits.len() {
        return Err(Error::InputCount {
            expected: splits.len(),
            names: names.join(", "),
            found: inputs.len(),
        });
    }
    for ((x, split), name) in inputs.iter().zip(splits).zip(names) {
        if x.len() != split.len {
            return Err(Error::BadData {
                what: format!("input {name:?}"),
                expected_dtype: x.dtype(),
                expected_shape: Shape::new(vec![split.len]),
                found: format!("{} elements", x.len()),
            });
        }
    }
    Ok(())
}

/// The inputs of the replica holding `shard`: its rows of the split inputs, the others whole.
pub fn shard_inputs<'a>(
    inputs: &[HostSlice<'a>],
    splits: &[InputSplit],
    shard: Option<Shard>,
) -> Vec<HostSlice<'a>> {
    inputs
        .iter()
        .zip(splits)
        .map(|(x, split)| match (split.row, shard) {
            (Some(row), Some(s)) => x.range(s.offset * row, s.rows * row),
            _ => *x,
        })
        .collect()
}
