"""Loading a whole dataset as uint8 arrays, cached in memory per process.

Experiments load the same dataset for every (model, D, S, trial) run, so decoded arrays are
kept in an LRU cache keyed by the dataset name and the files' paths, sizes and mtimes; the
arrays are returned read-only so that one run cannot alter the data of the next.

Every load also records its provenance (each file's path, size and SHA-256, and the SHA-256 of
its decompressed content) and checks the files against every digest the registry knows: a file
that is another dataset's (MNIST and Fashion-MNIST share file names) is refused by name.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from . import sources
from .errors import CorruptDatasetError, DatasetMismatchError, DatasetNotFoundError
from .readers import (
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    _read_source,
    gunzip_if_needed,
    read_cifar_batch,
    read_idx,
    read_tar_members,
    read_zip_members,
)
from .registry import CIFAR, DATASETS, DatasetInfo, get_info

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
    #: Where the data came from: every file with its size and SHA-256 (see :func:`provenance`).
    provenance: dict = field(default_factory=dict)


def _known_digests() -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    """Every digest the registry knows → (dataset, part): official files' MD5s, contents' SHA-256."""
    by_md5: dict[str, tuple[str, str]] = {}
    by_content: dict[str, tuple[str, str]] = {}
    for info in DATASETS.values():
        roles = {f"{base}.gz": role for role, base in info.parts}
        for remote in info.remote:
            if remote.md5 and remote.filename in roles:
                by_md5[remote.md5] = (info.name, roles[remote.filename])
        for role, digest in info.content_sha256:
            by_content[digest] = (info.name, role)
    return by_md5, by_content


_BY_MD5, _BY_CONTENT = _known_digests()


def _identify(info: DatasetInfo, role: str, origin: str, md5: str, content: str | None) -> str | None:
    """Which known digest the part matches (None if none); another dataset's file is an error."""
    for kind, table, digest in (("content", _BY_CONTENT, content), ("md5", _BY_MD5, md5)):
        owner = table.get(digest) if digest else None
        if owner is None:
            continue
        if owner != (info.name, role):
            other = DATASETS[owner[0]].title
            raise DatasetMismatchError(
                f"{origin} is {other}'s {owner[1].replace('_', ' ')} file, not {info.title}'s "
                f"{role.replace('_', ' ')}: the folder holds the wrong dataset (check --data-dir)"
            )
        return "content sha256" if kind == "content" else "official md5"
    return None


def _part_bytes(info: DatasetInfo, where: sources.Located) -> dict[str, tuple[bytes, str]]:
    """Raw bytes of every part, with the name to cite in error messages."""
    if where.kind == "files":
        return {role: _read_source(path, str(path)) for role, path in where.paths}
    archive = where.paths[0][1]
    members = {role: f"{info.archive_prefix}{base}{info.archive_suffix}" for role, base in info.parts}
    if info.format == CIFAR:
        raw = read_tar_members(archive, members.values())
    else:
        raw = read_zip_members(archive, members.values())
    return {role: (raw[m], f"{archive}:{m}") for role, m in members.items()}


def _check_pair(info: DatasetInfo, x: np.ndarray, y: np.ndarray, xo: str, yo: str) -> None:
    if len(x) == 0:  # a valid but empty file would only fail later, far from its name
        raise CorruptDatasetError(
            f"{xo} holds no images (zero items): not a usable {info.title} file (damaged or placeholder copy)"
        )
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


def _idx_content(arr: np.ndarray, magic: int) -> bytes:
    """The decompressed IDX file a uint8 array was read from (header + payload)."""
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + np.ascontiguousarray(arr).tobytes()


def _decode_idx(
    info: DatasetInfo, parts: dict[str, tuple[bytes, str]]
) -> tuple[tuple[np.ndarray, ...], dict[str, str]]:
    """The four arrays, and the SHA-256 of each part's decompressed content."""
    out = []
    contents: dict[str, str] = {}
    h, w, _ = info.input_shape
    for split, most in (("train", info.n_train), ("test", info.n_test)):
        (xb, xo), (yb, yo) = parts[f"{split}_images"], parts[f"{split}_labels"]
        item = (w, h) if info.transposed else (h, w)
        x = read_idx(xb, magic=IDX_IMAGES_MAGIC, origin=xo, item_shape=item, max_items=most)
        y = read_idx(yb, magic=IDX_LABELS_MAGIC, origin=yo, item_shape=(), max_items=most)
        for role, arr, magic in (
            (f"{split}_images", x, IDX_IMAGES_MAGIC),
            (f"{split}_labels", y, IDX_LABELS_MAGIC),
        ):
            if arr.dtype == np.uint8:
                contents[role] = hashlib.sha256(_idx_content(arr, magic)).hexdigest()
        y = y.astype(np.int64)
        if info.transposed:
            x = x.transpose(0, 2, 1)
        x = np.ascontiguousarray(x)[..., None]
        _check_pair(info, x, y, xo, yo)
        out += [x, y]
    return tuple(out), contents


def _decode_cifar(info: DatasetInfo, parts: dict[str, tuple[bytes, str]]) -> tuple[np.ndarray, ...]:
    batches = {role: read_cifar_batch(data, origin=origin) for role, (data, origin) in parts.items()}
    for role, (x, y) in batches.items():
        _check_pair(info, x, y, parts[role][1], parts[role][1])
    train_roles = [r for r, _ in info.parts if r != "test_batch"]
    x_train = np.concatenate([batches[r][0] for r in train_roles])
    y_train = np.concatenate([batches[r][1] for r in train_roles])
    x_test, y_test = batches["test_batch"]
    return x_train, y_train, x_test, y_test


def _provenance(
    info: DatasetInfo, where: sources.Located, parts: dict[str, tuple[bytes, str]], contents: dict[str, str]
) -> dict:
    """What a run records about its data: each part's file, size and digests, and whether a
    digest the registry knows confirms it (another dataset's file raises here)."""
    files = []
    for role, (data, origin) in parts.items():
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        entry = {
            "part": role,
            "file": origin,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        if role in contents:
            entry["content_sha256"] = contents[role]
        entry["verified_by"] = _identify(info, role, origin, md5, contents.get(role))
        files.append(entry)
    if where.kind == "archive":
        archive = where.paths[0][1]
        files.append({"part": "archive", "file": str(archive), "bytes": archive.stat().st_size})
    return {
        "dataset": info.name,
        "folder": str(where.folder),
        "files": files,
        "verified": all(f.get("verified_by") for f in files if f["part"] != "archive"),
    }


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _load_located(where: sources.Located) -> RawDataset:
    info = get_info(where.name)
    parts = _part_bytes(info, where)
    contents: dict[str, str] = {}
    if info.format == CIFAR:
        arrays = _decode_cifar(info, parts)
    else:
        arrays, contents = _decode_idx(info, parts)
    provenance = _provenance(info, where, parts, contents)
    for a in arrays:
        a.flags.writeable = False
    x_train, y_train, x_test, y_test = arrays
    return RawDataset(
        info, x_train, y_train, x_test, y_test, tuple(str(p) for p in where.files()), provenance
    )


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
    where = sources.locate(info.name, data_dir)  # an explicit data_dir holds it, or this raises
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
