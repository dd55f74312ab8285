"""Readers for the raw dataset formats: IDX (MNIST family) and CIFAR-10 python batches.

Everything that can go wrong with a file's content is reported as
:class:`~dendritic.data.errors.CorruptDatasetError` naming the file, so a damaged download
or a half-copied dataset is never mistaken for a valid one.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .errors import CorruptDatasetError, UnsafePickleError

__all__ = [
    "CifarUnpickler",
    "read_cifar_batch",
    "read_idx",
    "read_tar_members",
    "read_zip_members",
]

# IDX type codes (third header byte) -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (N, rows, cols)
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (N,)

_CIFAR_PIXELS = 32 * 32 * 3


def _read_source(source: str | os.PathLike[str] | bytes, origin: str | None) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), origin or "<bytes>"
    path = Path(source)
    try:
        return path.read_bytes(), origin or str(path)
    except IsADirectoryError as exc:
        raise CorruptDatasetError(f"{origin or path}: is a directory, not a file") from exc


def gunzip_if_needed(data: bytes, origin: str) -> bytes:
    """Decompress gzip data, recognised by its magic bytes rather than by the file name."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptDatasetError(f"{origin}: broken gzip stream ({exc})") from exc


def read_idx(
    source: str | os.PathLike[str] | bytes,
    *,
    magic: int | None = None,
    origin: str | None = None,
) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a numpy array of the header's shape.

    ``magic`` pins the expected 4-byte header (``0x803`` images, ``0x801`` labels); a file
    whose payload size disagrees with its header is rejected, because a truncated or padded
    file would otherwise silently shift every image.
    """
    data, origin = _read_source(source, origin)
    data = gunzip_if_needed(data, origin)
    if len(data) < 4:
        raise CorruptDatasetError(f"{origin}: too short for an IDX header ({len(data)} bytes)")
    head = int.from_bytes(data[:4], "big")
    zero, code, ndim = data[0:2], data[2], data[3]
    if zero != b"\x00\x00" or code not in _IDX_DTYPES or ndim == 0:
        raise CorruptDatasetError(f"{origin}: bad IDX magic number 0x{head:08x}")
    if magic is not None and head != magic:
        raise CorruptDatasetError(f"{origin}: IDX magic number 0x{head:08x}, expected 0x{magic:08x}")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise CorruptDatasetError(f"{origin}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_len
    if actual != expected:
        raise CorruptDatasetError(
            f"{origin}: IDX header says shape {shape} ({expected} bytes of data) "
            f"but the file holds {actual} bytes (truncated or not an IDX file)"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def read_zip_members(path: str | os.PathLike[str], members: Iterable[str]) -> dict[str, bytes]:
    """Read named members of a zip archive (EMNIST's ``gzip.zip``) without extracting it."""
    wanted = list(members)
    try:
        with zipfile.ZipFile(path) as zf:
            return {m: zf.read(m) for m in wanted}
    except KeyError as exc:
        raise CorruptDatasetError(f"{path}: archive lacks member {exc.args[0]!r}") from exc
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise CorruptDatasetError(f"{path}: broken zip archive ({exc})") from exc


def read_tar_members(path: str | os.PathLike[str], members: Iterable[str]) -> dict[str, bytes]:
    """Read named regular-file members of a .tar.gz in one streaming pass.

    Nothing is extracted to disk, so archive path tricks (``../``, links) cannot write
    anywhere; links and other non-regular members with a wanted name are rejected.
    """
    wanted = set(members)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r|*") as tf:
            for info in tf:
                if info.name not in wanted:
                    continue
                if not info.isfile():
                    raise CorruptDatasetError(f"{path}: member {info.name!r} is not a file")
                handle = tf.extractfile(info)
                if handle is None:  # pragma: no cover - isfile() members always have data
                    raise CorruptDatasetError(f"{path}: member {info.name!r} has no data")
                found[info.name] = handle.read()
    except CorruptDatasetError:
        raise
    except (tarfile.TarError, zlib.error, OSError, EOFError) as exc:
        raise CorruptDatasetError(f"{path}: broken tar archive ({exc})") from exc
    missing = sorted(wanted - found.keys())
    if missing:
        raise CorruptDatasetError(f"{path}: archive lacks member(s) {', '.join(missing)}")
    return found


# --------------------------------------------------------------------------- CIFAR pickles


def _numpy_reconstruct():
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _latin1_encode(text: object, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Stand-in for ``_codecs.encode`` limited to what protocol-2 pickles of bytes use."""
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1" or errors != "strict":
        raise UnsafePickleError("pickle used _codecs.encode in a way a CIFAR batch never does")
    return text.encode("latin-1")


class CifarUnpickler(pickle.Unpickler):
    """A pickle reader that can only build what a CIFAR-10 python batch contains.

    The CIFAR files are pickles, and ``pickle.load`` on an untrusted file executes whatever
    callable the file names (``os.system`` ...). A batch only needs dicts, lists, strings,
    ints and one uint8 numpy array, so :meth:`find_class` resolves exactly the globals that
    rebuilding a numpy array requires and refuses everything else *before* it is imported or
    called. ``_codecs.encode`` is allowed only as a latin-1 str->bytes conversion, which is how
    Python 3 writes ``bytes`` into protocol-2 pickles.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise UnsafePickleError(f"refused to load global {module}.{name}")
        if name == "_reconstruct":
            return _numpy_reconstruct()
        if name == "ndarray":
            return np.ndarray
        if name == "dtype":
            return np.dtype
        return _latin1_encode

    def persistent_load(self, pid: object) -> object:
        raise UnsafePickleError("refused a persistent id")


def _text_key(key: object) -> object:
    return key.decode("latin-1") if isinstance(key, bytes) else key


def read_cifar_batch(
    source: str | os.PathLike[str] | bytes, *, origin: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch safely; returns (images (N,32,32,3) uint8, labels int64).

    The files store each image as its R plane, then G, then B (CHW, row-major); we return HWC
    so that flattening gives the row-major HWC order used everywhere else in the package.
    """
    data, origin = _read_source(source, origin)
    try:
        # latin1 lets Python-2 ``str`` payloads (the real files) become numpy's raw bytes.
        obj = CifarUnpickler(io.BytesIO(data), encoding="latin1").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{origin}: unsafe pickle, {exc}") from None
    except CorruptDatasetError:
        raise
    except Exception as exc:  # any failure of a malformed pickle is a corrupt file
        raise CorruptDatasetError(f"{origin}: not a readable CIFAR batch ({exc!r})") from exc
    if not isinstance(obj, dict):
        raise CorruptDatasetError(f"{origin}: CIFAR batch is a {type(obj).__name__}, not a dict")
    batch = {_text_key(k): v for k, v in obj.items()}
    images = batch.get("data")
    labels = batch.get("labels")
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2:
        raise CorruptDatasetError(f"{origin}: 'data' is not a 2-D uint8 array")
    if images.shape[1] != _CIFAR_PIXELS:
        raise CorruptDatasetError(f"{origin}: images have {images.shape[1]} values, expected {_CIFAR_PIXELS}")
    if not isinstance(labels, list | tuple | np.ndarray):
        raise CorruptDatasetError(f"{origin}: 'labels' missing or not a list")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CorruptDatasetError(f"{origin}: labels are not integers") from exc
    if y.ndim != 1 or len(y) != len(images):
        raise CorruptDatasetError(f"{origin}: {len(images)} images but {y.size} labels")
    x = images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), y
