//! The TensorFlow 2 quickstart for beginners, as it reads: Flatten(input 28×28) →
//! Dense(128, relu) → Dropout(0.2) → Dense(10) giving logits, sparse categorical
//! cross-entropy from logits, Adam, accuracy, 5 epochs. The tutorial reports about 97.7 %
//! test accuracy.

use hasten::prelude::*;
use hasten_examples::{exit_code, train_on_mnist, TrainArgs};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = TrainArgs::parse_with_default_epochs("5");
    let result = train_on_mnist(&args, &[28, 28], || {
        let mut model = Sequential::new().seed(args.seed);
        model.add(Flatten::new().input_shape([28, 28]));
        model.add(Dense::new(128).activation(Activation::Relu));
        model.add(Dropout::new(0.2));
        model.add(Dense::new(10));
        model.compile(
            Adam::default(),
            Loss::sparse_categorical_crossentropy().from_logits(true),
            &[Metric::Accuracy],
        )?;
        Ok(model)
    });
    exit_code(result)
}
