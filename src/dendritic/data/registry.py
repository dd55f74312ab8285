"""What we know about each dataset of the paper (SPEC §6), in one table.

Checksums, and where they come from (be careful before editing them):

* MNIST, KMNIST, EMNIST and CIFAR-10 downloads are verified with the **MD5** digests that
  torchvision publishes in ``torchvision/datasets/mnist.py`` and ``cifar.py``. No SHA-256 of
  those files is known to us with confidence, so none is stored.
* Fashion-MNIST downloads are verified with torchvision's **MD5** digests as well. We also
  record the **SHA-256 of the decompressed IDX payload**, computed from Debian's
  ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``). The ``.gz``
  files of that package are recompressed (their MD5s differ from the official ones), so the
  SHA-256 of the *compressed* files would not match an official download; the decompressed
  bytes are the dataset itself and are what we record (``content_sha256``). They are checked
  by :func:`dendritic.data.verify_content`, not during download.
* MD5 guards against truncated or damaged transfers, not against a malicious mirror.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "RemoteFile",
    "canonical_name",
    "dataset_names",
    "get_info",
]

IDX = "idx"
CIFAR = "cifar"


@dataclass(frozen=True)
class RemoteFile:
    """One file of the official distribution: its name, mirrors and known digests."""

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None

    @property
    def digest_kind(self) -> str:
        """Which digest a download is checked with (for messages and docs)."""
        if self.sha256:
            return "sha256"
        return "md5" if self.md5 else "none"


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset; nothing here touches the disk.

    ``parts`` maps a role (``train_images`` ... or a CIFAR batch name) to the file's base name;
    IDX files are accepted with or without ``.gz``. ``archive`` is the official archive that
    holds the parts (EMNIST's ``gzip.zip``, CIFAR's ``.tar.gz``) under ``archive_prefix`` with
    ``archive_suffix`` appended, and which we read in place instead of extracting.
    """

    name: str
    title: str
    aliases: tuple[str, ...]
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    n_train: int
    n_test: int
    epochs: int
    format: str
    parts: tuple[tuple[str, str], ...]
    remote: tuple[RemoteFile, ...]
    torchvision_dir: str
    archive: str | None = None
    archive_prefix: str = ""
    archive_suffix: str = ""
    extracted_dir: str | None = None
    transposed: bool = False
    system_dirs: tuple[str, ...] = ()
    install_hint: str | None = None
    content_sha256: tuple[tuple[str, str], ...] = field(default=())

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_inputs(self) -> int:
        """Length of a flattened image (H*W*C), the network's input width."""
        h, w, c = self.input_shape
        return h * w * c

    @property
    def subdirs(self) -> tuple[str, ...]:
        """Folder names under a data root that may hold this dataset (canonical name first)."""
        return (self.name, *self.aliases)

    def part_names(self) -> dict[str, str]:
        return dict(self.parts)


_IDX_PARTS = (
    ("train_images", "train-images-idx3-ubyte"),
    ("train_labels", "train-labels-idx1-ubyte"),
    ("test_images", "t10k-images-idx3-ubyte"),
    ("test_labels", "t10k-labels-idx1-ubyte"),
)


def _idx_remote(mirrors: tuple[str, ...], md5s: tuple[str, str, str, str]) -> tuple[RemoteFile, ...]:
    return tuple(
        RemoteFile(f"{base}.gz", tuple(m + f"{base}.gz" for m in mirrors), md5=md5)
        for (_, base), md5 in zip(_IDX_PARTS, md5s, strict=True)
    )


_MNIST = DatasetInfo(
    name="mnist",
    title="MNIST",
    aliases=(),
    input_shape=(28, 28, 1),
    class_names=tuple(string.digits),
    n_train=60_000,
    n_test=10_000,
    epochs=15,
    format=IDX,
    parts=_IDX_PARTS,
    remote=_idx_remote(
        ("https://ossci-datasets.s3.amazonaws.com/mnist/",),
        (
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "d53e105ee54ea40749a09fcbcd1e9432",
            "9fb629c4189551a2d022fa330f9573f3",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
    ),
    torchvision_dir="MNIST/raw",
)

_FMNIST = DatasetInfo(
    name="fmnist",
    title="Fashion-MNIST",
    aliases=("fashion-mnist", "fashion_mnist", "fashionmnist"),
    input_shape=(28, 28, 1),
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    n_train=60_000,
    n_test=10_000,
    epochs=25,
    format=IDX,
    parts=_IDX_PARTS,
    # The S3 *website* endpoint only serves plain http; the MD5 check is what protects us.
    remote=_idx_remote(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        (
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "25c81989df183df01b3e8a0aad5dffbe",
            "bef4ecab320f06d8554ea6380940ec79",
            "bb300cfdad3c16e7a12a480ee83cd310",
        ),
    ),
    torchvision_dir="FashionMNIST/raw",
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    install_hint="`apt-get install dataset-fashion-mnist` (Debian/Ubuntu)",
    content_sha256=(
        ("train_images", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        ("train_labels", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        ("test_images", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        ("test_labels", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    ),
)

_KMNIST = DatasetInfo(
    name="kmnist",
    title="Kuzushiji-MNIST",
    aliases=("kuzushiji-mnist", "kuzushiji_mnist"),
    input_shape=(28, 28, 1),
    class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    n_train=60_000,
    n_test=10_000,
    epochs=25,
    format=IDX,
    parts=_IDX_PARTS,
    remote=_idx_remote(
        ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        (
            "bdb82020997e1d708af4cf47b453dcf7",
            "e144d726b3acfaa3e44228e80efcd344",
            "5c965bf0a639b31b8f53240b1b52f4d7",
            "7320c461ea6c1c855c0b718fb2a4b134",
        ),
    ),
    torchvision_dir="KMNIST/raw",
)

# EMNIST "balanced": digits, upper-case letters, and the 11 lower-case letters whose shape
# differs from the upper case (c i j k l m o p s u v w x y z are merged into upper case).
_EMNIST_CLASSES = tuple(string.digits + string.ascii_uppercase + "abdefghnqrt")

_EMNIST = DatasetInfo(
    name="emnist",
    title="EMNIST (balanced)",
    aliases=("emnist-balanced", "emnist_balanced"),
    input_shape=(28, 28, 1),
    class_names=_EMNIST_CLASSES,
    n_train=112_800,
    n_test=18_800,
    epochs=50,
    format=IDX,
    parts=(
        ("train_images", "emnist-balanced-train-images-idx3-ubyte"),
        ("train_labels", "emnist-balanced-train-labels-idx1-ubyte"),
        ("test_images", "emnist-balanced-test-images-idx3-ubyte"),
        ("test_labels", "emnist-balanced-test-labels-idx1-ubyte"),
    ),
    remote=(
        RemoteFile(
            "gzip.zip",
            (
                "https://www.itl.nist.gov/iaui/vip/cs_links/EMNIST/gzip.zip",
                "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip",
            ),
            md5="58c8d27c78d21e728a6bc7b3cc06412e",
        ),
    ),
    torchvision_dir="EMNIST/raw",
    archive="gzip.zip",
    archive_prefix="gzip/",
    archive_suffix=".gz",
    extracted_dir="gzip",
    # The NIST files store each 28x28 image transposed (column-major); we transpose back.
    transposed=True,
)

_CIFAR10 = DatasetInfo(
    name="cifar10",
    title="CIFAR-10",
    aliases=("cifar-10", "cifar_10"),
    input_shape=(32, 32, 3),
    class_names=(
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ),
    n_train=50_000,
    n_test=10_000,
    epochs=50,
    format=CIFAR,
    parts=tuple((f"data_batch_{i}", f"data_batch_{i}") for i in range(1, 6))
    + (("test_batch", "test_batch"),),
    remote=(
        RemoteFile(
            "cifar-10-python.tar.gz",
            ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
            md5="c58f30108f718f92721af3b95e74349a",
        ),
    ),
    torchvision_dir="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    archive_prefix="cifar-10-batches-py/",
    extracted_dir="cifar-10-batches-py",
)

DATASETS: dict[str, DatasetInfo] = {d.name: d for d in (_MNIST, _FMNIST, _KMNIST, _EMNIST, _CIFAR10)}

# torchvision's MD5s of the extracted CIFAR-10 batches, kept for reference / manual checks.
CIFAR10_BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}


def dataset_names() -> tuple[str, ...]:
    """Canonical dataset names, in the paper's order."""
    return tuple(DATASETS)


def canonical_name(name: str) -> str:
    """Map a user-facing name or alias (any case) to its canonical name.

    Raises ``ValueError`` listing the valid names, since a typo in an experiment config
    should fail before anything is loaded.
    """
    key = str(name).strip().lower()
    for info in DATASETS.values():
        if key == info.name or key in info.aliases:
            return info.name
    valid = ", ".join(
        f"{i.name} ({', '.join(i.aliases)})" if i.aliases else i.name for i in DATASETS.values()
    )
    raise ValueError(f"unknown dataset {name!r}; valid names: {valid}")


def get_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of a dataset given any accepted name."""
    return DATASETS[canonical_name(name)]
