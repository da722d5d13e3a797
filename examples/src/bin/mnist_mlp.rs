//! The reference MLP on MNIST, as in the Keras tutorial:
//! Dense(128, relu) → Dense(10, softmax), Adam, sparse categorical cross-entropy, accuracy.

use clap::Parser;
use hasten::prelude::*;
use hasten_examples::{compile_reference, exit_code, train_on_mnist, TrainArgs};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = TrainArgs::parse();
    let result = train_on_mnist(&args, &[784], || {
        let mut model = Sequential::new().seed(args.seed);
        model.add(
            Dense::new(128)
                .activation(Activation::Relu)
                .input_shape([784]),
        );
        model.add(Dense::new(10).activation(Activation::Softmax));
        compile_reference(model)
    });
    exit_code(result)
}
