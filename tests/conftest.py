import os

import pytest
import torch

# Tests are small; more threads only add contention on the 2-core CI machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Tests never download: any attempt fails loudly."""
    monkeypatch.setenv("DENDRITIC_OFFLINE", "1")
    yield


def pytest_report_header(config):
    return f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}"
