//! Moving samples between row-major rows (`[samples][width]`) and feature-major tiles
//! (`[width][TILE]`). Full tiles move in 8×8 register blocks ([`transpose`]) where the CPU
//! has AVX, the rest value by value. Lanes past the last sample are set to zero, so that
//! they hold finite values; nothing reads them back.

use super::by_unit::{Lanes, TILE};
use super::transpose;

/// Side of a register block.
const BLOCK: usize = 8;

/// Writes the `rows.len() / width` (at most [`TILE`]) samples of `rows` into `tile`
/// (`width` rows of lanes).
#[inline(always)]
pub fn gather(rows: &[f32], width: usize, tile: &mut [Lanes]) {
    let samples = rows.len() / width.max(1);
    let done = if samples == TILE && transpose::available() {
        let blocked = width / BLOCK * BLOCK;
        let flat = tile.as_flattened_mut();
        for s in (0..TILE).step_by(BLOCK) {
            for i in (0..blocked).step_by(BLOCK) {
                transpose::block(
                    &rows[s * width + i..],
                    width,
                    &mut flat[i * TILE + s..],
                    TILE,
                );
            }
        }
        blocked
    } else {
        if samples < TILE {
            tile.iter_mut().for_each(|t| t.fill(0.0));
        }
        0
    };
    for (s, row) in rows.chunks_exact(width.max(1)).enumerate() {
        for (t, &v) in tile[done..width].iter_mut().zip(&row[done..]) {
            t[s] = v;
        }
    }
}

/// Writes the first `rows.len() / width` samples of `tile` (`width` rows of lanes) into
/// `rows`.
#[inline(always)]
pub fn scatter(tile: &[Lanes], width: usize, rows: &mut [f32]) {
    let samples = rows.len() / width.max(1);
    let done = if samples == TILE && transpose::available() {
        let blocked = width / BLOCK * BLOCK;
        let flat = tile.as_flattened();
        for s in (0..TILE).step_by(BLOCK) {
            for i in (0..blocked).step_by(BLOCK) {
                transpose::block(
                    &flat[i * TILE + s..],
                    TILE,
                    &mut rows[s * width + i..],
                    width,
                );
            }
        }
        blocked
    } else {
        0
    };
    for (s, row) in rows.chunks_exact_mut(width.max(1)).enumerate() {
        for (v, t) in row[done..].iter_mut().zip(&tile[done..width]) {
            *v = t[s];
        }
    }
}
