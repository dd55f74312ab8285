"""A dendritic classifier head on a small CNN, on Fashion-MNIST.

Two convolutions turn each 28×28 image into 16 feature maps of 7×7; a ``DendriticLayer`` reads
them as a ``(16, 7, 7)`` input: each dendrite samples 4 neighbouring sites in all 16 maps, 8
dendrites per soma, 64 somata, then a linear read-out: 34 k parameters where a dense 784 → 64
layer has 50 k. Trained with a plain PyTorch loop.

    python examples/cnn_head_fmnist.py                       # 2 epochs, a few minutes on 2 cores
    python examples/cnn_head_fmnist.py --epochs 5 --data-dir /usr/share/datasets/fashion-mnist
    python examples/cnn_head_fmnist.py --limit 5000          # a quick look

Fashion-MNIST is read from ``--data-dir``, Debian's ``dataset-fashion-mnist`` package or the
user cache, or downloaded once (see the README's Data section).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from dendritic.data import prepare
from dendritic.nn import DendriticLayer


def model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 8 × 14 × 14
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 16 × 7 × 7
        DendriticLayer((16, 7, 7), somata=64, dendrites=8, synapses=4, receptive_field="local", seed=seed),
        nn.Linear(64, 10),
    )


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="use at most this many training images")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    data = prepare("fmnist", seed=args.seed, data_dir=args.data_dir, limit=args.limit)
    images = lambda x: x.reshape(-1, 1, 28, 28)  # noqa: E731  (one channel: HWC and CHW agree)
    net = model(args.seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    shuffle = torch.Generator().manual_seed(args.seed)
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        net.train()
        for idx in torch.randperm(len(data.x_train), generator=shuffle).split(128):
            loss = F.cross_entropy(net(images(data.x_train[idx])), data.y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            val = (net(images(data.x_val)).argmax(1) == data.y_val).float().mean().item()
        print(f"epoch {epoch}: validation accuracy {100 * val:.2f} % ({time.perf_counter() - start:.0f} s)")
    with torch.no_grad():
        test = (net(images(data.x_test)).argmax(1) == data.y_test).float().mean().item()
    head = net[6]
    params = sum(p.numel() for p in head.parameters())
    print(
        f"test accuracy {100 * test:.2f} %; the dendritic head ({head.extra_repr()}) has {params:,} parameters"
    )
    return test


if __name__ == "__main__":
    main()
