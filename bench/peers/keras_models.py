"""Keras 3 (TensorFlow CPU) runner of hasten's peer benchmark: prints one JSON line.

    python keras_models.py --model mlp|cnn --batch 32 --epochs 4 [--infer] [--limit N]

The reference models exactly as a Keras user writes them, trained with `fit` (shuffle=True,
verbose=0); a callback times each epoch. TensorFlow is held to 2 threads.
"""

import os
import time

from common import THREADS, claim_stdout, emit, mnist, parse_args, time_inference

OUT = claim_stdout()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(THREADS)

import keras  # noqa: E402
from keras import layers  # noqa: E402


def build(model):
    if model == "mlp":
        return keras.Sequential(
            [
                keras.Input(shape=(784,)),
                layers.Dense(128, activation="relu"),
                layers.Dense(10, activation="softmax"),
            ]
        )
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Flatten(),
            layers.Dense(10, activation="softmax"),
        ]
    )


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


def main():
    args = parse_args("keras")
    x, y, xt, yt = mnist(args.limit)
    shape = (784,) if args.model == "mlp" else (28, 28, 1)
    x, xt = x.reshape((-1, *shape)), xt.reshape((-1, *shape))

    model = build(args.model)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-7),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    timer = EpochTimer()
    model.fit(x, y, batch_size=args.batch, epochs=args.epochs, shuffle=True, verbose=0, callbacks=[timer])
    _loss, accuracy = model.evaluate(xt, yt, batch_size=1000, verbose=0)

    infer = {}
    if args.infer:
        for b in (1, 256):
            infer[str(b)] = time_inference(lambda: model.predict(xt, batch_size=b, verbose=0))

    emit(OUT, "keras", args, len(x), timer.seconds, accuracy, infer)


if __name__ == "__main__":
    main()
