"""Datasets of the paper (SPEC §6) and its data protocol (SPEC §4).

Typical use::

    from dendritic.data import prepare
    data = prepare("fmnist", seed=1)               # x_train (54000, 784) float32 in [0, 1]
    data = prepare("fmnist", seed=1, sigma=0.5)    # fixed Gaussian noise, clipped
    data = prepare("fmnist", seed=1, sequential=True)  # class-sorted, 5376 per class

Raw files are looked up in ``data_dir``, ``$DENDRITIC_DATA``, the user cache, torchvision's
layout and Debian's Fashion-MNIST package, and downloaded (checksum-verified, atomically)
when missing unless ``$DENDRITIC_OFFLINE`` is set. See :mod:`dendritic.data.sources`.
"""

from .errors import (
    CorruptDatasetError,
    DatasetMismatchError,
    DatasetNotFoundError,
    EmptySplitError,
    UnsafePickleError,
)
from .loading import RawDataset, clear_cache, load, verify_content
from .protocol import (
    PreparedData,
    add_noise,
    prepare,
    sequential_split,
    stratified_subset,
    to_float,
    train_val_split,
)
from .readers import CifarUnpickler, read_cifar_batch, read_idx
from .registry import DATASETS, DatasetInfo, RemoteFile, canonical_name, dataset_names, get_info
from .sources import cache_dir, download, locate, search_dirs

__all__ = [
    "DATASETS",
    "CifarUnpickler",
    "CorruptDatasetError",
    "DatasetMismatchError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "EmptySplitError",
    "PreparedData",
    "RawDataset",
    "RemoteFile",
    "UnsafePickleError",
    "add_noise",
    "cache_dir",
    "canonical_name",
    "clear_cache",
    "dataset_names",
    "download",
    "get_info",
    "load",
    "locate",
    "prepare",
    "read_cifar_batch",
    "read_idx",
    "search_dirs",
    "sequential_split",
    "stratified_subset",
    "to_float",
    "train_val_split",
    "verify_content",
]
