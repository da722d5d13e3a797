"""PyTorch runner of hasten's peer benchmark: trains a reference model on MNIST, prints one JSON line.

    python torch_models.py --model mlp|cnn --batch 32 --epochs 4 [--infer] [--limit N]

The models match the Keras definitions hasten reproduces: glorot-uniform weights, zero biases,
Adam(lr=1e-3, eps=1e-7), softmax + sparse categorical cross-entropy (here, idiomatically,
CrossEntropyLoss on the logits), the training set reshuffled every epoch, 2 threads.
Batches are sliced from in-memory tensors with a fresh `randperm` each epoch: what a
performance-minded PyTorch user writes for a data set that fits in memory (a `DataLoader` over
a `TensorDataset` does the same work one sample at a time and is slower at small batches).
"""

import time

from common import THREADS, claim_stdout, emit, mnist, parse_args, time_inference

OUT = claim_stdout()

import torch  # noqa: E402
from torch import nn  # noqa: E402


def build(model):
    if model == "mlp":
        net = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    else:
        net = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 13 * 13, 10)
        )
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)  # Keras's glorot_uniform (same fan rule for conv)
            nn.init.zeros_(m.bias)
    return net


@torch.inference_mode()
def predict(net, x, batch):
    net.eval()
    out = [net(x[i : i + batch]) for i in range(0, len(x), batch)]
    return torch.softmax(torch.cat(out), dim=1)


def main():
    args = parse_args("pytorch")
    torch.set_num_threads(THREADS)
    x, y, xt, yt = mnist(args.limit)
    # NCHW: (N, 1, 28, 28), the layout torch's Conv2d expects
    x, y = torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)
    xt, yt = torch.from_numpy(xt).unsqueeze(1), torch.from_numpy(yt)
    n = len(x)

    net = build(args.model)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()

    seconds = []
    for _ in range(args.epochs):
        started = time.perf_counter()
        net.train()
        perm = torch.randperm(n)
        for i in range(0, n, args.batch):
            idx = perm[i : i + args.batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
        seconds.append(time.perf_counter() - started)

    accuracy = (predict(net, xt, 1000).argmax(1) == yt).float().mean().item()

    infer = {}
    if args.infer:
        for b in (1, 256):
            infer[str(b)] = time_inference(lambda: predict(net, xt, b))

    emit(OUT, "pytorch", args, n, seconds, accuracy, infer)


if __name__ == "__main__":
    main()
