"""Checkpoints: safetensors for weights and wiring, JSON for the config. No pickle anywhere.

A checkpoint is two files side by side: ``NAME.safetensors`` (parameters plus every layer's
wiring as integer index arrays) and ``NAME.json`` (the model config, the wiring layout, library
versions, the SHA-256 of the tensor file, and the SHA-256 of the JSON document itself).
:func:`load` treats both files as untrusted: the JSON is size-bounded and strictly parsed, both
digests are checked, every size the JSON states is checked against the tensor file's header
before anything is allocated, and the wiring indices are validated before a kernel sees them.
A tampered, truncated or oversized checkpoint fails with one clear error.

A checkpoint written by ``dendritic.training.train`` belongs to one run: its JSON names the
run's store id (``extra.run_id``, when the run is recorded) and its training config
(``extra.train_config``). :func:`check_owner` refuses, before training, to write one run's
checkpoint where another run's is (the same config may write its own again: a retry, a
``--replace``, a resumed sweep); :func:`check_run` (and ``load(path, run=...)``) refuses to
analyse a checkpoint as a run it does not belong to.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from dendritic.errors import DendriticError, PathError
from dendritic.files import atomic_write, check_output_file, read_json
from dendritic.models.network import DendriticNet
from dendritic.models.spec import ModelSpec
from dendritic.nn.spec import CABLE_WEIGHTS
from dendritic.wiring.connectivity import Connectivity

__all__ = [
    "CheckpointError",
    "CheckpointOwnerError",
    "check_owner",
    "check_run",
    "check_target",
    "checkpoint_owner",
    "checkpoint_paths",
    "describe_config",
    "free_name",
    "load",
    "load_state",
    "read_metadata",
    "save",
    "save_state",
]

FORMAT = "dendritic-checkpoint"
#: 2 adds ``document_sha256``, the digest of the JSON itself; version 1 files still load.
#: 2: the JSON's own digest; 3: branching dendrites (three wiring parts), cable-weight modes and
#: residual connections (``architecture``); 4: a layer's parts are named ``dendrite_linear``,
#: ``soma_linear``, ``branch_linear`` (before: ``dendrites``, ``somata``, ``branches``; older
#: files load, their names mapped by ``DendriticLayer``).
FORMAT_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)

#: Bounds on what a checkpoint's JSON may state (far above any real model).
MAX_JSON_BYTES = 16 << 20
MAX_CLASSES = 1_000_000
MAX_UNITS = 1 << 31
MAX_INPUTS = 1 << 26
MAX_LAYERS = 10_000
#: Numbered names tried by :func:`free_name` (``NAME-2`` ... ``NAME-1000``).
MAX_VERSIONS = 1000

log = logging.getLogger("dendritic.models")


class CheckpointError(DendriticError, ValueError):
    """A checkpoint is missing, tampered with, truncated, oversized or from an unknown format."""


class CheckpointOwnerError(CheckpointError):
    """A checkpoint (or its path) belongs to another run than the one at hand."""


def checkpoint_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``run7`` / ``run7.json`` / ``run7.safetensors`` → (tensor file, JSON file)."""
    path = Path(path)
    if path.suffix in (".json", ".safetensors"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def check_target(
    path: str | os.PathLike[str] | None,
    *,
    option: str = "--checkpoint",
    protected: tuple[str | os.PathLike[str], ...] = (),
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Check where a checkpoint will be written, before the training that produces it: a
    name, a writable folder (created if missing), and neither file one of ``protected``.
    With ``config`` (the training config of the run that will write it), also that no other
    run's checkpoint is there (:func:`check_owner`)."""
    if path is None or not str(os.fspath(path)).strip():
        raise PathError(f"{option} is empty; give a path such as checkpoints/run1")
    if str(os.fspath(path)).endswith(("/", os.sep)) or Path(path).name in ("", ".", ".."):
        raise PathError(f"{option} {path} names a folder; give a file name inside it, e.g. {path}/run1")
    for target in checkpoint_paths(path):
        check_output_file(target, option=option, protected=protected)
    if config is not None:
        check_owner(path, config, option=option)
    return Path(path)


# ---------------------------------------------------------------------------- one run per checkpoint


def _stem(path: str | os.PathLike[str]) -> Path:
    """``run7`` for ``run7``, ``run7.json`` and ``run7.safetensors``."""
    return checkpoint_paths(path)[0].with_suffix("")


def checkpoint_owner(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The run the checkpoint at ``path`` says it belongs to: ``{"run_id": int or None,
    "train_config": dict or None}`` from its ``extra``; None when no readable checkpoint is
    there or it names no run (a plain :func:`save` of a model)."""
    json_path = checkpoint_paths(path)[1]
    if not json_path.is_file():
        return None
    try:
        document = read_json(json_path, limit=MAX_JSON_BYTES)
    except (PathError, OSError):
        return None  # not a readable checkpoint: no run to protect (the path checks did the rest)
    if not isinstance(document, dict) or document.get("format") not in (FORMAT, STATE_FORMAT):
        return None
    extra = document.get("extra")
    if not isinstance(extra, dict):
        return None
    run_id = extra.get("run_id")
    run_id = run_id if isinstance(run_id, int) and not isinstance(run_id, bool) else None
    config = extra.get("train_config")
    config = config if isinstance(config, dict) else None
    if run_id is None and config is None:
        return None
    return {"run_id": run_id, "train_config": config}


def describe_config(config: Mapping[str, Any] | None) -> str:
    """A run's config in a few words for messages: ``dANN-LRF on mnist, D=2 S=8 seed 1``."""
    if not config:
        return "config unknown"
    model = config.get("model", config.get("name", "?"))
    dataset = f" on {config['dataset']}" if "dataset" in config else ""
    return (
        f"{model}{dataset}, D={config.get('dendrites', '?')} S={config.get('somata', '?')} "
        f"seed {config.get('seed', '?')}"
    )


def _same_config(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two training configs are one run's (the store's key: canonical JSON)."""
    from dendritic.store import StoreError, config_key

    try:
        return config_key(a) == config_key(b)
    except StoreError:
        return dict(a) == dict(b)


def _differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    """``"; differs in lr, model"`` (at most four fields named), or ``""``."""
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if not keys:
        return ""
    more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
    return f"; differs in {', '.join(keys[:4])}{more}"


def _store_owners(store: Any, path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The runs of ``store`` (a ``RunStore``, or None) that record ``path`` as their checkpoint."""
    if store is None:
        return []
    return list(store.runs_with_checkpoint(path))


def _other_owner(path: str | os.PathLike[str], config: Mapping[str, Any], store: Any) -> str | None:
    """Why ``path`` is another run's checkpoint than the run of ``config``; None if it is free
    or that run's own (same config)."""
    owner = checkpoint_owner(path)
    if owner is not None:
        theirs = owner["train_config"]
        if theirs is None or not _same_config(theirs, config):
            who = "another run" if owner["run_id"] is None else f"run {owner['run_id']}"
            why = _differences(theirs, config) if theirs is not None else ""
            return f"holds the checkpoint of {who} ({describe_config(theirs)}{why})"
    for run in _store_owners(store, path):
        theirs = run.get("config") or {}
        if not _same_config(theirs, config):
            return (
                f"is the checkpoint of run {run.get('id')} of {getattr(store, 'path', 'the store')} "
                f"({describe_config(theirs)}{_differences(theirs, config)})"
            )
    return None


def free_name(path: str | os.PathLike[str], *, store: Any = None) -> Path | None:
    """The first of ``NAME-2``, ``NAME-3`` ... with neither checkpoint file present and no run of
    ``store`` recording it; None if all :data:`MAX_VERSIONS` are taken."""
    stem = _stem(path)
    for n in range(2, MAX_VERSIONS + 1):
        candidate = stem.with_name(f"{stem.name}-{n}")
        if not any(p.exists() for p in checkpoint_paths(candidate)) and not _store_owners(store, candidate):
            return candidate
    return None


def check_owner(
    path: str | os.PathLike[str],
    config: Mapping[str, Any],
    *,
    store: Any = None,
    option: str = "--checkpoint",
) -> None:
    """Refuse to write the checkpoint of the run ``config`` (its training config) names at
    ``path`` when another run owns that path: the checkpoint there names another config (or
    only a run id), or a run of ``store`` with another config records ``path`` as its checkpoint.

    A checkpoint belongs to one run: overwriting it would make that run's analyses silently
    describe this one's model. The same config may write its own checkpoint again (a retry, a
    ``--replace``, a resumed sweep), and a checkpoint that names no run (a plain :func:`save`)
    may be overwritten as before. The error names the owner and a free name to use instead.
    """
    why = _other_owner(path, config, store)
    if why is None:
        return
    free = free_name(path, store=store)
    hint = f"give a free name such as {free}" if free is not None else "give another name"
    raise CheckpointOwnerError(
        f"{option} {path} {why}; a checkpoint belongs to one run, so it is not overwritten: {hint}"
    )


def _unowned(path: str | os.PathLike[str], config: Any) -> str | os.PathLike[str]:
    """Where :func:`save` writes the checkpoint of training config ``config``: ``path``, or, if
    another run's checkpoint appeared there while this one trained (two runs given one path at
    once), the next free numbered name, with a warning (the caller records the path returned)."""
    if not isinstance(config, Mapping):
        return path
    why = _other_owner(path, config, None)
    if why is None:
        return path
    free = free_name(path)
    if free is None:
        raise CheckpointOwnerError(f"checkpoint {path} {why}, and no numbered name next to it is free")
    log.warning("checkpoint %s %s; saving this run's checkpoint as %s instead", path, why, free)
    return free


def _model_fields(model_config: Mapping[str, Any], run_config: Mapping[str, Any]) -> list[str]:
    """Fields of a run's config that a model's own config (``model.config``) contradicts."""
    from dendritic.models.variants import resolve_name

    wrong = []
    name, label = model_config.get("name"), run_config.get("model")
    if isinstance(name, str) and isinstance(label, str):
        try:
            if resolve_name(label)[0].name.lower() != name.lower():
                wrong.append("model")
        except ValueError:
            wrong.append("model")
    for key in ("dendrites", "somata", "synapses", "layers", "seed", "random_mode"):
        if key in model_config and key in run_config and model_config[key] != run_config[key]:
            wrong.append(key)
    return wrong


def _check_run(document: Mapping[str, Any], run: Mapping[str, Any], where: Path) -> str | None:
    extra = document.get("extra") or {}
    their_id = extra.get("run_id")
    their_id = their_id if isinstance(their_id, int) and not isinstance(their_id, bool) else None
    theirs = extra.get("train_config") if isinstance(extra.get("train_config"), dict) else None
    run_id, mine = run.get("id"), run.get("config") or {}
    stem = where.with_suffix("")
    wrong_id = their_id is not None and run_id is not None and their_id != run_id
    if theirs is not None:
        if wrong_id or not _same_config(theirs, mine):
            who = "another run" if their_id is None else f"run {their_id}"
            same = "; the same config" if _same_config(theirs, mine) else _differences(theirs, mine)
            raise CheckpointOwnerError(
                f"checkpoint {stem} belongs to {who} ({describe_config(theirs)}), not to run {run_id} "
                f"({describe_config(mine)}{same}): another run wrote over it; train run {run_id} again "
                "with --replace and a checkpoint name of its own"
            )
        return None
    model_config = document.get("config") or {}
    wrong = _model_fields(model_config, mine)
    if wrong_id or wrong:
        who = "another run" if their_id is None else f"run {their_id}"
        raise CheckpointOwnerError(
            f"checkpoint {stem} belongs to {who} ({describe_config(model_config)}), not to run "
            f"{run_id} ({describe_config(mine)}; differs in {', '.join(wrong) or 'run id'})"
        )
    return (
        f"checkpoint {stem} names no training config (written by save() or an older dendritic): "
        f"checked against run {run_id} by its model's config only"
    )


def check_run(path: str | os.PathLike[str], run: Mapping[str, Any]) -> str | None:
    """Check that the checkpoint at ``path`` is run ``run``'s (a store row, as
    ``RunStore.get_run`` gives it): a :class:`CheckpointOwnerError` naming both runs if the
    checkpoint names another run id or another training config.

    A checkpoint without a run id (a sweep's, ``train --no-store``'s, or one made before runs
    were recorded) is matched by its training config alone; one without a training config
    either (a plain :func:`save`) by its model's config (model, D, S, synapses, layers, seed),
    and then a note saying so is returned (else None).
    """
    document = read_metadata(path)
    return _check_run(document, run, checkpoint_paths(path)[1])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _document_digest(document: dict[str, Any]) -> str:
    body = {k: v for k, v in document.items() if k != "document_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def save(model: DendriticNet, path: str | os.PathLike[str], *, extra: dict[str, Any] | None = None) -> Path:
    """Save ``model`` as ``path.safetensors`` + ``path.json``; returns the JSON path.

    Each file is written whole or not at all; a failure (a full disk, say) is a one-line
    :class:`CheckpointError` and leaves no partial file.
    """
    check_target(path, option="checkpoint path")
    path = _unowned(path, (extra or {}).get("train_config"))  # a run's checkpoint is never overwritten
    tensor_path, json_path = checkpoint_paths(path)
    tensors: dict[str, torch.Tensor] = {
        name: param.detach().cpu().contiguous() for name, param in model.named_parameters()
    }
    layout = []
    for index, parts in enumerate(model.wiring):
        entry = []
        for part, conn in zip(_part_names(len(parts)), parts, strict=True):
            info: dict[str, Any] = {"n_in": conn.n_in, "n_out": conn.n_out, "all_to_all": conn.is_all_to_all}
            if not conn.is_all_to_all:
                assert conn.indptr is not None and conn.indices is not None
                tensors[f"wiring.{index}.{part}.indptr"] = torch.from_numpy(conn.indptr.copy())
                tensors[f"wiring.{index}.{part}.indices"] = torch.from_numpy(conn.indices.copy())
                if conn.centres is not None:
                    tensors[f"wiring.{index}.{part}.centres"] = torch.from_numpy(conn.centres.copy())
            entry.append(info)
        layout.append(entry)
    from dendritic._version import __version__

    try:
        atomic_write(tensor_path, lambda tmp: save_file(tensors, str(tmp)))
        document = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": model.config,
            "input_shape": list(model.input_shape),
            "n_classes": model.n_classes,
            "dropout": _dropout_rate(model),
            "architecture": {"residual": model.residual, "cable_weights": model.cable_weights},
            "wiring": layout,
            "tensors": tensor_path.name,
            "sha256": _sha256(tensor_path),
            "dendritic_version": __version__,
            "torch_version": torch.__version__,
            "extra": extra or {},
        }
        document["document_sha256"] = _document_digest(document)
        text = json.dumps(document, indent=2, sort_keys=True, allow_nan=False)
        atomic_write(json_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    except (PathError, SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot write checkpoint {json_path.with_suffix('')}: {_reason(exc)}"
        ) from None
    return json_path


def _reason(exc: BaseException) -> str:
    """The useful part of an error (safetensors wraps the OS error in Rust debug text)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "StorageFull" in text or "No space left" in text:
        return "No space left on device"
    return text


def _part_names(n: int) -> tuple[str, ...]:
    """Names of a layer's wiring parts in the files: 2 parts, or 3 with branching dendrites."""
    return ("inputs", "cables") if n == 2 else ("inputs", "branches", "cables")


def _spec_of(document: dict[str, Any]) -> ModelSpec:
    """The spec of a saved network: its config (format 3 keeps the options beyond the paper there),
    with the dropout and architecture the document states."""
    config = dict(document.get("config", {}))
    architecture = document.get("architecture", {})
    config["dropout"] = float(document.get("dropout", 0.0))
    config["residual"] = bool(architecture.get("residual", False))
    config["cable_weights"] = str(architecture.get("cable_weights", "learned"))
    try:
        return ModelSpec.from_network_config(config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"the checkpoint's model config is not valid: {exc}") from None


def _dropout_rate(model: DendriticNet) -> float:
    dropout = model.layers[0].dropout
    return float(getattr(dropout, "p", 0.0))


def _int_in(name: str, value: Any, low: int, high: int, where: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CheckpointError(f"{where}: {name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _validate(document: Any, json_path: Path) -> dict[str, Any]:
    """Every field the loader uses, with its type and bounds (before anything is allocated)."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CheckpointError(f"{json_path} is not a dendritic checkpoint")
    version = document.get("format_version")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{json_path} has checkpoint format version {version!r}, this dendritic reads "
            f"version{'s' if len(READABLE_VERSIONS) > 1 else ''} {', '.join(map(str, READABLE_VERSIONS))}"
        )
    if version >= 2 and document.get("document_sha256") != _document_digest(document):
        raise CheckpointError(f"{json_path} does not match its own digest: modified or corrupt")
    _validate_sizes(document, json_path)
    _validate_wiring(document.get("wiring"), json_path)
    for name in ("config", "extra", "architecture"):
        if not isinstance(document.get(name, {}), dict):
            raise CheckpointError(f"{json_path}: {name} must be a JSON object")
    architecture = document.get("architecture", {})
    if not isinstance(architecture.get("residual", False), bool):
        raise CheckpointError(f"{json_path}: architecture.residual must be true or false")
    if architecture.get("cable_weights", "learned") not in CABLE_WEIGHTS:
        raise CheckpointError(
            f"{json_path}: unknown architecture.cable_weights {architecture.get('cable_weights')!r}"
        )
    if not isinstance(document.get("sha256"), str):
        raise CheckpointError(f"{json_path}: the tensor file's sha256 is missing")
    return document


def _validate_sizes(document: dict[str, Any], json_path: Path) -> None:
    """Input shape, classes and dropout, bounded."""
    shape = document.get("input_shape")
    if not isinstance(shape, list) or not 1 <= len(shape) <= 4:
        raise CheckpointError(f"{json_path}: input_shape must be a list of 1 to 4 sizes, got {shape!r}")
    for value in shape:
        _int_in("input_shape", value, 1, MAX_INPUTS, json_path)
    if math.prod(shape) > MAX_INPUTS:
        raise CheckpointError(f"{json_path}: input_shape {shape} has more than {MAX_INPUTS:,} inputs")
    _int_in("n_classes", document.get("n_classes"), 1, MAX_CLASSES, json_path)
    dropout = document.get("dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise CheckpointError(f"{json_path}: dropout must be in [0, 1), got {dropout!r}")


def _validate_wiring(wiring: Any, json_path: Path) -> None:
    """The wiring layout: 1 to MAX_LAYERS layers of 2 or 3 parts, each with bounded sizes."""
    if not isinstance(wiring, list) or not 1 <= len(wiring) <= MAX_LAYERS:
        raise CheckpointError(f"{json_path}: wiring must be a list of 1 to {MAX_LAYERS} layers")
    for entry in wiring:
        if not isinstance(entry, list) or len(entry) not in (2, 3):
            raise CheckpointError(f"{json_path}: each wiring entry must be [inputs, (branches,) cables]")
        for info in entry:
            if not isinstance(info, dict) or not isinstance(info.get("all_to_all"), bool):
                raise CheckpointError(f"{json_path}: a wiring part lacks its all_to_all flag")
            for name in ("n_in", "n_out"):
                _int_in(f"wiring {name}", info.get(name), 1, MAX_UNITS, json_path)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON half of a checkpoint, size-bounded, strictly parsed and validated."""
    _, json_path = checkpoint_paths(path)
    if not json_path.is_file():
        raise CheckpointError(f"no checkpoint at {json_path}")
    try:
        document = read_json(json_path, limit=MAX_JSON_BYTES)
    except PathError as exc:
        raise CheckpointError(str(exc)) from None
    return _validate(document, json_path)


def _check_sizes(document: dict[str, Any], tensor_path: Path) -> None:
    """The JSON's sizes agree with the tensor file's header (read without loading any tensor),
    so a lying JSON cannot make us allocate what the file does not hold."""
    try:
        with safe_open(str(tensor_path), framework="pt") as handle:
            shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{tensor_path} is not a readable tensor file ({_reason(exc)})") from None
    expected = 0
    previous = math.prod(document["input_shape"])
    residual = bool(document.get("architecture", {}).get("residual", False))
    for index, entry in enumerate(document["wiring"]):
        if (
            any(a["n_out"] != b["n_in"] for a, b in zip(entry[:-1], entry[1:], strict=True))
            or entry[0]["n_in"] != previous
        ):
            raise CheckpointError(
                f"{tensor_path.with_suffix('.json')}: layer {index + 1} wiring does not chain"
            )
        if residual and index > 0:
            expected += 2 * previous  # the normalisation before the layer
        for part, info in zip(_part_names(len(entry)), entry, strict=True):
            n_in, n_out = info["n_in"], info["n_out"]
            prefix = f"wiring.{index}.{part}."
            if info["all_to_all"]:
                expected += n_in * n_out + n_out
                continue
            if shapes.get(prefix + "indptr") != (n_out + 1,) or len(shapes.get(prefix + "indices", ())) != 1:
                raise CheckpointError(
                    f"{tensor_path}: the wiring of layer {index + 1} ({part}) does not match the JSON"
                )
            if prefix + "centres" in shapes and shapes[prefix + "centres"] != (n_out,):
                raise CheckpointError(
                    f"{tensor_path}: the centres of layer {index + 1} do not match the JSON"
                )
            expected += shapes[prefix + "indices"][0] + n_out
        previous = entry[-1]["n_out"]
    if residual:
        expected += 2 * previous  # the normalisation before the output layer
    if (document.get("config") or {}).get("readout") == "class-specific":
        expected += previous + document["n_classes"]  # one weight per soma, a bias per class
    else:
        expected += document["n_classes"] * previous + document["n_classes"]
    stored = sum(math.prod(shape) for name, shape in shapes.items() if not name.startswith("wiring."))
    if stored != expected:
        raise CheckpointError(
            f"{tensor_path} holds {stored:,} parameter values, but its JSON describes a model "
            f"with {expected:,}: the two files do not belong together"
        )


def load(
    path: str | os.PathLike[str],
    *,
    map_location: str | torch.device = "cpu",
    run: Mapping[str, Any] | None = None,
) -> DendriticNet:
    """Rebuild the exact model saved by :func:`save` (wiring, weights, config). With ``run`` (a
    store row), first check that the checkpoint is that run's (:func:`check_run`)."""
    document = read_metadata(path)
    tensor_path, json_path = checkpoint_paths(path)
    if run is not None:
        _check_run(document, run, json_path)
    if not tensor_path.is_file():
        raise CheckpointError(f"checkpoint tensors {tensor_path} are missing")
    if _sha256(tensor_path) != document.get("sha256"):
        raise CheckpointError(
            f"{tensor_path} does not match the digest in {json_path.name}: modified or corrupt"
        )
    _check_sizes(document, tensor_path)
    try:
        tensors = load_file(str(tensor_path))
        wiring: list[tuple[Connectivity, ...]] = []
        for index, entry in enumerate(document["wiring"]):
            pair: list[Connectivity] = []
            for part, info in zip(_part_names(len(entry)), entry, strict=True):
                if info["all_to_all"]:
                    pair.append(Connectivity.all_to_all(info["n_in"], info["n_out"]))
                    continue
                prefix = f"wiring.{index}.{part}."
                conn = Connectivity.from_csr(
                    info["n_in"],
                    info["n_out"],
                    tensors.pop(prefix + "indptr").numpy(),
                    tensors.pop(prefix + "indices").numpy(),
                )
                if prefix + "centres" in tensors:
                    conn = conn.with_centres(tensors.pop(prefix + "centres").numpy())
                pair.append(conn)
            wiring.append(tuple(pair))
        model = DendriticNet(
            _spec_of(document),
            tuple(document["input_shape"]),
            int(document["n_classes"]),
            wiring=wiring,
            config=document.get("config", {}),
        )
        loaded = model.load_state_dict(tensors, strict=False)
        params = {name for name, _ in model.named_parameters()}
        missing = [name for name in loaded.missing_keys if name in params]
        if missing:
            raise CheckpointError(f"{tensor_path} lacks parameters: {', '.join(sorted(missing))}")
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, OSError, SafetensorError) as exc:
        raise CheckpointError(f"cannot rebuild the model from {json_path}: {_reason(exc)}") from None
    return model.to(map_location)


# ---------------------------------------------------------------------------- any module

STATE_FORMAT = "dendritic-state"


def save_state(
    model: torch.nn.Module, path: str | os.PathLike[str], *, extra: dict[str, Any] | None = None
) -> Path:
    """Save any module's state dict (parameters and buffers, e.g. a ``DendriticLayer``'s wiring)
    as ``path.safetensors`` + ``path.json``; returns the JSON path. Rebuild the module the same
    way, then :func:`load_state` into it."""
    check_target(path, option="checkpoint path")
    tensor_path, json_path = checkpoint_paths(path)
    # Copies: tied or shared tensors (one storage, two names) are saved as separate tensors.
    tensors = {
        name: t.detach().cpu().clone(memory_format=torch.contiguous_format)
        for name, t in model.state_dict().items()
    }
    from dendritic._version import __version__

    try:
        atomic_write(tensor_path, lambda tmp: save_file(tensors, str(tmp)))
        document = {
            "format": STATE_FORMAT,
            "format_version": 1,
            "module": f"{type(model).__module__}.{type(model).__qualname__}",
            "tensors": tensor_path.name,
            "sha256": _sha256(tensor_path),
            "dendritic_version": __version__,
            "torch_version": torch.__version__,
            "extra": extra or {},
        }
        document["document_sha256"] = _document_digest(document)
        text = json.dumps(document, indent=2, sort_keys=True, allow_nan=False)
        atomic_write(json_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    except (PathError, SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot write checkpoint {json_path.with_suffix('')}: {_reason(exc)}"
        ) from None
    return json_path


def load_state(model: torch.nn.Module, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a :func:`save_state` checkpoint into ``model`` (built the same way); both digests
    are checked first. Returns the checkpoint's ``extra``."""
    tensor_path, json_path = checkpoint_paths(path)
    if not json_path.is_file():
        raise CheckpointError(f"no checkpoint at {json_path}")
    try:
        document = read_json(json_path, limit=MAX_JSON_BYTES)
    except PathError as exc:
        raise CheckpointError(str(exc)) from None
    if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{json_path} is not a module checkpoint of dendritic.save_state")
    if document.get("document_sha256") != _document_digest(document):
        raise CheckpointError(f"{json_path} does not match its own digest: modified or corrupt")
    if not tensor_path.is_file() or _sha256(tensor_path) != document.get("sha256"):
        raise CheckpointError(f"{tensor_path} is missing or does not match the digest in {json_path.name}")
    try:
        model.load_state_dict(load_file(str(tensor_path)))
    except (RuntimeError, SafetensorError) as exc:
        raise CheckpointError(
            f"cannot load {tensor_path} into {type(model).__name__}: {_reason(exc)}"
        ) from None
    extra = document.get("extra", {})
    return extra if isinstance(extra, dict) else {}
