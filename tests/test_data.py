"""Tests of dendritic.data on small generated files (no network)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dendritic.data import (
    CorruptDatasetError,
    DatasetNotFoundError,
    RemoteFile,
    UnsafePickleError,
    add_noise,
    canonical_name,
    clear_cache,
    dataset_names,
    download,
    get_info,
    load,
    prepare,
    read_cifar_batch,
    read_idx,
    registry,
    search_dirs,
    sequential_split,
    sources,
    stratified_subset,
    to_float,
    train_val_split,
)

pytestmark = pytest.mark.usefixtures("isolated_cache")

# --------------------------------------------------------------------------- helpers


def idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    """Serialise a uint8 array as IDX (big-endian header)."""
    arr = np.asarray(arr, dtype=np.uint8)
    head = magic if magic is not None else (0x0800 | arr.ndim)
    return struct.pack(">I", head) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.tobytes()


def write_idx(path: Path, arr: np.ndarray, *, gz: bool, magic: int | None = None) -> Path:
    data = idx_bytes(arr, magic)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def fake_split(n: int, n_classes: int, seed: int, hw: int = 28) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, hw, hw), dtype=np.uint8)
    y = (np.arange(n) % n_classes).astype(np.uint8)
    rng.shuffle(y)
    return x, y


def make_idx_dataset(
    folder: Path,
    name: str = "mnist",
    *,
    n_train: int = 60,
    n_test: int = 20,
    gz: bool = True,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Write a small IDX copy of ``name`` (EMNIST files stored transposed, like NIST's)."""
    info = get_info(name)
    parts = info.part_names()
    out = {}
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        x, y = fake_split(n, info.n_classes, s)
        stored = x.transpose(0, 2, 1) if info.transposed else x
        write_idx(folder / parts[f"{split}_images"], stored, gz=gz)
        write_idx(folder / parts[f"{split}_labels"], y, gz=gz)
        out[f"x_{split}"], out[f"y_{split}"] = x, y
    return out


def cifar_batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"fake batch",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [f"img{i}.png".encode() for i in range(n)],
    }


def make_cifar_dir(folder: Path, n: int = 4) -> dict[str, dict]:
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batches[name] = cifar_batch(n, i)
        (folder / name).write_bytes(pickle.dumps(batches[name], protocol=2))
    return batches


class Py2StylePickler(pickle._Pickler):
    """Writes str/bytes as Python 2 ``str`` (BINSTRING) and numpy.core names, like the
    real CIFAR-10 files made with cPickle."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None):
        if getattr(obj, "__name__", "") == "_reconstruct":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)

    dispatch[type(len)] = save_global  # builtin functions such as _reconstruct


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    Py2StylePickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


@pytest.fixture
def no_system_dirs(monkeypatch):
    """Hide Debian's Fashion-MNIST so fmnist lookups only see the test's folders."""
    info = registry.DATASETS["fmnist"]
    monkeypatch.setitem(registry.DATASETS, "fmnist", dataclasses.replace(info, system_dirs=()))


# --------------------------------------------------------------------------- registry


def test_registry_names_aliases_and_facts():
    assert dataset_names() == ("mnist", "fmnist", "kmnist", "emnist", "cifar10")
    for alias, name in [
        ("MNIST", "mnist"),
        ("Fashion-MNIST", "fmnist"),
        ("fashion_mnist", "fmnist"),
        ("FMNIST", "fmnist"),
        ("cifar-10", "cifar10"),
        ("EMNIST-balanced", "emnist"),
        ("kmnist", "kmnist"),
    ]:
        assert canonical_name(alias) == name
    epochs = {n: get_info(n).epochs for n in dataset_names()}
    assert epochs == {"mnist": 15, "fmnist": 25, "kmnist": 25, "emnist": 50, "cifar10": 50}
    assert get_info("emnist").n_classes == 47
    assert len(set(get_info("emnist").class_names)) == 47
    assert (get_info("emnist").n_train, get_info("emnist").n_test) == (112_800, 18_800)
    assert get_info("cifar10").input_shape == (32, 32, 3)
    assert get_info("cifar10").n_inputs == 3072
    assert get_info("fmnist").class_names[9] == "Ankle boot"
    for n in dataset_names():
        for r in get_info(n).remote:
            assert r.md5 or r.sha256
            assert all(u.startswith(("http://", "https://")) for u in r.urls)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="valid names: mnist") as exc:
        get_info("imagenet")
    assert "cifar10" in str(exc.value) and "fashion-mnist" in str(exc.value)


# --------------------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, gz):
    x, y = fake_split(7, 10, 0)
    px = write_idx(tmp_path / "img", x, gz=gz)
    py = write_idx(tmp_path / "lab", y, gz=gz)
    got = read_idx(px, magic=0x803)
    assert got.dtype == np.uint8 and got.shape == (7, 28, 28)
    np.testing.assert_array_equal(got, x)
    np.testing.assert_array_equal(read_idx(py, magic=0x801), y)


def test_read_idx_rejects_bad_magic_and_size(tmp_path):
    x, _ = fake_split(3, 10, 0)
    bad = write_idx(tmp_path / "bad", x, gz=False, magic=0x12345678)
    with pytest.raises(CorruptDatasetError, match="bad IDX magic"):
        read_idx(bad)
    labels_as_images = write_idx(tmp_path / "lab", np.zeros(3, np.uint8), gz=False)
    with pytest.raises(CorruptDatasetError, match="expected 0x00000803"):
        read_idx(labels_as_images, magic=0x803)
    good = idx_bytes(x)
    (tmp_path / "short").write_bytes(good[:-5])
    with pytest.raises(CorruptDatasetError, match="short"):
        read_idx(tmp_path / "short")
    (tmp_path / "long").write_bytes(good + b"\0")
    with pytest.raises(CorruptDatasetError, match="holds"):
        read_idx(tmp_path / "long")
    (tmp_path / "trunc.gz").write_bytes(gzip.compress(good)[:200])
    with pytest.raises(CorruptDatasetError, match="gzip"):
        read_idx(tmp_path / "trunc.gz")


# --------------------------------------------------------------------------- loading IDX


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_dataset(tmp_path, gz):
    ref = make_idx_dataset(tmp_path / "d", gz=gz)
    raw = load("mnist", data_dir=tmp_path / "d", download=False)
    assert raw.x_train.shape == (60, 28, 28, 1) and raw.x_train.dtype == np.uint8
    assert raw.x_test.shape == (20, 28, 28, 1)
    assert raw.y_train.dtype == np.int64 and raw.y_train.max() < 10
    np.testing.assert_array_equal(raw.x_train[..., 0], ref["x_train"])
    np.testing.assert_array_equal(raw.y_test, ref["y_test"])
    assert not raw.x_train.flags.writeable  # cached arrays are shared between runs
    assert load("mnist", data_dir=tmp_path / "d") is raw  # in-memory cache


def test_cache_reloads_a_replaced_file(tmp_path):
    make_idx_dataset(tmp_path / "d", seed=0)
    first = load("mnist", data_dir=tmp_path / "d")
    make_idx_dataset(tmp_path / "d", seed=5)
    for p in (tmp_path / "d").iterdir():
        os.utime(p, ns=(1, 1))
    second = load("mnist", data_dir=tmp_path / "d")
    assert second is not first
    assert not np.array_equal(first.x_train, second.x_train)


@pytest.mark.parametrize("layout", ["loose", "extracted", "zip", "torchvision"])
def test_emnist_orientation_fixed(tmp_path, layout, monkeypatch):
    info = get_info("emnist")
    if layout == "loose":
        ref = make_idx_dataset(tmp_path / "d", "emnist")
        data_dir = tmp_path / "d"
    elif layout == "extracted":
        ref = make_idx_dataset(tmp_path / "d" / "gzip", "emnist")
        data_dir = tmp_path / "d"
    elif layout == "zip":
        ref = make_idx_dataset(tmp_path / "gz", "emnist")
        data_dir = tmp_path / "d"
        data_dir.mkdir()
        with zipfile.ZipFile(data_dir / "gzip.zip", "w") as zf:
            for p in (tmp_path / "gz").iterdir():
                zf.write(p, f"gzip/{p.name}")
            zf.writestr("gzip/emnist-letters-train-images-idx3-ubyte.gz", b"unused")
    else:
        ref = make_idx_dataset(tmp_path / "root" / "EMNIST" / "raw", "emnist", gz=False)
        monkeypatch.setenv("DENDRITIC_DATA", str(tmp_path / "root"))
        data_dir = None
    raw = load("emnist-balanced", data_dir=data_dir)
    assert raw.info is info
    # Stored transposed on disk, upright in memory.
    np.testing.assert_array_equal(raw.x_train[..., 0], ref["x_train"])
    np.testing.assert_array_equal(raw.x_test[..., 0], ref["x_test"])
    assert raw.x_train.flags.c_contiguous


# --------------------------------------------------------------------------- CIFAR


def test_cifar_batch_channel_major_to_hwc(tmp_path):
    batches = make_cifar_dir(tmp_path / "c")
    raw = load("cifar10", data_dir=tmp_path / "c")
    assert raw.x_train.shape == (20, 32, 32, 3) and raw.x_train.dtype == np.uint8
    assert raw.x_test.shape == (4, 32, 32, 3)
    data = batches["data_batch_2"][b"data"]
    i = 1
    x = raw.x_train[4 + i]  # batch 2 follows the 4 images of batch 1
    for r, c in [(0, 0), (0, 31), (5, 17), (31, 2)]:
        for ch in range(3):
            assert x[r, c, ch] == data[i, ch * 1024 + r * 32 + c]
    assert raw.y_train.tolist()[4:8] == batches["data_batch_2"][b"labels"]
    flat = to_float(raw.x_train)
    assert flat.shape == (20, 3072)
    r, c, ch = 7, 9, 2
    assert flat[4 + i, (r * 32 + c) * 3 + ch] == pytest.approx(data[i, ch * 1024 + r * 32 + c] / 255)


def test_cifar_python2_style_pickle(tmp_path):
    batch = {k.decode(): v for k, v in cifar_batch(3, 0).items()}
    batch["filenames"] = [f.decode() for f in batch["filenames"]]
    blob = py2_pickle(batch)
    assert b"numpy.core.multiarray" in blob and b"_codecs" not in blob
    x, y = read_cifar_batch(blob)
    np.testing.assert_array_equal(x.transpose(0, 3, 1, 2).reshape(3, -1), batch["data"])
    assert y.tolist() == batch["labels"]


@pytest.mark.parametrize("layout", ["tar", "torchvision"])
def test_cifar_tarball_and_torchvision_layout(tmp_path, monkeypatch, layout):
    batches = make_cifar_dir(tmp_path / "src" / "cifar-10-batches-py")
    if layout == "tar":
        (tmp_path / "d").mkdir()
        with tarfile.open(tmp_path / "d" / "cifar-10-python.tar.gz", "w:gz") as tf:
            tf.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        raw = load("CIFAR-10", data_dir=tmp_path / "d")
    else:
        monkeypatch.setenv("DENDRITIC_DATA", str(tmp_path / "src"))
        raw = load("CIFAR-10")
    assert raw.x_train.shape == (20, 32, 32, 3)
    assert raw.y_test.tolist() == batches["test_batch"][b"labels"]


def test_cifar_tar_with_link_member_is_rejected(tmp_path):
    make_cifar_dir(tmp_path / "src" / "cifar-10-batches-py")
    (tmp_path / "d").mkdir()
    with tarfile.open(tmp_path / "d" / "cifar-10-python.tar.gz", "w:gz") as tf:
        for p in sorted((tmp_path / "src" / "cifar-10-batches-py").iterdir()):
            if p.name == "test_batch":
                link = tarfile.TarInfo("cifar-10-batches-py/test_batch")
                link.type = tarfile.SYMTYPE
                link.linkname = "/etc/passwd"
                tf.addfile(link)
            else:
                tf.add(p, arcname=f"cifar-10-batches-py/{p.name}")
    with pytest.raises(CorruptDatasetError, match="not a file"):
        load("cifar10", data_dir=tmp_path / "d")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_executing(tmp_path):
    marker = tmp_path / "pwned"
    blob = pickle.dumps({b"data": _Evil(marker), b"labels": [0]}, protocol=2)
    with pytest.raises(UnsafePickleError, match="refused to load global"):
        read_cifar_batch(blob, origin="evil")
    assert not marker.exists()
    # Same through the loader, with a file in a CIFAR folder.
    make_cifar_dir(tmp_path / "c")
    (tmp_path / "c" / "data_batch_3").write_bytes(blob)
    with pytest.raises(CorruptDatasetError, match="data_batch_3"):
        load("cifar10", data_dir=tmp_path / "c")
    assert not marker.exists()


@pytest.mark.parametrize(
    "blob",
    [
        b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1\x85R.",
        b"\x80\x02cnumpy\nload\nX\x01\x00\x00\x00x\x85R.",
        b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R.",
        b"\x80\x02csubprocess\nPopen\n)R.",
    ],
)
def test_restricted_unpickler_whitelist(blob):
    with pytest.raises(UnsafePickleError):
        read_cifar_batch(blob)


def test_cifar_malformed_batches(tmp_path):
    with pytest.raises(CorruptDatasetError, match="not a dict"):
        read_cifar_batch(pickle.dumps([1, 2], protocol=2))
    bad = cifar_batch(3, 0)
    bad[b"labels"] = bad[b"labels"][:2]
    with pytest.raises(CorruptDatasetError, match="3 images but 2 labels"):
        read_cifar_batch(pickle.dumps(bad, protocol=2))
    with pytest.raises(CorruptDatasetError, match="not a readable"):
        read_cifar_batch(pickle.dumps(cifar_batch(3, 0), protocol=2)[:100])


# --------------------------------------------------------------------------- lookup order


def test_lookup_order_data_dir_env_cache(tmp_path, monkeypatch):
    cache = sources.cache_dir()
    assert cache == tmp_path / "xdg" / "dendritic"
    make_idx_dataset(cache / "mnist", seed=30)
    make_idx_dataset(tmp_path / "env" / "mnist", seed=20)
    make_idx_dataset(tmp_path / "explicit", seed=10)

    def origin() -> str:
        clear_cache()
        return Path(load("mnist", data_dir=data_dir, download=False).sources[0]).parent.name

    monkeypatch.setenv("DENDRITIC_DATA", str(tmp_path / "env"))
    data_dir = tmp_path / "explicit"
    assert origin() == "explicit"
    data_dir = None
    assert origin() == "mnist" and "env" in load("mnist").sources[0]
    monkeypatch.delenv("DENDRITIC_DATA")
    assert str(cache) in load("mnist").sources[0]


def test_lookup_dataset_subfolder_aliases_and_torchvision(tmp_path, monkeypatch, no_system_dirs):
    make_idx_dataset(tmp_path / "root" / "fashion-mnist", gz=False)
    raw = load("fmnist", data_dir=tmp_path / "root")
    assert "fashion-mnist" in raw.sources[0]
    make_idx_dataset(tmp_path / "tv" / "FashionMNIST" / "raw")
    monkeypatch.setenv("DENDRITIC_DATA", str(tmp_path / "tv"))
    assert "FashionMNIST" in load("fashion_mnist").sources[0]
    # torchvision layout ranks after the plain dataset folders of every root
    monkeypatch.setenv("DENDRITIC_DATA", str(tmp_path / "root"))
    dirs = search_dirs("fmnist")
    assert dirs.index(sources.cache_dir() / "fmnist") < dirs.index(tmp_path / "root" / "FashionMNIST" / "raw")
    # An explicit data_dir is searched alone: itself, its dataset sub-folders, torchvision's layout.
    assert search_dirs("fmnist", tmp_path / "x") == [
        tmp_path / "x",
        *(tmp_path / "x" / s for s in ("fmnist", "fashion-mnist", "fashion_mnist", "fashionmnist")),
        tmp_path / "x" / "FashionMNIST" / "raw",
    ]


def test_env_root_loose_files_are_not_taken(tmp_path, monkeypatch):
    # Loose MNIST-named files in a shared root could be any of MNIST/FMNIST/KMNIST.
    make_idx_dataset(tmp_path / "root")
    monkeypatch.setenv("DENDRITIC_DATA", str(tmp_path / "root"))
    with pytest.raises(DatasetNotFoundError):
        load("kmnist")


def test_debian_fashion_mnist_dir_is_searched():
    dirs = search_dirs("fmnist")
    assert dirs[-1] == Path("/usr/share/datasets/fashion-mnist")


def test_missing_dataset_message_is_one_line(no_system_dirs):
    with pytest.raises(DatasetNotFoundError) as exc:
        load("mnist")
    msg = str(exc.value)
    assert isinstance(exc.value, FileNotFoundError)
    assert "\n" not in msg
    assert "MNIST (mnist) not found" in msg
    assert str(sources.cache_dir() / "mnist") in msg
    assert "--data-dir" in msg and "$DENDRITIC_DATA" in msg and "connected machine" in msg
    assert "DENDRITIC_OFFLINE" in msg


# An explicit --data-dir is used as given, never replaced by a copy found elsewhere (issue 12).
@pytest.mark.parametrize(
    "make,reason",
    [
        (lambda d: None, "the folder does not exist"),
        (lambda d: d.write_bytes(b"x"), "it is a file, not a folder"),
        (lambda d: d.mkdir(), "holds none of the dataset's files"),
        (
            lambda d: (make_idx_dataset(d), (d / "t10k-labels-idx1-ubyte.gz").unlink()),
            "lacks t10k-labels-idx1-ubyte",
        ),
    ],
    ids=["missing", "a-file", "empty", "a-file-missing"],
)
def test_explicit_data_dir_never_falls_back(tmp_path, monkeypatch, make, reason):
    make_idx_dataset(sources.cache_dir() / "mnist")  # a complete copy elsewhere must not be taken
    monkeypatch.setenv("DENDRITIC_DATA", str(tmp_path / "env"))
    make_idx_dataset(tmp_path / "env" / "mnist")
    target = tmp_path / "given"
    make(target)
    with pytest.raises(DatasetNotFoundError) as exc:
        load("mnist", data_dir=target)
    assert reason in str(exc.value) and str(target) in str(exc.value) and "\n" not in str(exc.value)


def test_missing_fmnist_message_mentions_apt(no_system_dirs):
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist") as exc:
        load("fmnist", download=False)
    assert "download=False" in str(exc.value) and "\n" not in str(exc.value)


def test_incomplete_folder_is_not_a_dataset(tmp_path):
    make_idx_dataset(tmp_path / "d")
    (tmp_path / "d" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError):
        load("mnist", data_dir=tmp_path / "d")


# --------------------------------------------------------------------------- corrupt files


def test_corrupt_files_in_data_dir(tmp_path):
    d = tmp_path / "d"
    make_idx_dataset(d)
    x, y = fake_split(60, 10, 0)
    write_idx(d / "train-images-idx3-ubyte", x, gz=True, magic=0x00000804)
    with pytest.raises(CorruptDatasetError, match="train-images-idx3-ubyte.gz") as exc:
        load("mnist", data_dir=d)
    assert "\n" not in str(exc.value)

    make_idx_dataset(d)
    blob = (d / "t10k-images-idx3-ubyte.gz").read_bytes()
    (d / "t10k-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CorruptDatasetError, match="t10k-images-idx3-ubyte.gz.*gzip"):
        load("mnist", data_dir=d)

    make_idx_dataset(d)
    write_idx(d / "train-labels-idx1-ubyte", y[:59], gz=True)
    with pytest.raises(CorruptDatasetError, match="60 images but .* 59 labels"):
        load("mnist", data_dir=d)

    make_idx_dataset(d)
    write_idx(d / "train-labels-idx1-ubyte", np.full(60, 10, np.uint8), gz=True)
    with pytest.raises(CorruptDatasetError, match="labels span"):
        load("mnist", data_dir=d)

    make_idx_dataset(d)
    write_idx(d / "train-images-idx3-ubyte", x[:, :27], gz=True)
    with pytest.raises(CorruptDatasetError, match="shape"):
        load("mnist", data_dir=d)
    assert (d / "train-images-idx3-ubyte.gz").exists()  # user files are never deleted


def test_corrupt_file_in_cache_is_removed(tmp_path):
    d = sources.cache_dir() / "mnist"
    make_idx_dataset(d)
    bad = d / "train-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-10])
    with pytest.raises(CorruptDatasetError, match="removed .* from the download cache"):
        load("mnist")
    assert not bad.exists()
    assert (d / "train-labels-idx1-ubyte.gz").exists()


# --------------------------------------------------------------------------- downloading


def _fake_remote(monkeypatch, tmp_path, *, wrong: bool = False):
    """Point mnist at fake URLs whose payloads are the small generated files."""
    ref = make_idx_dataset(tmp_path / "payload")
    payloads, remote = {}, []
    info = registry.DATASETS["mnist"]
    for r in info.remote:
        data = (tmp_path / "payload" / r.filename).read_bytes()
        url = f"https://example.invalid/{r.filename}"
        payloads[url] = data
        md5 = hashlib.md5(b"other" if wrong else data).hexdigest()
        remote.append(RemoteFile(r.filename, (url,), md5=md5))
    monkeypatch.setitem(registry.DATASETS, "mnist", dataclasses.replace(info, remote=tuple(remote)))
    calls = []

    def fetch(url: str, dest: Path) -> None:
        calls.append(url)
        dest.write_bytes(payloads[url])

    monkeypatch.setattr(sources, "fetch_url", fetch)
    return ref, calls


def test_download_with_good_checksum(tmp_path, monkeypatch):
    monkeypatch.delenv("DENDRITIC_OFFLINE")
    ref, calls = _fake_remote(monkeypatch, tmp_path)
    raw = load("mnist")
    assert len(calls) == 4
    folder = sources.cache_dir() / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(r.filename for r in get_info("mnist").remote)
    np.testing.assert_array_equal(raw.x_test[..., 0], ref["x_test"])
    # A second download finds verified files and fetches nothing.
    download("mnist")
    assert len(calls) == 4


def test_download_with_bad_checksum_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("DENDRITIC_OFFLINE")
    _, calls = _fake_remote(monkeypatch, tmp_path, wrong=True)
    with pytest.raises(CorruptDatasetError, match="checksum mismatch"):
        load("mnist")
    assert calls
    folder = sources.cache_dir() / "mnist"
    assert list(folder.iterdir()) == []


def test_interrupted_download_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("DENDRITIC_OFFLINE")
    _fake_remote(monkeypatch, tmp_path)

    def half_then_interrupt(url: str, dest: Path) -> None:
        dest.write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(sources, "fetch_url", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        load("mnist")
    assert list((sources.cache_dir() / "mnist").iterdir()) == []


def test_network_failure_is_dataset_not_found(tmp_path, monkeypatch):
    monkeypatch.delenv("DENDRITIC_OFFLINE")
    _fake_remote(monkeypatch, tmp_path)

    def unreachable(url: str, dest: Path) -> None:
        raise OSError("Name or service not known")

    monkeypatch.setattr(sources, "fetch_url", unreachable)
    with pytest.raises(DatasetNotFoundError, match="download failed.*Name or service") as exc:
        load("mnist")
    assert "\n" not in str(exc.value)
    assert list((sources.cache_dir() / "mnist").iterdir()) == []


def test_offline_blocks_download(tmp_path, monkeypatch):
    assert os.environ["DENDRITIC_OFFLINE"]
    _, calls = _fake_remote(monkeypatch, tmp_path)
    with pytest.raises(DatasetNotFoundError, match="DENDRITIC_OFFLINE"):
        load("mnist")
    with pytest.raises(DatasetNotFoundError, match="DENDRITIC_OFFLINE"):
        download("mnist")
    assert calls == []
    monkeypatch.undo()  # the real fetcher refuses too
    monkeypatch.setenv("DENDRITIC_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="DENDRITIC_OFFLINE"):
        sources.fetch_url("https://example.invalid/x", tmp_path / "x")


# --------------------------------------------------------------------------- protocol


def test_to_float_layout_and_range():
    imgs = np.arange(2 * 3 * 4 * 2, dtype=np.uint8).reshape(2, 3, 4, 2) * 5
    x = to_float(imgs)
    assert x.dtype == torch.float32 and x.shape == (2, 24)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    r, c, ch = 2, 1, 1
    assert x[1, (r * 4 + c) * 2 + ch] == pytest.approx(imgs[1, r, c, ch] / 255)
    assert to_float(np.full((1, 2, 2), 255, np.uint8)).tolist() == [[1.0] * 4]
    with pytest.raises(TypeError):
        to_float(imgs.astype(np.float32))


def test_add_noise_fixed_clipped_and_split_dependent():
    x = torch.full((50, 30), 0.5)
    assert add_noise(x, 0.0, seed=1) is x
    a = add_noise(x, 0.1, seed=1, split="train")
    assert torch.equal(a, add_noise(x, 0.1, seed=1, split="train"))
    assert not torch.equal(a, add_noise(x, 0.1, seed=1, split="test"))
    assert not torch.equal(a, add_noise(x, 0.1, seed=2, split="train"))
    assert abs(float((a - x).std()) - 0.1) < 0.01
    assert torch.equal(add_noise(x[:7], 0.1, seed=1), a[:7])  # row noise independent of N
    big = add_noise(x, 1.0, seed=3)
    assert float(big.min()) == 0.0 and float(big.max()) == 1.0
    np.testing.assert_array_equal(add_noise(x.numpy(), 0.1, seed=1), a.numpy())
    assert torch.equal(x, torch.full((50, 30), 0.5))  # input untouched
    with pytest.raises(ValueError):
        add_noise(x, -0.1, seed=1)


def test_train_val_split():
    tr, va = train_val_split(60_000, seed=1)
    assert len(tr) == 54_000 and len(va) == 6_000
    assert len(np.intersect1d(tr, va)) == 0 and len(np.union1d(tr, va)) == 60_000
    tr2, va2 = train_val_split(60_000, seed=1)
    assert np.array_equal(va, va2)
    assert not np.array_equal(va, train_val_split(60_000, seed=2)[1])
    assert len(train_val_split(1001, 0.1, seed=0)[1]) == 101  # at least 10 %


def test_sequential_split_fashion_mnist_sizes_and_order():
    labels = np.repeat(np.arange(10), 6000)
    np.random.default_rng(0).shuffle(labels)
    tr, va = sequential_split(labels, 128, seed=1)
    assert len(tr) == 10 * 5376 and len(va) == 10 * 624
    assert np.bincount(labels[tr]).tolist() == [5376] * 10
    assert np.bincount(labels[va]).tolist() == [624] * 10
    assert len(np.union1d(tr, va)) == 60_000
    batches = labels[tr].reshape(-1, 128)
    assert (batches == batches[:, :1]).all()  # every batch holds one class
    assert np.array_equal(batches[:, 0], np.repeat(np.arange(10), 42))  # classes in order
    assert np.array_equal(tr, sequential_split(labels, 128, seed=1)[0])
    assert not np.array_equal(tr, sequential_split(labels, 128, seed=2)[0])


def test_sequential_split_general_rule():
    labels = np.repeat(np.arange(47), 2400)  # EMNIST balanced
    tr, va = sequential_split(labels, 128, seed=0)
    assert np.bincount(labels[tr]).tolist() == [2048] * 47  # 2400 - 240 = 2160 -> 16 batches
    uneven = np.concatenate([np.zeros(300, int), np.ones(150, int)])
    tr, va = sequential_split(uneven, 128, seed=0)
    assert np.bincount(uneven[tr]).tolist() == [256, 128]
    with pytest.raises(ValueError, match="too few"):
        sequential_split(np.zeros(100, int), 128, seed=0)


def test_stratified_subset():
    labels = np.repeat(np.arange(10), 100)
    idx = stratified_subset(labels, 200)
    assert len(idx) == 200 and np.all(np.diff(idx) > 0)
    assert np.bincount(labels[idx]).tolist() == [20] * 10
    assert np.array_equal(idx, stratified_subset(labels, 200))
    assert len(stratified_subset(labels, 5000)) == 1000


def test_prepare(tmp_path):
    make_idx_dataset(tmp_path / "d", n_train=200, n_test=50)
    data = prepare("mnist", seed=1, data_dir=tmp_path / "d")
    assert data.x_train.shape == (180, 784) and data.x_val.shape == (20, 784)
    assert data.x_test.shape == (50, 784) and data.y_test.dtype == torch.int64
    assert data.x_train.dtype == torch.float32
    assert float(data.x_train.min()) >= 0.0 and float(data.x_train.max()) <= 1.0
    assert data.name == "mnist" and data.n_classes == 10 and data.input_shape == (28, 28, 1)
    assert data.n_inputs == 784 and data.class_names[3] == "3"

    noisy = prepare("mnist", seed=1, sigma=0.5, data_dir=tmp_path / "d")
    assert torch.equal(noisy.y_train, data.y_train)
    assert not torch.equal(noisy.x_train, data.x_train)
    assert float(noisy.x_val.min()) >= 0.0 and float(noisy.x_val.max()) <= 1.0
    again = prepare("mnist", seed=1, sigma=0.5, data_dir=tmp_path / "d")
    assert torch.equal(noisy.x_test, again.x_test)

    seq = prepare("mnist", seed=1, sequential=True, batch_size=8, data_dir=tmp_path / "d")
    assert seq.x_train.shape[0] == 10 * 16 and seq.x_val.shape[0] == 10 * 4
    assert (seq.y_train.reshape(-1, 8) == seq.y_train.reshape(-1, 8)[:, :1]).all()

    small = prepare("mnist", seed=1, limit=100, data_dir=tmp_path / "d")
    assert small.x_train.shape[0] + small.x_val.shape[0] == 100
    assert small.x_test.shape[0] == 50
    assert np.bincount((torch.cat([small.y_train, small.y_val])).numpy()).tolist() == [10] * 10


# --------------------------------------------------------------------------- real data

FMNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
@pytest.mark.skipif(not FMNIST_DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist absent")
def test_real_fashion_mnist():
    from dendritic.data import verify_content

    raw = load("fmnist", data_dir=FMNIST_DEBIAN, download=False)
    assert raw.x_train.shape == (60_000, 28, 28, 1) and raw.x_test.shape == (10_000, 28, 28, 1)
    assert np.bincount(raw.y_train).tolist() == [6000] * 10
    assert np.bincount(raw.y_test).tolist() == [1000] * 10
    assert all(verify_content("fmnist", data_dir=FMNIST_DEBIAN).values())
    seq = prepare("fmnist", seed=1, sequential=True, data_dir=FMNIST_DEBIAN)
    assert np.bincount(seq.y_train.numpy()).tolist() == [5376] * 10
    assert np.bincount(seq.y_val.numpy()).tolist() == [624] * 10


# --------------------------------------------------------------------------- provenance, identity, bombs


def test_provenance_records_every_file_and_its_digest(tmp_path):
    make_idx_dataset(tmp_path / "d")
    raw = load("mnist", data_dir=tmp_path / "d")
    prov = raw.provenance
    assert prov["dataset"] == "mnist" and prov["folder"] == str(tmp_path / "d")
    assert {f["part"] for f in prov["files"]} == {
        "train_images",
        "train_labels",
        "test_images",
        "test_labels",
    }
    for f in prov["files"]:
        data = Path(f["file"]).read_bytes()
        assert f["bytes"] == len(data) and f["sha256"] == hashlib.sha256(data).hexdigest()
        assert f["content_sha256"] == hashlib.sha256(gzip.decompress(data)).hexdigest()
        assert f["verified_by"] is None  # generated files match no published digest
    assert prov["verified"] is False
    assert prepare("mnist", seed=1, data_dir=tmp_path / "d").provenance == prov


def test_another_datasets_files_are_refused_by_digest(tmp_path, monkeypatch):
    """`--dataset mnist --data-dir <Fashion-MNIST>` must fail, not train on Fashion-MNIST."""
    from dendritic.data import DatasetMismatchError, loading

    make_idx_dataset(tmp_path / "d")
    content = hashlib.sha256(gzip.decompress((tmp_path / "d" / "train-images-idx3-ubyte.gz").read_bytes()))
    # Pretend these bytes are Fashion-MNIST's published training images.
    monkeypatch.setitem(loading._BY_CONTENT, content.hexdigest(), ("fmnist", "train_images"))
    with pytest.raises(DatasetMismatchError, match="is Fashion-MNIST's train images file, not MNIST's"):
        load("mnist", data_dir=tmp_path / "d")
    # Swapped parts of the right dataset are caught the same way.
    monkeypatch.setitem(loading._BY_CONTENT, content.hexdigest(), ("mnist", "test_images"))
    clear_cache()
    with pytest.raises(DatasetMismatchError, match="MNIST's test images file, not MNIST's train images"):
        load("mnist", data_dir=tmp_path / "d")


@pytest.mark.skipif(not FMNIST_DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist absent")
def test_real_fashion_mnist_is_not_taken_for_mnist():
    from dendritic.data import DatasetMismatchError

    with pytest.raises(DatasetMismatchError, match="Fashion-MNIST's train images file, not MNIST's"):
        load("mnist", data_dir=FMNIST_DEBIAN)
    prov = load("fmnist", data_dir=FMNIST_DEBIAN).provenance
    assert prov["verified"] and {f["verified_by"] for f in prov["files"]} == {"content sha256"}


def _bomb(items: int, payload: int) -> bytes:
    """A small gzip whose IDX header announces ``items`` 28×28 images and which expands to
    ``payload`` zero bytes."""
    import zlib

    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = comp.compress(struct.pack(">IIII", 0x803, items, 28, 28))
    out += b"".join(comp.compress(b"\0" * (1 << 24)) for _ in range(payload >> 24))
    return out + comp.flush()


def test_gzip_bombs_are_refused_before_they_expand(tmp_path):
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Header announcing 2.35 GB: refused from the header alone.
    with pytest.raises(CorruptDatasetError, match="announces 2,352,000,000 bytes"):
        read_idx(_bomb(3_000_000, 1 << 26), magic=0x803)
    # A plausible header with far more data behind it: refused after one byte too many.
    with pytest.raises(CorruptDatasetError, match="holds more than"):
        read_idx(_bomb(10, 1 << 26), magic=0x803)
    # A dataset's file may not announce more images than the dataset has.
    d = tmp_path / "d"
    make_idx_dataset(d)
    (d / "train-images-idx3-ubyte.gz").write_bytes(_bomb(70_000, 1 << 24))
    with pytest.raises(CorruptDatasetError, match="70,000 items, more than 60,000"):
        load("mnist", data_dir=d)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: no GB allocated


def test_archive_members_are_size_checked(tmp_path):
    from dendritic.data import readers

    with zipfile.ZipFile(tmp_path / "a.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big", b"\0" * 5000)
    with pytest.raises(CorruptDatasetError, match="member of 5,000 bytes"):
        readers.read_zip_members(tmp_path / "a.zip", ["big"], limit=4096)
    with tarfile.open(tmp_path / "a.tar.gz", "w:gz") as tf:
        info = tarfile.TarInfo("big")
        info.size = 5000
        tf.addfile(info, io.BytesIO(b"\0" * 5000))
    with pytest.raises(CorruptDatasetError, match="member of 5,000 bytes"):
        readers.read_tar_members(tmp_path / "a.tar.gz", ["big"], limit=4096)


def test_empty_and_truncated_files_are_named(tmp_path):
    d = tmp_path / "d"
    make_idx_dataset(d)
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(b"")
    with pytest.raises(CorruptDatasetError, match=r"t10k-labels-idx1-ubyte.gz: too short"):
        load("mnist", data_dir=d)
    clear_cache()
    data = (d / "train-images-idx3-ubyte.gz").read_bytes()
    (d / "train-images-idx3-ubyte.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptDatasetError, match=r"train-images-idx3-ubyte.gz: broken gzip stream"):
        load("mnist", data_dir=d)
