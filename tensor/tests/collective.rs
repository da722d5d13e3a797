//! The all-reduce op: shape inference, its gradient rule, and the CPU lowering through a
//! communicator.

use hasten_tensor::ir::Op;
use hasten_tensor::{
    grad, AllReduceOp, Backend, Communicator, CpuBackend, DType, Error, Graph, HostSlice, Result,
};
use std::sync::Arc;

/// A stand-in for a group of `size` ranks that all hold this rank's values.
#[derive(Debug)]
struct Uniform {
    size: usize,
}

impl Communicator for Uniform {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_reduce(&self, buf: &mut [f32], op: AllReduceOp) -> Result<()> {
        let factor = match op {
            AllReduceOp::Sum => self.size as f32,
            AllReduceOp::Mean | AllReduceOp::Max => 1.0,
        };
        buf.iter_mut().for_each(|v| *v *= factor);
        Ok(())
    }
}

/// A communicator whose peers have failed.
#[derive(Debug)]
struct Broken;

impl Communicator for Broken {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        2
    }
    fn all_reduce(&self, _: &mut [f32], _: AllReduceOp) -> Result<()> {
        Err(Error::Collective("rank 1 has left".into()))
    }
}

fn summed_graph() -> Graph {
    let mut g = Graph::new();
    let x = g.input("x", [2, 3], DType::F32).unwrap();
    let s = g.all_reduce(x, AllReduceOp::Sum).unwrap();
    g.output("s", s).unwrap();
    g
}

#[test]
fn all_reduce_keeps_shape_and_takes_only_f32() {
    let mut g = Graph::new();
    let x = g.input("x", [4, 5], DType::F32).unwrap();
    let y = g.all_reduce(x, AllReduceOp::Mean).unwrap();
    assert_eq!(g.shape(y).unwrap().dims(), &[4, 5]);
    let i = g.input("i", [3], DType::I32).unwrap();
    let err = g.all_reduce(i, AllReduceOp::Sum).unwrap_err();
    assert!(matches!(err, Error::DTypeMismatch { .. }), "{err}");
}

#[test]
fn compiling_an_all_reduce_without_a_communicator_is_an_error() {
    let err = CpuBackend::new().compile(&summed_graph()).err().unwrap();
    let text = err.to_string();
    assert!(matches!(err, Error::Unsupported { .. }), "{text}");
    assert!(text.contains("communicator"), "{text}");
}

#[test]
fn the_cpu_backend_reduces_through_its_communicator() {
    let backend = CpuBackend::new().with_communicator(Arc::new(Uniform { size: 3 }));
    let mut exe = backend.compile(&summed_graph()).unwrap();
    exe.run(&[HostSlice::F32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])])
        .unwrap();
    let s = exe.output("s").unwrap();
    assert_eq!(s.as_f32().unwrap(), &[3.0, 6.0, 9.0, 12.0, 15.0, 18.0]);
}

#[test]
fn an_all_reduce_of_constants_is_not_folded_away() {
    let mut g = Graph::new();
    let c = g.full(2.0, [2]).unwrap();
    let one = g.scalar(1.0);
    let c = g.add(c, one).unwrap();
    let s = g.all_reduce(c, AllReduceOp::Sum).unwrap();
    g.output("s", s).unwrap();
    let backend = CpuBackend::new().with_communicator(Arc::new(Uniform { size: 2 }));
    let mut exe = backend.compile(&g).unwrap();
    exe.run(&[]).unwrap();
    assert_eq!(exe.output("s").unwrap().as_f32().unwrap(), &[6.0, 6.0]);
}

#[test]
fn a_failed_collective_fails_the_step() {
    let backend = CpuBackend::new().with_communicator(Arc::new(Broken));
    let mut exe = backend.compile(&summed_graph()).unwrap();
    let err = exe.run(&[HostSlice::F32(&[0.0; 6])]).unwrap_err();
    assert!(matches!(err, Error::Collective(_)), "{err}");
}

#[test]
fn the_gradient_of_an_all_reduce_is_an_all_reduce_of_the_cotangent() {
    for op in [AllReduceOp::Sum, AllReduceOp::Mean] {
        let mut g = Graph::new();
        let x = g.input("x", [3], DType::F32).unwrap();
        let s = g.all_reduce(x, op).unwrap();
        let sq = g.mul(s, s).unwrap();
        let loss = g.sum(sq, &[0], false).unwrap();
        let dx = grad(&mut g, loss, &[x]).unwrap()[0];
        let node = g.node(dx).unwrap();
        assert!(
            matches!(node.op, Op::AllReduce { op: o } if o == op),
            "{:?}",
            node.op
        );
        g.output("dx", dx).unwrap();
        // With 2 ranks holding the same x: loss = Σ(2x)² per rank; each rank's cotangent
        // 2·s = 4x, summed over the two ranks: 8x (sum); for the mean s = x, cotangent 2x,
        // averaged: 2x.
        let backend = CpuBackend::new().with_communicator(Arc::new(Uniform { size: 2 }));
        let mut exe = backend.compile(&g).unwrap();
        exe.run(&[HostSlice::F32(&[1.0, 2.0, 3.0])]).unwrap();
        let expected: Vec<f32> = match op {
            AllReduceOp::Sum => vec![8.0, 16.0, 24.0],
            _ => vec![2.0, 4.0, 6.0],
        };
        assert_eq!(exe.output("dx").unwrap().as_f32().unwrap(), &expected[..]);
    }
}

#[test]
fn an_all_reduce_max_has_no_gradient() {
    let mut g = Graph::new();
    let x = g.input("x", [3], DType::F32).unwrap();
    let m = g.all_reduce(x, AllReduceOp::Max).unwrap();
    let loss = g.sum(m, &[0], false).unwrap();
    let err = grad(&mut g, loss, &[x]).unwrap_err();
    assert!(matches!(err, Error::NotDifferentiable(_)), "{err}");
}
