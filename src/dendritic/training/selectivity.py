"""A differentiable class-selectivity regulariser (Leavitt & Morcos, ICLR 2021), for any model.

Why: the paper explains the dANNs' gains by *mixed selectivity* (nodes active for many classes)
but only describes trained networks. Pushing selectivity down or up during training, in a
dose-response over a strength α, tests whether it is a cause.

The **selectivity index** of a node, from its class-conditional mean activations μ_c in a batch:

    SI = (μ_max − μ_rest) / (μ_max + μ_rest + eps)

with μ_max the largest class mean and μ_rest the mean of the other classes' means: 1 for a node
that responds to one class only, 0 for one that responds equally to all. Means are taken over
max(a, 0): the index is defined for non-negative responses (ReLU); the paper's leaky ReLU is
clipped at zero, as the node-activity analyses (Fig. 5) call a node active when it is > 0. A dead
node has index 0. A class absent from a batch takes its last training batch's mean (detached; a
class-sequential batch holds one class), a class never seen is left out, and with fewer than two
classes known the index is 0 (no gradient).

**Sign convention** (Leavitt & Morcos'): the loss is ``base − α · SI``, SI the mean index of the
chosen layers' nodes (averaged per layer, then over layers), so **α < 0 lowers selectivity**
(rewards mixed selectivity) and **α > 0 raises it** (rewards class-specific nodes); α = 0 is the
base loss.

Use it as ``fit``'s loss; it reads the layers' activations with forward hooks::

    with SelectivityRegularizer(model, alpha=-3.0, layers=("somata",)) as loss:
        fit(model, (x, y), epochs=10, loss=loss)

For the paper's networks (:class:`~dendritic.models.DendriticNet`) ``layers`` names
``"dendrites"``, ``"somata"`` (every dendro-somatic layer) or one of them (``"somata_2"``); for any
other model, names of its submodules (``model.named_modules()``) whose batch-major output is a
layer's activations (e.g. an ``nn.ReLU``). A ``DendriticNet`` hands its activations over through
:meth:`~dendritic.models.DendriticNet.register_activation_hook`, so its layers keep their fused
C++ pass (dendrites kept and differentiable); in any other model the
:class:`~dendritic.nn.DendriticLayer`\\ s run part by part while attached (their fused pass calls
no module hooks). ``fit`` takes plain autograd steps (its whole-step C++ path computes the plain
cross-entropy only). In eval mode the loss is the base loss: validation and test losses stay
comparable across α.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dendritic.layers.functional import class_sums_t
from dendritic.models.network import DendriticNet
from dendritic.nn.layer import DendriticLayer
from dendritic.nn.spec import check_choice, check_float
from dendritic.training.fit import Callback, FitResult, FitState

__all__ = [
    "EPS",
    "MAX_ALPHA",
    "SELECTIVITY_LAYERS",
    "SelectivityRegularizer",
    "class_means",
    "MeasureActivity",
    "layer_names",
    "node_activity",
    "regularized",
    "selectivity_index",
]

#: Keeps the index finite for nodes silent on every class.
EPS = 1e-7
#: Largest |α| accepted: far beyond any useful strength, below anything that overflows.
MAX_ALPHA = 1e6
#: The layer choices of a training config (``TrainConfig.selectivity_layers``, ``--selectivity-layers``).
SELECTIVITY_LAYERS: tuple[str, ...] = ("somata", "dendrites", "dendrites+somata")


def class_means(
    activations: torch.Tensor, labels: torch.Tensor, n_classes: int, *, feature_major: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, nodes) mean of max(a, 0) per class over a batch ``(B, nodes)`` (``(nodes, B)`` with
    ``feature_major``: the layout the paper's networks compute in, read without a transpose),
    and the (K,) counts."""
    if activations.dim() != 2:
        raise ValueError(f"activations must be 2-D (batch, nodes), got shape {tuple(activations.shape)}")
    batch = activations.shape[1] if feature_major else activations.shape[0]
    if labels.dim() != 1 or len(labels) != batch:
        raise ValueError(f"labels must be 1-D with one label per sample, got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got {labels.dtype}")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes})")
    counts = torch.bincount(labels.long(), minlength=n_classes).to(activations.dtype)
    if feature_major:  # the paper's networks: one C++ pass each way (dendritic.layers.functional)
        sums = class_sums_t(activations, labels, n_classes)
    else:  # relu, not clamp_min(0): the same values, and a backward several times faster
        onehot = F.one_hot(labels.long(), n_classes).to(activations.dtype)  # (B, K)
        sums = onehot.t() @ torch.relu(activations)
    return sums / counts.clamp_min(1)[:, None], counts


def selectivity_index(
    activations: torch.Tensor,
    labels: torch.Tensor,
    n_classes: int,
    *,
    eps: float = EPS,
    memory: torch.Tensor | None = None,
    known: torch.Tensor | None = None,
    feature_major: bool = False,
) -> torch.Tensor:
    """Per node (shape ``(nodes,)``), ``(μ_max − μ_rest) / (μ_max + μ_rest + eps)`` from the
    class-conditional means of ``activations`` ``(B, nodes)`` (``(nodes, B)`` with
    ``feature_major``), differentiable.

    ``memory`` (K, nodes) holds class means to use for classes absent from the batch where
    ``known`` (K,) bool says they are known (detached); other absent classes are left out."""
    means, counts = class_means(activations, labels, n_classes, feature_major=feature_major)
    return _index_of_means(means, counts, eps=eps, memory=memory, known=known)


def _index_of_means(
    means: torch.Tensor,
    counts: torch.Tensor,
    *,
    eps: float,
    memory: torch.Tensor | None,
    known: torch.Tensor | None,
) -> torch.Tensor:
    present = counts > 0
    if memory is not None and known is not None:
        fill = known & ~present
        means = torch.where(fill[:, None], memory.detach().to(means), means)
        present = present | fill
    k = int(present.sum())
    if k < 2:
        return means.new_zeros(means.shape[1]) + 0.0 * means.sum()
    means = means[present]
    top = means.max(dim=0).values
    rest = (means.sum(dim=0) - top) / (k - 1)
    return (top - rest) / (top + rest + eps)


def layer_names(model: nn.Module, layers: Sequence[str]) -> list[str]:
    """The layers ``layers`` names, resolved on ``model`` (see the module docstring); a one-line
    ValueError for a name it does not have."""
    if isinstance(layers, str):
        layers = layers.split("+")
    if not layers:
        raise ValueError("selectivity layers: name at least one layer")
    if isinstance(model, DendriticNet):
        valid = [f"{part}_{i}" for i in range(1, model.n_layers + 1) for part in ("dendrites", "somata")]
        out: list[str] = []
        for name in layers:
            picked = [v for v in valid if v == name or v.rsplit("_", 1)[0] == name]
            if not picked:
                raise ValueError(
                    f"unknown selectivity layer {name!r}; choose dendrites, somata or one of {', '.join(valid)}"
                )
            out += [p for p in picked if p not in out]
        return out
    modules = dict(model.named_modules())
    for name in layers:
        if name not in modules or not name:
            raise ValueError(f"unknown selectivity layer {name!r}: the model has no submodule of that name")
    return list(dict.fromkeys(layers))


class SelectivityRegularizer:
    """``loss(output, target) = base(output, target) − α · SI`` (see the module docstring):
    α < 0 lowers the selectivity of the ``layers``' nodes, α > 0 raises it.

    Attach with ``with`` (or :meth:`attach` / :meth:`close`): forward hooks record the layers'
    activations of each training batch, the loss consumes them. ``n_classes`` defaults to the
    model's (``model.n_classes``) or is read off the output's width. ``last_index`` holds the
    mean index of the last training batch (a float), for logging."""

    def __init__(
        self,
        model: nn.Module,
        alpha: float,
        layers: Sequence[str] | str = ("somata",),
        *,
        n_classes: int | None = None,
        base: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
        eps: float = EPS,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.alpha = check_float("selectivity alpha", alpha, low=-MAX_ALPHA, high=MAX_ALPHA)
        self.eps = check_float("eps", eps, low=0.0, high=1.0, low_open=True)
        self.model, self.base = model, base
        self.layers = layer_names(model, layers)
        classes = n_classes if n_classes is not None else getattr(model, "n_classes", None)
        if classes is not None and (isinstance(classes, bool) or not isinstance(classes, int) or classes < 2):
            raise ValueError(f"n_classes must be an integer >= 2, got {classes!r}")
        self.n_classes: int | None = classes
        self.last_index = float("nan")
        self._captured: dict[str, tuple[torch.Tensor, bool]] = {}  # name → (activations, feature-major)
        self._memory: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._handles: list[Any] = []
        self._fused: list[tuple[DendriticLayer, bool]] = []

    # ------------------------------------------------------------------ hooks
    def _targets(self) -> list[tuple[str, nn.Module]]:
        """(layer name, module whose batch-major output it is) of a model other than a ``DendriticNet``."""
        modules = dict(self.model.named_modules())
        return [(name, modules[name]) for name in self.layers]

    def attach(self) -> SelectivityRegularizer:
        """Register the hooks (a ``DendriticNet``'s activation hook; elsewhere forward hooks, the
        model's dendritic layers run part by part)."""
        if self._handles:
            return self
        if isinstance(self.model, DendriticNet):
            self._handles.append(self.model.register_activation_hook(self._network_recorder))
            return self
        self._fused = [(m, m.fused) for m in self.model.modules() if isinstance(m, DendriticLayer)]
        for layer, _ in self._fused:
            layer.fused = False
        for name, module in self._targets():
            self._handles.append(module.register_forward_hook(self._recorder(name)))
        return self

    def _network_recorder(self, model: nn.Module, name: str, activations: torch.Tensor) -> None:
        """A ``DendriticNet``'s layer activations, feature-major (units, batch)."""
        if name in self.layers and self.model.training and torch.is_grad_enabled():
            self._captured[name] = (activations, True)

    def _recorder(self, name: str) -> Callable[..., None]:
        def record(module: nn.Module, inputs: Any, output: Any) -> None:
            if self.model.training and torch.is_grad_enabled() and isinstance(output, torch.Tensor):
                self._captured[name] = (output.reshape(output.shape[0], -1), False)

        return record

    def close(self) -> None:
        """Remove the hooks and give the dendritic layers back their ``fused`` setting."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for layer, fused in self._fused:
            layer.fused = fused
        self._fused.clear()
        self._captured.clear()

    def __enter__(self) -> SelectivityRegularizer:
        return self.attach()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ the loss
    def index(self, target: torch.Tensor, n_classes: int) -> torch.Tensor:
        """Mean selectivity index of the captured layers (per layer, then over layers); the
        class means of this batch become the memory for classes absent from later ones."""
        values = []
        for name in self.layers:
            captured = self._captured.pop(name, None)
            if captured is None:
                raise RuntimeError(
                    f"selectivity layer {name!r} produced no activations in this forward pass; "
                    "is the regulariser attached (with ... as loss)?"
                )
            acts, feature_major = captured
            means, counts = class_means(acts, target, n_classes, feature_major=feature_major)
            memory, known = self._memory.get(name, (None, None))
            if memory is not None and memory.shape[1] != means.shape[1]:
                memory, known = None, None
            values.append(_index_of_means(means, counts, eps=self.eps, memory=memory, known=known).mean())
            with torch.no_grad():
                means = means.detach()
                present = counts > 0
                if memory is None or known is None:
                    memory, known = means, present
                else:
                    memory = torch.where(present[:, None], means, memory)
                    known = known | present
                self._memory[name] = (memory, known)
        return torch.stack(values).mean()

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.base(output, target)
        if not (self.model.training and torch.is_grad_enabled()):
            return loss  # validation and test: the base loss only
        if not self._handles:
            raise RuntimeError("the selectivity regulariser is not attached: use it as `with ... as loss`")
        n_classes = self.n_classes if self.n_classes is not None else int(output.shape[-1])
        index = self.index(target, n_classes)
        self.last_index = float(index.detach())
        return loss - self.alpha * index


@contextlib.contextmanager
def regularized(
    model: nn.Module, alpha: float, layers: Sequence[str] | str = ("somata",), **options: Any
) -> Any:
    """``with regularized(model, α, layers) as loss: fit(model, ..., loss=loss)``."""
    with SelectivityRegularizer(model, alpha, layers, **options) as loss:
        yield loss


def check_layers(value: Any) -> str:
    """A training config's ``selectivity_layers`` (one of :data:`SELECTIVITY_LAYERS`), or a one-line error."""
    return check_choice("selectivity_layers", value, SELECTIVITY_LAYERS)


# ---------------------------------------------------------------------------- what a run reached

#: A node is selective for a class when it fires on more than this fraction of its samples (as
#: ``dendritic.analysis.activity.SELECTIVITY_THRESHOLD``, Fig. 5).
CLASS_THRESHOLD = 0.40


@torch.no_grad()
def node_activity(
    model: DendriticNet, x: torch.Tensor, y: torch.Tensor, *, batch: int = 256
) -> dict[str, dict[str, float]]:
    """What a trained network's hidden layers reached on ``x``, ``y`` (the test set), per layer
    (``dendrites_1``, ``somata_1`` ...): the node entropy of Fig. 5 (bits over K class hit counts
    + 1 silent count, live nodes: ``entropy_mean``, ``entropy_median``), the classes a node
    fires on for > 40 % of their samples (``classes_mean``), the selectivity index over the
    whole set's class means (``index_mean``, live nodes) and the fraction of dead nodes.

    The same definitions as :mod:`dendritic.analysis.activity` (which sits above training;
    ``tests/test_selectivity.py`` checks that they agree), streamed in batches."""
    if not isinstance(model, DendriticNet):
        raise TypeError(f"node_activity measures a DendriticNet, got {type(model).__name__}")
    k = model.n_classes
    was_training = model.training
    model.eval()
    hits: dict[str, torch.Tensor] = {}
    sums: dict[str, torch.Tensor] = {}
    counts = torch.zeros(k, dtype=torch.float64)
    try:
        for start in range(0, len(x), batch):
            xb, yb = x[start : start + batch], y[start : start + batch].cpu()
            _, acts = model(xb, return_activations=True)
            onehot = F.one_hot(yb.long(), k).to(torch.float64).t()  # (K, B)
            counts += onehot.sum(dim=1)
            for name, a in acts.items():
                a64 = a.detach().cpu().to(torch.float64)
                hits[name] = hits.get(name, 0) + onehot @ (a64 > 0).to(torch.float64)
                sums[name] = sums.get(name, 0) + onehot @ a64.clamp_min(0)
    finally:
        model.train(was_training)
    return {name: _summary(hits[name], sums[name], counts) for name in hits}


def _summary(hits: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor) -> dict[str, float]:
    n = float(counts.sum())
    live = hits.sum(dim=0) > 0
    bins = torch.cat([hits, (n - hits.sum(dim=0))[None]]) / max(n, 1.0)
    entropy = -torch.where(bins > 0, bins * torch.log2(bins.clamp_min(1e-300)), torch.zeros_like(bins)).sum(0)
    present = counts > 0
    rate = hits[present] / counts[present][:, None]
    classes = (rate > CLASS_THRESHOLD).sum(dim=0).to(torch.float64)
    means = sums[present] / counts[present][:, None]
    top = means.max(dim=0).values
    rest = (means.sum(dim=0) - top) / max(int(present.sum()) - 1, 1)
    index = (top - rest) / (top + rest + EPS)

    def mean(values: torch.Tensor) -> float:
        return float(values[live].mean()) if bool(live.any()) else float("nan")

    return {
        "entropy_mean": mean(entropy),
        "entropy_median": float(torch.quantile(entropy[live], 0.5)) if bool(live.any()) else float("nan"),
        "classes_mean": mean(classes),
        "index_mean": mean(index),
        "dead_fraction": float((~live).to(torch.float64).mean()),
        "nodes": int(hits.shape[1]),
    }


class MeasureActivity(Callback):
    """At the end of a fit, measure :func:`node_activity` on ``x``, ``y`` (the test set) and put
    it in the run's ``extra`` (``activity``: per layer), where :class:`RecordRun` (after this
    callback) stores it; ``self.result`` keeps it."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y
        self.result: dict[str, dict[str, float]] = {}

    def on_fit_end(self, state: FitState, result: FitResult) -> None:
        model = state.model
        if not isinstance(model, DendriticNet):
            return
        device = next(model.parameters()).device
        self.result = node_activity(model, self.x.to(device), self.y.to(device))
        state.extra.setdefault("run_extra", {})["activity"] = self.result
