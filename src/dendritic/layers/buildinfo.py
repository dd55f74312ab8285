"""How the C++ operators are compiled, in one place for ``setup.py`` (install time) and the
loader in :mod:`dendritic.layers.kernels` (first use).

Standard library and torch only, and importable by file path: ``setup.py`` loads it without
importing the package. A build is described by :func:`build_id`, a digest of the source, the
compiler flags and the torch version, and part of every library's name; the loader uses a
prebuilt library only when its build id equals the one this machine would build, so an edited ``ops.cpp``, a new torch or a
CPU without AVX2 never runs a stale or foreign binary.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["NAME", "SOURCE", "build_id", "compile_flags", "isa_flags", "library_stem", "link_flags"]

#: The operators' namespace (``torch.ops.dendritic``) and the stem of every library built.
NAME = "dendritic"
#: The C++ source.
SOURCE = Path(__file__).resolve().parent.parent / "csrc" / "ops.cpp"


def isa_flags() -> tuple[str, list[str]]:
    """Vector flags for *this* CPU, and a tag that keeps their build apart from other CPUs' builds.

    ``ATEN_CPU_CAPABILITY`` lowers the capability torch reports. AVX-512 CPUs run the AVX2 build
    (the one measured).
    """
    import torch

    try:
        capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    except (AttributeError, RuntimeError):  # unknown: build for the baseline ISA
        capability = "DEFAULT"
    if capability in ("AVX2", "AVX512"):
        return "avx2", ["-mavx2", "-mfma"]
    return "base", []


def compile_flags() -> list[str]:
    return ["-O3", "-DNDEBUG", "-fopenmp", *isa_flags()[1]]


def link_flags() -> list[str]:
    return ["-fopenmp"]  # libgomp.so.1: the runtime torch already loaded, by soname


def build_id() -> str:
    """Digest of what a build depends on: the source, the flags and the torch version."""
    import torch

    text = "\n".join([SOURCE.read_text(encoding="utf-8"), *compile_flags(), *link_flags(), torch.__version__])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def library_stem(tag: str, build: str) -> str:
    """Module name of the library built into the package (Python adds its own suffix)."""
    return f"_{NAME}_ops_{tag}_{build}"
