"""Lottery tickets at the dANN's nonzeros: the sparse control a sparse-training researcher names.

A run with ``TrainConfig(model="vANN", lottery="rewind")`` trains the *dense parent* — the vANN
with the dANN's layer widths (S·D dendrites, S somata) — for ``parent_epochs`` epochs, prunes each
hidden layer by weight magnitude to the nonzeros the dANN of the same D, S and synapses has there
(S·D·synapses·channels inputs → dendrites, S·D dendrites → somata; the read-out stays dense as in
the dANN), over ``prune_rounds`` rounds (iterative magnitude pruning: the kept fraction shrinks
geometrically, and every round but the last retrains the pruned network for ``parent_epochs``
from the rewound weights), then either **rewinds** the survivors to their values at the end of
epoch ``rewind_epoch`` of the parent (0: the initial weights) or keeps their trained values
(**finetune**), and the run trains that network for its own ``epochs``. The pruned network is a
:class:`~dendritic.models.DendriticNet` whose wiring *is* the mask (``SparseLinear`` over the
kept connections), so it costs what the dANN costs, has exactly the dANN's trainable parameters,
and its pruned weights do not exist — they stay zero through any optimizer.

The parent's epochs are a confound of the comparison (the ticket has seen more training than the
dANN); the run's config records them (``parent_epochs``, resolved) beside its own ``epochs``, and
the run's ``extra`` holds ``lottery``: the parent's validation accuracy, each round's, the
connections kept and the seconds spent before the ticket's own training (which alone is the
run's ``wall_seconds``).

A sweep runs the rewind and the fine-tune ticket of one seed from the *same* dense parent; with a
``parent_cache`` folder (the sweep coordinator makes one for its lifetime), the first of them
saves the trained parent there and the second loads it instead of training it again (at the
paper's largest size the parent is most of a lottery run's time). The file is keyed by
everything that determines the parent (:func:`parent_identity`, the torch threads, device,
versions and the data's provenance), so a run loads a parent only where training it would give
the same weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from dendritic.training.fit import Callback
from dendritic.wiring.connectivity import Connectivity

if TYPE_CHECKING:
    from dendritic.models.network import DendriticNet

__all__ = [
    "LOTTERY_DEFAULTS",
    "LOTTERY_MODES",
    "Ticket",
    "check_lottery",
    "dense_state",
    "lottery_keyed",
    "magnitude_masks",
    "parent_epochs_of",
    "parent_identity",
    "prune_schedule",
    "pruned_network",
    "stage_counts",
    "target_nonzeros",
    "train_ticket",
]

log = logging.getLogger("dendritic.training")

#: ``none`` (an ordinary run), or the pruned dense parent rewound to its early weights or fine-tuned.
LOTTERY_MODES = ("none", "rewind", "finetune")
#: The lottery fields of a training config at the values of an ordinary run (left out of its
#: store key, so every run stored before they existed keeps its key).
LOTTERY_DEFAULTS: dict[str, Any] = {
    "lottery": "none",
    "prune_rounds": 1,
    "rewind_epoch": 1,
    "parent_epochs": None,
}
#: Most pruning rounds (each retrains the network once).
MAX_ROUNDS = 100


def check_lottery(config: Any) -> None:
    """A one-line ValueError for bad lottery settings of a config (a ``TrainConfig``; typed Any
    here because the config module calls this one)."""
    from dendritic.models.spec import check_int

    if not isinstance(config.lottery, str) or config.lottery not in LOTTERY_MODES:
        raise ValueError(f"unknown lottery {config.lottery!r}; choose one of {', '.join(LOTTERY_MODES)}")
    check_int("prune_rounds", config.prune_rounds, minimum=1, maximum=MAX_ROUNDS)
    check_int("rewind_epoch", config.rewind_epoch, minimum=0, maximum=100_000)
    if config.parent_epochs is not None:
        check_int("parent_epochs", config.parent_epochs, minimum=1, maximum=100_000)
    if config.lottery == "none":
        changed = [k for k, v in LOTTERY_DEFAULTS.items() if k != "lottery" and getattr(config, k) != v]
        if changed:
            verb = "applies" if len(changed) == 1 else "apply"
            raise ValueError(
                f"{', '.join(changed)} only {verb} to a lottery run (lottery='rewind' or lottery='finetune')"
            )
        return
    if config.model != "vANN":
        raise ValueError(
            f"a lottery ticket is pruned from the dense parent: model must be vANN (with the dANN's D and S), "
            f"got {config.model!r}"
        )
    if (
        config.branches != 1
        or config.residual
        or config.linear_dendrites
        or config.cable_weights != "learned"
    ):
        raise ValueError(
            "a lottery ticket's parent is the plain vANN (no branches, residual, linear dendrites or fixed cables)"
        )
    if config.early_stop:
        raise ValueError("a lottery run trains a fixed number of epochs: early_stop is not supported")
    if config.lottery == "finetune" and config.rewind_epoch != LOTTERY_DEFAULTS["rewind_epoch"]:
        # it would be ignored, yet key a run of its own: the same ticket stored twice
        raise ValueError(
            f"rewind_epoch only applies to lottery='rewind' (a fine-tuned ticket keeps its trained "
            f"weights), got rewind_epoch={config.rewind_epoch} with lottery='finetune'"
        )
    if config.rewind_epoch > parent_epochs_of(config):
        raise ValueError(
            f"rewind_epoch={config.rewind_epoch} is after the parent's last epoch ({parent_epochs_of(config)})"
        )


def parent_epochs_of(config: Any) -> int:
    """Epochs the dense parent (and every intermediate round) trains: ``parent_epochs``, or the
    run's own epochs."""
    return int(config.parent_epochs) if config.parent_epochs is not None else int(config.resolved_epochs())


def lottery_keyed(config: Any, data: dict[str, Any]) -> dict[str, Any]:
    """A config dict as the store keys it: no lottery fields for an ordinary run, and
    ``parent_epochs`` resolved for a lottery run (the confound, recorded)."""
    if data.get("lottery", "none") == "none":
        for name in LOTTERY_DEFAULTS:
            data.pop(name, None)
    else:
        data["parent_epochs"] = parent_epochs_of(config)
    return data


def parent_identity(config: Any) -> str | None:
    """What determines a lottery run's dense parent and its rewind snapshot, as canonical JSON:
    the config without the fields that only act after the parent (the mode and the rounds), with
    ``parent_epochs`` resolved; None for an ordinary run. The rewind and fine-tune tickets of one
    seed share it."""
    if config.lottery == "none":
        return None
    data = config.to_dict()
    for name in ("lottery", "prune_rounds"):
        data.pop(name, None)
    data["parent_epochs"] = parent_epochs_of(config)
    return json.dumps(data, sort_keys=True, default=str)


# ---------------------------------------------------------------------------- the parts


def _stages(net: DendriticNet) -> list[Any]:
    """Every prunable weight stage of a network, in forward order: each layer's input → dendrite
    and dendrite → soma maps (the read-out is not pruned)."""
    stages = []
    for layer in net._blocks:
        stages += [layer.dendrite_linear, layer.soma_linear]
    return stages


def target_nonzeros(net: DendriticNet, synapses: int) -> list[int]:
    """Connections the dANN with this network's widths has in each prunable stage: every
    dendrite ``synapses`` inputs per channel (at most all of them), every dendrite one soma."""
    targets = []
    for layer in net._blocks:
        n_dendrites = layer.n_dendrites
        fan_in = min(layer.in_features, synapses * layer.geometry.channels)
        targets += [n_dendrites * fan_in, n_dendrites]
    return targets


@dataclass
class DenseStage:
    """One stage's weights as an ``(out, in)`` matrix (zeros where it has no connection) and its bias."""

    weight: torch.Tensor
    bias: torch.Tensor | None


def dense_state(net: DendriticNet) -> list[DenseStage]:
    """Copies of every stage's weights (the prunable stages, then the read-out), dense."""
    out = []
    for stage in [*_stages(net), net.output]:
        bias = None if stage.bias is None else stage.bias.detach().cpu().clone()
        out.append(DenseStage(stage.dense_weight().detach().cpu().clone(), bias))
    return out


def _masks_of(net: DendriticNet) -> list[torch.Tensor]:
    """The current connections of every prunable stage as boolean ``(out, in)`` matrices."""
    return [torch.from_numpy(stage.connectivity.to_mask(np.bool_).T.copy()) for stage in _stages(net)]


def magnitude_masks(
    weights: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], keep: Sequence[int]
) -> list[torch.Tensor]:
    """Per stage, the ``keep[i]`` connections of ``masks[i]`` whose ``weights[i]`` are largest in
    magnitude (ties broken by position): exactly ``keep[i]`` True entries each."""
    out = []
    for weight, mask, k in zip(weights, masks, keep, strict=True):
        available = int(mask.sum())
        if not 1 <= k <= available:
            raise ValueError(f"cannot keep {k} of a stage's {available} connections")
        score = torch.where(mask, weight.abs().double(), torch.full_like(weight, -1.0, dtype=torch.float64))
        chosen = torch.topk(score.reshape(-1), k, sorted=False).indices
        new = torch.zeros(mask.numel(), dtype=torch.bool)
        new[chosen] = True
        out.append(new.reshape(mask.shape))
    return out


def pruned_network(
    parent: DendriticNet, masks: Sequence[torch.Tensor], weights: Sequence[DenseStage]
) -> DendriticNet:
    """A network of ``parent``'s widths whose prunable stages have exactly the connections of
    ``masks`` (boolean ``(out, in)``), on the sparse kernels, every weight and bias taken from
    ``weights`` (:func:`dense_state` of the parent or a round; read-out included)."""
    from dendritic.models.network import DendriticNet

    conns = [Connectivity.from_mask(m.numpy().T.astype(np.float32)) for m in masks]
    wiring = [(conns[i], conns[i + 1]) for i in range(0, len(conns), 2)]
    seed = parent.config.get("seed")
    child = DendriticNet(
        parent.spec,
        parent.input_shape,
        parent.n_classes,
        seed=seed if isinstance(seed, int) else None,
        wiring=wiring,
        config={**parent.config, "pruned": True},
    )
    _load_dense(child, weights)
    return child


def _load_dense(net: DendriticNet, weights: Sequence[DenseStage]) -> None:
    """Every stage's weights (at its own connections) and biases from dense copies."""
    stages = [*_stages(net), net.output]
    if len(stages) != len(weights):
        raise ValueError(f"{len(weights)} saved stages for a network of {len(stages)}")
    with torch.no_grad():
        for stage, saved in zip(stages, weights, strict=True):
            if tuple(saved.weight.shape) != (stage.out_features, stage.in_features):
                raise ValueError("saved weights do not have the network's widths")
            if stage.indices is None:
                stage.weight.copy_(saved.weight)
            else:
                rows = torch.repeat_interleave(torch.arange(stage.out_features), stage._fan_in().cpu())
                stage.weight.copy_(saved.weight[rows, stage.indices.cpu()])
            if stage.bias is not None and saved.bias is not None:
                stage.bias.copy_(saved.bias)


class _Snapshot(Callback):
    """A fit callback that keeps the dense weights at the end of epoch ``epoch`` (0: before training)."""

    def __init__(self, net: DendriticNet, epoch: int) -> None:
        self.epoch = epoch
        self.saved: list[DenseStage] | None = dense_state(net) if epoch == 0 else None

    def on_epoch_end(self, state: Any, metrics: Any) -> None:
        if metrics.epoch == self.epoch:
            self.saved = dense_state(cast("DendriticNet", state.model))


def stage_counts(config: Any, input_shape: Sequence[int]) -> tuple[list[int], list[int]]:
    """(connections of the dense parent, the dANN's) per prunable stage of a lottery config, from
    the config alone (what :func:`_masks_of` and :func:`target_nonzeros` give for the built
    network; the sweep's time estimate prices each pruning round with them)."""
    n_in, channels = math.prod(input_shape), int(input_shape[-1]) if len(input_shape) == 3 else 1
    ds = config.dendrites * config.somata
    dense, targets = [], []
    for _ in range(config.layers):
        dense += [n_in * ds, ds * config.somata]
        targets += [ds * min(n_in, config.synapses * channels), ds]
        n_in, channels = config.somata, 1
    return dense, targets


def prune_schedule(config: Any, input_shape: Sequence[int]) -> list[list[int]]:
    """Connections kept per prunable stage after each of a lottery config's rounds."""
    return _schedule(*stage_counts(config, input_shape), config.prune_rounds)


def _schedule(dense: Sequence[int], targets: Sequence[int], rounds: int) -> list[list[int]]:
    """Connections kept per stage after each round: geometric from dense to the target, exact at the end."""
    out = []
    for r in range(1, rounds + 1):
        out.append(
            [
                t if r == rounds else max(t, round(n * (t / n) ** (r / rounds)))
                for n, t in zip(dense, targets, strict=True)
            ]
        )
    return out


# ---------------------------------------------------------------------------- the parent cache


@dataclass
class _Parent:
    """A trained dense parent as the pruning needs it."""

    rewound: list[DenseStage]  # at the end of epoch ``rewind_epoch`` (0: initial)
    trained: list[DenseStage]  # at the end of the parent's epochs
    val_accuracy: float
    seconds: float  # its training, by whichever run trained it


def _cache_file(
    folder: str | os.PathLike[str], config: Any, data: Any, device: torch.device
) -> tuple[str, str]:
    """(file path, identity) of the parent's cache entry: keyed by what decides its weights."""
    from dendritic._version import __version__

    identity = json.dumps(
        {
            "config": parent_identity(config),
            "threads": torch.get_num_threads(),
            "device": str(device),
            "torch": torch.__version__,
            "dendritic": __version__,
            "data": getattr(data, "provenance", None),
        },
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
    return os.path.join(os.fspath(folder), f"parent-{digest}.safetensors"), identity


def _stage_tensors(prefix: str, stages: Sequence[DenseStage]) -> dict[str, torch.Tensor]:
    out = {}
    for i, stage in enumerate(stages):
        out[f"{prefix}.{i}.weight"] = stage.weight.contiguous()
        if stage.bias is not None:
            out[f"{prefix}.{i}.bias"] = stage.bias.contiguous()
    return out


def _tensor_stages(prefix: str, tensors: Mapping[str, torch.Tensor], n: int) -> list[DenseStage]:
    return [DenseStage(tensors[f"{prefix}.{i}.weight"], tensors.get(f"{prefix}.{i}.bias")) for i in range(n)]


def _save_parent(path: str, identity: str, parent: _Parent) -> None:
    """Write the entry atomically (a reader sees all of it or none); a failure only costs the
    next run the parent's training, so it is logged, not raised."""
    from safetensors.torch import save_file

    from dendritic.files import atomic_write

    if not os.path.isdir(os.path.dirname(path)):  # the sweep has ended and removed its cache
        return
    tensors = {**_stage_tensors("rewound", parent.rewound), **_stage_tensors("trained", parent.trained)}
    meta = {
        "identity": identity,
        "stages": str(len(parent.trained)),
        "val_accuracy": repr(parent.val_accuracy),
        "seconds": repr(parent.seconds),
    }
    try:
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    except Exception as exc:  # disk full, folder removed under us: train it again next time
        log.warning("lottery: could not cache the dense parent (%s)", exc)


def _load_parent(path: str, identity: str) -> _Parent | None:
    """The cached parent of this identity, or None (absent, unreadable or another parent's)."""
    from safetensors import safe_open

    if not os.path.exists(path):
        return None
    try:
        with safe_open(path, framework="pt") as handle:
            meta = handle.metadata() or {}
            if meta.get("identity") != identity:
                return None
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        n = int(meta["stages"])
        return _Parent(
            _tensor_stages("rewound", tensors, n),
            _tensor_stages("trained", tensors, n),
            float(meta["val_accuracy"]),
            float(meta["seconds"]),
        )
    except Exception as exc:  # a damaged entry: train the parent again
        log.warning("lottery: ignoring an unreadable cached parent %s (%s)", path, exc)
        return None


@dataclass
class Ticket:
    """What :func:`train_ticket` made: the network the run trains, and the record of how."""

    model: DendriticNet
    info: dict[str, Any]


def train_ticket(
    config: Any, data: Any, device: torch.device, *, parent_cache: str | os.PathLike[str] | None = None
) -> Ticket:
    """The network a lottery run trains (see the module's docstring): the dense parent trained,
    pruned by magnitude over ``prune_rounds`` rounds to the dANN's nonzeros, rewound or kept
    trained. ``info`` records the parent's epochs and accuracy, the rounds, the rewind point and
    the nonzeros per stage. With ``parent_cache`` (an existing folder), the parent is loaded from
    there when a run with the same :func:`parent_identity` trained it, and saved there otherwise
    (``info["parent_cached"]`` says which; ``parent_seconds`` is its training either way)."""
    from dendritic.models.network import DendriticNet
    from dendritic.training.fit import fit
    from dendritic.training.optim import make_optimizer

    check_lottery(config)
    epochs = parent_epochs_of(config)
    started = time.perf_counter()

    def train(net: DendriticNet, snapshot: _Snapshot | None = None) -> float:
        result = fit(
            net,
            (data.x_train, data.y_train),
            val=(data.x_val, data.y_val),
            epochs=epochs,
            optimizer=make_optimizer(net, config.lr, config.optimizer),
            batch_size=config.batch_size,
            seed=config.seed,
            shuffle=not config.sequential,
            callbacks=[] if snapshot is None else [snapshot],
            device=device,
        )
        return result.history[-1].val_accuracy if result.history else math.nan

    parent = DendriticNet(config.model_spec(), data.input_shape, data.n_classes, seed=config.seed).to(device)
    cache = None if parent_cache is None else _cache_file(parent_cache, config, data, device)
    trained_parent = None if cache is None else _load_parent(*cache)
    if trained_parent is None:
        snapshot = _Snapshot(parent, config.rewind_epoch)
        parent_val = train(parent, snapshot)
        assert snapshot.saved is not None
        trained_parent = _Parent(
            snapshot.saved, dense_state(parent), parent_val, time.perf_counter() - started
        )
        if cache is not None:
            _save_parent(*cache, trained_parent)
        cached = False
    else:
        cached = True
        log.info("lottery: the dense parent comes from the sweep's cache (trained by another run)")
    rewound, parent_val = trained_parent.rewound, trained_parent.val_accuracy
    targets = target_nonzeros(parent, config.synapses)
    masks = _masks_of(parent)
    dense = [int(m.sum()) for m in masks]
    current, trained = parent, trained_parent.trained
    schedule = _schedule(dense, targets, config.prune_rounds)
    round_val: list[float] = []
    for r, keep in enumerate(schedule, start=1):
        masks = magnitude_masks([w.weight for w in trained[:-1]], masks, keep)
        if r == len(schedule):
            break
        start = rewound if config.lottery == "rewind" else trained
        current = pruned_network(parent, masks, start).to(device)
        round_val.append(train(current))
        trained = dense_state(current)
        log.info(
            "lottery round %d/%d: kept %s, validation accuracy %.4f", r, len(schedule), keep, round_val[-1]
        )
    child = pruned_network(parent, masks, rewound if config.lottery == "rewind" else trained).to(device)
    info = {
        "lottery": config.lottery,
        "parent_epochs": epochs,
        "prune_rounds": config.prune_rounds,
        "rewind_epoch": config.rewind_epoch,
        "parent_val_accuracy": parent_val,
        "round_val_accuracy": round_val,
        "dense_connections": dense,
        "kept_connections": [int(m.sum()) for m in masks],
        "seconds": time.perf_counter() - started,  # the parent's (unless cached) and the rounds' training
        "parent_seconds": trained_parent.seconds,
        "parent_cached": cached,
    }
    del current
    return Ticket(child, info)


def lottery_info(config: Mapping[str, Any]) -> str:
    """A short label of a stored config's lottery settings, e.g. ``rewind to epoch 1, 5 rounds``; ``""`` for none."""
    mode = config.get("lottery", "none")
    if mode in (None, "none"):
        return ""
    rounds = int(config.get("prune_rounds", 1))
    how = f"rewind to epoch {int(config.get('rewind_epoch', 1))}" if mode == "rewind" else "fine-tuned"
    return f"{how}, {rounds} round{'s' if rounds != 1 else ''}, parent {config.get('parent_epochs')} epochs"
