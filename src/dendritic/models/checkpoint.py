"""Checkpoints: safetensors for weights and wiring, JSON for the config. No pickle anywhere.

A checkpoint is two files side by side: ``NAME.safetensors`` (parameters plus every layer's
wiring as integer index arrays) and ``NAME.json`` (the model config, the wiring layout, library
versions and the SHA-256 of the tensor file). :func:`load` checks the digest before reading a
byte of tensor data, so a tampered or truncated file fails with one clear error instead of
producing a silently different model.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from dendritic.models.network import DendriticNet
from dendritic.wiring.connectivity import Connectivity

__all__ = ["CheckpointError", "save", "load", "checkpoint_paths"]

FORMAT = "dendritic-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, tampered with, truncated or from an unknown format."""


def checkpoint_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``run7`` / ``run7.json`` / ``run7.safetensors`` → (tensor file, JSON file)."""
    path = Path(path)
    if path.suffix in (".json", ".safetensors"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_write(target: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: never a half file."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(model: DendriticNet, path: str | os.PathLike[str], *, extra: dict[str, Any] | None = None) -> Path:
    """Save ``model`` as ``path.safetensors`` + ``path.json``; returns the JSON path."""
    tensor_path, json_path = checkpoint_paths(path)
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {
        name: param.detach().cpu().contiguous() for name, param in model.named_parameters()
    }
    layout = []
    for index, pair in enumerate(model.wiring):
        entry = []
        for part, conn in zip(("inputs", "cables"), pair, strict=True):
            info: dict[str, Any] = {"n_in": conn.n_in, "n_out": conn.n_out, "all_to_all": conn.is_all_to_all}
            if not conn.is_all_to_all:
                assert conn.indptr is not None and conn.indices is not None
                tensors[f"wiring.{index}.{part}.indptr"] = torch.from_numpy(conn.indptr.copy())
                tensors[f"wiring.{index}.{part}.indices"] = torch.from_numpy(conn.indices.copy())
                if conn.centres is not None:
                    tensors[f"wiring.{index}.{part}.centres"] = torch.from_numpy(conn.centres.copy())
            entry.append(info)
        layout.append(entry)
    _atomic_write(tensor_path, lambda tmp: save_file(tensors, str(tmp)))
    import dendritic

    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config,
        "input_shape": list(model.input_shape),
        "n_classes": model.n_classes,
        "dropout": _dropout_rate(model),
        "wiring": layout,
        "tensors": tensor_path.name,
        "sha256": _sha256(tensor_path),
        "dendritic_version": dendritic.__version__,
        "torch_version": torch.__version__,
        "extra": extra or {},
    }
    text = json.dumps(document, indent=2, sort_keys=True)
    _atomic_write(json_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return json_path


def _dropout_rate(model: DendriticNet) -> float:
    dropout = model.layers[0].dropout
    return float(getattr(dropout, "p", 0.0))


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON half of a checkpoint, validated."""
    _, json_path = checkpoint_paths(path)
    if not json_path.is_file():
        raise CheckpointError(f"no checkpoint at {json_path}")
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{json_path} is not valid JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CheckpointError(f"{json_path} is not a dendritic checkpoint")
    if document.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{json_path} has checkpoint format version {document.get('format_version')}, "
            f"this dendritic reads version {FORMAT_VERSION}"
        )
    return document


def load(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> DendriticNet:
    """Rebuild the exact model saved by :func:`save` (wiring, weights, config)."""
    document = read_metadata(path)
    tensor_path, json_path = checkpoint_paths(path)
    if not tensor_path.is_file():
        raise CheckpointError(f"checkpoint tensors {tensor_path} are missing")
    if _sha256(tensor_path) != document.get("sha256"):
        raise CheckpointError(
            f"{tensor_path} does not match the digest in {json_path.name}: modified or corrupt"
        )
    try:
        tensors = load_file(str(tensor_path))
        wiring = []
        for index, entry in enumerate(document["wiring"]):
            pair = []
            for part, info in zip(("inputs", "cables"), entry, strict=True):
                if info["all_to_all"]:
                    pair.append(Connectivity.all_to_all(info["n_in"], info["n_out"]))
                    continue
                prefix = f"wiring.{index}.{part}."
                conn = Connectivity(
                    int(info["n_in"]),
                    int(info["n_out"]),
                    tensors.pop(prefix + "indptr").numpy().astype(np.int64),
                    tensors.pop(prefix + "indices").numpy().astype(np.int64),
                )
                if prefix + "centres" in tensors:
                    conn = conn.with_centres(tensors.pop(prefix + "centres").numpy())
                pair.append(conn)
            wiring.append(tuple(pair))
        model = DendriticNet(
            wiring,
            tuple(document["input_shape"]),
            int(document["n_classes"]),
            dropout=float(document.get("dropout", 0.0)),
            config=document.get("config", {}),
        )
        model.load_state_dict(tensors, strict=False)
        missing = {name for name, _ in model.named_parameters()} - set(tensors)
        if missing:
            raise CheckpointError(f"{tensor_path} lacks parameters: {', '.join(sorted(missing))}")
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, OSError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"cannot rebuild the model from {json_path}: {message}") from None
    return model.to(map_location)
