//! How a global batch is split between replicas.

use crate::{Error, Result};

/// One replica's rows of the global batch: `offset..offset + rows`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// The first row.
    pub offset: usize,
    /// How many rows.
    pub rows: usize,
}

/// Splits `batch` rows between `replicas` as Keras's `MirroredStrategy` does: as evenly as
/// possible, the first `batch % replicas` replicas taking one row more. A batch smaller than
/// the number of replicas is an error (a replica would get no rows).
pub fn split_batch(batch: usize, replicas: usize) -> Result<Vec<Shard>> {
    if replicas == 0 || batch < replicas {
        return Err(Error::InvalidArgument {
            op: "mirrored",
            detail: format!(
                "a global batch of {batch} cannot be split between {replicas} replicas: each \
                 replica needs at least one sample; use a batch of at least {replicas} (a \
                 multiple of {replicas} gives every replica the same share)"
            ),
        });
    }
    let (per, extra) = (batch / replicas, batch % replicas);
    let mut offset = 0;
    Ok((0..replicas)
        .map(|r| {
            let rows = per + usize::from(r < extra);
            let shard = Shard { offset, rows };
            offset += rows;
            shard
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_uneven_batch_gives_the_first_replicas_one_row_more() {
        let rows: Vec<usize> = split_batch(10, 4).unwrap().iter().map(|s| s.rows).collect();
        assert_eq!(rows, [3, 3, 2, 2]);
        let offsets: Vec<usize> = split_batch(10, 4)
            .unwrap()
            .iter()
            .map(|s| s.offset)
            .collect();
        assert_eq!(offsets, [0, 3, 6, 8]);
    }

    #[test]
    fn a_batch_smaller_than_the_replicas_is_an_error() {
        let err = split_batch(3, 4).unwrap_err().to_string();
        assert!(err.contains("3") && err.contains("4 replicas"), "{err}");
    }
}
