//! Many random graphs run twice: with every optimisation (constant folding, dead-node
//! elimination, fusion, memory reuse) and with none. Outputs and state must agree after several
//! steps, which catches a fused loop reading a stale value or the memory plan letting two live
//! values share bytes.

use hasten_tensor::ir::{BinaryOp, CompareOp, PaddingMode, ReduceOp, UnaryOp};
use hasten_tensor::{Backend, CpuBackend, CpuOptions, DType, Graph, HostSlice, HostTensor, NodeId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const UNARY: [UnaryOp; 6] = [
    UnaryOp::Neg,
    UnaryOp::Relu,
    UnaryOp::Sigmoid,
    UnaryOp::Tanh,
    UnaryOp::Abs,
    UnaryOp::Square,
];
const BINARY: [BinaryOp; 5] = [
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Max,
    BinaryOp::Min,
];
const COMPARE: [CompareOp; 3] = [CompareOp::Lt, CompareOp::Ge, CompareOp::Eq];

fn pick(rng: &mut StdRng, pool: &[NodeId]) -> NodeId {
    pool[rng.random_range(0..pool.len())]
}

/// Tries one random op on random operands; `None` when the graph rejects it (a shape
/// mismatch is an error, never a panic, which this also exercises).
fn random_node(g: &mut Graph, rng: &mut StdRng, pool: &[NodeId]) -> Option<NodeId> {
    let a = pick(rng, pool);
    let b = pick(rng, pool);
    let rank = g.shape(a).ok()?.rank();
    match rng.random_range(0..12) {
        0 | 1 => g.unary(UNARY[rng.random_range(0..UNARY.len())], a).ok(),
        2..=4 => g
            .binary(BINARY[rng.random_range(0..BINARY.len())], a, b)
            .ok(),
        5 => {
            let c = g
                .compare(COMPARE[rng.random_range(0..COMPARE.len())], a, b)
                .ok()?;
            g.select(c, a, b).ok()
        }
        6 => {
            let axes: Vec<usize> = (0..rank).filter(|_| rng.random_bool(0.5)).collect();
            let op = [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max][rng.random_range(0..3)];
            g.reduce(op, a, &axes, rng.random_bool(0.5)).ok()
        }
        7 if rank == 2 => g.transpose(a, &[1, 0]).ok(),
        8 => g
            .matmul_t(a, b, rng.random_bool(0.5), rng.random_bool(0.5))
            .ok()
            .and_then(|m| g.unary(UnaryOp::Tanh, m).ok()),
        9 => {
            let n = g.shape(a).ok()?.numel();
            g.reshape(a, [n]).ok()
        }
        10 => {
            let target = g.shape(b).ok()?.clone();
            g.broadcast(a, target).ok()
        }
        _ => {
            let dims = g.shape(a).ok()?.0.clone();
            let starts: Vec<usize> = dims
                .iter()
                .map(|&d| rng.random_range(0..d.max(1)))
                .collect();
            let ends: Vec<usize> = dims
                .iter()
                .zip(&starts)
                .map(|(&d, &s)| rng.random_range(s + 1..=d.max(s + 1)))
                .collect();
            let s = g.slice(a, &starts, &ends).ok()?;
            if rng.random_bool(0.5) {
                let high: Vec<usize> = dims.iter().zip(&ends).map(|(d, e)| d - e).collect();
                g.pad(s, &starts, &high).ok()
            } else {
                g.concat(&[s, s], 0).ok()
            }
        }
    }
}

struct Case {
    graph: Graph,
    inputs: Vec<HostTensor>,
    state: Vec<(String, HostTensor)>,
}

fn random_tensor(rng: &mut StdRng, dims: &[usize], scale: f32) -> HostTensor {
    let n: usize = dims.iter().product();
    let data = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
    HostTensor::f32(dims.to_vec(), data).unwrap()
}

fn random_case(seed: u64) -> Case {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut g = Graph::new();
    let shapes: [&[usize]; 5] = [&[4, 6], &[4, 6], &[6], &[4, 1], &[6, 4]];
    let mut pool = Vec::new();
    let mut inputs = Vec::new();
    for (i, s) in shapes.iter().enumerate() {
        pool.push(g.input(&format!("x{i}"), s.to_vec(), DType::F32).unwrap());
        inputs.push(random_tensor(&mut rng, s, 2.0));
    }
    let mut state = Vec::new();
    let mut params = Vec::new();
    for (i, s) in [&[4usize, 6][..], &[6]].iter().enumerate() {
        let name = format!("p{i}");
        let p = g.parameter(&name, s.to_vec(), DType::F32).unwrap();
        pool.push(p);
        params.push(p);
        state.push((name, random_tensor(&mut rng, s, 1.0)));
    }
    pool.push(g.scalar(0.5));
    for _ in 0..rng.random_range(5..40) {
        if let Some(n) = random_node(&mut g, &mut rng, &pool) {
            pool.push(n);
        }
    }
    for (i, &n) in pool.iter().rev().take(3).enumerate() {
        g.output(&format!("out{i}"), n).unwrap();
    }
    for &p in &params {
        let shape = g.shape(p).unwrap().clone();
        let same: Vec<NodeId> = pool
            .iter()
            .copied()
            .filter(|&n| n != p && g.shape(n).unwrap() == &shape)
            .collect();
        if !same.is_empty() {
            let v = g.unary(UnaryOp::Tanh, pick(&mut rng, &same)).unwrap();
            g.update(p, v).unwrap();
        }
    }
    Case {
        graph: g,
        inputs,
        state,
    }
}

fn run(case: &Case, options: CpuOptions, steps: usize) -> Vec<HostTensor> {
    let mut exe = CpuBackend::with_options(options)
        .compile(&case.graph)
        .unwrap();
    for (name, value) in &case.state {
        exe.write_state(name, value.data.as_slice()).unwrap();
    }
    let inputs: Vec<HostSlice<'_>> = case.inputs.iter().map(|t| t.data.as_slice()).collect();
    let mut results = Vec::new();
    for _ in 0..steps {
        exe.run(&inputs).unwrap();
        for name in exe.output_names().to_vec() {
            results.push(exe.output(&name).unwrap());
        }
    }
    for (name, _) in &case.state {
        results.push(exe.read_state(name).unwrap());
    }
    results
}

#[test]
fn random_graphs_agree_with_and_without_optimisations() {
    let mut merged = 0;
    for seed in 0..300 {
        let case = random_case(seed);
        let fast = run(&case, CpuOptions::fast(), 3);
        let reference = run(&case, CpuOptions::reference(), 3);
        assert_eq!(fast.len(), reference.len());
        for (k, (a, b)) in fast.iter().zip(&reference).enumerate() {
            assert_eq!(a.shape, b.shape, "seed {seed}, result {k}");
            let (a, b) = (a.as_f32().unwrap(), b.as_f32().unwrap());
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                let same = (x.is_nan() && y.is_nan()) || (x - y).abs() <= 1e-5 * (1.0 + y.abs());
                assert!(
                    same,
                    "seed {seed}, result {k}, element {i}: planned {x} vs reference {y}"
                );
            }
        }
        let exe = CpuBackend::new().compile_cpu(&case.graph).unwrap();
        let computed = exe
            .graph()
            .nodes()
            .iter()
            .filter(|n| !n.inputs.is_empty())
            .count();
        merged += computed.saturating_sub(exe.kernel_count());
    }
    assert!(
        merged > 300,
        "fusion and views should remove many kernels; removed {merged}"
    );
}

#[test]
fn the_memory_plan_reuses_bytes() {
    let mut g = Graph::new();
    let mut x = g.input("x", [256, 256], DType::F32).unwrap();
    for _ in 0..10 {
        let t = g.transpose(x, &[1, 0]).unwrap();
        x = g.unary(UnaryOp::Tanh, t).unwrap();
    }
    g.output("y", x).unwrap();
    let exe = CpuBackend::new().compile_cpu(&g).unwrap();
    let (planned, unplanned) = exe.arena_bytes();
    assert!(
        planned * 4 <= unplanned,
        "planned {planned} bytes vs {unplanned} without reuse"
    );
}

/// One SGD step of conv → bias → relu → max-pool → dense over `batch` images, with the loss
/// and every updated parameter as results.
fn conv_train_step(batch: usize, padding: PaddingMode) -> Case {
    let mut rng = StdRng::seed_from_u64(batch as u64);
    let mut g = Graph::new();
    let x = g.input("x", [batch, 9, 10, 2], DType::F32).unwrap();
    let shapes: [(&str, &[usize]); 4] = [
        ("kernel", &[3, 3, 2, 5]),
        ("bias", &[5]),
        ("dense", &[0, 3]),
        ("avg", &[1]),
    ];
    let kernel = g
        .parameter("kernel", shapes[0].1.to_vec(), DType::F32)
        .unwrap();
    let bias = g
        .parameter("bias", shapes[1].1.to_vec(), DType::F32)
        .unwrap();
    let z = g.conv2d(x, kernel, [1, 1], padding, [1, 1]).unwrap();
    let z = g.add(z, bias).unwrap();
    let a = g.relu(z).unwrap();
    let p = g.max_pool2d(a, [2, 2], [2, 2], PaddingMode::Valid).unwrap();
    let q = g.avg_pool2d(a, [3, 3], [2, 2], PaddingMode::Same).unwrap();
    let q = g.unary(UnaryOp::Tanh, q).unwrap();
    let features = g.shape(p).unwrap().numel() / batch;
    let flat = g.reshape(p, [batch, features]).unwrap();
    let dense = g.parameter("dense", [features, 3], DType::F32).unwrap();
    let y = g.matmul(flat, dense).unwrap();
    let y2 = g.unary(UnaryOp::Square, y).unwrap();
    let q2 = g.unary(UnaryOp::Square, q).unwrap();
    let loss = g.mean_all(y2).unwrap();
    let extra = g.mean_all(q2).unwrap();
    let loss = g.add(loss, extra).unwrap();
    g.output("loss", loss).unwrap();
    let params = [kernel, bias, dense];
    let grads = hasten_tensor::grad(&mut g, loss, &params).unwrap();
    for (&p, &d) in params.iter().zip(&grads) {
        let step = g.scale(d, 0.1).unwrap();
        let next = g.sub(p, step).unwrap();
        g.update(p, next).unwrap();
    }
    let mut state = Vec::new();
    for (name, dims) in &shapes[..3] {
        let dims: Vec<usize> = match *name {
            "dense" => vec![features, 3],
            _ => dims.to_vec(),
        };
        state.push((name.to_string(), random_tensor(&mut rng, &dims, 0.5)));
    }
    Case {
        inputs: vec![random_tensor(&mut rng, &[batch, 9, 10, 2], 1.0)],
        graph: g,
        state,
    }
}

#[test]
fn batch_tiled_convolution_steps_agree_with_the_reference() {
    for batch in [1, 4, 7] {
        for padding in [PaddingMode::Valid, PaddingMode::Same] {
            let case = conv_train_step(batch, padding);
            let tiled = CpuBackend::new().compile_cpu(&case.graph).unwrap();
            assert_eq!(
                tiled.tiled_runs() > 0,
                batch >= 4,
                "batch {batch}: tiled runs {}",
                tiled.tiled_runs()
            );
            assert_agree(&case, &format!("batch {batch}, {padding:?}"));
        }
    }
}

/// Runs `case` for 3 steps with every optimisation and with none, and checks that every
/// result agrees within 1e-4 (relative).
fn assert_agree(case: &Case, label: &str) {
    let fast = run(case, CpuOptions::fast(), 3);
    let reference = run(case, CpuOptions::reference(), 3);
    assert_eq!(fast.len(), reference.len());
    for (k, (a, b)) in fast.iter().zip(&reference).enumerate() {
        let (a, b) = (a.as_f32().unwrap(), b.as_f32().unwrap());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "{label}, result {k}, element {i}: {x} vs {y}"
            );
        }
    }
}

/// One SGD step of Dense(relu) → Dense over `batch` rows, with bias added as `b + xW` in the
/// second layer, and an extra reader of the first product's pre-activation when
/// `expose_product`.
fn dense_train_step(batch: usize, expose_product: bool) -> Case {
    let mut rng = StdRng::seed_from_u64(batch as u64 + 100);
    let mut g = Graph::new();
    let x = g.input("x", [batch, 20], DType::F32).unwrap();
    let shapes: [(&str, &[usize]); 4] = [
        ("w1", &[20, 40]),
        ("b1", &[40]),
        ("w2", &[40, 7]),
        ("b2", &[7]),
    ];
    let params: Vec<NodeId> = shapes
        .iter()
        .map(|(name, dims)| g.parameter(name, dims.to_vec(), DType::F32).unwrap())
        .collect();
    let z = g.matmul(x, params[0]).unwrap();
    let z_biased = g.add(z, params[1]).unwrap();
    let h = g.relu(z_biased).unwrap();
    let y = g.matmul(h, params[2]).unwrap();
    let y = g.add(params[3], y).unwrap();
    let y2 = g.unary(UnaryOp::Square, y).unwrap();
    let loss = g.mean_all(y2).unwrap();
    g.output("loss", loss).unwrap();
    g.output("y", y).unwrap();
    if expose_product {
        g.output("z", z).unwrap();
    }
    let grads = hasten_tensor::grad(&mut g, loss, &params).unwrap();
    for (&p, &d) in params.iter().zip(&grads) {
        let step = g.scale(d, 0.1).unwrap();
        let next = g.sub(p, step).unwrap();
        g.update(p, next).unwrap();
    }
    let state = shapes
        .iter()
        .map(|(name, dims)| (name.to_string(), random_tensor(&mut rng, dims, 0.5)))
        .collect();
    Case {
        inputs: vec![random_tensor(&mut rng, &[batch, 20], 1.0)],
        graph: g,
        state,
    }
}

#[test]
fn dense_layers_with_bias_and_relu_epilogues_agree_with_the_reference() {
    for batch in [1, 5, 64] {
        for expose_product in [false, true] {
            let case = dense_train_step(batch, expose_product);
            let exe = CpuBackend::new().compile_cpu(&case.graph).unwrap();
            let exposed = CpuBackend::new()
                .compile_cpu(&dense_train_step(batch, true).graph)
                .unwrap();
            // Both products take their bias (and ReLU) as epilogue, unless the first one's
            // own value is needed, which keeps its bias add as a separate loop.
            if !expose_product {
                assert_eq!(exe.kernel_count() + 1, exposed.kernel_count());
            }
            assert_agree(
                &case,
                &format!("batch {batch}, product exposed {expose_product}"),
            );
        }
    }
}
