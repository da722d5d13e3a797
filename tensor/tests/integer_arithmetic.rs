//! `I32` operands of the binary ops: add, subtract and multiply wrap modulo 2³², max and min
//! are exact, division and powers are refused when the graph is built; every option set and
//! constant folding give the same values as a scalar reference.

use hasten_tensor::ir::BinaryOp;
use hasten_tensor::{Backend, CpuBackend, CpuOptions, DType, Error, Graph, HostData, HostTensor};

const OPS: [BinaryOp; 5] = [
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Max,
    BinaryOp::Min,
];

/// What two's-complement hardware computes.
fn reference(op: BinaryOp, a: i32, b: i32) -> i32 {
    let wide = |v: i64| v as i32; // keeps the low 32 bits
    match op {
        BinaryOp::Add => wide(a as i64 + b as i64),
        BinaryOp::Sub => wide(a as i64 - b as i64),
        BinaryOp::Mul => wide(a as i64 * b as i64),
        BinaryOp::Max => a.max(b),
        BinaryOp::Min => a.min(b),
        BinaryOp::Div | BinaryOp::Pow => unreachable!("float-only"),
    }
}

/// `op(a, b)` with `a` of shape `[2, 3]` and `b` broadcast from `[3]`, as inputs or as
/// constants (which constant folding evaluates at compile time).
fn run(op: BinaryOp, a: &[i32], b: &[i32], options: CpuOptions, constants: bool) -> Vec<i32> {
    let mut g = Graph::new();
    let (ta, tb) = (
        HostTensor::i32([2, 3], a.to_vec()).unwrap(),
        HostTensor::i32([3], b.to_vec()).unwrap(),
    );
    let (x, z) = if constants {
        (g.constant(ta.clone()), g.constant(tb.clone()))
    } else {
        (
            g.input("a", [2, 3], DType::I32).unwrap(),
            g.input("b", [3], DType::I32).unwrap(),
        )
    };
    let y = g.binary(op, x, z).unwrap();
    g.output("y", y).unwrap();
    let mut exe = CpuBackend::with_options(options).compile(&g).unwrap();
    if constants {
        exe.run(&[]).unwrap();
    } else {
        exe.run(&[ta.data.as_slice(), tb.data.as_slice()]).unwrap();
    }
    match exe.output("y").unwrap().data {
        HostData::I32(v) => v,
        other => panic!("{op:?} on I32 gave {other:?}"),
    }
}

#[test]
fn integer_ops_wrap_like_twos_complement() {
    let a = [i32::MAX, i32::MIN, -7, 0, 1 << 30, 16_777_216];
    let b = [1, -1, 3];
    for op in OPS {
        let expected: Vec<i32> = (0..6).map(|i| reference(op, a[i], b[i % 3])).collect();
        for options in [CpuOptions::fast(), CpuOptions::reference()] {
            for constants in [false, true] {
                assert_eq!(
                    run(op, &a, &b, options, constants),
                    expected,
                    "{op:?}, constants {constants}"
                );
            }
        }
    }
}

#[test]
fn float_only_ops_refuse_integers() {
    for op in [BinaryOp::Div, BinaryOp::Pow] {
        let mut g = Graph::new();
        let a = g.input("a", [2], DType::I32).unwrap();
        let b = g.input("b", [2], DType::I32).unwrap();
        match g.binary(op, a, b) {
            Err(Error::DTypeMismatch { found, .. }) => assert_eq!(found, DType::I32),
            other => panic!("{op:?} on I32 should be refused, got {other:?}"),
        }
    }
}

#[test]
fn integer_and_float_operands_do_not_mix() {
    let mut g = Graph::new();
    let a = g.input("a", [2], DType::I32).unwrap();
    let b = g.input("b", [2], DType::F32).unwrap();
    assert!(g.binary(BinaryOp::Add, a, b).is_err());
}
