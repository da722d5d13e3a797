//! The register tiles: `MR` rows × `NV` vectors of C kept in registers over a run of depth
//! steps, one generic function compiled for each instruction set and each row count.
//!
//! A is read in place through any strides (each depth step broadcasts one value per row), B
//! as rows of contiguous values (in place or packed). Rows below a full tile get a kernel
//! compiled for exactly that many rows, so a 1-row product (batch-1 inference) does no
//! padded work; a partial last column panel uses masked loads and stores.

use crate::cpu::vector::{Portable, Simd};

/// One microkernel call: `kc` depth steps into the tile of C at `c`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Tile {
    /// Depth steps.
    pub kc: usize,
    /// A's element (row 0, depth 0) of the tile.
    pub a: *const f32,
    /// Elements between A's rows.
    pub a_rs: isize,
    /// Elements between A's depth steps.
    pub a_cs: isize,
    /// B's element (depth 0, column 0) of the tile; a depth row's columns are contiguous.
    pub b: *const f32,
    /// Elements between B's depth rows.
    pub b_rs: usize,
    /// C's element (0, 0) of the tile, rows `ldc` apart.
    pub c: *mut f32,
    /// Leading dimension of C.
    pub ldc: usize,
    /// Valid columns (for a masked kernel; a full kernel writes all `NV · LANES`).
    pub nr: usize,
    /// Add to C instead of overwriting it.
    pub accumulate: bool,
    /// The tile's `nr` bias values added to each row as it is stored, or null.
    pub bias: *const f32,
    /// Clamp the stored values at zero (after the bias).
    pub relu: bool,
}

/// A compiled tile kernel.
pub(super) type TileFn = unsafe fn(&Tile);

/// `C[MR × NV·LANES] (+)= A · B` over `t.kc` depth steps; with `MASKED`, only the first
/// `t.nr` columns of B are read and of C written.
#[inline(always)]
unsafe fn tile<S: Simd, const MR: usize, const NV: usize, const MASKED: bool>(t: &Tile) {
    let lanes = S::LANES;
    let mut valid = [lanes; NV];
    if MASKED {
        for (v, n) in valid.iter_mut().enumerate() {
            *n = t.nr.saturating_sub(v * lanes).min(lanes);
        }
    }
    let mut acc = [[S::zero(); NV]; MR];
    let (mut a, mut b) = (t.a, t.b);
    for _ in 0..t.kc {
        let mut bv = [S::zero(); NV];
        for (v, bv) in bv.iter_mut().enumerate() {
            *bv = if MASKED {
                S::load_first(b.add(v * lanes), valid[v])
            } else {
                S::load(b.add(v * lanes))
            };
        }
        for (i, row) in acc.iter_mut().enumerate() {
            let x = S::splat(*a.offset(i as isize * t.a_rs));
            for (acc, &bv) in row.iter_mut().zip(&bv) {
                *acc = S::mul_add(*acc, x, bv);
            }
        }
        a = a.offset(t.a_cs);
        b = b.add(t.b_rs);
    }
    let mut bias = [S::zero(); NV];
    if !t.bias.is_null() {
        for (v, b) in bias.iter_mut().enumerate() {
            *b = if MASKED {
                S::load_first(t.bias.add(v * lanes), valid[v])
            } else {
                S::load(t.bias.add(v * lanes))
            };
        }
    }
    let finish = |sum: S::V, v: usize| {
        let sum = if t.bias.is_null() {
            sum
        } else {
            S::add(sum, bias[v])
        };
        if t.relu {
            S::select_above(sum, S::zero(), sum, S::zero())
        } else {
            sum
        }
    };
    for (i, row) in acc.iter().enumerate() {
        let out = t.c.add(i * t.ldc);
        for (v, &sum) in row.iter().enumerate() {
            let (p, n) = (out.add(v * lanes), valid[v]);
            if !MASKED {
                let sum = if t.accumulate {
                    S::add(sum, S::load(p))
                } else {
                    sum
                };
                S::store(p, finish(sum, v));
            } else if n > 0 {
                let sum = if t.accumulate {
                    S::add(sum, S::load_first(p, n))
                } else {
                    sum
                };
                S::store_first(p, finish(sum, v), n);
            }
        }
    }
}

/// Tile kernels of one width for 1 ..= `mr` rows: `kernels[rows - 1] = [full, masked]`.
#[derive(Clone, Copy)]
pub(super) struct Family {
    /// Columns of a tile.
    pub nr: usize,
    /// Most rows of a tile.
    pub mr: usize,
    kernels: &'static [[TileFn; 2]],
}

impl Family {
    /// The kernel for `rows ≤ mr` rows, masked if `cols < nr`.
    pub fn kernel(&self, rows: usize, cols: usize) -> TileFn {
        self.kernels[rows - 1][usize::from(cols < self.nr)]
    }
}

/// The tile shapes one instruction set offers: a wide one and one for few columns (a Dense(10)
/// layer's), which the wide one would mostly fill with padding.
#[derive(Clone, Copy)]
pub(super) struct Kernels {
    /// What they are compiled for, in messages.
    pub name: &'static str,
    /// Two vectors per row.
    pub wide: Family,
    /// One vector per row, more rows.
    pub narrow: Family,
}

impl Kernels {
    /// The family for a product with `n` columns: the wide one unless the narrow one pads
    /// less.
    pub fn for_columns(&self, n: usize) -> Family {
        let padded = |f: &Family| n.next_multiple_of(f.nr);
        if padded(&self.narrow) < padded(&self.wide) {
            self.narrow
        } else {
            self.wide
        }
    }
}

/// `[[f, f_masked]; …]` for the listed row counts of a kernel wrapper `$f::<ROWS, NV, MASKED>`.
macro_rules! table {
    ($f:ident, $nv:literal, [$($rows:literal),*]) => {
        &[$([$f::<$rows, $nv, false> as TileFn, $f::<$rows, $nv, true> as TileFn]),*]
    };
}

/// Plain Rust: 4 × 16 and 8 × 8.
unsafe fn portable_tile<const MR: usize, const NV: usize, const MASKED: bool>(t: &Tile) {
    tile::<Portable, MR, NV, MASKED>(t)
}

/// The kernels without vector extensions.
pub(super) fn portable() -> Kernels {
    Kernels {
        name: "portable",
        wide: Family {
            nr: 16,
            mr: 4,
            kernels: table!(portable_tile, 2, [1, 2, 3, 4]),
        },
        narrow: Family {
            nr: 8,
            mr: 8,
            kernels: table!(portable_tile, 1, [1, 2, 3, 4, 5, 6, 7, 8]),
        },
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) use x86::{avx2, avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{tile, Family, Kernels, Tile, TileFn};
    use crate::cpu::vector::{Avx2, Avx512};

    #[target_feature(enable = "avx512f,fma")]
    unsafe fn avx512_tile<const MR: usize, const NV: usize, const MASKED: bool>(t: &Tile) {
        tile::<Avx512, MR, NV, MASKED>(t)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_tile<const MR: usize, const NV: usize, const MASKED: bool>(t: &Tile) {
        tile::<Avx2, MR, NV, MASKED>(t)
    }

    /// AVX-512: 12 × 32 (24 accumulators of the 32 registers) and 16 × 16.
    pub(in super::super) fn avx512() -> Kernels {
        Kernels {
            name: "avx512",
            wide: Family {
                nr: 32,
                mr: 12,
                kernels: table!(avx512_tile, 2, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
            },
            narrow: Family {
                nr: 16,
                mr: 16,
                kernels: table!(
                    avx512_tile,
                    1,
                    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
                ),
            },
        }
    }

    /// AVX2: 6 × 16 (12 accumulators of the 16 registers) and 12 × 8.
    pub(in super::super) fn avx2() -> Kernels {
        Kernels {
            name: "avx2",
            wide: Family {
                nr: 16,
                mr: 6,
                kernels: table!(avx2_tile, 2, [1, 2, 3, 4, 5, 6]),
            },
            narrow: Family {
                nr: 8,
                mr: 12,
                kernels: table!(avx2_tile, 1, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
            },
        }
    }
}
