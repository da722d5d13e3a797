"""Measures this machine's single-precision GEMM peak with 2 threads; prints one JSON line.

The roofline section of report.py sets hasten's achieved GFLOP/s against this number. Two
tuned BLAS libraries are tried, numpy's (OpenBLAS) and torch.mm (oneDNN/MKL), each the best of
several 1024x1024x1024 float32 products; the higher is taken as the peak.

    python peak.py [--quick]
"""

import json
import os
import sys
import time

from common import THREADS, claim_stdout

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(THREADS)
OUT = claim_stdout()

import numpy as np  # noqa: E402

N = 1024
FLOP = 2 * N**3


def best(fn, reps):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return FLOP / min(times) / 1e9


def main():
    reps = 3 if "--quick" in sys.argv else 10
    rng = np.random.default_rng(0)
    a = rng.random((N, N), dtype=np.float32)
    b = rng.random((N, N), dtype=np.float32)
    result = {"n": N, "threads": THREADS, "numpy_gflops": best(lambda: np.dot(a, b), reps)}
    try:
        import torch

        torch.set_num_threads(THREADS)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        result["torch_gflops"] = best(lambda: torch.mm(ta, tb), reps)
    except ImportError:
        pass
    result["sgemm_gflops"] = max(v for k, v in result.items() if k.endswith("_gflops"))
    result["cpu"] = cpu_name()
    OUT.write(json.dumps(result) + "\n")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
