"""`TrainConfig`: everything that defines one training run of the paper's protocol (SPEC §4)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from dendritic.models.network import MAX_LAYERS, MAX_SEED
from dendritic.models.variants import resolve_name

__all__ = ["MAX_COUNT", "MAX_EARLY_STOP_EPOCHS", "MAX_EPOCHS", "TrainConfig"]

#: Early stopping trains for at most this many epochs (SPEC §4).
MAX_EARLY_STOP_EPOCHS = 100
#: Bounds of the integer fields: far above any real run, below anything that overflows.
MAX_EPOCHS = 100_000
MAX_COUNT = 2**31 - 1


@dataclass(frozen=True)
class TrainConfig:
    """One run. Scientific settings only: where data lives or which device runs it is not here,
    so the same config has the same key in the results store on every machine.

    ``epochs=None`` means the paper's count for the dataset (doubled for ``sequential``), or
    at most 100 with ``early_stop``.
    """

    model: str = "dANN-LRF"
    dataset: str = "fmnist"
    dendrites: int = 16
    somata: int = 256
    synapses: int = 16
    layers: int = 1
    dropout: float = 0.0
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int | None = None
    seed: int = 1
    sigma: float = 0.0
    sequential: bool = False
    early_stop: bool = False
    patience: int = 10
    val_fraction: float = 0.1
    limit: int | None = None
    random_mode: str = "exact"
    #: Adam's form: "adam-keras" (the paper's code) or "adam-torch"; see training.optim.
    optimizer: str = "adam-keras"

    def __post_init__(self) -> None:
        variant, rate = resolve_name(self.model)  # raises on unknown names
        object.__setattr__(self, "model", variant.name if rate is None else f"vANN-{rate:g}")
        from dendritic.data import canonical_name

        object.__setattr__(self, "dataset", canonical_name(self.dataset))
        for name in ("dendrites", "somata", "synapses", "batch_size"):
            _check_int(name, getattr(self, name), minimum=1, maximum=MAX_COUNT)
        _check_int("layers", self.layers, minimum=1, maximum=MAX_LAYERS)
        _check_int("patience", self.patience, minimum=1, maximum=MAX_EPOCHS)
        _check_int("seed", self.seed, minimum=0, maximum=MAX_SEED)
        if self.epochs is not None:
            _check_int("epochs", self.epochs, minimum=1, maximum=MAX_EPOCHS)
        if self.limit is not None:
            _check_int("limit", self.limit, minimum=1, maximum=MAX_COUNT)
        _check_float("lr", self.lr, low=0.0, high=math.inf, low_open=True)
        _check_float("dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        _check_float("sigma", self.sigma, low=0.0, high=math.inf)
        _check_float("val_fraction", self.val_fraction, low=0.0, high=1.0, low_open=True, high_open=True)
        for name in ("dropout", "lr", "sigma", "val_fraction"):  # 1 and 1.0 must key the same run
            object.__setattr__(self, name, float(getattr(self, name)))
        from dendritic.training.optim import form_of

        form_of(self.optimizer)  # an unknown name is a one-line error listing the valid ones
        if self.random_mode not in ("exact", "scatter"):
            raise ValueError(f"random_mode must be 'exact' or 'scatter', got {self.random_mode!r}")

    def resolved_epochs(self) -> int:
        """Epochs this run trains for (early stopping may end it sooner)."""
        if self.epochs is not None:
            return self.epochs
        if self.early_stop:
            return MAX_EARLY_STOP_EPOCHS
        from dendritic.data import get_info

        base = get_info(self.dataset).epochs
        return 2 * base if self.sequential else base

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with ``epochs`` resolved: what the results store keys runs by."""
        data = asdict(self)
        data["epochs"] = self.resolved_epochs()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """A config as stored; one stored before the ``optimizer`` field existed used torch's Adam."""
        from dendritic.training.optim import optimizer_of

        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
        return cls(**{**data, "optimizer": optimizer_of(data)})


def _check_int(name: str, value: Any, *, minimum: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValueError(f"{name} must be an integer in [{minimum}, {maximum}], got {value!r}")


def _check_float(
    name: str,
    value: Any,
    *,
    low: float,
    high: float,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        left, right = "(" if low_open else "[", ")" if high_open or math.isinf(high) else "]"
        kind = "a finite number in" if math.isinf(high) else "in"
        raise ValueError(f"{name} must be {kind} {left}{low:g}, {high:g}{right}, got {value!r}")
