//! Every layer's forward pass, built straight from `Layer::params` + `Layer::forward` on a
//! graph with random weights, against the same computation done independently in candle-core
//! (NCHW/OIHW convolution and pooling, permuted from hasten's NHWC/HWIO). Dropout and batch
//! normalisation are also checked in training mode: the mask's statistics, the moving-statistics
//! updates, determinism, and their place in a `Sequential` model.

use hasten_nn::activations::Activation;
use hasten_nn::layers::{
    self, ActivationLayer, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten,
    ForwardCtx, Layer, MaxPooling2D, Padding, Softmax, StateKind,
};
use hasten_nn::losses::Loss;
use hasten_nn::optimizers::Adam;
use hasten_nn::{FitOptions, Sequential, Verbosity};
use hasten_tensor::candle_core::{self as candle, DType as CDType, Tensor, D};
use hasten_tensor::{
    grad, Backend, CpuBackend, CpuOptions, DType, Executable, Graph, HostData, HostTensor,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

type TestResult = Result<(), Box<dyn std::error::Error>>;
type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A layer compiled on its own: input `x`, output `y`, its weights as state (updated when
/// training), plus the weights it was given.
struct Compiled {
    exe: Box<dyn Executable>,
    weights: BTreeMap<String, HostTensor>,
}

fn uniform(rng: &mut StdRng, dims: &[usize], lo: f32, hi: f32) -> HostTensor {
    let n = dims.iter().product();
    let data = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    HostTensor::f32(dims.to_vec(), data).expect("length matches dims")
}

/// Builds and compiles `layer` for input dims `x_dims`; weights are random (variances
/// positive), or taken from `given` by weight name.
fn compile(
    layer: &dyn Layer,
    x_dims: &[usize],
    training: bool,
    rng: &mut StdRng,
    given: &BTreeMap<&str, HostTensor>,
    options: CpuOptions,
) -> AnyResult<Compiled> {
    let mut g = Graph::new();
    let x = g.input("x", x_dims.to_vec(), DType::F32)?;
    let specs = layer.params(&x_dims[1..])?;
    let mut params = Vec::new();
    for spec in &specs {
        params.push(g.parameter(spec.name, spec.shape.clone(), spec.dtype())?);
    }
    let mut updates = Vec::new();
    let mut ctx = ForwardCtx {
        training,
        updates: &mut updates,
    };
    let out = layer.forward(&mut g, x, &params, &mut ctx)?;
    let mut want_dims = vec![x_dims[0]];
    want_dims.extend(layer.output_shape(&x_dims[1..])?);
    assert_eq!(
        g.shape(out.value)?.dims(),
        &want_dims[..],
        "{} output shape",
        layer.kind()
    );
    g.output("y", out.value)?;
    for (p, v) in updates {
        g.update(p, v)?;
    }
    let mut exe = CpuBackend::with_options(options).compile(&g)?;
    let mut weights = BTreeMap::new();
    for spec in &specs {
        let value = match given.get(spec.name) {
            Some(v) => v.clone(),
            None if spec.kind == StateKind::Counter => spec.initial_value(rng)?,
            None if spec.name.contains("variance") => uniform(rng, &spec.shape, 0.5, 1.5),
            None => uniform(rng, &spec.shape, -1.0, 1.0),
        };
        exe.write_state(spec.name, value.data.as_slice())?;
        weights.insert(spec.name.to_string(), value);
    }
    Ok(Compiled { exe, weights })
}

impl Compiled {
    fn run(&mut self, x: &HostTensor) -> AnyResult<HostTensor> {
        self.exe.run(&[x.data.as_slice()])?;
        Ok(self.exe.output("y")?)
    }

    fn weight(&self, name: &str) -> AnyResult<Tensor> {
        let w = self
            .weights
            .get(name)
            .ok_or_else(|| format!("no weight {name}"))?;
        Ok(w.to_candle()?)
    }
}

/// Runs `layer` at inference on a random input of `x_dims`, returning the input, the output
/// and the weights (as candle tensors).
fn infer(layer: &dyn Layer, x_dims: &[usize], seed: u64) -> AnyResult<(Tensor, Tensor, Compiled)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let x = uniform(&mut rng, x_dims, -2.0, 2.0);
    let mut c = compile(
        layer,
        x_dims,
        false,
        &mut rng,
        &BTreeMap::new(),
        CpuOptions::fast(),
    )?;
    let y = c.run(&x)?;
    Ok((x.to_candle()?, y.to_candle()?, c))
}

fn values(t: &Tensor) -> candle::Result<Vec<f64>> {
    t.to_dtype(CDType::F64)?.flatten_all()?.to_vec1::<f64>()
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f64) -> TestResult {
    assert_eq!(got.dims(), want.dims(), "{what}: shapes differ");
    let (g, w) = (values(got)?, values(want)?);
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{what}: element {i}: got {a}, want {b}"
        );
    }
    Ok(())
}

fn sigmoid(x: &Tensor) -> candle::Result<Tensor> {
    x.neg()?.exp()?.affine(1.0, 1.0)?.recip()
}

fn softmax_last(x: &Tensor) -> candle::Result<Tensor> {
    let m = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&m)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

fn activate(a: Activation, z: &Tensor) -> candle::Result<Tensor> {
    match a {
        Activation::Linear => Ok(z.clone()),
        Activation::Relu => z.relu(),
        Activation::Sigmoid => sigmoid(z),
        Activation::Tanh => z.tanh(),
        Activation::Softmax => softmax_last(z),
    }
}

const ACTIVATIONS: [Activation; 5] = [
    Activation::Linear,
    Activation::Relu,
    Activation::Sigmoid,
    Activation::Tanh,
    Activation::Softmax,
];

/// TensorFlow's "same" padding (before, after) of one spatial dim.
fn same_padding(size: usize, extent: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + extent).saturating_sub(size);
    (total / 2, total - total / 2)
}

fn nhwc_to_nchw(x: &Tensor) -> candle::Result<Tensor> {
    x.permute((0, 3, 1, 2))?.contiguous()
}

fn nchw_to_nhwc(x: &Tensor) -> candle::Result<Tensor> {
    x.permute((0, 2, 3, 1))?.contiguous()
}

// ---------------------------------------------------------------------------------------------
// Dense, activations, flatten
// ---------------------------------------------------------------------------------------------

#[test]
fn dense_with_every_activation() -> TestResult {
    for (k, act) in ACTIVATIONS.into_iter().enumerate() {
        let layer = Dense::new(7).activation(act);
        let (x, y, c) = infer(&layer, &[5, 12], k as u64)?;
        let z = x
            .matmul(&c.weight("kernel")?)?
            .broadcast_add(&c.weight("bias")?)?;
        assert_close(&format!("dense {act:?}"), &y, &activate(act, &z)?, 1e-5)?;
    }
    // Without bias, on rank-3 input (Dense acts on the last axis).
    let layer = Dense::new(3).use_bias(false).activation(Activation::Tanh);
    let (x, y, c) = infer(&layer, &[2, 4, 6], 9)?;
    let z = x
        .reshape((8, 6))?
        .matmul(&c.weight("kernel")?)?
        .reshape((2, 4, 3))?;
    assert_close("dense rank 3", &y, &z.tanh()?, 1e-5)?;
    Ok(())
}

#[test]
fn activation_softmax_and_flatten_layers() -> TestResult {
    for (k, act) in ACTIVATIONS.into_iter().enumerate() {
        let (x, y, _) = infer(&ActivationLayer::new(act), &[3, 4, 5], 20 + k as u64)?;
        assert_close(
            &format!("activation {act:?}"),
            &y,
            &activate(act, &x)?,
            1e-6,
        )?;
    }
    let (x, y, _) = infer(&Softmax::new(), &[6, 10], 30)?;
    assert_close("softmax", &y, &softmax_last(&x)?, 1e-6)?;
    let sums = values(&y.sum(1)?)?;
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5));
    let (x, y, _) = infer(&Flatten::new(), &[2, 3, 4, 5], 31)?;
    assert_close("flatten", &y, &x.reshape((2, 60))?, 0.0)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Convolution and pooling
// ---------------------------------------------------------------------------------------------

/// Conv2D in candle: NHWC input, HWIO kernel, TF "same" padding done explicitly.
fn conv_reference(
    layer: &Conv2D,
    x: &Tensor,
    kernel: &Tensor,
    bias: Option<&Tensor>,
) -> candle::Result<Tensor> {
    let [sh, sw] = layer.strides;
    let [dh, dw] = layer.dilation_rate;
    assert_eq!((sh, dh), (sw, dw), "candle takes one stride and dilation");
    let x = if x.rank() == 3 {
        x.unsqueeze(3)?
    } else {
        x.clone()
    };
    let mut xc = nhwc_to_nchw(&x)?;
    if layer.padding == Padding::Same {
        let [kh, kw] = layer.kernel_size;
        let (t, b) = same_padding(xc.dims()[2], dh * (kh - 1) + 1, sh);
        let (l, r) = same_padding(xc.dims()[3], dw * (kw - 1) + 1, sw);
        xc = xc.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?;
    }
    let k = kernel.permute((3, 2, 0, 1))?.contiguous()?;
    let mut z = xc.conv2d(&k, 0, sh, dh, 1)?;
    if let Some(b) = bias {
        z = z.broadcast_add(&b.reshape((1, b.dims()[0], 1, 1))?)?;
    }
    activate(layer.activation, &nchw_to_nhwc(&z)?)
}

#[test]
fn conv2d_stride_padding_dilation() -> TestResult {
    let cases = [
        (Conv2D::new(4, [3, 3]), vec![2, 8, 8, 3]),
        (
            Conv2D::new(5, [3, 3])
                .strides([2, 2])
                .padding(Padding::Same)
                .activation(Activation::Relu),
            vec![2, 7, 7, 2],
        ),
        (
            Conv2D::new(3, [2, 3])
                .strides([2, 2])
                .padding(Padding::Same),
            vec![1, 8, 9, 4],
        ),
        (
            Conv2D::new(2, [3, 3])
                .dilation_rate([2, 2])
                .activation(Activation::Sigmoid),
            vec![3, 9, 9, 2],
        ),
        (
            Conv2D::new(4, [3, 2])
                .dilation_rate([2, 2])
                .padding(Padding::Same)
                .activation(Activation::Tanh),
            vec![2, 6, 7, 3],
        ),
        (Conv2D::new(3, [1, 1]).strides([3, 3]), vec![2, 7, 7, 5]),
    ];
    for (k, (layer, dims)) in cases.into_iter().enumerate() {
        let (x, y, c) = infer(&layer, &dims, 40 + k as u64)?;
        let want = conv_reference(&layer, &x, &c.weight("kernel")?, Some(&c.weight("bias")?))?;
        assert_close(&format!("conv case {k}: {layer:?}"), &y, &want, 1e-4)?;
    }
    Ok(())
}

#[test]
fn conv2d_on_28x28_one_channel_input() -> TestResult {
    // The MNIST tutorial's first layer: per-sample input (28, 28), read as one channel.
    let layer = Conv2D::new(32, [3, 3])
        .activation(Activation::Relu)
        .input_shape([28, 28]);
    assert_eq!(layer.output_shape(&[28, 28])?, vec![26, 26, 32]);
    let (x, y, c) = infer(&layer, &[4, 28, 28], 50)?;
    let want = conv_reference(&layer, &x, &c.weight("kernel")?, Some(&c.weight("bias")?))?;
    assert_eq!(y.dims(), &[4, 26, 26, 32]);
    assert_close("conv 28x28", &y, &want, 1e-4)?;
    // The same with "same" padding and no bias.
    let mut layer = Conv2D::new(8, [5, 5]).padding(Padding::Same);
    layer.use_bias = false;
    let (x, y, c) = infer(&layer, &[2, 28, 28], 51)?;
    let want = conv_reference(&layer, &x, &c.weight("kernel")?, None)?;
    assert_close("conv 28x28 same", &y, &want, 1e-4)?;
    Ok(())
}

#[test]
fn max_pooling() -> TestResult {
    let cases = [
        (MaxPooling2D::new([2, 2]), vec![2, 8, 8, 3]),
        (MaxPooling2D::new([3, 3]).strides([2, 2]), vec![2, 9, 9, 2]),
        (MaxPooling2D::new([2, 3]).strides([1, 2]), vec![1, 6, 7, 4]),
        (
            MaxPooling2D::new([3, 3])
                .strides([2, 2])
                .padding(Padding::Same),
            vec![2, 8, 7, 3],
        ),
        (
            MaxPooling2D::new([2, 2]).padding(Padding::Same),
            vec![1, 5, 5, 2],
        ),
    ];
    for (k, (layer, dims)) in cases.into_iter().enumerate() {
        let (x, y, _) = infer(&layer, &dims, 60 + k as u64)?;
        let cfg = &layer.0;
        let s = cfg.strides.unwrap_or(cfg.pool_size);
        let mut xc = nhwc_to_nchw(&x)?;
        if cfg.padding == Padding::Same {
            // Replicating the edge never changes a window's maximum: every padded cell copies a
            // real cell of the same window.
            let (t, b) = same_padding(dims[1], cfg.pool_size[0], s[0]);
            let (l, r) = same_padding(dims[2], cfg.pool_size[1], s[1]);
            xc = xc.pad_with_same(2, t, b)?.pad_with_same(3, l, r)?;
        }
        let window = (cfg.pool_size[0], cfg.pool_size[1]);
        let want = xc.max_pool2d_with_stride(window, (s[0], s[1]))?;
        assert_close(&format!("max pool {k}"), &y, &nchw_to_nhwc(&want)?, 0.0)?;
    }
    Ok(())
}

#[test]
fn average_pooling() -> TestResult {
    let cases = [
        (AveragePooling2D::new([2, 2]), vec![2, 8, 8, 3]),
        (
            AveragePooling2D::new([3, 3]).strides([2, 2]),
            vec![2, 9, 9, 2],
        ),
        (
            AveragePooling2D::new([3, 2]).strides([2, 1]),
            vec![1, 7, 6, 4],
        ),
        (
            AveragePooling2D::new([3, 3])
                .strides([2, 2])
                .padding(Padding::Same),
            vec![2, 8, 7, 3],
        ),
    ];
    for (k, (layer, dims)) in cases.into_iter().enumerate() {
        let (x, y, _) = infer(&layer, &dims, 70 + k as u64)?;
        let cfg = &layer.0;
        let s = cfg.strides.unwrap_or(cfg.pool_size);
        let window = (cfg.pool_size[0], cfg.pool_size[1]);
        let stride = (s[0], s[1]);
        let xc = nhwc_to_nchw(&x)?;
        let want = if cfg.padding == Padding::Same {
            // Padded cells are not counted: divide the zero-padded average by the average of
            // the zero-padded ones.
            let (t, b) = same_padding(dims[1], window.0, stride.0);
            let (l, r) = same_padding(dims[2], window.1, stride.1);
            let pad = |v: &Tensor| -> candle::Result<Tensor> {
                v.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)
            };
            let sums = pad(&xc)?.avg_pool2d_with_stride(window, stride)?;
            let counts = pad(&xc.ones_like()?)?.avg_pool2d_with_stride(window, stride)?;
            (sums / counts)?
        } else {
            xc.avg_pool2d_with_stride(window, stride)?
        };
        assert_close(&format!("avg pool {k}"), &y, &nchw_to_nhwc(&want)?, 1e-6)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Dropout
// ---------------------------------------------------------------------------------------------

#[test]
fn dropout_is_the_identity_at_inference() -> TestResult {
    let mut layer = Dropout::new(0.5);
    layer.set_name("dropout".into());
    let (x, y, _) = infer(&layer, &[4, 3, 5], 80)?;
    assert_close("dropout inference", &y, &x, 0.0)?;
    Ok(())
}

/// A training-mode dropout layer over `dims`, with its step counter at `counter`.
fn dropout_training(layer: &Dropout, dims: &[usize], counter: i32) -> AnyResult<Compiled> {
    let mut given = BTreeMap::new();
    given.insert("seed", HostTensor::i32([0usize; 0], vec![counter])?);
    compile(
        layer,
        dims,
        true,
        &mut StdRng::seed_from_u64(0),
        &given,
        CpuOptions::fast(),
    )
}

#[test]
fn dropout_training_mask_statistics() -> TestResult {
    let rate = 0.3f32;
    let mut layer = Dropout::new(rate);
    layer.set_name("dropout".into());
    let dims = [64, 1000];
    let x = uniform(&mut StdRng::seed_from_u64(81), &dims, 0.5, 2.0);
    let xs = x.as_f32()?.to_vec();
    let mut c = dropout_training(&layer, &dims, 0)?;
    let mut masks = Vec::new();
    for step in 0..3 {
        let y = c.run(&x)?;
        let y = y.as_f32()?;
        let mut dropped = 0usize;
        for (a, b) in xs.iter().zip(y) {
            if *b == 0.0 {
                dropped += 1;
            } else {
                let scaled = a / (1.0 - rate);
                assert!((b - scaled).abs() <= 1e-6 * scaled, "kept {a} became {b}");
            }
        }
        let share = dropped as f64 / xs.len() as f64;
        // Standard error 0.0018.
        assert!(
            (share - rate as f64).abs() < 0.01,
            "step {step}: dropped {share}"
        );
        // The mean is preserved in expectation.
        let mean_x = xs.iter().map(|&v| v as f64).sum::<f64>() / xs.len() as f64;
        let mean_y = y.iter().map(|&v| v as f64).sum::<f64>() / xs.len() as f64;
        assert!(
            (mean_y / mean_x - 1.0).abs() < 0.02,
            "means {mean_x} {mean_y}"
        );
        masks.push(y.iter().map(|&v| v == 0.0).collect::<Vec<bool>>());
        // The counter advanced.
        let counter = c.exe.read_state("seed")?;
        assert_eq!(counter.data, HostData::I32(vec![step + 1]));
    }
    // Fresh masks every step, roughly independent (overlap of drops ≈ rate²).
    for (a, b) in [(0, 1), (1, 2), (0, 2)] {
        assert_ne!(masks[a], masks[b]);
        let both = masks[a]
            .iter()
            .zip(&masks[b])
            .filter(|(p, q)| **p && **q)
            .count() as f64
            / xs.len() as f64;
        assert!((both - (rate * rate) as f64).abs() < 0.01, "overlap {both}");
    }
    // Deterministic and resumable: a fresh executable whose counter is 1 repeats step 1, with
    // the reference CPU options too.
    let mut again = dropout_training(&layer, &dims, 1)?;
    let y = again.run(&x)?;
    let mask: Vec<bool> = y.as_f32()?.iter().map(|&v| v == 0.0).collect();
    assert_eq!(mask, masks[1]);
    let mut given = BTreeMap::new();
    given.insert("seed", HostTensor::i32([0usize; 0], vec![1])?);
    let mut reference = compile(
        &layer,
        &dims,
        true,
        &mut StdRng::seed_from_u64(0),
        &given,
        CpuOptions::reference(),
    )?;
    assert_eq!(reference.run(&x)?, y);
    // Another layer name (another layer of a model) or seed gives other masks.
    for other in [
        Dropout::new(rate),
        {
            let mut d = Dropout::new(rate).seed(7);
            d.set_name("dropout".into());
            d
        },
        {
            let mut d = Dropout::new(rate);
            d.set_name("dropout_1".into());
            d
        },
    ] {
        let y = dropout_training(&other, &dims, 1)?.run(&x)?;
        let mask: Vec<bool> = y.as_f32()?.iter().map(|&v| v == 0.0).collect();
        assert_ne!(mask, masks[1], "{other:?}");
    }
    // The counter is an integer: past 2^24 (where an f32 counter had to wrap, repeating the
    // masks of step 0) it still draws new masks, and it wraps only at 2^32.
    for counter in [1 << 24, (1 << 24) + 1, i32::MIN, -1] {
        let y = dropout_training(&layer, &dims, counter)?.run(&x)?;
        let mask: Vec<bool> = y.as_f32()?.iter().map(|&v| v == 0.0).collect();
        assert!(
            masks.iter().all(|m| *m != mask),
            "counter {counter} repeats a mask"
        );
    }
    let mut c = dropout_training(&layer, &[4, 4], i32::MAX)?;
    c.run(&uniform(&mut StdRng::seed_from_u64(1), &[4, 4], 1.0, 2.0))?;
    assert_eq!(
        c.exe.read_state("seed")?.data,
        HostData::I32(vec![i32::MIN])
    );
    let mut c = dropout_training(&layer, &[4, 4], -1)?;
    c.run(&uniform(&mut StdRng::seed_from_u64(1), &[4, 4], 1.0, 2.0))?;
    assert_eq!(c.exe.read_state("seed")?.data, HostData::I32(vec![0]));
    Ok(())
}

#[test]
fn dropout_gradient_is_the_mask() -> TestResult {
    let rate = 0.25f32;
    let mut layer = Dropout::new(rate);
    layer.set_name("dropout".into());
    let mut g = Graph::new();
    let x = g.parameter("x", [50, 40], DType::F32)?;
    let counter = g.parameter("seed", [0usize; 0], DType::I32)?;
    let mut updates = Vec::new();
    let mut ctx = ForwardCtx {
        training: true,
        updates: &mut updates,
    };
    let y = layer.forward(&mut g, x, &[counter], &mut ctx)?.value;
    let loss = g.sum(y, &[0, 1], false)?;
    let dx = grad(&mut g, loss, &[x])?[0];
    g.output("y", y)?;
    g.output("dx", dx)?;
    let mut exe = CpuBackend::new().compile(&g)?;
    let xs = uniform(&mut StdRng::seed_from_u64(82), &[50, 40], 1.0, 2.0);
    exe.write_state("x", xs.data.as_slice())?;
    exe.run(&[])?;
    let (y, dx) = (exe.output("y")?, exe.output("dx")?);
    for (yv, dv) in y.as_f32()?.iter().zip(dx.as_f32()?) {
        let want = if *yv == 0.0 { 0.0 } else { 1.0 / (1.0 - rate) };
        assert!((dv - want).abs() < 1e-6);
    }
    Ok(())
}

#[test]
fn dropout_rejects_bad_rates() {
    for rate in [-0.1, 1.0, 1.5, f32::NAN] {
        let layer = Dropout::new(rate);
        let err = layer.output_shape(&[3]).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("[0, 1)")),
            "rate {rate}: {err:?}"
        );
        assert!(layer.params(&[3]).is_err());
    }
    // Rate 0 is the identity even while training.
    let mut c = dropout_training(&Dropout::new(0.0), &[2, 3], 0).expect("compiles");
    let x = uniform(&mut StdRng::seed_from_u64(2), &[2, 3], -1.0, 1.0);
    assert_eq!(c.run(&x).expect("runs"), x);
}

// ---------------------------------------------------------------------------------------------
// Batch normalisation
// ---------------------------------------------------------------------------------------------

/// Batch statistics over every axis but the last (biased variance), as `[C]` tensors.
fn moments(x: &Tensor) -> candle::Result<(Tensor, Tensor)> {
    let c = x.dims()[x.rank() - 1];
    let rows = x.reshape(((), c))?;
    let mean = rows.mean_keepdim(0)?;
    let var = rows.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)?;
    Ok((mean.reshape(c)?, var.reshape(c)?))
}

fn normalise(
    x: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f64,
) -> candle::Result<Tensor> {
    let mut y = x
        .broadcast_sub(mean)?
        .broadcast_div(&var.affine(1.0, eps)?.sqrt()?)?;
    if let Some(gamma) = gamma {
        y = y.broadcast_mul(gamma)?;
    }
    if let Some(beta) = beta {
        y = y.broadcast_add(beta)?;
    }
    Ok(y)
}

/// A batch-norm layer's weights in candle: gamma and beta (where the layer has them), then the
/// moving mean and variance.
type BatchNormWeights = (Option<Tensor>, Option<Tensor>, Tensor, Tensor);

/// Compiles a batch-norm `layer` on inputs of `dims` for training or inference (fast
/// options, initialised from `rng`), and reads its weights.
fn compile_batch_norm(
    layer: &BatchNormalization,
    dims: &[usize],
    training: bool,
    rng: &mut StdRng,
) -> AnyResult<(Compiled, BatchNormWeights)> {
    let c = compile(
        layer,
        dims,
        training,
        rng,
        &BTreeMap::new(),
        CpuOptions::fast(),
    )?;
    let gamma = layer.scale.then(|| c.weight("gamma")).transpose()?;
    let beta = layer.center.then(|| c.weight("beta")).transpose()?;
    let (mm, mv) = (c.weight("moving_mean")?, c.weight("moving_variance")?);
    Ok((c, (gamma, beta, mm, mv)))
}

#[test]
fn batch_normalization_training_and_inference() -> TestResult {
    let configs = [
        BatchNormalization::new(),
        BatchNormalization::new().momentum(0.9).epsilon(1e-2),
        BatchNormalization::new().center(false),
        BatchNormalization::new().scale(false).center(false),
    ];
    for (k, layer) in configs.into_iter().enumerate() {
        for dims in [vec![16, 6], vec![4, 5, 3, 2]] {
            let what = format!("batch norm {k} {dims:?}");
            let mut rng = StdRng::seed_from_u64(90 + k as u64);
            // An offset and scale far from 0 and 1, so the normalisation shows.
            let x = uniform(&mut rng, &dims, 1.0, 5.0);
            let xc = x.to_candle()?;
            let eps = layer.epsilon as f64;
            let m = layer.momentum as f64;

            // Training: batch statistics, and the moving statistics' updates.
            let (mut c, (gamma, beta, mm, mv)) = compile_batch_norm(&layer, &dims, true, &mut rng)?;
            let names: Vec<&String> = c.weights.keys().collect();
            let expected = usize::from(layer.scale) + usize::from(layer.center) + 2;
            assert_eq!(names.len(), expected, "{what}: {names:?}");
            let y = c.run(&x)?.to_candle()?;
            let (mean, var) = moments(&xc)?;
            let want = normalise(&xc, &mean, &var, gamma.as_ref(), beta.as_ref(), eps)?;
            assert_close(&format!("{what} training"), &y, &want, 1e-5)?;
            let new_mm = c.exe.read_state("moving_mean")?.to_candle()?;
            let new_mv = c.exe.read_state("moving_variance")?.to_candle()?;
            let want_mm = ((mm.affine(m, 0.0)? + mean.affine(1.0 - m, 0.0)?)?).contiguous()?;
            let want_mv = ((mv.affine(m, 0.0)? + var.affine(1.0 - m, 0.0)?)?).contiguous()?;
            assert_close(&format!("{what} moving mean"), &new_mm, &want_mm, 1e-6)?;
            assert_close(&format!("{what} moving variance"), &new_mv, &want_mv, 1e-6)?;
            // Per-channel output statistics are (beta, gamma) up to epsilon.
            if gamma.is_none() && beta.is_none() {
                let (om, ov) = moments(&y)?;
                assert!(values(&om)?.iter().all(|v| v.abs() < 1e-4));
                assert!(values(&ov)?.iter().all(|v| (v - 1.0).abs() < 0.01));
            }

            // Inference: the moving statistics, and no state change.
            let (mut c, (gamma, beta, mm, mv)) =
                compile_batch_norm(&layer, &dims, false, &mut rng)?;
            let y = c.run(&x)?.to_candle()?;
            let want = normalise(&xc, &mm, &mv, gamma.as_ref(), beta.as_ref(), eps)?;
            assert_close(&format!("{what} inference"), &y, &want, 1e-5)?;
            assert_eq!(
                c.exe
                    .read_state("moving_mean")?
                    .to_candle()?
                    .to_vec1::<f32>()?,
                mm.to_vec1::<f32>()?
            );
        }
    }
    Ok(())
}

#[test]
fn batch_normalization_checks_its_settings() {
    let ok = BatchNormalization::new();
    assert_eq!(
        (ok.momentum, ok.epsilon, ok.center, ok.scale),
        (0.99, 1e-3, true, true)
    );
    let names: Vec<&str> = ok
        .params(&[5, 5, 3])
        .expect("valid")
        .iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["gamma", "beta", "moving_mean", "moving_variance"]);
    let trainable: Vec<bool> = ok
        .params(&[4])
        .expect("valid")
        .iter()
        .map(|s| s.trainable)
        .collect();
    assert_eq!(trainable, [true, true, false, false]);
    for bad in [
        BatchNormalization::new().momentum(1.5),
        BatchNormalization::new().epsilon(0.0),
        BatchNormalization::new().epsilon(f32::NAN),
    ] {
        assert!(bad.output_shape(&[4]).is_err(), "{bad:?}");
    }
    assert!(ok.output_shape(&[]).is_err());
    assert!(ok.output_shape(&[3, 0]).is_err());
}

// ---------------------------------------------------------------------------------------------
// Configuration and models
// ---------------------------------------------------------------------------------------------

#[test]
fn new_layers_round_trip_through_their_config() -> TestResult {
    let all: Vec<Box<dyn Layer>> = vec![
        Box::new(Dropout::new(0.4).seed(3)),
        Box::new(BatchNormalization::new().momentum(0.9).center(false)),
    ];
    for layer in &all {
        let back = layers::from_config(layer.kind(), layer.config())?;
        assert_eq!(back.config(), layer.config());
        assert_eq!(back.kind(), layer.kind());
    }
    // Keras-style minimal configs take the defaults.
    let d = layers::from_config("Dropout", serde_json::json!({"rate": 0.2}))?;
    assert_eq!(d.config()["seed"], 0);
    let bn = layers::from_config("BatchNormalization", serde_json::json!({}))?;
    assert_eq!(bn.config(), BatchNormalization::new().config());
    assert!(layers::from_config("Dropout", serde_json::json!({})).is_err());
    Ok(())
}

#[test]
fn a_model_trains_with_dropout_and_batch_normalization() -> TestResult {
    let build = || {
        Sequential::new()
            .seed(1)
            .with(Dense::new(16).input_shape([8]))
            .with(BatchNormalization::new())
            .with(ActivationLayer::new(Activation::Relu))
            .with(Dropout::new(0.5))
            .with(Dense::new(3).activation(Activation::Softmax))
    };
    let mut rng = StdRng::seed_from_u64(100);
    let n = 96;
    let x = uniform(&mut rng, &[n, 8], -1.0, 1.0);
    let labels: Vec<i32> = x
        .as_f32()?
        .chunks(8)
        .map(|r| if r[0] > 0.3 { 2 } else { i32::from(r[1] > 0.0) })
        .collect();
    let y = HostTensor::i32([n], labels)?;
    let train = |model: &mut Sequential| -> AnyResult<BTreeMap<String, HostTensor>> {
        model.compile(
            Adam::new(0.01),
            Loss::sparse_categorical_crossentropy(),
            &[],
        )?;
        let options = FitOptions::epochs(2)
            .batch_size(20)
            .verbose(Verbosity::Silent);
        model.fit(&x, &y, options)?;
        Ok(model.get_state()?)
    };
    let mut model = build();
    let state = train(&mut model)?;
    let names = model.weight_names();
    for w in [
        "batch_normalization/moving_mean",
        "batch_normalization/moving_variance",
        "dropout/seed",
    ] {
        assert!(names.iter().any(|n| n == w), "{w} missing from {names:?}");
    }
    // The dropout counter counted the steps (5 batches per epoch, 2 epochs).
    assert_eq!(model.iterations()?, 10);
    assert_eq!(state["dropout/seed"].data, HostData::I32(vec![10]));
    // The moving statistics moved.
    assert!(state["batch_normalization/moving_mean"]
        .as_f32()?
        .iter()
        .any(|&v| v != 0.0));
    // Training is deterministic, dropout included.
    let again = train(&mut build())?;
    assert_eq!(state, again);
    // Prediction uses no dropout: two predictions agree.
    let p1 = model.predict(&x, 32)?;
    let p2 = model.predict(&x, 32)?;
    assert_eq!(p1, p2);
    Ok(())
}
