"""The paper's models give the results they gave before the layer library (issue 13).

``tests/data/paper-models-history.json`` was written by the code of commit b7f853c (before
``dendritic.nn``): per-epoch metrics of nine configurations on a generated dataset, trained with
torch's form of Adam, the only one that code had (``optimizer="adam-torch"`` now). On the machine
that wrote it the new code reproduced them bit for bit; other CPUs may round the last digit
differently, so the check allows float rounding. The wiring and initial weights, drawn from
seeded generators, must be identical everywhere.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

import dendritic
from dendritic.models import MODEL_NAMES

sys.path.insert(0, str(Path(__file__).parent))
from fakedata import write_dataset  # noqa: E402

DATA = Path(__file__).parent / "data"
#: sha256 over every model's wiring and initial state_dict (b7f853c and now), the state dict read
#: with the names of before issue 21 (a layer's parts were ``dendrites``/``somata``; its
#: receptive-field centres, hashed with the wiring, were not buffers yet).
WIRING_DIGEST = "538813f71dc28a5c374ba8fbeb0d1d3a7d659677f9ee1bb9a937f4d9fc7202bb"
_OLD_NAMES = {
    ".dendrite_linear.": ".dendrites.",
    ".soma_linear.": ".somata.",
    ".branch_linear.": ".branches.",
}


def _old_name(key: str) -> str:
    for new, old in _OLD_NAMES.items():
        key = key.replace(new, old)
    return key


CONFIGS = [
    ("dANN-LRF", {}),
    ("dANN-GRF", {}),
    ("dANN-R", {"layers": 2}),
    ("vANN", {}),
    ("sANN", {"layers": 2}),
    ("vANN-0.2", {}),
    ("pdANN", {}),
    ("dANN-LRF", {"sequential": True}),
    ("dANN-LRF", {"early_stop": True}),
]


def test_wiring_and_initial_weights_are_unchanged():
    digest = hashlib.sha256()
    for name in MODEL_NAMES:
        for shape in [(28, 28, 1), (32, 32, 3)]:
            for layers in (1, 2):
                model = dendritic.build_model(name, shape, 10, 4, 16, synapses=4, layers=layers, seed=3)
                for pair in model.wiring:
                    for conn in pair:
                        digest.update(str((conn.n_in, conn.n_out, conn.is_all_to_all)).encode())
                        if conn.indices is not None:
                            digest.update(conn.indices.tobytes())
                            digest.update(conn.indptr.tobytes())
                        if conn.centres is not None:
                            digest.update(conn.centres.tobytes())
                for key, value in model.state_dict().items():
                    if key.endswith(".centres"):
                        continue
                    digest.update(_old_name(key).encode())
                    digest.update(value.detach().numpy().tobytes())
    assert digest.hexdigest() == WIRING_DIGEST


def test_training_gives_the_same_metrics_as_before(tmp_path, isolated_cache):
    from dendritic.training import TrainConfig, train

    data = write_dataset(tmp_path / "data", "mnist", n_train=1200, n_test=300)
    expected = json.loads((DATA / "paper-models-history.json").read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for model, extra in CONFIGS:
            config = TrainConfig(
                model=model,
                dataset="mnist",
                dendrites=4,
                somata=32,
                epochs=3,
                seed=2,
                batch_size=64,
                optimizer="adam-torch",
                **extra,
            )
            result = train(config, data_dir=data)
            got = [[m.train_loss, m.train_accuracy, m.val_loss, m.val_accuracy] for m in result.history]
            got.append([result.test_loss, result.test_accuracy])
            want = [value for row in expected[f"{model}{extra}"] for value in row]
            assert [value for row in got for value in row] == pytest.approx(want, rel=1e-5, abs=1e-7), (
                model,
                extra,
            )
    finally:
        torch.set_num_threads(threads)
