//! Every op of the IR's closed set on the PJRT plugin against the CPU backend, on the shared
//! cases of `hasten_testkit::op_cases` (the CUDA backend's tests run the same ones): the
//! forward value and, for float ops, the gradient of `sum(y · w)` (a random `w`) with respect
//! to every float input, which exercises each op's backward ops (conv and pool gradients
//! included). Tolerance: 1e-5 relative (1e-4 for products, convolutions and sums, which XLA
//! orders differently).

mod common;

use hasten_tensor::CpuBackend;
use hasten_testkit::op_cases;

#[test]
fn every_op_matches_the_cpu_backend() {
    let Some(pjrt) = common::backend() else {
        return;
    };
    let cpu = CpuBackend::new();
    let cases = op_cases::all();
    let mut failures = Vec::new();
    for case in &cases {
        let result = op_cases::graph(case).and_then(|(g, inputs)| {
            let want = common::run(&cpu, &g, &inputs, &[])?;
            let got = common::run(&pjrt, &g, &inputs, &[])?;
            Ok(common::diff(&got, &want, case.tol))
        });
        match result {
            Ok(diffs) => failures.extend(diffs.into_iter().map(|d| format!("{}: {d}", case.name))),
            Err(e) => failures.push(format!("{}: {e}", case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} cases matched", cases.len());
}
