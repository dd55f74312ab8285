"""Readers for the raw dataset formats: IDX (MNIST family) and CIFAR-10 python batches.

Everything that can go wrong with a file's content is reported as
:class:`~dendritic.data.errors.CorruptDatasetError` naming the file, so a damaged download
or a half-copied dataset is never mistaken for a valid one.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import tarfile
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CorruptDatasetError, UnsafePickleError, one_line

__all__ = [
    "CifarUnpickler",
    "read_cifar_batch",
    "read_idx",
    "read_tar_members",
    "read_zip_members",
]

# IDX type codes (third header byte) -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, np.dtype] = {
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

#: Largest dataset file we read or decompress (EMNIST balanced's biggest part is 88 MB; the
#: whole ``gzip.zip`` 562 MB). Sizes are checked against it before anything is allocated.
MAX_FILE_BYTES = 1 << 30


def _too_big(origin: str, what: str, size: int, limit: int) -> CorruptDatasetError:
    return CorruptDatasetError(
        f"{origin}: {what} {size:,} bytes, more than the {limit:,} a dataset file may hold "
        "(not a dataset file, or a decompression bomb)"
    )


def _read_source(
    source: str | os.PathLike[str] | bytes, origin: str | None, limit: int = MAX_FILE_BYTES
) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), origin or "<bytes>"
    path = Path(source)
    origin = origin or str(path)
    try:
        size = path.stat().st_size
        if size > limit:
            raise _too_big(origin, "file of", size, limit)
        return path.read_bytes(), origin
    except IsADirectoryError as exc:
        raise CorruptDatasetError(f"{origin}: is a directory, not a file") from exc


class _Gunzip:
    """Incremental gzip decompression (multi-member streams too) that never produces more
    than it is asked for, so a small file cannot expand into gigabytes unchecked."""

    def __init__(self, data: bytes, origin: str) -> None:
        self.origin = origin
        self._pending = data
        self._zlib = zlib.decompressobj(wbits=31)

    def read(self, n: int) -> bytes:
        """Up to ``n`` decompressed bytes (fewer only at the end of the stream)."""
        out = bytearray()
        try:
            while len(out) < n:
                if self._zlib.eof:
                    rest = self._zlib.unused_data
                    if not rest.startswith(b"\x1f\x8b"):
                        break  # trailing bytes after the last member are ignored, as gzip does
                    self._zlib = zlib.decompressobj(wbits=31)
                    self._pending = rest
                before = self._pending
                chunk = self._zlib.decompress(self._pending, n - len(out))
                self._pending = self._zlib.unconsumed_tail
                if not chunk and not self._zlib.eof and (not self._pending or self._pending == before):
                    raise CorruptDatasetError(f"{self.origin}: broken gzip stream (truncated)")
                out += chunk
        except zlib.error as exc:
            raise CorruptDatasetError(f"{self.origin}: broken gzip stream ({exc})") from exc
        return bytes(out)


def gunzip_if_needed(data: bytes, origin: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """Decompress gzip data, recognised by its magic bytes rather than by the file name; more
    than ``limit`` decompressed bytes is an error raised before they are all produced."""
    if data[:2] != b"\x1f\x8b":
        return data
    out = _Gunzip(data, origin).read(limit + 1)
    if len(out) > limit:
        raise _too_big(origin, "decompresses to more than", limit, limit)
    return out


def read_idx(
    source: str | os.PathLike[str] | bytes,
    *,
    magic: int | None = None,
    origin: str | None = None,
    item_shape: tuple[int, ...] | None = None,
    max_items: int | None = None,
    limit: int = MAX_FILE_BYTES,
) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a numpy array of the header's shape.

    ``magic`` pins the expected 4-byte header (``0x803`` images, ``0x801`` labels); a file
    whose payload size disagrees with its header is rejected, because a truncated or padded
    file would otherwise silently shift every image. The header is checked first (magic,
    ``item_shape`` of each item, at most ``max_items`` items, at most ``limit`` bytes), and only
    then is the payload decompressed, exactly as much of it as the header announces.
    """
    data, origin = _read_source(source, origin, limit)
    gz = data[:2] == b"\x1f\x8b"
    stream = _Gunzip(data, origin) if gz else None
    head_bytes = stream.read(4) if stream is not None else data[:4]
    if len(head_bytes) < 4:
        raise CorruptDatasetError(f"{origin}: too short for an IDX header ({len(head_bytes)} bytes)")
    head = int.from_bytes(head_bytes, "big")
    zero, code, ndim = head_bytes[0:2], head_bytes[2], head_bytes[3]
    if zero != b"\x00\x00" or code not in _IDX_DTYPES or ndim == 0:
        raise CorruptDatasetError(f"{origin}: bad IDX magic number 0x{head:08x}")
    if magic is not None and head != magic:
        raise CorruptDatasetError(f"{origin}: IDX magic number 0x{head:08x}, expected 0x{magic:08x}")
    header_len = 4 + 4 * ndim
    dims = stream.read(4 * ndim) if stream is not None else data[4:header_len]
    if len(dims) < 4 * ndim:
        raise CorruptDatasetError(f"{origin}: truncated IDX header")
    shape = tuple(int.from_bytes(dims[4 * i : 4 + 4 * i], "big") for i in range(ndim))
    if item_shape is not None and shape[1:] != tuple(item_shape):
        raise CorruptDatasetError(f"{origin}: IDX items of shape {shape[1:]}, expected {tuple(item_shape)}")
    if max_items is not None and shape[0] > max_items:
        raise CorruptDatasetError(f"{origin}: IDX header says {shape[0]:,} items, more than {max_items:,}")
    dtype = _IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    if expected > limit:
        raise _too_big(origin, "IDX header announces", expected, limit)
    if stream is not None:
        payload = stream.read(expected + 1)
        actual = len(payload)
    else:
        payload = data
        actual = len(data) - header_len
    if actual != expected:
        raise CorruptDatasetError(
            f"{origin}: IDX header says shape {shape} ({expected} bytes of data) "
            f"but the file holds {'more than ' if actual > expected else ''}{actual} bytes "
            "(truncated or not an IDX file)"
        )
    arr = np.frombuffer(payload, dtype=dtype, offset=0 if stream is not None else header_len)
    return arr.reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def read_zip_members(
    path: str | os.PathLike[str], members: Iterable[str], *, limit: int = MAX_FILE_BYTES
) -> dict[str, bytes]:
    """Read named members of a zip archive (EMNIST's ``gzip.zip``) without extracting it; each
    member's size is checked before it is read."""
    wanted = list(members)
    try:
        with zipfile.ZipFile(path) as zf:
            out = {}
            for m in wanted:
                info = zf.getinfo(m)
                if info.file_size > limit:
                    raise _too_big(f"{path}:{m}", "member of", info.file_size, limit)
                out[m] = zf.read(info)
            return out
    except CorruptDatasetError:
        raise
    except KeyError as exc:
        raise CorruptDatasetError(f"{path}: archive lacks member {exc.args[0]!r}") from exc
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise CorruptDatasetError(f"{path}: broken zip archive ({exc})") from exc


def read_tar_members(
    path: str | os.PathLike[str], members: Iterable[str], *, limit: int = MAX_FILE_BYTES
) -> dict[str, bytes]:
    """Read named regular-file members of a .tar.gz in one streaming pass (sizes checked first).

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
                if info.size > limit:
                    raise _too_big(f"{path}:{info.name}", "member of", info.size, limit)
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


def _numpy_reconstruct() -> Any:
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
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


def _integer_labels(labels: list | tuple | np.ndarray, origin: str) -> np.ndarray:
    """Class indices as int64. Anything but integers is refused: ``np.asarray(..., int64)``
    alone would truncate 0.5 to class 0 and take ``True`` for class 1 without a word."""
    if len(labels) == 0:
        return np.empty(0, dtype=np.int64)
    try:
        raw = np.asarray(labels)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CorruptDatasetError(f"{origin}: labels are not integers ({one_line(exc)})") from exc
    if raw.dtype.kind not in "iu":  # float, bool, str, object (mixed types, huge ints) ...
        odd = [v for v in raw.ravel().tolist() if type(v) is not int][:1]
        found = f"{type(odd[0]).__name__} {odd[0]!r}" if odd else "integers beyond 64 bits"
        raise CorruptDatasetError(f"{origin}: labels must be class numbers (integers), found {found}")
    return raw.astype(np.int64)  # out-of-range values are named by the loader's range check


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
    y = _integer_labels(labels, origin)
    if y.ndim != 1 or len(y) != len(images):
        raise CorruptDatasetError(f"{origin}: {len(images)} images but {y.size} labels")
    x = images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), y
