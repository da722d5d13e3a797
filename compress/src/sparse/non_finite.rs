//! Non-finite inputs. The products a sparse kernel leaves out are `x · 0` for the weights
//! pruned away, which are zero unless `x` is ±∞ or NaN; there the dense product forms
//! `∞ · 0 = NaN`. These helpers find such inputs (cheaply: `x · 0` summed lane by lane is
//! zero exactly when every `x` is finite) and set NaN where the dense product would have.

use super::by_unit::{Lanes, TILE};
use super::kernel::SparseMatrix;

/// Whether every value of `x` is finite.
#[inline(always)]
pub fn finite(x: &[f32]) -> bool {
    let mut acc = [0.0f32; TILE];
    let mut chunks = x.chunks_exact(TILE);
    for chunk in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += v * 0.0;
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a += v * 0.0;
    }
    acc.iter().all(|&a| a == 0.0)
}

/// Per lane of `tile`, zero exactly when every value of that lane is finite.
#[inline(always)]
pub fn lanes(tile: &[Lanes]) -> Lanes {
    let mut acc = [0.0f32; TILE];
    for row in tile {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += v * 0.0;
        }
    }
    acc
}

/// Sets `y[j]` to NaN for every unit `j` that a non-finite `x[i]` meets through a pruned
/// (absent) weight.
pub fn poison_row(matrix: &SparseMatrix, x: &[f32], y: &mut [f32]) {
    for (i, _) in x.iter().enumerate().filter(|(_, v)| !v.is_finite()) {
        for j in absent(matrix, i) {
            y[j] = f32::NAN;
        }
    }
}

/// [`poison_row`] for the lanes of a tile that `lanes` marks.
pub fn poison_tile(matrix: &SparseMatrix, x: &[Lanes], lanes: &Lanes, y: &mut [Lanes]) {
    for s in (0..TILE).filter(|&s| lanes[s] != 0.0) {
        for (i, _) in x.iter().enumerate().filter(|(_, v)| !v[s].is_finite()) {
            for j in absent(matrix, i) {
                y[j][s] = f32::NAN;
            }
        }
    }
}

/// The units whose weight from feature `i` is not stored.
fn absent(matrix: &SparseMatrix, i: usize) -> impl Iterator<Item = usize> + '_ {
    let stored = matrix.by_feature().units_of(i);
    let mut next = stored.iter().peekable();
    (0..matrix.units).filter(move |&j| {
        if next.peek().is_some_and(|&&s| s as usize == j) {
            next.next();
            false
        } else {
            true
        }
    })
}
