#!/usr/bin/env python3
"""PyTorch peers of the CUDA benchmark: the reference MLP and CNN trained with Adam on
MNIST-shaped random data already on the GPU, timed eager and under
torch.compile(mode="reduce-overhead") (CUDA graphs), at batch 32 and 128; then SGEMM 4096^3
through cuBLAS (fp32, TF32 off, as hasten's default). Prints lines in the format of
examples/src/bin/cuda_bench.rs:  <system> <model> b<batch> <seconds> s/epoch
s/epoch is the time of `--steps` steps after warm-up, scaled to 60 000 samples."""

import argparse
import time

import torch
import torch.nn as nn

SAMPLES = 60_000


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))


def cnn():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 13 * 13, 10)
    )


def step_fn(model, opt):
    loss_fn = nn.CrossEntropyLoss()  # softmax + sparse categorical cross-entropy

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def time_epoch(build, shape, batch, compiled, steps, warmup):
    torch.manual_seed(0)
    dev = torch.device("cuda")
    model = build().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=compiled)
    step = step_fn(model, opt)
    if compiled:
        step = torch.compile(step, mode="reduce-overhead")
    n = max(batch * (steps + warmup), batch * 8)
    x = torch.rand((n, *shape), device=dev)
    y = torch.randint(0, 10, (n,), device=dev)
    batches = n // batch

    def run(k, offset):
        for i in range(k):
            j = (offset + i) % batches
            step(x[j * batch:(j + 1) * batch], y[j * batch:(j + 1) * batch])

    run(warmup, 0)
    torch.cuda.synchronize()
    start = time.perf_counter()
    run(steps, warmup)
    torch.cuda.synchronize()
    per_step = (time.perf_counter() - start) / steps
    return per_step * (SAMPLES // batch)


def sgemm(n=4096, reps=20):
    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.rand((n, n), device="cuda")
    b = torch.rand((n, n), device="cuda")
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / reps
    return 2 * n**3 / seconds / 1e12


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--batches", default="32,128")
    args = p.parse_args()
    print("device", torch.cuda.get_device_name())
    models = [("mlp", mlp, (784,)), ("cnn", cnn, (1, 28, 28))]
    for name, build, shape in models:
        for batch in [int(b) for b in args.batches.split(",")]:
            for system, compiled in (("torch-eager", False), ("torch-compile", True)):
                s = time_epoch(build, shape, batch, compiled, args.steps, args.warmup)
                print(f"{system} {name} b{batch} {s:.3f} s/epoch", flush=True)
    print(f"torch sgemm 4096 {sgemm():.1f} TFLOP/s")


if __name__ == "__main__":
    main()
