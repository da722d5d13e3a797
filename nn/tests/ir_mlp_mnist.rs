//! The reference MLP's train step, built straight from IR ops (no layers), learns real MNIST
//! on the CPU backend: its loss falls and its test accuracy rises well above chance.

mod common;

use hasten_nn::data::Mnist;
use hasten_tensor::{Backend, CpuBackend, HostSlice};

const BATCH: usize = 128;

#[test]
fn ir_mlp_loss_falls_on_real_mnist() {
    let dir = Mnist::locate().expect("MNIST ships in data/mnist");
    let mnist = Mnist::load(&dir).unwrap();
    let step = common::mlp(BATCH, 7).unwrap();
    let mut exe = CpuBackend::new().compile(&step.graph).unwrap();
    for (name, value) in &step.init {
        exe.write_state(name, value.data.as_slice()).unwrap();
    }
    let (loss_i, acc_i) = (
        exe.output_index("loss").unwrap(),
        exe.output_index("accuracy").unwrap(),
    );
    let read =
        |exe: &mut Box<dyn hasten_tensor::Executable>, i: usize| match exe.output_slice(i).unwrap()
        {
            HostSlice::F32(v) => v[0],
            other => panic!("expected f32, found {other:?}"),
        };
    let steps = mnist.train_len() / BATCH;
    let mut losses = Vec::with_capacity(steps);
    let mut accuracies = Vec::with_capacity(steps);
    for s in 0..steps {
        let x = &mnist.train_images[s * BATCH * 784..(s + 1) * BATCH * 784];
        let y = &mnist.train_labels[s * BATCH..(s + 1) * BATCH];
        exe.run(&[HostSlice::F32(x), HostSlice::I32(y)]).unwrap();
        losses.push(read(&mut exe, loss_i));
        accuracies.push(read(&mut exe, acc_i));
    }
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    let (first, last) = (mean(&losses[..20]), mean(&losses[steps - 20..]));
    let last_acc = mean(&accuracies[steps - 20..]);
    println!(
        "one epoch at batch {BATCH}: loss {first:.3} → {last:.3}, train accuracy {last_acc:.3}"
    );
    assert!(
        first > 1.0,
        "an untrained model starts near ln 10 ≈ 2.3, got {first}"
    );
    assert!(
        last < 0.4,
        "after one epoch the loss should be well below 0.4, got {last}"
    );
    assert!(
        last_acc > 0.88,
        "after one epoch accuracy should pass 88%, got {last_acc}"
    );
}
