//! On a GPU: every op case's forward value and gradient against the CPU backend (1e-5
//! relative; 1e-4 for products, convolutions and sums, whose summation order differs; exact
//! for integer, boolean and random results). Skips with a message on a machine without one.

mod common;

use common::cases;
use hasten_tensor::{Backend, CpuBackend, HostTensor};

fn run(
    backend: &dyn Backend,
    g: &hasten_tensor::Graph,
    inputs: &[HostTensor],
) -> Vec<(String, HostTensor)> {
    let mut exe = backend.compile(g).unwrap();
    let slices: Vec<_> = inputs.iter().map(|t| t.data.as_slice()).collect();
    exe.run(&slices).unwrap();
    let names = exe.output_names().to_vec();
    names
        .into_iter()
        .map(|n| (n.clone(), exe.output(&n).unwrap()))
        .collect()
}

#[test]
fn every_op_forward_and_gradient_matches_the_cpu() {
    let Some(gpu) = common::gpu_or_skip("every_op_forward_and_gradient_matches_the_cpu") else {
        return;
    };
    let mut failures = Vec::new();
    for case in cases::all() {
        let (g, inputs) = cases::graph(&case).unwrap();
        let want = run(&CpuBackend::new(), &g, &inputs);
        let got = run(&gpu, &g, &inputs);
        for ((name, a), (_, b)) in got.iter().zip(&want) {
            if let Err(e) = common::same(a, b, case.tol) {
                failures.push(format!("{} output {name}: {e}", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn tf32_products_stay_close_but_are_opt_in() {
    let Some(_) = common::gpu_or_skip("tf32_products_stay_close_but_are_opt_in") else {
        return;
    };
    let options = hasten_cuda::CudaOptions { tf32: true };
    let gpu = hasten_cuda::CudaBackend::with_options(0, options).unwrap();
    let case = cases::all()
        .into_iter()
        .find(|c| c.name == "batched matmul")
        .unwrap();
    let (g, inputs) = cases::graph(&case).unwrap();
    let want = run(&CpuBackend::new(), &g, &inputs);
    let got = run(&gpu, &g, &inputs);
    common::same(&got[0].1, &want[0].1, 1e-2).unwrap();
}
