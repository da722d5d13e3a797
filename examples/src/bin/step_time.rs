//! Time of one train step of the reference MLP on the CPU backend, at several batch sizes:
//! each batch size trains a few epochs on MNIST and reports the median epoch time divided by
//! the steps per epoch (data batching included, as in real training).

use clap::Parser;
use hasten::prelude::*;
use hasten_examples::mnist;

#[derive(Parser)]
struct Args {
    /// Batch sizes to time.
    #[arg(long, value_delimiter = ',', default_value = "32,128")]
    batch_sizes: Vec<usize>,
    /// Epochs per batch size (the first counts as warm-up when there are several).
    #[arg(long, default_value_t = 3)]
    epochs: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let (x, y, _, _) = mnist()?;
    let x = x.reshape([60_000, 784])?;
    println!("batch  steps/epoch  median s/epoch  ms/step  samples/s");
    for &batch in &args.batch_sizes {
        let mut model = Sequential::new();
        model.add(
            Dense::new(128)
                .activation(Activation::Relu)
                .input_shape([784]),
        );
        model.add(Dense::new(10).activation(Activation::Softmax));
        model.compile(
            Adam::default(),
            Loss::sparse_categorical_crossentropy(),
            &[Metric::Accuracy],
        )?;
        let options = FitOptions::epochs(args.epochs)
            .batch_size(batch)
            .verbose(Verbosity::Silent);
        let history = model.fit(&x, &y, options)?;
        let mut seconds = history.seconds.clone();
        if seconds.len() > 1 {
            seconds.remove(0);
        }
        seconds.sort_by(f64::total_cmp);
        let median = seconds[seconds.len() / 2];
        let steps = 60_000usize.div_ceil(batch);
        println!(
            "{batch:>5}  {steps:>11}  {median:>14.3}  {:>7.3}  {:>9.0}",
            median * 1e3 / steps as f64,
            60_000.0 / median
        );
    }
    Ok(())
}
