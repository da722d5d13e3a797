//! Block-sparse rows (BSR) over a kernel seen as a `[rows, cols]` matrix; with 1×1 blocks it
//! is exactly CSR.

use crate::{Error, Result};

/// A `[rows, cols]` matrix stored as its nonzero `block.0 × block.1` blocks, row of blocks by
/// row of blocks (edge blocks are stored full size, their cells outside the matrix zero).
#[derive(Clone, Debug, PartialEq)]
pub struct Bsr {
    /// Matrix rows (a kernel's fan-in).
    pub rows: usize,
    /// Matrix columns (a kernel's units).
    pub cols: usize,
    /// Block dims.
    pub block: (usize, usize),
    /// `indptr[i]..indptr[i + 1]` are the stored blocks of block row `i`.
    pub indptr: Vec<i32>,
    /// The block column of each stored block.
    pub indices: Vec<i32>,
    /// Each stored block's cells, row-major.
    pub values: Vec<f32>,
}

impl Bsr {
    /// The blocks of `dense` (row-major `[rows, cols]`) that hold any nonzero.
    pub fn from_dense(
        dense: &[f32],
        rows: usize,
        cols: usize,
        block: (usize, usize),
    ) -> Result<Bsr> {
        let (br, bc) = block;
        if dense.len() != rows * cols || br == 0 || bc == 0 {
            return Err(Error::config(format!(
                "cannot store {} values as a [{rows}, {cols}] matrix in {br}×{bc} blocks",
                dense.len()
            )));
        }
        let cell = |r: usize, c: usize| {
            if r < rows && c < cols {
                dense[r * cols + c]
            } else {
                0.0
            }
        };
        let mut out = Bsr {
            rows,
            cols,
            block,
            indptr: vec![0],
            indices: Vec::new(),
            values: Vec::new(),
        };
        for block_row in 0..rows.div_ceil(br) {
            for block_col in 0..cols.div_ceil(bc) {
                let cells =
                    (0..br * bc).map(|i| cell(block_row * br + i / bc, block_col * bc + i % bc));
                let cells: Vec<f32> = cells.collect();
                if cells.iter().any(|&v| v != 0.0) {
                    out.indices.push(block_col as i32);
                    out.values.extend(cells);
                }
            }
            out.indptr.push(out.indices.len() as i32);
        }
        Ok(out)
    }

    /// The dense row-major matrix.
    pub fn to_dense(&self) -> Result<Vec<f32>> {
        self.check()?;
        let (br, bc) = self.block;
        let mut dense = vec![0.0; self.rows * self.cols];
        for block_row in 0..self.indptr.len() - 1 {
            for stored in self.indptr[block_row] as usize..self.indptr[block_row + 1] as usize {
                let block_col = self.indices[stored] as usize;
                for i in 0..br * bc {
                    let (r, c) = (block_row * br + i / bc, block_col * bc + i % bc);
                    if r < self.rows && c < self.cols {
                        dense[r * self.cols + c] = self.values[stored * br * bc + i];
                    }
                }
            }
        }
        Ok(dense)
    }

    /// Stored blocks.
    pub fn blocks(&self) -> usize {
        self.indices.len()
    }

    /// Checks that the arrays describe a matrix (a corrupt file must not index out of bounds).
    pub fn check(&self) -> Result<()> {
        let (br, bc) = self.block;
        let block_rows = self.rows.div_ceil(br.max(1));
        let block_cols = self.cols.div_ceil(bc.max(1)) as i32;
        let ok = br > 0
            && bc > 0
            && self.indptr.len() == block_rows + 1
            && self.indptr[0] == 0
            && self.indptr.windows(2).all(|w| w[0] <= w[1])
            && self.indptr[block_rows] as usize == self.indices.len()
            && self.indices.iter().all(|&c| (0..block_cols).contains(&c))
            && self.values.len() == self.indices.len() * br * bc;
        if ok {
            Ok(())
        } else {
            Err(Error::config(format!(
                "inconsistent sparse matrix: [{}, {}] in {br}×{bc} blocks with {} row offsets, \
                 {} block indices and {} values",
                self.rows,
                self.cols,
                self.indptr.len(),
                self.indices.len(),
                self.values.len()
            )))
        }
    }
}
