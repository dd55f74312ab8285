"""A dendritic layer inside your own ``nn.Sequential``, on tabular data, with a plain PyTorch loop.

scikit-learn's bundled breast-cancer set (569 tumours, 30 features; no download): each of the
layer's dendrites samples 4 of the 30 standardised features at random, 4 dendrites per soma,
16 somata, then a linear read-out. Compared with an MLP of the same hidden width.

    python examples/tabular_breast_cancer.py               # about 5 seconds
    python examples/tabular_breast_cancer.py --epochs 50 --seed 2
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn

from dendritic.nn import DendriticLayer


def data(seed: int) -> tuple[torch.Tensor, ...]:
    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    scaler = StandardScaler().fit(x_train)
    to = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return (
        to(scaler.transform(x_train)),
        torch.tensor(y_train),
        to(scaler.transform(x_test)),
        torch.tensor(y_test),
    )


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> None:
    """Mini-batch Adam, nothing dendritic-specific."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    shuffle = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=shuffle).split(32):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return (model(x).argmax(1) == y).float().mean().item()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    x_train, y_train, x_test, y_test = data(args.seed)
    models = {
        "dendritic": nn.Sequential(
            DendriticLayer(30, somata=16, dendrites=4, synapses=4, receptive_field="random", seed=args.seed),
            nn.Linear(16, 2),
        ),
        "mlp": nn.Sequential(
            nn.Linear(30, 64), nn.LeakyReLU(0.1), nn.Linear(64, 16), nn.LeakyReLU(0.1), nn.Linear(16, 2)
        ),
    }
    results = {}
    for name, model in models.items():
        fit(model, x_train, y_train, args.epochs, args.seed)
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        results[name] = accuracy(model, x_test, y_test)
        print(f"{name:>9}: test accuracy {100 * results[name]:.1f} % with {params:,} parameters")
    return results


if __name__ == "__main__":
    main()
