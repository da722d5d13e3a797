//! Shared by the PJRT tests: finding the plugin (skip with instructions when it is absent,
//! fail under `CI=true`), running a graph on a backend, and comparing backends' results.

#![allow(dead_code)]

use hasten_tensor::{Backend, Graph, HostData, HostTensor};
use hasten_tpu::PjrtBackend;
use std::path::PathBuf;

/// Where `.ci/run` installs the CPU plugin.
fn default_plugin() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let p = PathBuf::from(home)
        .join(".cache/hasten-pip/xla-cpu-pjrt/xla_plugins/xla_cpu_pjrt/xla_cpu_pjrt.so");
    p.is_file().then_some(p)
}

/// The plugin to test on: `$HASTEN_PJRT_PLUGIN`, else the CPU plugin where `.ci/run` puts
/// it. `None` (after saying how to get one) when there is neither, except under `CI=true`,
/// where a missing plugin fails the test.
pub fn plugin_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HASTEN_PJRT_PLUGIN").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = default_plugin() {
        return Some(p);
    }
    let how = "no PJRT plugin: set HASTEN_PJRT_PLUGIN, or install the CPU plugin with \
               `pip install --no-deps --target ~/.cache/hasten-pip/xla-cpu-pjrt xla-cpu-pjrt==0.0.1` \
               (what .ci/run does)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{how}; CI=true requires the PJRT tests to run");
    }
    eprintln!("skipped: {how}");
    None
}

/// A backend over the test plugin, or `None` when the test is skipped.
pub fn backend() -> Option<PjrtBackend> {
    let path = plugin_path()?;
    Some(PjrtBackend::new(Some(&path)).expect("the test plugin loads"))
}

/// Runs `graph` once on `backend` with the given inputs and state; returns every output and
/// every state value afterwards, by name.
pub fn run(
    backend: &dyn Backend,
    graph: &Graph,
    inputs: &[HostTensor],
    state: &[(String, HostTensor)],
) -> hasten_tensor::Result<Vec<(String, HostTensor)>> {
    let mut exe = backend.compile(graph)?;
    for (name, value) in state {
        exe.write_state(name, value.data.as_slice())?;
    }
    let slices: Vec<_> = inputs.iter().map(|t| t.data.as_slice()).collect();
    exe.run(&slices)?;
    let mut out = Vec::new();
    for name in exe.output_names().to_vec() {
        out.push((name.clone(), exe.output(&name)?));
    }
    for name in exe.state_names().to_vec() {
        out.push((format!("state {name}"), exe.read_state(&name)?));
    }
    Ok(out)
}

/// Checks `got` against `want`: floats within `tol` relative (plus `tol/10` of the largest
/// magnitude, so values near zero are judged against the tensor's scale), NaN where and only
/// where `want` has NaN; integers and booleans exactly.
pub fn same(got: &HostTensor, want: &HostTensor, tol: f64) -> Result<(), String> {
    if got.shape != want.shape {
        return Err(format!("shape {} , expected {}", got.shape, want.shape));
    }
    match (&got.data, &want.data) {
        (HostData::F32(g), HostData::F32(w)) => {
            let scale = w
                .iter()
                .filter(|v| v.is_finite())
                .fold(1.0f64, |m, v| m.max(f64::from(v.abs())));
            let bad = g.iter().zip(w).position(|(&g, &w)| {
                let (g, w) = (f64::from(g), f64::from(w));
                if w.is_nan() || g.is_nan() || w.is_infinite() {
                    !(w.is_nan() && g.is_nan()) && g != w
                } else {
                    (g - w).abs() > tol * w.abs() + 0.1 * tol * scale
                }
            });
            match bad {
                None => Ok(()),
                Some(i) => Err(format!("element {i}: got {}, expected {}", g[i], w[i])),
            }
        }
        (g, w) if g == w => Ok(()),
        (g, w) => Err(format!("got {g:?}, expected {w:?}")),
    }
}

/// Compares two backends' named results; returns the failures.
pub fn diff(got: &[(String, HostTensor)], want: &[(String, HostTensor)], tol: f64) -> Vec<String> {
    want.iter()
        .zip(got)
        .filter_map(|((name, w), (_, g))| same(g, w, tol).err().map(|e| format!("{name}: {e}")))
        .collect()
}
