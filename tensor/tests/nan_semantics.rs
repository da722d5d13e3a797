//! NaN and infinities through every op they used to be able to vanish from — relu, maximum and
//! minimum, max-reduction, argmax, max-pooling, the GEMM's ReLU epilogue and the fused
//! conv/bias/ReLU/pool block — and through their gradients, against scalar loops with
//! PyTorch's semantics: NaN propagates (IEEE `maximum`), a window's or an axis's first NaN is
//! its maximum, and the ReLU's gradient passes where its output is NaN.
//!
//! Each case puts a NaN, `+inf` and `-inf` in every position of every input in turn, and runs
//! with both option sets (fused and pattern-matched kernels; one kernel per node). The test
//! `capped_instruction_sets` runs the whole file again with `HASTEN_SIMD=avx2` and with
//! `HASTEN_SIMD=baseline`, so the AVX-512, AVX2 and plain paths are all checked.

mod common;

use common::cpu_option_sets;
use hasten_tensor::cpu::CpuExecutable;
use hasten_tensor::ir::PaddingMode;
use hasten_tensor::{grad, CpuOptions, Executable, Graph, HostSlice, HostTensor, NodeId, Result};

/// The values put in each position in turn.
const SPECIALS: [f32; 3] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];

/// The tolerance of finite values: elementwise ops are exact up to rounding, products sum in
/// another order.
const TOL: f32 = 1e-4;

/// A scalar reference: from the input values and the loss weights `r`, the output followed
/// by the gradients with respect to the differentiated inputs.
type Reference = fn(&[Vec<f32>], &[f32]) -> Vec<Vec<f32>>;

/// One op: `build` makes `y` from the inputs; the loss `sum(y · r)` (with [`weights`] as `r`)
/// is differentiated with respect to the inputs numbered in `wrt`. `reference` gives `y` and
/// those gradients from the input values and `r`. The fast compile must contain a step whose
/// label contains `kernel`.
struct Case {
    name: &'static str,
    shapes: &'static [&'static [usize]],
    wrt: &'static [usize],
    kernel: &'static str,
    build: fn(&mut Graph, &[NodeId]) -> Result<NodeId>,
    reference: Reference,
}

/// Distinct, nonzero, finite values (no ties, so that PyTorch's splitting of a tie's gradient
/// never comes into it), shifted per input so that two inputs never tie either.
fn base(len: usize, input: usize) -> Vec<f32> {
    (0..len)
        .map(|i| {
            ((i * 7919 % len) as f32 - len as f32 / 2.0) * 0.25 + 0.125 + 0.03125 * input as f32
        })
        .collect()
}

/// The loss weights `r`: positive, varied.
fn weights(len: usize) -> Vec<f32> {
    (0..len).map(|i| 0.5 + (i % 7) as f32 * 0.25).collect()
}

// ---------------------------------------------------------------------------------------------
// Scalar semantics, written out independently of the kernels
// ---------------------------------------------------------------------------------------------

fn relu(x: f32) -> f32 {
    if x.is_nan() || x > 0.0 {
        x
    } else {
        0.0
    }
}

/// Where the ReLU's gradient passes: its output above zero or NaN.
fn relu_passes(y: f32) -> bool {
    y.is_nan() || y > 0.0
}

fn maximum(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.max(b)
    }
}

fn minimum(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.min(b)
    }
}

/// The index of the first maximum of `values`, NaN counting as the greatest.
fn first_max(values: impl Iterator<Item = f32>) -> usize {
    let mut best: Option<(usize, f32)> = None;
    for (i, v) in values.enumerate() {
        let above = match best {
            None => true,
            Some((_, b)) => v > b || (v.is_nan() && !b.is_nan()),
        };
        if above {
            best = Some((i, v));
        }
    }
    best.map_or(0, |(i, _)| i)
}

/// An NHWC max-pooling's windows: for each output, its input cells (the part inside the image).
fn windows(
    [n, h, w, c]: [usize; 4],
    window: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
) -> (Vec<Vec<usize>>, [usize; 2]) {
    let out = |len: usize, k: usize, s: usize, p: usize| (len + 2 * p - k) / s + 1;
    let (oh, ow) = (
        out(h, window[0], stride[0], pad[0]),
        out(w, window[1], stride[1], pad[1]),
    );
    let mut cells = Vec::new();
    for (img, oy, ox, ch) in (0..n).flat_map(|i| {
        (0..oh).flat_map(move |y| (0..ow).flat_map(move |x| (0..c).map(move |ch| (i, y, x, ch))))
    }) {
        let mut cell = Vec::new();
        for ky in 0..window[0] {
            for kx in 0..window[1] {
                let (iy, ix) = (
                    (oy * stride[0] + ky) as isize - pad[0] as isize,
                    (ox * stride[1] + kx) as isize - pad[1] as isize,
                );
                if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                    cell.push(((img * h + iy as usize) * w + ix as usize) * c + ch);
                }
            }
        }
        cells.push(cell);
    }
    (cells, [oh, ow])
}

/// Max-pooling and its gradient (each window's `r` to its first maximal cell) by [`windows`].
fn pool_reference(x: &[f32], r: &[f32], cells: &[Vec<usize>]) -> Vec<Vec<f32>> {
    let mut dx = vec![0.0; x.len()];
    let y = cells
        .iter()
        .zip(r)
        .map(|(cell, &r)| {
            let at = cell[first_max(cell.iter().map(|&i| x[i]))];
            dx[at] += r;
            x[at]
        })
        .collect();
    vec![y, dx]
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// Whether `got` agrees with `want`: NaN with NaN, an infinity with itself, finite values
/// within [`TOL`].
fn agree(got: f32, want: f32) -> bool {
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    if want.is_infinite() {
        return got == want;
    }
    (got - want).abs() <= TOL * (1.0 + want.abs())
}

/// The case's graph: inputs `x0, x1, …`, outputs `y` and `d0, d1, …` for `wrt`.
fn graph(case: &Case) -> Result<Graph> {
    let mut g = Graph::new();
    let xs = case
        .shapes
        .iter()
        .enumerate()
        .map(|(i, s)| g.input(&format!("x{i}"), s.to_vec(), hasten_tensor::DType::F32))
        .collect::<Result<Vec<_>>>()?;
    let y = (case.build)(&mut g, &xs)?;
    g.output("y", y)?;
    if !case.wrt.is_empty() {
        let shape = g.shape(y)?.clone();
        let r = g.constant(HostTensor::f32(shape.clone(), weights(shape.numel()))?);
        let weighted = g.mul(y, r)?;
        let axes: Vec<usize> = (0..shape.rank()).collect();
        let loss = g.sum(weighted, &axes, false)?;
        let wrt: Vec<NodeId> = case.wrt.iter().map(|&i| xs[i]).collect();
        for (k, d) in grad(&mut g, loss, &wrt)?.into_iter().enumerate() {
            g.output(&format!("d{k}"), d)?;
        }
    }
    Ok(g)
}

/// An output as floats (argmax's indices converted).
fn floats(slice: HostSlice<'_>) -> Vec<f32> {
    match slice {
        HostSlice::F32(v) => v.to_vec(),
        HostSlice::I32(v) => v.iter().map(|&i| i as f32).collect(),
        other => panic!("unexpected output {other:?}"),
    }
}

/// Runs `case` on `inputs` and lists where it disagrees with the reference.
fn mismatches(
    exe: &mut CpuExecutable,
    case: &Case,
    inputs: &[Vec<f32>],
    what: &str,
) -> Vec<String> {
    let slices: Vec<HostSlice<'_>> = inputs.iter().map(|v| HostSlice::F32(v)).collect();
    if let Err(e) = exe.run(&slices) {
        return vec![format!("{what}: {e}")];
    }
    let y_len = exe.output("y").map(|t| t.shape.numel()).unwrap_or(0);
    let want = (case.reference)(inputs, &weights(y_len));
    let mut found = Vec::new();
    for (k, want) in want.iter().enumerate() {
        let name = if k == 0 {
            "y".to_string()
        } else {
            format!("d{}", k - 1)
        };
        let got = match exe.output_index(&name).and_then(|i| exe.output_slice(i)) {
            Ok(s) => floats(s),
            Err(e) => return vec![format!("{what}: {name}: {e}")],
        };
        if let Some(i) = (0..want.len()).find(|&i| got.get(i).is_none_or(|&g| !agree(g, want[i]))) {
            found.push(format!(
                "{what}: {name}[{i}] = {:?}, want {}",
                got.get(i),
                want[i]
            ));
        }
    }
    found
}

/// Every special value in every position of every input, with both option sets.
fn check(case: &Case) {
    let mut failures = Vec::new();
    for (label, options) in cpu_option_sets() {
        let mut exe = CpuExecutable::compile(&graph(case).unwrap(), options).unwrap();
        if options == CpuOptions::fast() {
            let labels = exe.step_labels();
            assert!(
                labels.iter().any(|l| l.contains(case.kernel)),
                "{}: no `{}` step in {labels:?}",
                case.name,
                case.kernel
            );
        }
        let clean: Vec<Vec<f32>> = case
            .shapes
            .iter()
            .enumerate()
            .map(|(i, s)| base(s.iter().product(), i))
            .collect();
        failures.extend(mismatches(
            &mut exe,
            case,
            &clean,
            &format!("{label}, no special"),
        ));
        for (input, values) in clean.iter().enumerate() {
            for at in 0..values.len() {
                for special in SPECIALS {
                    let mut inputs = clean.clone();
                    inputs[input][at] = special;
                    let what = format!("{label}, x{input}[{at}] = {special}");
                    failures.extend(mismatches(&mut exe, case, &inputs, &what));
                }
            }
        }
    }
    let shown: Vec<&String> = failures.iter().take(12).collect();
    assert!(
        failures.is_empty(),
        "{}: {} mismatches, first: {shown:#?}",
        case.name,
        failures.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Elementwise
// ---------------------------------------------------------------------------------------------

#[test]
fn relu_keeps_nan_and_passes_its_gradient() {
    check(&Case {
        name: "relu",
        shapes: &[&[3, 7]],
        wrt: &[0],
        kernel: "relu",
        build: |g, x| g.relu(x[0]),
        reference: |x, r| {
            let y: Vec<f32> = x[0].iter().map(|&v| relu(v)).collect();
            let d = y
                .iter()
                .zip(r)
                .map(|(&y, &r)| if relu_passes(y) { r } else { 0.0 })
                .collect();
            vec![y, d]
        },
    });
    check(&Case {
        name: "fused relu",
        shapes: &[&[3, 7]],
        wrt: &[0],
        kernel: "fused(",
        build: |g, x| {
            let t = g.scale(x[0], 2.0)?;
            let one = g.scalar(1.0);
            let t = g.sub(t, one)?;
            g.relu(t)
        },
        reference: |x, r| {
            let y: Vec<f32> = x[0].iter().map(|&v| relu(v * 2.0 - 1.0)).collect();
            let d = y
                .iter()
                .zip(r)
                .map(|(&y, &r)| if relu_passes(y) { 2.0 * r } else { 0.0 })
                .collect();
            vec![y, d]
        },
    });
}

/// `op(a, b)` of `a: [3, 5]` and `b` of `[3, 5]` or `[5]` (broadcast over rows), and the
/// gradients: each side gets `r` unless the other strictly wins (`wins(b, a)`), so both get
/// it where either is NaN.
fn binary_reference(
    x: &[Vec<f32>],
    r: &[f32],
    op: fn(f32, f32) -> f32,
    wins: fn(f32, f32) -> bool,
) -> Vec<Vec<f32>> {
    let (a, b) = (&x[0], &x[1]);
    let bi = |i: usize| i % b.len();
    let y = (0..a.len()).map(|i| op(a[i], b[bi(i)])).collect();
    let mut db = vec![0.0; b.len()];
    let da = (0..a.len())
        .map(|i| {
            let (u, v) = (a[i], b[bi(i)]);
            if !(wins(u, v) || u == v) {
                db[bi(i)] += r[i];
            }
            if wins(v, u) {
                0.0
            } else {
                r[i]
            }
        })
        .collect();
    vec![y, da, db]
}

#[test]
fn maximum_and_minimum_propagate_nan_to_the_output_and_both_gradients() {
    for (shape_b, kernel) in [(&[3usize, 5][..], "max"), (&[5][..], "max")] {
        let shapes: &'static [&'static [usize]] = if shape_b.len() == 2 {
            &[&[3, 5], &[3, 5]]
        } else {
            &[&[3, 5], &[5]]
        };
        check(&Case {
            name: "maximum",
            shapes,
            wrt: &[0, 1],
            kernel,
            build: |g, x| g.binary(hasten_tensor::ir::BinaryOp::Max, x[0], x[1]),
            reference: |x, r| binary_reference(x, r, maximum, |u, v| u > v),
        });
        check(&Case {
            name: "minimum",
            shapes,
            wrt: &[0, 1],
            kernel: "min",
            build: |g, x| g.binary(hasten_tensor::ir::BinaryOp::Min, x[0], x[1]),
            reference: |x, r| binary_reference(x, r, minimum, |u, v| u < v),
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Reductions and argmax
// ---------------------------------------------------------------------------------------------

/// The maximum over axis `axis` of a `[4, 6]` matrix, and its gradient (`r` to every element
/// equal to the maximum: none where it is NaN, as with PyTorch's `amax`).
fn reduce_max_reference(x: &[f32], r: &[f32], axis: usize) -> Vec<Vec<f32>> {
    let (rows, cols) = (4, 6);
    let line = |k: usize, j: usize| {
        if axis == 1 {
            k * cols + j
        } else {
            j * cols + k
        }
    };
    let (lines, len) = if axis == 1 {
        (rows, cols)
    } else {
        (cols, rows)
    };
    let mut dx = vec![0.0; x.len()];
    let y = (0..lines)
        .map(|k| {
            let m = (0..len)
                .map(|j| x[line(k, j)])
                .fold(f32::NEG_INFINITY, maximum);
            (0..len)
                .filter(|&j| x[line(k, j)] == m)
                .for_each(|j| dx[line(k, j)] += r[k]);
            m
        })
        .collect();
    vec![y, dx]
}

#[test]
fn max_reductions_are_nan_where_a_nan_is() {
    check(&Case {
        name: "reduce max, last axis",
        shapes: &[&[4, 6]],
        wrt: &[0],
        kernel: "reduce",
        build: |g, x| g.max(x[0], &[1], false),
        reference: |x, r| reduce_max_reference(&x[0], r, 1),
    });
    check(&Case {
        name: "reduce max, leading axis",
        shapes: &[&[4, 6]],
        wrt: &[0],
        kernel: "reduce",
        build: |g, x| g.max(x[0], &[0], false),
        reference: |x, r| reduce_max_reference(&x[0], r, 0),
    });
}

#[test]
fn argmax_takes_the_first_nan_as_numpy_does() {
    check(&Case {
        name: "argmax",
        shapes: &[&[4, 6]],
        wrt: &[],
        kernel: "argmax",
        build: |g, x| g.argmax(x[0], 1),
        reference: |x, _| {
            let y = x[0]
                .chunks(6)
                .map(|row| first_max(row.iter().copied()) as f32)
                .collect();
            vec![y]
        },
    });
}

// ---------------------------------------------------------------------------------------------
// Pooling
// ---------------------------------------------------------------------------------------------

#[test]
fn max_pooling_keeps_nan_and_routes_its_gradient_to_the_first_nan() {
    check(&Case {
        name: "max pool, tiling windows",
        shapes: &[&[2, 4, 4, 3]],
        wrt: &[0],
        kernel: "max_pool2d",
        build: |g, x| g.max_pool2d(x[0], [2, 2], [2, 2], PaddingMode::Valid),
        reference: |x, r| {
            pool_reference(&x[0], r, &windows([2, 4, 4, 3], [2, 2], [2, 2], [0, 0]).0)
        },
    });
    check(&Case {
        name: "max pool, overlapping windows",
        shapes: &[&[2, 5, 5, 2]],
        wrt: &[0],
        kernel: "max_pool2d",
        build: |g, x| g.max_pool2d(x[0], [3, 3], [1, 1], PaddingMode::Valid),
        reference: |x, r| {
            pool_reference(&x[0], r, &windows([2, 5, 5, 2], [3, 3], [1, 1], [0, 0]).0)
        },
    });
    check(&Case {
        name: "max pool, padded",
        shapes: &[&[1, 5, 5, 2]],
        wrt: &[0],
        kernel: "max_pool2d",
        build: |g, x| g.max_pool2d(x[0], [3, 3], [2, 2], PaddingMode::Same),
        reference: |x, r| {
            pool_reference(&x[0], r, &windows([1, 5, 5, 2], [3, 3], [2, 2], [1, 1]).0)
        },
    });
}

// ---------------------------------------------------------------------------------------------
// Fused kernels: the GEMM's ReLU epilogue and the conv block
// ---------------------------------------------------------------------------------------------

/// `relu(x · w + b)` for `x: [4, 5]`, `w: [5, 6]`, `b: [6]` and its three gradients, dense
/// (so a NaN times a zero gradient is NaN, as in any GEMM).
fn dense_reference(x: &[Vec<f32>], r: &[f32]) -> Vec<Vec<f32>> {
    let (m, k, n) = (4, 5, 6);
    let (a, w, b) = (&x[0], &x[1], &x[2]);
    let z: Vec<f32> = (0..m * n)
        .map(|q| {
            (0..k)
                .map(|p| a[q / n * k + p] as f64 * w[p * n + q % n] as f64)
                .sum::<f64>() as f32
                + b[q % n]
        })
        .collect();
    let y: Vec<f32> = z.iter().map(|&v| relu(v)).collect();
    let dz: Vec<f64> = y
        .iter()
        .zip(r)
        .map(|(&y, &r)| if relu_passes(y) { r as f64 } else { 0.0 })
        .collect();
    let dx = (0..m * k)
        .map(|q| {
            (0..n)
                .map(|j| dz[q / k * n + j] * w[q % k * n + j] as f64)
                .sum::<f64>() as f32
        })
        .collect();
    let dw = (0..k * n)
        .map(|q| {
            (0..m)
                .map(|i| a[i * k + q / n] as f64 * dz[i * n + q % n])
                .sum::<f64>() as f32
        })
        .collect();
    let db = (0..n)
        .map(|j| (0..m).map(|i| dz[i * n + j]).sum::<f64>() as f32)
        .collect();
    vec![y, dx, dw, db]
}

fn dense_relu(g: &mut Graph, x: &[NodeId]) -> Result<NodeId> {
    let z = g.matmul(x[0], x[1])?;
    let z = g.add(z, x[2])?;
    g.relu(z)
}

#[test]
fn the_gemm_relu_epilogue_keeps_nan() {
    // Forward only (inference), the bias and the ReLU run in the GEMM's epilogue.
    check(&Case {
        name: "dense relu, inference",
        shapes: &[&[4, 5], &[5, 6], &[6]],
        wrt: &[],
        kernel: "matmul(bias,relu)",
        build: dense_relu,
        reference: |x, r| dense_reference(x, r)[..1].to_vec(),
    });
    // Trained, the ReLU's output feeds its gradient's mask, so it runs in a fused loop.
    check(&Case {
        name: "dense relu, trained",
        shapes: &[&[4, 5], &[5, 6], &[6]],
        wrt: &[0, 1, 2],
        kernel: "matmul",
        build: dense_relu,
        reference: dense_reference,
    });
}

/// The conv block's geometry: `x: [2, 6, 6, 2]`, a 3×3 filter to 4 channels, valid, then 2×2
/// pooling, whose windows cover the whole `4 × 4` conv output.
const CONV_X: [usize; 4] = [2, 6, 6, 2];
const CONV_O: usize = 4;

/// `max_pool(relu(conv2d(x, w) + b))` and its gradients with respect to `x`, `w` and `b`
/// (dense, as PyTorch computes them), in that order.
fn conv_block_reference(x: &[Vec<f32>], r: &[f32]) -> Vec<Vec<f32>> {
    let [n, h, w_, c] = CONV_X;
    let (oh, ow, o) = (h - 2, w_ - 2, CONV_O);
    let (xs, ws, bs) = (&x[0], &x[1], &x[2]);
    let xi = |img: usize, y: usize, xx: usize, ch: usize| ((img * h + y) * w_ + xx) * c + ch;
    let wi = |ky: usize, kx: usize, ch: usize, oc: usize| ((ky * 3 + kx) * c + ch) * o + oc;
    let taps =
        || (0..3).flat_map(|ky| (0..3).flat_map(move |kx| (0..c).map(move |ch| (ky, kx, ch))));
    let outs = || (0..n).flat_map(|i| (0..oh).flat_map(move |y| (0..ow).map(move |xx| (i, y, xx))));
    let mut z = vec![0f32; n * oh * ow * o];
    for (q, (img, oy, ox)) in outs().enumerate() {
        for oc in 0..o {
            let s: f64 = taps()
                .map(|(ky, kx, ch)| {
                    xs[xi(img, oy + ky, ox + kx, ch)] as f64 * ws[wi(ky, kx, ch, oc)] as f64
                })
                .sum();
            z[q * o + oc] = relu(s as f32 + bs[oc]);
        }
    }
    let (cells, _) = windows([n, oh, ow, o], [2, 2], [2, 2], [0, 0]);
    let pooled = pool_reference(&z, r, &cells);
    let dz: Vec<f64> = pooled[1]
        .iter()
        .zip(&z)
        .map(|(&d, &v)| if relu_passes(v) { d as f64 } else { 0.0 })
        .collect();
    let (mut dx, mut dw, mut db) = (vec![0f64; xs.len()], vec![0f64; ws.len()], vec![0f64; o]);
    for (q, (img, oy, ox)) in outs().enumerate() {
        for oc in 0..o {
            let d = dz[q * o + oc];
            db[oc] += d;
            for (ky, kx, ch) in taps() {
                dx[xi(img, oy + ky, ox + kx, ch)] += d * ws[wi(ky, kx, ch, oc)] as f64;
                dw[wi(ky, kx, ch, oc)] += d * xs[xi(img, oy + ky, ox + kx, ch)] as f64;
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect();
    vec![pooled[0].clone(), f(dx), f(dw), f(db)]
}

fn conv_block(g: &mut Graph, x: &[NodeId]) -> Result<NodeId> {
    let z = g.conv2d(x[0], x[1], [1, 1], PaddingMode::Valid, [1, 1])?;
    let z = g.add(z, x[2])?;
    let z = g.relu(z)?;
    g.max_pool2d(z, [2, 2], [2, 2], PaddingMode::Valid)
}

#[test]
fn the_fused_conv_block_keeps_nan_and_routes_its_gradient_like_the_separate_ops() {
    const SHAPES: &[&[usize]] = &[&CONV_X, &[3, 3, 2, CONV_O], &[CONV_O]];
    // A deeper layer: the block's input gradient is needed (the row-buffer kernels).
    check(&Case {
        name: "conv block",
        shapes: SHAPES,
        wrt: &[0, 1, 2],
        kernel: "grad of conv2d+bias+relu+max_pool2d",
        build: conv_block,
        reference: conv_block_reference,
    });
    // A first layer: only the filter's and the bias's (the register tiles).
    check(&Case {
        name: "first conv block",
        shapes: SHAPES,
        wrt: &[1, 2],
        kernel: "grad of conv2d+bias+relu+max_pool2d",
        build: conv_block,
        reference: |x, r| {
            let mut all = conv_block_reference(x, r);
            all.remove(1);
            all
        },
    });
}

// ---------------------------------------------------------------------------------------------
// Every instruction set
// ---------------------------------------------------------------------------------------------

/// Runs this file's other tests again in child processes whose kernels are capped at AVX2 and
/// at the baseline (the level is chosen once per process). Where a cap is already set, the
/// tests ran at it and there is nothing to add.
#[test]
fn capped_instruction_sets() {
    if std::env::var_os("HASTEN_SIMD").is_some() {
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    for cap in ["avx2", "baseline"] {
        let out = std::process::Command::new(&exe)
            .env("HASTEN_SIMD", cap)
            .args(["--skip", "capped_instruction_sets", "--test-threads", "2"])
            .output()
            .expect("re-running the test binary");
        assert!(
            out.status.success(),
            "HASTEN_SIMD={cap}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
