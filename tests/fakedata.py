"""Small, learnable stand-ins for the real datasets, written as real IDX files (tests never download)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from dendritic.data import get_info


def _idx(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    return (
        struct.pack(">I", 0x0800 | arr.ndim)
        + b"".join(struct.pack(">I", d) for d in arr.shape)
        + arr.tobytes()
    )


def learnable_images(n: int, n_classes: int, seed: int, hw: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Class c lights a class-specific 6×6 block; plus noise. A small MLP learns it in an epoch."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % n_classes).astype(np.uint8)
    rng.shuffle(y)
    x = rng.integers(0, 60, size=(n, hw, hw), dtype=np.uint8)
    for c in range(n_classes):
        r, col = divmod(c, 4)
        x[y == c, 2 + 6 * r : 8 + 6 * r, 2 + 6 * col : 8 + 6 * col] = 230
    return x, y


def write_dataset(
    folder: Path, name: str = "mnist", *, n_train: int = 600, n_test: int = 200, seed: int = 0
) -> Path:
    """Write gzipped IDX files of ``name`` into ``folder`` (which then works as ``data_dir``)."""
    info = get_info(name)
    parts = info.part_names()
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        x, y = learnable_images(n, info.n_classes, s)
        stored = x.transpose(0, 2, 1) if info.transposed else x
        (folder / (parts[f"{split}_images"] + ".gz")).write_bytes(gzip.compress(_idx(stored)))
        (folder / (parts[f"{split}_labels"] + ".gz")).write_bytes(gzip.compress(_idx(y)))
    return folder
