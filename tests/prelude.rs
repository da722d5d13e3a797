//! Everything the README names is in `hasten::prelude`: this file imports nothing else and
//! uses each layer, loss, metric, optimizer, schedule and callback once.

use hasten::prelude::*;

fn data() -> (HostTensor, HostTensor) {
    let n = 16;
    let x = HostTensor::f32(
        [n, 6, 6, 1],
        (0..n * 36).map(|i| (i % 7) as f32 / 7.0).collect(),
    )
    .unwrap();
    let y = HostTensor::i32([n], (0..n as i32).map(|i| i % 3).collect()).unwrap();
    (x, y)
}

/// A model with every layer of the README's list.
fn every_layer() -> Sequential {
    Sequential::new()
        .seed(1)
        .input([6, 6, 1])
        .with(Conv2D::new(4, [3, 3]).padding(Padding::Same))
        .with(BatchNormalization::new())
        .with(ActivationLayer::new(Activation::Relu))
        .with(MaxPooling2D::new([2, 2]))
        .with(AveragePooling2D::new([1, 1]))
        .with(Flatten::new())
        .with(Dropout::new(0.25))
        .with(Dense::new(8).activation(Activation::Tanh))
        .with(Dense::new(3).activation(Activation::Sigmoid))
        .with(Dense::new(3))
        .with(Softmax::new())
}

#[test]
fn every_readme_item_is_in_the_prelude() {
    let (x, y) = data();
    let optimizers: Vec<Box<dyn Optimizer>> = vec![
        Box::new(Sgd::new(0.01)),
        Box::new(Adam::default()),
        Box::new(AdamW::new(0.001)),
        Box::new(RmsProp::new(0.001)),
    ];
    let schedules: Vec<Box<dyn LearningRateSchedule>> = vec![
        Box::new(ExponentialDecay::new(0.01, 10, 0.9).unwrap()),
        Box::new(PiecewiseConstantDecay::new(vec![5], vec![0.01, 0.001]).unwrap()),
        Box::new(CosineDecay::new(0.01, 10).unwrap()),
    ];
    let dir = std::env::temp_dir().join(format!("hasten-prelude-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (optimizer, schedule) in optimizers
        .into_iter()
        .zip(schedules.into_iter().map(Some).chain([None]))
    {
        let mut model = every_layer();
        model
            .compile_boxed(
                optimizer,
                Loss::sparse_categorical_crossentropy(),
                &[Metric::Accuracy, Metric::TopKAccuracy(2)],
            )
            .unwrap();
        model.set_learning_rate_schedule(schedule).unwrap();
        let options = FitOptions::epochs(2)
            .batch_size(4)
            .validation_split(0.25)
            .verbose(Verbosity::Silent)
            .callback(EarlyStopping::new("val_loss").patience(3))
            .callback(ModelCheckpoint::new(dir.join("checkpoint")))
            .callback(LearningRateScheduler::new(|_, lr| lr))
            .callback(ReduceLROnPlateau::new("loss"))
            .callback(CsvLogger::new(dir.join("log.csv")))
            .callback(TerminateOnNaN::new());
        let history: History = model.fit(&x, &y, options).unwrap();
        assert_eq!(history.epochs, vec![0, 1]);
        assert!(history.last("val_top_2_accuracy").is_some());
    }
    // The other losses, on outputs that suit them.
    let targets = HostTensor::f32([16, 3], vec![0.0; 48]).unwrap();
    for loss in [
        Loss::CategoricalCrossentropy { from_logits: true },
        Loss::BinaryCrossentropy { from_logits: false },
        Loss::MeanSquaredError,
    ] {
        let mut model = Sequential::new()
            .with(Flatten::new().input_shape([6, 6, 1]))
            .with(Dense::new(3).activation(Activation::Sigmoid));
        model.compile(Adam::default(), loss, &[]).unwrap();
        let options = FitOptions::epochs(1).verbose(Verbosity::Silent);
        model.fit(&x, &targets, options).unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
    // MNIST is found where the README says (or the error says how to get it).
    let _: Result<_, _> = Mnist::locate();
    let _: &dyn Callback = &TerminateOnNaN::new();
    let _ = Initializer::GlorotUniform;
    let _backend: &dyn Backend = &CpuBackend::new();
}
