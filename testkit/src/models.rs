//! The seed's two reference models with fixed weights, how they are compiled, and a batch of
//! pixel-like data, for the backends' training tests.

use hasten_nn::prelude::*;
use hasten_tensor::{Backend, HostTensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

/// Dense(128, relu, input 784) → Dense(10, softmax), weights from seed 3.
pub fn mlp() -> Sequential {
    let mut m = Sequential::new().seed(3);
    m.add(
        Dense::new(128)
            .activation(Activation::Relu)
            .input_shape([784]),
    );
    m.add(Dense::new(10).activation(Activation::Softmax));
    m
}

/// Conv2D(32, 3×3, relu, input 28×28) → MaxPooling2D(2×2) → Flatten → Dense(10, softmax),
/// weights from seed 4.
pub fn cnn() -> Sequential {
    let mut m = Sequential::new().seed(4);
    m.add(
        Conv2D::new(32, [3, 3])
            .activation(Activation::Relu)
            .input_shape([28, 28]),
    );
    m.add(MaxPooling2D::new([2, 2]));
    m.add(Flatten::new());
    m.add(Dense::new(10).activation(Activation::Softmax));
    m
}

/// Puts `model` on `backend` and compiles it as the reference models are: Adam, sparse
/// categorical cross-entropy, accuracy.
pub fn compile_on(model: &mut Sequential, backend: Arc<dyn Backend>) {
    model.set_backend(backend).unwrap();
    model
        .compile(
            Adam::default(),
            Loss::sparse_categorical_crossentropy(),
            &[Metric::Accuracy],
        )
        .unwrap();
}

/// One batch of inputs of `dims` (`[samples, …]`) in [0, 1) and labels 0..10, always the
/// same.
pub fn batch(dims: &[usize]) -> (HostTensor, HostTensor) {
    let mut rng = StdRng::seed_from_u64(50);
    let n: usize = dims.iter().product();
    let x = (0..n).map(|_| rng.random_range(0.0f32..1.0)).collect();
    let y = (0..dims[0]).map(|_| rng.random_range(0..10)).collect();
    (
        HostTensor::f32(dims.to_vec(), x).unwrap(),
        HostTensor::i32([dims[0]], y).unwrap(),
    )
}
