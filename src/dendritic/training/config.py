"""`TrainConfig`: everything that defines one training run of the paper's protocol (SPEC §4)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from dendritic.models.network import MAX_SEED
from dendritic.models.spec import MAX_COUNT, ModelSpec, check_float, check_int

__all__ = ["LIMIT_SCOPES", "MAX_COUNT", "MAX_EARLY_STOP_EPOCHS", "MAX_EPOCHS", "TrainConfig", "test_limit"]

#: What ``limit`` shrinks: the training images (validation taken from them; the test set whole),
#: or, as runs recorded before it was a field did, the test set too.
LIMIT_SCOPES = ("train", "train+test")

#: Early stopping trains for at most this many epochs (SPEC §4).
MAX_EARLY_STOP_EPOCHS = 100
#: Bound of the epoch counts: far above any real run.
MAX_EPOCHS = 100_000


@dataclass(frozen=True)
class TrainConfig(ModelSpec):
    """One run: a model (the :class:`~dendritic.models.spec.ModelSpec` fields: model, dendrites,
    somata, synapses, layers, dropout, random_mode) and the protocol it is trained with.
    Scientific settings only: where data lives or which device runs it is not here, so the same
    config has the same key in the results store on every machine.

    ``epochs=None`` means the paper's count for the dataset (doubled for ``sequential``), or
    at most 100 with ``early_stop``.
    """

    dataset: str = "fmnist"
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
    #: Adam's form: "adam-keras" (the paper's code) or "adam-torch"; see training.optim.
    optimizer: str = "adam-keras"
    #: What ``limit`` shrinks (:data:`LIMIT_SCOPES`); runs stored before the field: "train+test".
    limit_scope: str = "train"
    #: Lottery tickets (``dendritic.training.lottery``): "none", or model vANN pruned by magnitude
    #: to the dANN's nonzeros over ``prune_rounds`` rounds after ``parent_epochs`` (None: ``epochs``)
    #: and "rewind"-ed to epoch ``rewind_epoch`` of the parent (0: its initial weights) or
    #: "finetune"-d. Left out of the store key at these defaults.
    lottery: str = "none"
    prune_rounds: int = 1
    rewind_epoch: int = 1
    parent_epochs: int | None = None
    #: Class-selectivity regulariser (``training.selectivity``): the loss is CE − α·SI, so α < 0
    #: lowers the selectivity of ``selectivity_layers``' nodes and α > 0 raises it.
    selectivity_alpha: float = 0.0
    #: Whose selectivity: "somata", "dendrites" or "dendrites+somata"; None: no regulariser (a
    #: non-zero α alone regularises the somata). Both are left out of store keys at their defaults.
    selectivity_layers: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()  # the model's fields
        from dendritic.data import canonical_name

        object.__setattr__(self, "dataset", canonical_name(self.dataset))
        check_protocol(self)
        check_int("patience", self.patience, minimum=1, maximum=MAX_EPOCHS)
        if self.epochs is not None:
            check_int("epochs", self.epochs, minimum=1, maximum=MAX_EPOCHS)
        check_float("sigma", self.sigma, low=0.0, high=math.inf)
        check_float("val_fraction", self.val_fraction, low=0.0, high=1.0, low_open=True, high_open=True)
        check_selectivity(self)
        if self.readout == "class-specific":  # before any data is read: a soma for every class
            from dendritic.data import get_info
            from dendritic.nn.readout import check_soma_classes

            check_soma_classes(self.somata, get_info(self.dataset).n_classes)
        for name in ("sigma", "val_fraction"):  # 1 and 1.0 must key the same run
            object.__setattr__(self, name, float(getattr(self, name)))
        from dendritic.training.lottery import check_lottery

        check_lottery(self)

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
        """Plain dict with ``epochs`` resolved: what the results store keys runs by. Options
        beyond the paper are left out at their paper values (``ModelSpec.paper_dict``)."""
        from dendritic.training.lottery import lottery_keyed

        data = lottery_keyed(self, selectivity_keyed(limit_keyed(self.paper_dict(asdict(self)))))
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
        return cls(**{**data, "optimizer": optimizer_of(data), "limit_scope": limit_scope_of(data)})


def check_protocol(config: Any) -> None:
    """The fields training and continual configs share beyond the model's: lr, batch size, seed,
    sample limit and optimizer (``lr`` normalised to a float)."""
    check_int("batch_size", config.batch_size, minimum=1, maximum=MAX_COUNT)
    check_int("seed", config.seed, minimum=0, maximum=MAX_SEED)
    if config.limit is not None:
        check_int("limit", config.limit, minimum=1, maximum=MAX_COUNT)
    check_float("lr", config.lr, low=0.0, high=math.inf, low_open=True)
    object.__setattr__(config, "lr", float(config.lr))
    from dendritic.training.optim import form_of

    form_of(config.optimizer)  # an unknown name is a one-line error listing the valid ones
    if config.limit_scope not in LIMIT_SCOPES:
        raise ValueError(
            f"unknown limit_scope {config.limit_scope!r}; choose one of {', '.join(LIMIT_SCOPES)}"
        )


def limit_keyed(data: dict[str, Any]) -> dict[str, Any]:
    """A config dict as the store keys it: ``limit_scope`` only where it tells runs apart (a limit
    that spares the test set), so unlimited runs and runs of before the field keep their keys."""
    if data.get("limit") is None or data.get("limit_scope") == "train+test":
        data.pop("limit_scope", None)
    return data


def limit_scope_of(data: dict[str, Any]) -> str:
    """The ``limit_scope`` of a stored config: a limited run stored without one shrank the test
    set too (``"train+test"``)."""
    scope = data.get("limit_scope")
    if isinstance(scope, str):
        return scope
    return "train+test" if data.get("limit") is not None else "train"


def test_limit(config: Any) -> int | None:
    """How many test images a config's run is evaluated on (None: all)."""
    return config.limit if config.limit is not None and config.limit_scope == "train+test" else None


def check_selectivity(config: Any) -> None:
    """``selectivity_alpha`` a finite number (a float), ``selectivity_layers`` None or a layer
    choice; a non-zero α without layers regularises the somata."""
    from dendritic.training.selectivity import MAX_ALPHA, check_layers

    alpha = check_float("selectivity_alpha", config.selectivity_alpha, low=-MAX_ALPHA, high=MAX_ALPHA)
    object.__setattr__(config, "selectivity_alpha", alpha + 0.0)  # -0.0 and 0 key as 0.0
    if config.selectivity_layers is not None:
        check_layers(config.selectivity_layers)
    elif alpha != 0.0:
        object.__setattr__(config, "selectivity_layers", "somata")


def selectivity_keyed(data: dict[str, Any]) -> dict[str, Any]:
    """A config dict without the regulariser's fields at their defaults, so the runs of before
    the fields keep their keys (α = 0 with layers named is a run of its own: the regulariser's
    code path with no pull)."""
    if data.get("selectivity_alpha") == 0.0:
        data.pop("selectivity_alpha", None)
    if data.get("selectivity_layers") is None:
        data.pop("selectivity_layers", None)
    return data
