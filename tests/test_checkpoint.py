"""Checkpoints as untrusted files (issue 12): bounded, strictly parsed, digests on both halves,
sizes checked against the tensor header before allocation, one-line errors, readable modes."""

from __future__ import annotations

import json
import os
import resource
import stat
from pathlib import Path

import pytest
import torch

import dendritic
from dendritic.models import checkpoint
from dendritic.models.checkpoint import CheckpointError, check_target, checkpoint_paths, load, save

V1 = Path(__file__).parent / "data" / "dann-lrf-v1"


def _model(**kw):
    return dendritic.build_model("dANN-LRF", (28, 28, 1), 10, dendrites=2, somata=4, synapses=4, seed=3, **kw)


def _rewrite(json_path: Path, document: dict, *, fix_digest: bool = True) -> None:
    """Edit the JSON as an adversary would: with its own digest recomputed."""
    if fix_digest:
        document["document_sha256"] = checkpoint._document_digest(document)
    json_path.write_text(json.dumps(document))


def test_a_checkpoint_written_before_format_2_still_loads():
    model = load(V1)
    document = json.loads(V1.with_suffix(".json").read_text())
    assert document["format_version"] == 1
    torch.manual_seed(0)
    x = torch.rand(3, 784)
    assert torch.allclose(model(x), torch.tensor(document["extra"]["logits"]), atol=1e-6)
    fresh = dendritic.build_model("dANN-LRF", (28, 28, 1), 10, dendrites=2, somata=4, synapses=4, seed=7)
    for (name, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_checkpoint_files_are_group_readable(tmp_path):
    old = os.umask(0o022)
    try:
        for path in checkpoint_paths(save(_model(), tmp_path / "m")):
            assert stat.S_IMODE(path.stat().st_mode) == 0o644
    finally:
        os.umask(old)


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda d: d.__setitem__("n_classes", 10_000_000), "n_classes must be an integer in"),
        (lambda d: d.__setitem__("n_classes", 11), "holds 102 parameter values, but its JSON describes"),
        (lambda d: d.__setitem__("input_shape", [100_000, 100_000, 1]), "input_shape"),
        (lambda d: d["wiring"][0][1].__setitem__("n_out", 1 << 40), "wiring n_out must be an integer"),
        (lambda d: d["wiring"][0][0].__setitem__("all_to_all", True), "holds"),
        (lambda d: d.__setitem__("dropout", 2.0), "dropout must be in"),
        (lambda d: d.__setitem__("format_version", 99), "format version 99"),
        (lambda d: d.__setitem__("wiring", []), "wiring must be a list"),
    ],
    ids=[
        "huge-classes",
        "more-classes",
        "huge-input",
        "huge-units",
        "dense-claim",
        "dropout",
        "version",
        "no-wiring",
    ],
)
def test_sizes_the_json_states_are_checked_before_allocation(tmp_path, edit, message):
    json_path = save(_model(), tmp_path / "m")
    document = json.loads(json_path.read_text())
    edit(document)
    _rewrite(json_path, document)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match=message) as exc:
        load(tmp_path / "m")
    assert "\n" not in str(exc.value)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB


@pytest.mark.parametrize(
    "text,message",
    [
        ('{"format": "dendritic-checkpoint", "n_classes": Infinity}', "not valid JSON"),
        ('{"format": "dendritic-checkpoint", "n_classes": 1e400}', "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"format": "dendritic-checkpoint", "format_version": 1, "input_shape": "x"}', "input_shape"),
        ("\xff\xfe", "not valid JSON"),
    ],
    ids=["infinity", "overflow", "deep", "wrong-type", "not-utf8"],
)
def test_hostile_json_is_one_line_error(tmp_path, text, message):
    save(_model(), tmp_path / "m")
    _, json_path = checkpoint_paths(tmp_path / "m")
    json_path.write_bytes(text.encode("utf-8", "surrogateescape") if text != "\xff\xfe" else b"\xff\xfe")
    with pytest.raises(CheckpointError, match=message) as exc:
        load(tmp_path / "m")
    assert "\n" not in str(exc.value) and len(str(exc.value)) < 400


def test_oversized_json_is_refused_unread(tmp_path, monkeypatch):
    save(_model(), tmp_path / "m")
    monkeypatch.setattr(checkpoint, "MAX_JSON_BYTES", 100)
    with pytest.raises(CheckpointError, match="more than the 100"):
        load(tmp_path / "m")


def test_corrupt_tensors_whose_digest_matches_are_one_line_errors(tmp_path):
    """An attacker can rewrite the tensor file and its digest; the loader still refuses it."""
    json_path = save(_model(), tmp_path / "m")
    tensor_path, _ = checkpoint_paths(tmp_path / "m")
    document = json.loads(json_path.read_text())

    def swap(tensors: dict[str, torch.Tensor] | bytes) -> None:
        if isinstance(tensors, bytes):
            tensor_path.write_bytes(tensors)
        else:
            from safetensors.torch import save_file

            save_file(tensors, str(tensor_path))
        document["sha256"] = checkpoint._sha256(tensor_path)
        _rewrite(json_path, document)

    from safetensors.torch import load_file

    good = {k: v.clone() for k, v in load_file(str(tensor_path)).items()}  # load_file maps the file
    swap(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    with pytest.raises(CheckpointError, match="not a readable tensor file"):
        load(tmp_path / "m")
    bad = dict(good)
    bad["wiring.0.inputs.indices"] = good["wiring.0.inputs.indices"] + 10_000  # out of range
    swap(bad)
    with pytest.raises(CheckpointError, match="outside"):
        load(tmp_path / "m")
    bad = dict(good)
    bad["output.weight"] = torch.zeros(10, 5)  # shapes the model does not have, same total
    bad["layers.0.dendrite_linear.weight"] = torch.zeros(22)
    swap(bad)
    # The whole state-dict message, not just its first line ("Error(s) in loading ...").
    with pytest.raises(CheckpointError, match="cannot rebuild the model .*size mismatch for .*output.weight"):
        load(tmp_path / "m")


@pytest.mark.parametrize(
    "target,message",
    [
        ("", "is empty"),
        ("afile/ck", "afile is a file, not a folder"),
        ("ckdir/", "names a folder"),
        ("runs.db", "an input of this command"),
    ],
)
def test_check_target_refuses_unusable_paths(tmp_path, monkeypatch, target, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "runs.db.json").write_text("{}")
    with pytest.raises(dendritic.errors.PathError, match=message):
        check_target(target, protected=(tmp_path / "runs.db.json",))


def test_a_full_disk_is_a_one_line_error_and_leaves_no_file(tmp_path):
    """A real full disk: a 64 KiB tmpfs (needs mount rights, which CI's root has)."""
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        model = dendritic.build_model("vANN", (28, 28, 1), 10, dendrites=1, somata=64, seed=1)  # ~250 KB
        with pytest.raises(CheckpointError, match="cannot write checkpoint .*No space left on device") as exc:
            save(model, mnt / "m")
        assert "\n" not in str(exc.value)
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
