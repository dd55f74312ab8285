"""The paper's data protocol (SPEC §4): scaling, fixed noise, validation splits, sequential order.

Every helper is a pure function of its inputs and an integer seed. Randomness comes from
``numpy.random.Generator`` streams derived with ``SeedSequence([seed, purpose, tag])``, so the
noise of a trial never shares a stream with its validation split, and train / validation /
test noise are independent draws.
"""

from __future__ import annotations

import itertools
import math
import os
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from .errors import EmptySplitError
from .loading import load
from .registry import DatasetInfo

__all__ = [
    "PreparedData",
    "add_noise",
    "prepare",
    "sequential_split",
    "stratified_subset",
    "to_float",
    "train_val_split",
]

# Stream purposes, mixed into every SeedSequence so streams never collide.
_NOISE, _SPLIT, _SEQUENTIAL, _SUBSET = 1, 2, 3, 4
_NOISE_CHUNK = 1 << 22  # values per noise block; bounds the temporary memory, not the result


def _tag_code(tag: str | int) -> int:
    if isinstance(tag, str):
        return zlib.crc32(tag.encode("utf-8"))
    if int(tag) < 0:
        raise ValueError(f"split tag must be a non-negative int or a string, got {tag}")
    return int(tag)


def _rng(seed: int, purpose: int, tag: str | int = 0) -> np.random.Generator:
    if int(seed) < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), purpose, _tag_code(tag)]))


def _n_val(n: int, val_fraction: float) -> int:
    """At least ``val_fraction`` of ``n`` (rounded up), immune to float noise like 0.1*6000."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    return math.ceil(round(n * val_fraction, 9))


def to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 images (N, H, W, C) or (N, H, W) -> float32 tensor (N, H*W*C) scaled to [0, 1].

    Flattening is row-major HWC: pixel (r, c), channel ch lands at ``(r*W + c)*C + ch``,
    the layout the receptive-field wiring assumes.
    """
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.dtype != np.uint8:
        raise TypeError(f"to_float expects uint8 images, got {arr.dtype}")
    if arr.ndim not in (3, 4):
        raise ValueError(f"to_float expects (N, H, W[, C]) images, got shape {arr.shape}")
    out = arr.reshape(len(arr), math.prod(arr.shape[1:])).astype(np.float32)  # -1 fails for N = 0
    np.divide(out, np.float32(255.0), out=out)
    return torch.from_numpy(out)


def _noise_inplace(a: np.ndarray, sigma: float, seed: int, split: str | int) -> None:
    if not a.flags.c_contiguous or not a.flags.writeable:  # pragma: no cover - internal use
        raise ValueError("noise is added in place to a writable C-contiguous array")
    rng = _rng(seed, _NOISE, split)
    flat = a.reshape(len(a), -1)
    step = max(1, _NOISE_CHUNK // max(1, flat.shape[1]))
    for start in range(0, len(flat), step):
        block = flat[start : start + step]
        noise = rng.standard_normal(block.shape, dtype=np.float32)
        noise *= np.float32(sigma)
        block += noise
        np.clip(block, 0.0, 1.0, out=block)


def add_noise(
    x: np.ndarray | torch.Tensor, sigma: float, seed: int, split: str | int = "train"
) -> np.ndarray | torch.Tensor:
    """Add fixed Gaussian noise N(0, sigma^2) once and clip to [0, 1] (SPEC §4 noise runs).

    The draw depends only on ``(seed, split, x.shape)``: the same trial always sees the same
    noisy images, and ``split`` ("train", "val", "test" or an int) gives each split its own
    independent draw. ``sigma == 0`` returns ``x`` itself. Returns float32, of the input's kind
    (numpy array or tensor).
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return x
    if isinstance(x, torch.Tensor):
        out = x.detach().to("cpu", torch.float32).contiguous().numpy().copy()
        _noise_inplace(out, sigma, seed, split)
        return torch.from_numpy(out).to(x.device)
    out = np.array(x, dtype=np.float32, order="C", copy=True)
    _noise_inplace(out, sigma, seed, split)
    return out


def train_val_split(n: int, val_fraction: float = 0.1, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded shuffle of ``range(n)``, then ``ceil(val_fraction*n)`` indices for validation.

    Returns ``(train_idx, val_idx)``, each sorted (int64); training order is the trainer's
    business (it reshuffles every epoch).
    """
    n_val = _n_val(n, val_fraction)
    perm = _rng(seed, _SPLIT).permutation(n)
    return np.sort(perm[n_val:]).astype(np.int64), np.sort(perm[:n_val]).astype(np.int64)


def sequential_split(
    labels: np.ndarray | torch.Tensor,
    batch_size: int = 128,
    *,
    seed: int,
    val_fraction: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Class-sequential protocol: training indices grouped by class, whole batches per class.

    Rule, per class c with n_c samples (in a seeded random order):
    ``n_train_c = ((n_c - ceil(val_fraction * n_c)) // batch_size) * batch_size``, i.e. the
    largest multiple of ``batch_size`` that still leaves at least the nominal validation
    fraction; the other ``n_c - n_train_c`` go to validation. Fashion-MNIST (6,000 per class,
    batch 128): 5,376 train (42 batches) / 624 validation.

    Training indices come class 0 first, then class 1, ...; as every class contributes whole
    batches, unshuffled batches of ``batch_size`` each hold a single class. Validation
    indices are grouped by class too. Raises ``ValueError`` if a class cannot fill one batch.
    """
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rng = _rng(seed, _SEQUENTIAL)
    train, val = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        n_train = ((len(idx) - _n_val(len(idx), val_fraction)) // batch_size) * batch_size
        if n_train == 0:
            raise ValueError(
                f"class {c} has {len(idx)} samples: too few for one batch of {batch_size} "
                f"plus {val_fraction:.0%} validation (use a smaller batch_size or more data)"
            )
        train.append(idx[:n_train])
        val.append(idx[n_train:])
    if not train:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(train).astype(np.int64), np.concatenate(val).astype(np.int64)


def stratified_subset(labels: np.ndarray, limit: int, *, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``min(limit, n)`` samples with class proportions kept (to +-1).

    Samples are taken in a seeded random order interleaved across classes (each class's k-th
    pick sits at position (k + 0.5) / n_c), so any prefix is stratified.
    """
    y = np.asarray(labels)
    n = len(y)
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if limit >= n:
        return np.arange(n, dtype=np.int64)
    perm = _rng(seed, _SUBSET).permutation(n)
    key = np.empty(n, dtype=np.float64)
    for c in np.unique(y):
        members = perm[y[perm] == c]
        key[members] = (np.arange(len(members)) + 0.5) / len(members)
    order = perm[np.argsort(key[perm], kind="stable")]
    return np.sort(order[:limit]).astype(np.int64)


@dataclass(eq=False)
class PreparedData:
    """Float tensors ready for training, plus what produced them.

    x_* are float32 (N, H*W*C) in [0, 1] (noise included), y_* int64 class indices.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    info: DatasetInfo
    seed: int
    sigma: float = 0.0
    sequential: bool = False
    batch_size: int = 128
    limit: int | None = None
    test_limit: int | None = None
    sources: tuple[str, ...] = ()
    #: The raw files this data came from, with their digests (recorded with every run).
    provenance: dict | None = None

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.info.input_shape

    @property
    def n_classes(self) -> int:
        return self.info.n_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.info.class_names

    @property
    def n_inputs(self) -> int:
        return self.info.n_inputs


def prepare(
    name: str,
    *,
    seed: int,
    sigma: float = 0.0,
    sequential: bool = False,
    val_fraction: float = 0.1,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    limit: int | None = None,
    batch_size: int = 128,
    test_limit: int | None = None,
) -> PreparedData:
    """Load ``name`` and apply the paper's protocol for one trial.

    1. ``limit`` (quick demos only) keeps a class-stratified subset of at most ``limit`` of the
       dataset's training images, which validation is then taken from; the test set is kept
       whole, so test accuracy is always over the same images as the paper's. ``test_limit``
       (None: all) shrinks the test set the same way, where that is wanted explicitly. Subsets
       depend on the limits alone, not on ``seed``, so all trials of a demo see the same images.
    2. Validation: ``train_val_split`` (seeded shuffle, ``val_fraction`` held out) or, with
       ``sequential=True``, ``sequential_split`` with ``batch_size`` (training set sorted by
       class, never to be shuffled by the trainer).
    3. Pixels scaled to [0, 1] and flattened (``to_float``).
    4. ``sigma > 0``: fixed noise with independent draws for "train", "val" and "test".

    A setting that leaves no image to train on (``limit=1``: its one image is the validation
    set) raises :class:`~dendritic.data.errors.EmptySplitError` saying which setting and how
    much is needed.
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    for option, value in (("limit", limit), ("test_limit", test_limit)):
        if value is not None and (
            type(value) is bool or not isinstance(value, int | np.integer) or value < 1
        ):
            raise ValueError(f"{option} must be a positive integer or None, got {value!r}")
    raw = load(name, data_dir=data_dir, download=download)
    pool = np.arange(len(raw.y_train), dtype=np.int64)
    test = np.arange(len(raw.y_test), dtype=np.int64)
    if limit is not None:
        pool = stratified_subset(raw.y_train, limit)
    if test_limit is not None:
        test = stratified_subset(raw.y_test, test_limit)
    if sequential:
        tr, va = sequential_split(raw.y_train[pool], batch_size, seed=seed, val_fraction=val_fraction)
    else:
        tr, va = train_val_split(len(pool), val_fraction, seed=seed)
    if len(tr) == 0:
        available = len(raw.y_train)
        raise EmptySplitError(
            _no_training_images(raw.info, available, len(pool), len(va), limit, val_fraction)
        )
    tensors = {}
    for split, images, labels, idx in (
        ("train", raw.x_train, raw.y_train, pool[tr]),
        ("val", raw.x_train, raw.y_train, pool[va]),
        ("test", raw.x_test, raw.y_test, test),
    ):
        x = to_float(images[idx])
        if sigma > 0:
            _noise_inplace(x.numpy(), sigma, seed, split)
        tensors[f"x_{split}"] = x
        tensors[f"y_{split}"] = torch.from_numpy(np.array(labels[idx], dtype=np.int64))
    return PreparedData(
        **tensors,
        info=raw.info,
        seed=seed,
        sigma=float(sigma),
        sequential=sequential,
        batch_size=batch_size,
        limit=limit,
        test_limit=test_limit,
        sources=raw.sources,
        provenance=raw.provenance,
    )


def _no_training_images(
    info: DatasetInfo, available: int, kept: int, n_val: int, limit: int | None, val_fraction: float
) -> str:
    """Why the training split is empty, and the smallest ``limit`` that would leave one image."""
    need = next(n for n in itertools.count(kept + 1) if n - _n_val(n, val_fraction) >= 1)
    if limit is not None and need <= available:
        source, fix = f"limit {limit} keeps {kept}", f"use a limit of at least {need}"
    else:
        source, fix = f"{info.title}'s training files hold {kept}", "the files are too small"
    return f"no image left to train on: {source} image(s) and validation (val_fraction {val_fraction:g}) takes {n_val}; {fix}"
