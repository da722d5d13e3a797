//! A replica that fails does not hang the others, and the group works again at the next step;
//! `Mirrored::new` runs any backend built with its rank's communicator.

mod common;

use common::*;
use hasten_parallel::Mirrored;
use hasten_tensor::{
    Backend, Communicator, CpuBackend, CpuOptions, Error, Executable, Graph, HostSlice, HostTensor,
    Result,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A CPU backend whose executables fail their first step, before any collective.
#[derive(Debug)]
struct FailsOnce {
    inner: CpuBackend,
}

struct FailingExe {
    inner: Box<dyn Executable>,
    failed: AtomicBool,
}

impl Backend for FailsOnce {
    fn name(&self) -> &'static str {
        "fails-once"
    }
    fn compile(&self, graph: &Graph) -> Result<Box<dyn Executable>> {
        Ok(Box::new(FailingExe {
            inner: self.inner.compile(graph)?,
            failed: AtomicBool::new(false),
        }))
    }
}

impl Executable for FailingExe {
    fn input_names(&self) -> &[String] {
        self.inner.input_names()
    }
    fn output_names(&self) -> &[String] {
        self.inner.output_names()
    }
    fn state_names(&self) -> &[String] {
        self.inner.state_names()
    }
    fn run(&mut self, inputs: &[HostSlice<'_>]) -> Result<()> {
        if !self.failed.swap(true, Ordering::SeqCst) {
            return Err(Error::InvalidArgument {
                op: "test",
                detail: "injected failure".into(),
            });
        }
        self.inner.run(inputs)
    }
    fn output_slice(&mut self, index: usize) -> Result<HostSlice<'_>> {
        self.inner.output_slice(index)
    }
    fn read_state(&mut self, name: &str) -> Result<HostTensor> {
        self.inner.read_state(name)
    }
    fn write_state(&mut self, name: &str, value: HostSlice<'_>) -> Result<()> {
        self.inner.write_state(name, value)
    }
    fn output(&mut self, name: &str) -> Result<HostTensor> {
        self.inner.output(name)
    }
}

/// `mean(x)` over a batch of 8.
fn mean_graph() -> Graph {
    let mut g = Graph::new();
    let x = g.input("x", [8, 2], hasten_tensor::DType::F32).unwrap();
    let m = g.mean_all(x).unwrap();
    g.output("m", m).unwrap();
    g
}

#[test]
fn a_failing_replica_breaks_the_step_not_the_group() {
    let strategy = Mirrored::new(2, |c: Arc<dyn Communicator>| {
        let inner = CpuBackend::new().with_communicator(Arc::clone(&c));
        Ok(if c.rank() == 1 {
            Arc::new(FailsOnce { inner }) as Arc<dyn Backend>
        } else {
            Arc::new(inner) as Arc<dyn Backend>
        })
    })
    .unwrap();
    let mut exe = strategy.compile(&mean_graph()).unwrap();
    let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
    // Replica 0 waits in the all-reduce for replica 1, which has failed: it must be released.
    let err = exe.run(&[HostSlice::F32(&x)]).unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    exe.run(&[HostSlice::F32(&x)]).unwrap();
    assert_eq!(exe.output("m").unwrap().as_f32().unwrap(), &[7.5]);
}

#[test]
fn mirrored_runs_any_backend_given_its_communicator() {
    let strategy = Mirrored::new(2, |c| {
        let cpu = CpuBackend::with_options(CpuOptions::reference()).with_communicator(c);
        Ok(Arc::new(cpu) as Arc<dyn Backend>)
    })
    .unwrap();
    let data = data(160, &[784], 9);
    let reference = train(mlp(), Arc::new(CpuBackend::new()), &data, 16, 1);
    let parallel = train(mlp(), Arc::new(strategy), &data, 16, 1);
    assert_same_training(&parallel, &reference, 1e-5);
}
