"""Finding the raw files on disk, and downloading them when allowed.

With ``data_dir`` (the ``--data-dir`` option) only that folder is searched: the folder itself,
``<data_dir>/<name>`` and torchvision's layout under it. A folder that does not exist, is a file,
or lacks one of the dataset's files is an error naming what is missing; the run never falls back
to a copy found elsewhere (that copy could be another dataset with the same file names).

Without it, the lookup order is (first complete copy wins):

1. each root in ``$DENDRITIC_DATA`` (``os.pathsep``-separated): ``<root>/<name>``;
2. the per-user cache ``$XDG_CACHE_HOME/dendritic`` (or ``~/.cache/dendritic``): ``<cache>/<name>``;
3. torchvision's layout under those roots: ``<root>/FashionMNIST/raw`` ... ``<root>/cifar-10-batches-py``;
4. system copies (Debian's ``/usr/share/datasets/fashion-mnist`` for Fashion-MNIST).

``<name>`` is the canonical name or an alias (``fmnist``, ``fashion-mnist`` ...). These roots
are only searched through such sub-folders: MNIST, Fashion-MNIST and KMNIST share file names, so
loose files directly in a shared root could be silently taken for the wrong dataset. Whatever
the folder, :func:`dendritic.data.load` also recognises files whose digests belong to another
dataset, and records the SHA-256 of every file a run used.

Downloads go to ``<cache>/<name>/``; each file is written to a temporary file in that folder,
checked against its known digest, and only then ``os.replace``-d into place, so an interrupted
or corrupted transfer never leaves a file that looks valid. Setting ``DENDRITIC_OFFLINE`` to a
non-empty value other than ``0`` forbids every download (the test suite does this).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .errors import CorruptDatasetError, DatasetNotFoundError, one_line
from .registry import CIFAR, DatasetInfo, RemoteFile, get_info

__all__ = [
    "Located",
    "cache_dir",
    "download",
    "fetch_url",
    "locate",
    "offline",
    "search_dirs",
]

_CHUNK = 1 << 20
_TIMEOUT_S = 60


def offline() -> bool:
    """True when ``$DENDRITIC_OFFLINE`` forbids network access."""
    value = os.environ.get("DENDRITIC_OFFLINE", "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def cache_dir() -> Path:
    """Per-user cache root: ``$XDG_CACHE_HOME/dendritic`` or ``~/.cache/dendritic``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "dendritic"


def _env_roots() -> list[Path]:
    raw = os.environ.get("DENDRITIC_DATA", "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


def search_dirs(name: str, data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Every folder probed for ``name``, in priority order (see the module docstring)."""
    info = get_info(name)
    if data_dir is not None:
        explicit = Path(data_dir).expanduser()
        dirs = [explicit, *(explicit / sub for sub in info.subdirs), explicit / info.torchvision_dir]
    else:
        roots = [*_env_roots(), cache_dir()]
        dirs = [root / sub for root in roots for sub in info.subdirs]
        dirs.extend(root / info.torchvision_dir for root in roots)
        dirs.extend(Path(d) for d in info.system_dirs)
    seen: set[Path] = set()
    unique = []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            unique.append(d)
    return unique


@dataclass(frozen=True)
class Located:
    """Where a dataset's parts were found.

    ``kind`` is ``"files"`` (one file per part, ``paths`` pairs role -> file) or ``"archive"``
    (the official zip/tar read in place; ``paths`` holds one pair). ``stamps`` (size, mtime)
    make the in-memory cache reload a file that was replaced on disk.
    """

    name: str
    kind: str
    folder: Path
    paths: tuple[tuple[str, Path], ...]
    stamps: tuple[tuple[int, int], ...]

    def files(self) -> list[Path]:
        return [p for _, p in self.paths]


def _stamp(paths: list[Path]) -> tuple[tuple[int, int], ...]:
    out = []
    for p in paths:
        st = p.stat()
        out.append((st.st_size, st.st_mtime_ns))
    return tuple(out)


def _probe_parts(info: DatasetInfo, folder: Path) -> Located | None:
    found: list[tuple[str, Path]] = []
    for role, base in info.parts:
        # Prefer the uncompressed file (faster); both are read by the same reader.
        candidates = [folder / base] if info.format == CIFAR else [folder / base, folder / f"{base}.gz"]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            return None
        found.append((role, hit))
    paths = [p for _, p in found]
    return Located(info.name, "files", folder, tuple(found), _stamp(paths))


def _probe(info: DatasetInfo, folder: Path) -> Located | None:
    if not folder.is_dir():
        return None
    hit = _probe_parts(info, folder)
    if hit is None and info.extracted_dir and folder.name != info.extracted_dir:
        hit = _probe_parts(info, folder / info.extracted_dir)
    if hit is None and info.archive and (folder / info.archive).is_file():
        archive = folder / info.archive
        hit = Located(info.name, "archive", folder, (("archive", archive),), _stamp([archive]))
    return hit


def locate(name: str, data_dir: str | os.PathLike[str] | None = None) -> Located | None:
    """The first complete copy of ``name`` on disk, or None.

    With ``data_dir`` the copy must be there: otherwise :class:`DatasetNotFoundError` says
    what is missing (see the module docstring)."""
    info = get_info(name)
    if data_dir is not None:
        return _locate_in(info, Path(data_dir).expanduser())
    for folder in search_dirs(name, data_dir):
        hit = _probe(info, folder)
        if hit is not None:
            return hit
    return None


def _expected_files(info: DatasetInfo) -> str:
    if info.format == CIFAR:
        return "cifar-10-batches-py/ or cifar-10-python.tar.gz"
    files = ", ".join(f"{base}[.gz]" for _, base in info.parts)
    return f"{files} (or {info.archive})" if info.archive else files


def _locate_in(info: DatasetInfo, folder: Path) -> Located:
    """The copy of ``info`` in the user's ``--data-dir``, or a one-line error saying why not."""
    where = f"{info.title} ({info.name}) not found in --data-dir {folder}"
    if not folder.exists():
        raise DatasetNotFoundError(f"{where}: the folder does not exist")
    if not folder.is_dir():
        raise DatasetNotFoundError(f"{where}: it is a file, not a folder")
    candidates = search_dirs(info.name, folder)
    for candidate in candidates:
        hit = _probe(info, candidate)
        if hit is not None:
            return hit
    # Say which files are missing from the folder that holds some of them.
    subs = [c for c in candidates if c.is_dir()]
    if info.extracted_dir:
        subs += [c / info.extracted_dir for c in subs if (c / info.extracted_dir).is_dir()]
    for sub in subs:
        have = [b for _, b in info.parts if (sub / b).is_file() or (sub / f"{b}.gz").is_file()]
        if have:
            missing = [b for _, b in info.parts if b not in have]
            raise DatasetNotFoundError(f"{where}: {sub} has {', '.join(have)} but lacks {', '.join(missing)}")
    raise DatasetNotFoundError(
        f"{where}: it holds none of the dataset's files; expected {_expected_files(info)}, directly "
        f"in the folder or in {info.name}/ or {info.torchvision_dir}/ under it"
    )


def not_found_message(name: str, data_dir: str | os.PathLike[str] | None, reason: str) -> str:
    """One line: what was searched, why nothing was downloaded, and how to get the data."""
    info = get_info(name)
    searched = ", ".join(str(d) for d in search_dirs(name, data_dir))
    files = _expected_files(info)
    ways = [
        f"pass --data-dir DIR (data_dir=DIR) for a folder holding {files}",
        f"set $DENDRITIC_DATA to a folder containing {info.name}/",
    ]
    if info.install_hint:
        ways.append(f"run {info.install_hint}")
    ways.append(f"run once on a connected machine to download it into {cache_dir() / info.name}")
    return one_line(
        f"{info.title} ({info.name}) not found; {reason}; searched: {searched}. "
        f"To get it: {'; or '.join(ways)}."
    )


# --------------------------------------------------------------------------- downloading


def fetch_url(url: str, dest: Path) -> None:
    """Stream ``url`` into the (already created) file ``dest``.

    A module-level function so tests can replace it; it refuses to run when offline as a
    second line of defence.
    """
    if offline():
        raise RuntimeError(f"refusing to download {url}: DENDRITIC_OFFLINE is set")
    request = urllib.request.Request(url, headers={"User-Agent": "dendritic-data/1"})
    with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            shutil.copyfileobj(response, out, _CHUNK)
            return
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc=url.rsplit("/", 1)[-1],
            leave=False,
            file=sys.stderr,
        ) as bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))


def _digests(path: Path) -> tuple[str, str]:
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


def verify_file(path: Path, remote: RemoteFile) -> str | None:
    """None if ``path`` matches every digest known for ``remote``, else a reason."""
    md5, sha = _digests(path)
    if remote.sha256 and sha != remote.sha256.lower():
        return f"sha256 {sha}, expected {remote.sha256}"
    if remote.md5 and md5 != remote.md5.lower():
        return f"md5 {md5}, expected {remote.md5}"
    return None


def _download_one(remote: RemoteFile, folder: Path) -> Path:
    """Fetch one file into ``folder`` atomically, trying each mirror in turn."""
    dest = folder / remote.filename
    if dest.is_file() and verify_file(dest, remote) is None:
        return dest
    folder.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    corrupt: CorruptDatasetError | None = None
    for url in remote.urls:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{remote.filename}.", suffix=".part", dir=folder)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            try:
                fetch_url(url, tmp)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                errors.append(f"{url}: {exc}")
                continue
            problem = verify_file(tmp, remote)
            if problem is not None:
                corrupt = CorruptDatasetError(
                    f"checksum mismatch for {url} ({problem}); the download was discarded"
                )
                continue
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
            return dest
        finally:
            # Runs on success (no-op after os.replace), failure and KeyboardInterrupt alike.
            tmp.unlink(missing_ok=True)
    if corrupt is not None:
        raise corrupt
    raise DatasetNotFoundError(f"could not download {remote.filename}: {'; '.join(errors)}")


def download(name: str, folder: str | os.PathLike[str] | None = None) -> Path:
    """Download the official files of ``name`` into ``folder`` (default ``<cache>/<name>``).

    Files already present with the right digest are kept. Returns the folder. Raises
    :class:`DatasetNotFoundError` when offline or unreachable and :class:`CorruptDatasetError`
    when a transfer fails its checksum (nothing is left behind in either case).
    """
    info = get_info(name)
    target = Path(folder) if folder is not None else cache_dir() / info.name
    if offline():
        raise DatasetNotFoundError(
            f"not downloading {info.title}: DENDRITIC_OFFLINE is set (unset it, or provide the "
            f"files with --data-dir / $DENDRITIC_DATA)"
        )
    for remote in info.remote:
        _download_one(remote, target)
    return target


def in_cache(path: Path) -> bool:
    """Whether ``path`` lies in our download cache (files we may delete when corrupt)."""
    try:
        path.resolve().relative_to(cache_dir().resolve())
    except ValueError:
        return False
    return True
