"""Replays a hasten MLP run in PyTorch: the same initial weights, the same unshuffled batches.

    bench_train --model mlp --batch 32 --epochs 3 --no-shuffle --seed S --initial-weights-out W
    python same_init_torch.py W 32 3

Both then do the same arithmetic up to float rounding, so their test accuracies differ only by
how far rounding sends the two runs apart: a check that hasten computes what PyTorch does,
free of the seed's effect on a single run. Prints the mean loss and test accuracy per epoch.
"""

import json
import struct
import sys

import numpy as np

from common import mnist

import torch
from torch import nn

def load(path):
    """The tensors of a safetensors file (f32 only) as numpy arrays."""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    head = json.loads(b[8:8 + n])
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        lo, hi = v["data_offsets"]
        out[k] = np.frombuffer(b[8 + n + lo:8 + n + hi], dtype=np.float32).reshape(v["shape"])
    return out

torch.set_num_threads(2)
w = load(sys.argv[1])
batch, epochs = int(sys.argv[2]), int(sys.argv[3])
x, y, xt, yt = mnist()
x, y = torch.from_numpy(x).reshape(-1, 784), torch.from_numpy(y)
xt, yt = torch.from_numpy(xt).reshape(-1, 784), torch.from_numpy(yt)
net = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
with torch.no_grad():
    net[0].weight.copy_(torch.from_numpy(w["dense/kernel"].T.copy()))
    net[0].bias.copy_(torch.from_numpy(w["dense/bias"].copy()))
    net[2].weight.copy_(torch.from_numpy(w["dense_1/kernel"].T.copy()))
    net[2].bias.copy_(torch.from_numpy(w["dense_1/bias"].copy()))
opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
loss_fn = nn.CrossEntropyLoss()
for e in range(epochs):
    total = 0.0
    for i in range(0, len(x), batch):
        opt.zero_grad()
        loss = loss_fn(net(x[i:i + batch]), y[i:i + batch])
        loss.backward()
        opt.step()
        total += loss.item()
    with torch.no_grad():
        acc = (net(xt).argmax(1) == yt).float().mean().item()
    print(f"epoch {e + 1}: mean loss {total / (len(x) // batch):.5f}, test accuracy {acc:.4f}")
