//! The reference models and the graphs their training compiles.

use hasten_nn::prelude::*;
use hasten_tensor::{Backend, CpuBackend, Executable, Graph, HostTensor};
use std::sync::{Arc, Mutex};

/// Samples per step in these tests.
pub const BATCH: usize = 32;

#[allow(unused_imports)] // not every test binary uses them
pub use hasten_testkit::models::{batch, cnn, compile_on as compile, mlp};

/// Compiles on the CPU and keeps a copy of every graph it is given.
#[derive(Default)]
pub struct Recorder {
    /// The graphs, in compile order.
    pub graphs: Mutex<Vec<Graph>>,
}

impl Backend for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn compile(&self, graph: &Graph) -> hasten_tensor::Result<Box<dyn Executable>> {
        self.graphs.lock().unwrap().push(graph.clone());
        CpuBackend::new().compile(graph)
    }
}

/// Trains `model` for `steps` steps (one batch per epoch) on `backend`: the per-step losses and
/// the final state.
pub fn train(
    mut model: Sequential,
    backend: Arc<dyn Backend>,
    data: &(HostTensor, HostTensor),
    steps: usize,
) -> (Vec<f64>, std::collections::BTreeMap<String, HostTensor>) {
    compile(&mut model, backend);
    let options = FitOptions::epochs(steps)
        .batch_size(data.0.shape.dims()[0])
        .shuffle(false)
        .verbose(Verbosity::Silent);
    let history = model.fit(&data.0, &data.1, options).unwrap();
    let losses = history.get("loss").unwrap().to_vec();
    (losses, model.get_state().unwrap())
}

/// Every graph that two training steps (and their evaluation) of `model` compile.
pub fn train_graphs(model: Sequential, dims: &[usize]) -> Vec<Graph> {
    let recorder = Arc::new(Recorder::default());
    let data = batch(dims);
    train(model, recorder.clone(), &data, 2);
    let graphs = recorder.graphs.lock().unwrap().clone();
    assert!(!graphs.is_empty(), "training compiled no graph");
    graphs
}
