"""Loading a whole dataset as uint8 arrays, cached in memory per process.

Experiments load the same dataset for every (model, D, S, trial) run, so decoded arrays are
kept in an LRU cache keyed by the dataset name and the files' paths, sizes and mtimes; the
arrays are returned read-only so that one run cannot alter the data of the next.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import sources
from .errors import CorruptDatasetError, DatasetNotFoundError
from .readers import (
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    gunzip_if_needed,
    read_cifar_batch,
    read_idx,
    read_tar_members,
    read_zip_members,
)
from .registry import CIFAR, DatasetInfo, get_info

__all__ = ["RawDataset", "clear_cache", "load", "verify_content"]

_CACHE_SIZE = 6


@dataclass(frozen=True, eq=False)
class RawDataset:
    """A dataset as stored: images (N, H, W, C) uint8 and labels (N,) int64, read-only."""

    info: DatasetInfo
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    sources: tuple[str, ...]


def _part_bytes(info: DatasetInfo, where: sources.Located) -> dict[str, tuple[bytes, str]]:
    """Raw bytes of every part, with the name to cite in error messages."""
    if where.kind == "files":
        return {role: (path.read_bytes(), str(path)) for role, path in where.paths}
    archive = where.paths[0][1]
    members = {role: f"{info.archive_prefix}{base}{info.archive_suffix}" for role, base in info.parts}
    if info.format == CIFAR:
        raw = read_tar_members(archive, members.values())
    else:
        raw = read_zip_members(archive, members.values())
    return {role: (raw[m], f"{archive}:{m}") for role, m in members.items()}


def _check_pair(info: DatasetInfo, x: np.ndarray, y: np.ndarray, xo: str, yo: str) -> None:
    if len(x) != len(y):
        raise CorruptDatasetError(f"{xo} holds {len(x)} images but {yo} holds {len(y)} labels")
    if x.shape[1:] != info.input_shape:
        raise CorruptDatasetError(
            f"{xo}: images of shape {x.shape[1:]}, expected {info.input_shape} for {info.title}"
        )
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= info.n_classes):
        raise CorruptDatasetError(
            f"{yo}: labels span {int(y.min())}..{int(y.max())}, expected 0..{info.n_classes - 1}"
        )


def _decode_idx(info: DatasetInfo, parts: dict[str, tuple[bytes, str]]) -> tuple[np.ndarray, ...]:
    out = []
    for split in ("train", "test"):
        (xb, xo), (yb, yo) = parts[f"{split}_images"], parts[f"{split}_labels"]
        x = read_idx(xb, magic=IDX_IMAGES_MAGIC, origin=xo)
        y = read_idx(yb, magic=IDX_LABELS_MAGIC, origin=yo).astype(np.int64)
        if info.transposed:
            x = x.transpose(0, 2, 1)
        x = np.ascontiguousarray(x)[..., None]
        _check_pair(info, x, y, xo, yo)
        out += [x, y]
    return tuple(out)


def _decode_cifar(info: DatasetInfo, parts: dict[str, tuple[bytes, str]]) -> tuple[np.ndarray, ...]:
    batches = {role: read_cifar_batch(data, origin=origin) for role, (data, origin) in parts.items()}
    train_roles = [r for r, _ in info.parts if r != "test_batch"]
    x_train = np.concatenate([batches[r][0] for r in train_roles])
    y_train = np.concatenate([batches[r][1] for r in train_roles])
    x_test, y_test = batches["test_batch"]
    origin = str(Path(parts["test_batch"][1]).parent)
    _check_pair(info, x_train, y_train, origin, origin)
    _check_pair(info, x_test, y_test, origin, origin)
    return x_train, y_train, x_test, y_test


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _load_located(where: sources.Located) -> RawDataset:
    info = get_info(where.name)
    parts = _part_bytes(info, where)
    arrays = _decode_cifar(info, parts) if info.format == CIFAR else _decode_idx(info, parts)
    for a in arrays:
        a.flags.writeable = False
    x_train, y_train, x_test, y_test = arrays
    return RawDataset(info, x_train, y_train, x_test, y_test, tuple(str(p) for p in where.files()))


def clear_cache() -> None:
    """Forget every dataset held in memory (frees RAM; tests use it for isolation)."""
    _load_located.cache_clear()


def load(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> RawDataset:
    """Load a dataset's train and test sets as uint8 images and int64 labels.

    Looks in ``data_dir``, ``$DENDRITIC_DATA``, the user cache, torchvision's layout and system
    folders (see :mod:`dendritic.data.sources`); if nothing is found and ``download`` is true and
    ``$DENDRITIC_OFFLINE`` is unset, downloads the official files into the cache first.

    Raises :class:`DatasetNotFoundError` (one-line message) when no copy can be had, and
    :class:`CorruptDatasetError` for a damaged copy; a damaged file inside our download cache is
    deleted so that the next run fetches it again instead of failing forever.
    """
    info = get_info(name)
    where = sources.locate(info.name, data_dir)
    if where is None:
        if not download:
            reason = "download=False"
        elif sources.offline():
            reason = "downloads disabled because DENDRITIC_OFFLINE is set"
        else:
            reason = ""
        if reason:
            raise DatasetNotFoundError(sources.not_found_message(info.name, data_dir, reason))
        try:
            sources.download(info.name)
        except DatasetNotFoundError as exc:
            raise DatasetNotFoundError(
                sources.not_found_message(info.name, data_dir, f"download failed ({exc})")
            ) from exc
        where = sources.locate(info.name, data_dir)
        if where is None:  # pragma: no cover - download() leaves a complete copy
            raise DatasetNotFoundError(
                sources.not_found_message(info.name, data_dir, "download left no usable copy")
            )
    try:
        return _load_located(where)
    except CorruptDatasetError as exc:
        cached = [p for p in where.files() if sources.in_cache(p)]
        if not cached:
            raise
        # Messages always name the offending file(s); drop just those when we can tell.
        named = [p for p in cached if str(p) in str(exc)]
        cached = named or cached
        for p in cached:
            p.unlink(missing_ok=True)
        raise type(exc)(
            f"{exc} (removed {', '.join(str(p) for p in cached)} from the download cache; "
            f"run again to download a fresh copy)"
        ) from exc


def verify_content(name: str, *, data_dir: str | os.PathLike[str] | None = None) -> dict[str, bool]:
    """Compare the decompressed IDX payloads with the recorded SHA-256 (Fashion-MNIST only).

    Returns ``{role: matches}`` for every part whose content digest is known (an empty dict
    for datasets without recorded digests). Not run on every load: hashing costs time and
    the structural checks already catch truncated or mangled files.
    """
    info = get_info(name)
    known = dict(info.content_sha256)
    if not known:
        return {}
    where = sources.locate(info.name, data_dir)
    if where is None:
        raise DatasetNotFoundError(sources.not_found_message(info.name, data_dir, "not on disk"))
    parts = _part_bytes(info, where)
    result = {}
    for role, digest in known.items():
        data, origin = parts[role]
        data = gunzip_if_needed(data, origin)
        result[role] = hashlib.sha256(data).hexdigest() == digest
    return result
