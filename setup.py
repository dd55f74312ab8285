"""Builds dendritic's C++ operators (src/dendritic/csrc/ops.cpp) at install time.

Everything else is in pyproject.toml. The build needs torch and a C++ compiler in the build
environment: ``make setup`` installs torch first and runs ``pip install --no-build-isolation -e .``,
which compiles the operators into the package (editable installs included). Where that is not
possible (pip's isolated build environment has no torch, or there is no compiler) the package
installs without them and ``dendritic.layers.kernels`` compiles the same source on first use.
The library's name carries its build id (src/dendritic/layers/buildinfo.py): at run time it is
only used if it matches this machine's CPU, this torch and the current source.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent


def _buildinfo():
    spec = importlib.util.spec_from_file_location(
        "_dendritic_buildinfo", HERE / "src/dendritic/layers/buildinfo.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _extensions() -> tuple[list, dict]:
    if os.environ.get("DENDRITIC_BUILD_OPS", "1").strip().lower() in ("0", "no", "false", "off"):
        return [], {}
    try:
        import torch  # noqa: F401
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        print(
            "dendritic: torch is not importable at build time; the C++ operators will be compiled on first use"
        )
        return [], {}
    info = _buildinfo()
    tag, _ = info.isa_flags()
    extension = CppExtension(
        name=f"dendritic.{info.library_stem(tag, info.build_id())}",
        sources=[str(Path("src/dendritic/csrc/ops.cpp"))],
        extra_compile_args=info.compile_flags(),
        extra_link_args=info.link_flags(),
        optional=True,  # no compiler: install anyway, compile on first use
    )
    return [extension], {"build_ext": BuildExtension.with_options(use_ninja=True)}


extensions, commands = _extensions()
setup(ext_modules=extensions, cmdclass=commands)
