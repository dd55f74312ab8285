import os
import signal

import pytest
import torch
from torch.utils.cpp_extension import get_default_build_root

# Tests are small; more threads only add contention on the 2-core CI machine.
torch.set_num_threads(1)

# Many tests point XDG_CACHE_HOME at a temporary folder (to isolate the dataset cache); the C++
# kernels' cache would follow it, and every subprocess would compile them again (~25 s each).
# Pin it to the real cache for the whole session instead.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", get_default_build_root())


def pytest_sessionstart(session):
    """Under CI (DENDRITIC_REQUIRE_OPS=installed, or =any for a first-use build), a missing C++
    build fails the run instead of letting the kernel tests fall back or skip."""
    required = os.environ.get("DENDRITIC_REQUIRE_OPS", "").strip().lower()
    if not required:
        return
    from dendritic.layers import kernels

    if kernels.kernel_backend() != "cpp":
        pytest.exit(f"the C++ operators could not be loaded: {kernels._STATE.error}", returncode=3)
    if required == "installed" and kernels._STATE.source != "installed":
        pytest.exit(
            f"the C++ operators were not built at install time (loaded from: {kernels._STATE.source}); "
            "run `pip install --no-build-isolation -e .` with torch and a compiler present",
            returncode=3,
        )


@pytest.fixture(autouse=True)
def _signal_handlers_restored():
    """A test that starts Ray in this process leaves Ray's SIGTERM/SIGINT handlers behind; the
    next test gets the process's own back (tests of Ctrl-C and SIGTERM handling rely on them)."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        if signal.getsignal(sig) is not handler and handler is not None:
            signal.signal(sig, handler)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Tests never download: any attempt fails loudly."""
    monkeypatch.setenv("DENDRITIC_OFFLINE", "1")
    yield


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A private dataset cache (XDG_CACHE_HOME), no $DENDRITIC_DATA, an empty in-memory cache."""
    from dendritic.data import clear_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("DENDRITIC_DATA", raising=False)
    clear_cache()
    yield
    clear_cache()


def pytest_report_header(config):
    return f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}"
