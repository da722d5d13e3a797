//! Reductions over any set of axes.

use super::Small;
use crate::ir::ReduceOp;

/// Reduces `x` (dims `dims`) over `axes` into `y` (the kept dims, row-major).
pub fn reduce(op: ReduceOp, x: &[f32], dims: &[usize], axes: &[usize], y: &mut [f32]) {
    // Merge neighbouring dims that are both reduced or both kept: the loops below then run
    // over at most a handful of long dims.
    let mut merged = Small::<(usize, bool)>::filled(0);
    for (d, &n) in dims.iter().enumerate() {
        let r = axes.contains(&d);
        match merged.last_mut() {
            Some((len, reduced)) if *reduced == r => *len *= n,
            _ => merged.push((n, r)),
        }
    }
    let init = match op {
        ReduceOp::Max => f32::NEG_INFINITY,
        _ => 0.0,
    };
    y.fill(init);
    if x.is_empty() {
        return;
    }
    // Output strides of the merged dims (0 on reduced ones), innermost last.
    let mut out_strides = Small::<usize>::filled(merged.len());
    let mut s = 1;
    for (i, &(len, reduced)) in merged.iter().enumerate().rev() {
        if !reduced {
            out_strides[i] = s;
            s *= len;
        }
    }
    let (inner, inner_reduced) = *merged.last().unwrap_or(&(1, false));
    let mut outer = Small::<usize>::filled(0);
    for m in &merged[..merged.len().saturating_sub(1)] {
        outer.push(m.0);
    }
    let combine = |a: f32, b: f32| if op == ReduceOp::Max { a.max(b) } else { a + b };
    let mut idx = Small::<usize>::filled(outer.len());
    let mut xo = 0;
    loop {
        let yo: usize = idx.iter().zip(out_strides.iter()).map(|(i, s)| i * s).sum();
        let row = &x[xo..xo + inner];
        if inner_reduced {
            y[yo] = row.iter().fold(y[yo], |a, &b| combine(a, b));
        } else {
            for (o, &v) in y[yo..yo + inner].iter_mut().zip(row) {
                *o = combine(*o, v);
            }
        }
        xo += inner;
        let mut d = outer.len();
        loop {
            if d == 0 {
                if op == ReduceOp::Mean {
                    let count: usize = axes.iter().map(|&a| dims[a]).product();
                    let scale = 1.0 / count.max(1) as f32;
                    y.iter_mut().for_each(|v| *v *= scale);
                }
                return;
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < outer[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}
