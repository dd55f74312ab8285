"""Safe file handling for every command: paths checked before work starts, outputs that never
overwrite an input, writes that land whole or not at all, and reads with bounded sizes.

Every output of the library goes through :func:`atomic_write` (a temporary file in the target's
folder, then ``os.replace``), so a full disk, a crash or Ctrl-C leaves the old file or the new
one, never half of either. Every untrusted file is read through :func:`read_bounded` or
:func:`read_json`, which check its size before allocating anything.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from dendritic.errors import PathError

__all__ = [
    "atomic_path",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_input_dir",
    "check_input_file",
    "check_output_dir",
    "check_output_file",
    "nonempty_path",
    "parse_json",
    "read_bounded",
    "read_json",
    "same_file",
    "sqlite_files",
]

#: JSON documents we read (checkpoint metadata, figures.json) are small; anything bigger is not ours.
MAX_JSON_BYTES = 16 << 20

PathLike = str | os.PathLike[str]


def nonempty_path(path: PathLike | None, option: str) -> Path:
    """``path`` as a Path; an empty string is an error (``Path('')`` would silently mean '.')."""
    if path is None or not str(os.fspath(path)).strip():
        raise PathError(f"{option} is empty; give a path")
    return Path(os.fspath(path)).expanduser()


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether two paths name the same file (links followed; also for files not created yet)."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
    except OSError:
        pass
    return pa.resolve() == pb.resolve()


def sqlite_files(path: PathLike) -> list[Path]:
    """A SQLite database and the companion files SQLite keeps beside it."""
    p = Path(path)
    return [p, *(p.with_name(p.name + s) for s in ("-wal", "-shm", "-journal"))]


def _writable_folder(folder: Path, what: str) -> None:
    """``folder`` exists as a writable directory, or can be created inside one.

    Permission bits are not enough: root passes ``os.access`` everywhere, and special
    filesystems (``/proc``, ``/sys``) refuse new files whatever the bits say. So a hidden empty
    file is created and removed in the folder (or the nearest existing folder above it), the
    way :func:`atomic_path` will write there later.
    """
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise PathError(f"{what}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PathError(f"{what}: folder {probe} is not writable")
    try:
        handle, name = tempfile.mkstemp(prefix=".dendritic-probe-", suffix=".tmp", dir=probe)
    except OSError as exc:
        raise PathError(
            f"{what}: folder {probe} is not writable (creating a file there fails: {exc.strerror or exc})"
        ) from None
    os.close(handle)
    with contextlib.suppress(OSError):
        os.unlink(name)


def _refuse_protected(target: Path, protected: Iterable[PathLike], what: str) -> None:
    for other in protected:
        if same_file(target, other):
            raise PathError(f"{what} is {other}, an input of this command; refusing to overwrite it")


def check_output_file(
    path: PathLike | None,
    *,
    option: str,
    protected: Iterable[PathLike] = (),
    create_parents: bool = True,
) -> Path:
    """Validate an output file before any work: not empty, not a folder, not one of the
    ``protected`` inputs (e.g. the results store), in a writable folder (which must already
    exist unless ``create_parents``)."""
    target = nonempty_path(path, option)
    what = f"{option} {target}"
    if target.is_dir():
        raise PathError(f"{what} is a folder; give a file name")
    _refuse_protected(target, protected, what)
    if not create_parents and not target.parent.is_dir():
        if target.parent.exists():
            raise PathError(f"{what}: {target.parent} is a file, not a folder")
        raise PathError(f"{what}: folder {target.parent} does not exist")
    _writable_folder(target.parent, what)
    if target.exists() and not os.access(target, os.W_OK):
        raise PathError(f"{what} exists and is not writable")
    return target


def check_output_dir(
    path: PathLike | None,
    *,
    option: str,
    protected: Iterable[PathLike] = (),
    names: Iterable[str] = (),
) -> Path:
    """Validate an output folder before any work: not empty, not a file (the store, say), and
    creatable; a ``protected`` file inside it must not bear one of the ``names`` written there."""
    target = nonempty_path(path, option)
    what = f"{option} {target}"
    if target.exists() and not target.is_dir():
        _refuse_protected(target, protected, what)
        raise PathError(f"{what} is a file, not a folder")
    _writable_folder(target, what)
    for name in names:
        _refuse_protected(target / name, protected, f"{what}: the output {name}")
    return target


def check_input_dir(path: PathLike | None, *, option: str) -> Path:
    """An input folder that must exist (no silent fallback to somewhere else)."""
    target = nonempty_path(path, option)
    if not target.exists():
        raise PathError(f"{option} {target} does not exist")
    if not target.is_dir():
        raise PathError(f"{option} {target} is a file, not a folder")
    if not os.access(target, os.R_OK | os.X_OK):
        raise PathError(f"{option} {target} is not readable")
    return target


def check_input_file(path: PathLike | None, *, option: str) -> Path:
    """An input file that must exist and be readable."""
    target = nonempty_path(path, option)
    if not target.exists():
        raise PathError(f"{option} {target} does not exist")
    if target.is_dir():
        raise PathError(f"{option} {target} is a folder, not a file")
    if not os.access(target, os.R_OK):
        raise PathError(f"{option} {target} is not readable")
    return target


# ---------------------------------------------------------------------------- atomic writes


def _new_file_mode(target: Path) -> int:
    """Keep an existing file's mode; new files get 0o666 minus the umask, like ``open()``."""
    with contextlib.suppress(OSError):
        return target.stat().st_mode & 0o777
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(target: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` (same suffix, so writers that infer a format
    from it still work); on a clean exit it is renamed onto ``target``, on any error removed."""
    final = Path(target)
    if final.parent != Path() and not final.parent.is_dir():
        final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp{final.suffix}")
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, _new_file_mode(final))
        os.replace(tmp, final)
    except OSError as exc:
        raise PathError(f"cannot write {final}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write(target: PathLike, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` then rename onto ``target``: the file appears complete or not at all."""
    with atomic_path(target) as tmp:
        write(tmp)
    return Path(target)


def atomic_write_text(target: PathLike, text: str) -> Path:
    return atomic_write(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(target: PathLike, data: bytes) -> Path:
    return atomic_write(target, lambda tmp: tmp.write_bytes(data))


# ---------------------------------------------------------------------------- bounded reads


def read_bounded(path: PathLike, *, limit: int, what: str | None = None) -> bytes:
    """The bytes of a file of at most ``limit`` bytes; a bigger one is refused before reading."""
    p = Path(path)
    name = what or str(p)
    try:
        size = p.stat().st_size
        if size > limit:
            raise PathError(f"{name} is {size:,} bytes, more than the {limit:,} this file may have")
        with open(p, "rb") as handle:
            data = handle.read(limit + 1)
    except IsADirectoryError:
        raise PathError(f"{name} is a folder, not a file") from None
    except OSError as exc:
        raise PathError(f"cannot read {name}: {exc.strerror or exc}") from None
    if len(data) > limit:  # grew while we read it
        raise PathError(f"{name} is more than {limit:,} bytes")
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def parse_json(text: str | bytes, *, what: str) -> Any:
    """Strict JSON: no NaN/Infinity, no numbers that overflow a float, bounded nesting."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise PathError(f"{what} is nested too deeply to be ours") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise PathError(f"{what} is not valid JSON ({one_line_of(exc)})") from None


def read_json(path: PathLike, *, what: str | None = None, limit: int = MAX_JSON_BYTES) -> Any:
    """Read and strictly parse a small JSON file (size checked first)."""
    name = what or str(path)
    return parse_json(read_bounded(path, limit=limit, what=name), what=name)


def one_line_of(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
