"""Shared pieces of the Python peer runners (torch_models.py, keras_models.py).

Each runner prints exactly ONE JSON line on stdout. Anything the frameworks print (to stdout
or stderr, from Python or from C) goes to stderr: `claim_stdout()` moves file descriptor 1 to
2 at start-up and keeps a private handle on the real stdout for the result line.
"""

import argparse
import gzip
import json
import os
import resource
import struct
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
THREADS = 2  # the reference machine has 2 cores; every framework is pinned to them
# Inference timing, the same rule in every runner: after a warm-up pass over the test set,
# timed passes until INFER_PASSES are done or INFER_BUDGET seconds are spent (at least one),
# and the median is reported. One pass at batch 256 takes ~10 ms, where a busy moment of the
# machine alone can cost half as much again.
INFER_PASSES = 5
INFER_BUDGET = 2.0


def claim_stdout():
    """Send everything written to fd 1 to stderr; return a file that writes to the real stdout."""
    sys.stdout.flush()
    real = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(real, "w")


def parse_args(framework):
    p = argparse.ArgumentParser(description=f"{framework} runner of hasten's peer benchmark")
    p.add_argument("--model", choices=["mlp", "cnn"], required=True)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=int, default=4, help="the first is reported as warm-up")
    p.add_argument("--infer", action="store_true", help="also time prediction at batch 1 and 256")
    p.add_argument("--limit", type=int, default=None, help="train on only this many samples")
    return p.parse_args()


def _idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    _zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    assert dtype == 0x08, f"{path}: only unsigned-byte IDX files are expected"
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def mnist(limit=None):
    """(x_train, y_train, x_test, y_test): images float32 in [0, 1] shaped (N, 28, 28), labels int64."""
    d = Path(os.environ.get("HASTEN_MNIST_DIR", REPO / "data" / "mnist"))
    x = _idx(d / "train-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    y = _idx(d / "train-labels-idx1-ubyte.gz").astype(np.int64)
    xt = _idx(d / "t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    yt = _idx(d / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x, y, xt, yt


def time_inference(predict):
    """Median seconds of `predict()` by the INFER_PASSES / INFER_BUDGET rule."""
    predict()  # warm-up (compilation, tracing), as every runner does
    times = []
    while len(times) < INFER_PASSES and sum(times) < INFER_BUDGET:
        started = time.perf_counter()
        predict()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def emit(out, framework, args, n_train, seconds, accuracy, infer):
    first, warm = seconds[0], seconds[1:]
    median = sorted(warm)[len(warm) // 2] if warm else first  # same rule as hasten's runner
    line = {
        "framework": framework,
        "model": args.model,
        "batch": args.batch,
        "epoch_seconds": warm,
        "first_epoch_seconds": first,
        "samples_per_second": n_train / median,
        "test_accuracy": float(accuracy),
        "peak_rss_mb": peak_rss_mb(),
        "infer_seconds": infer,
    }
    out.write(json.dumps(line) + "\n")
    out.flush()
