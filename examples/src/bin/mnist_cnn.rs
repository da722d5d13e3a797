//! The reference CNN on MNIST, as in the Keras tutorial: Conv2D(32, 3×3, relu) →
//! MaxPooling2D(2×2) → Flatten → Dense(10, softmax), Adam, sparse categorical cross-entropy.

use clap::Parser;
use hasten::prelude::*;
use hasten_examples::{compile_reference, exit_code, train_on_mnist, TrainArgs};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = TrainArgs::parse();
    let result = train_on_mnist(&args, &[28, 28], || {
        let mut model = Sequential::new().seed(args.seed);
        // `(28, 28)` as the tutorial writes it: read as one channel.
        model.add(
            Conv2D::new(32, [3, 3])
                .activation(Activation::Relu)
                .input_shape([28, 28]),
        );
        model.add(MaxPooling2D::new([2, 2]));
        model.add(Flatten::new());
        model.add(Dense::new(10).activation(Activation::Softmax));
        compile_reference(model)
    });
    exit_code(result)
}
