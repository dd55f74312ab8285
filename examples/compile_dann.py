"""``torch.compile`` of the paper's dANN-LRF, trained with a plain PyTorch loop on Fashion-MNIST.

The dendritic layer's C++ operators are registered with PyTorch (fake kernels, autograd), so
the whole model compiles into one graph with them inside; the compiled model trains to the same
numbers as the eager one. Prints seconds per training step of both, and their test accuracy.

    python examples/compile_dann.py                          # 1 epoch each, a few minutes on 2 cores
    python examples/compile_dann.py --epochs 3 --dendrites 16 --somata 256
    python examples/compile_dann.py --limit 5000             # a quick look

(``dendritic train`` does not need this: for a one-layer dANN it runs whole training steps in
one C++ call, faster still. Compiling pays off for your own models around the layer.)
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

import dendritic
from dendritic.data import prepare


def train(model: torch.nn.Module, data, epochs: int, seed: int) -> list[float]:
    """Plain Adam steps; returns the seconds of every step after the first (compilation)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    shuffle = torch.Generator().manual_seed(seed)
    times = []
    for _ in range(epochs):
        for idx in torch.randperm(len(data.x_train), generator=shuffle).split(128):
            start = time.perf_counter()
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
    return times[1:]


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (model(x).argmax(1) == y).float().mean().item()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--dendrites", type=int, default=16)
    parser.add_argument("--somata", type=int, default=256)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    data = prepare("fmnist", seed=args.seed, data_dir=args.data_dir, limit=args.limit)
    eager = dendritic.get_model("dANN-LRF", dendrites=args.dendrites, somata=args.somata, seed=args.seed)
    twin = copy.deepcopy(eager)
    compiled = torch.compile(twin, fullgraph=True)  # fullgraph: fail loudly on any graph break
    results = {}
    for name, model in (("eager", eager), ("compiled", compiled)):
        steps = train(model, data, args.epochs, args.seed)
        results[name] = accuracy(model, data.x_test, data.y_test)
        print(
            f"{name:>8}: {1e3 * statistics.median(steps):.2f} ms per step (median of {len(steps)}), "
            f"test accuracy {100 * results[name]:.2f} %"
        )
    drift = max(
        (a - b).abs().max().item() for a, b in zip(eager.parameters(), twin.parameters(), strict=True)
    )
    print(f"largest difference between the eager and compiled weights: {drift:.2e}")
    return results


if __name__ == "__main__":
    main()
