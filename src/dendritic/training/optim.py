"""Adam in the paper's form (Keras's) or torch's, with one C++ call per step on the CPU.

The two forms differ in where ε goes. The paper's code uses Keras 3's Adam, which adds ε to the
*uncorrected* √v: ``p -= lr·√(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε)``; torch adds it to the
bias-corrected √v̂: ``p -= lr/(1−β1ᵗ) · m / (√v̂ + ε)``. Keras's is torch's with
ε_t = ε / √(1−β2ᵗ) (3.2e-6 at step 1 for ε = 1e-7), which matters early in training: five steps of
the official model and ours agree to ~1e-6 with Keras's form and differ by up to 1e-3 with torch's.
:data:`OPTIMIZERS` names them; ``adam-keras`` is the paper's protocol's default.

For a dANN of 76 k parameters the arithmetic of an Adam step takes tens of microseconds, while
``torch.optim.Adam.step`` spends about 0.4 ms in Python (grouping tensors, state bookkeeping,
hooks): a tenth of a whole training step. :class:`Adam` keeps torch's class (``param_groups``,
``state``, ``state_dict``, ``zero_grad``) and replaces the per-step path by one C++ call when
every parameter is a contiguous float CPU tensor with a gradient and the C++ kernels are built;
anything else falls back to a Python step of the same form (torch's own, for torch's form).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from dendritic.layers.kernels import kernel_backend

__all__ = ["FORMS", "OPTIMIZERS", "Adam", "form_of", "make_optimizer", "optimizer_of"]

#: Adam's forms: "keras" (the paper's, ε on the uncorrected √v) and "torch".
FORMS = ("keras", "torch")
#: Optimizer names of the protocol (``TrainConfig.optimizer``, ``--optimizer``) → Adam's form.
OPTIMIZERS = {"adam-keras": "keras", "adam-torch": "torch"}
#: Runs recorded before the optimizer was a config field used torch's form.
LEGACY_OPTIMIZER = "adam-torch"


def form_of(optimizer: str) -> str:
    """``"adam-keras"`` → ``"keras"``; an unknown name is a one-line error listing the valid ones."""
    if optimizer not in OPTIMIZERS:
        valid = "adam-keras (the paper's Keras Adam, the default), adam-torch (torch's Adam)"
        raise ValueError(f"unknown optimizer {optimizer!r}; valid optimizers: {valid}")
    return OPTIMIZERS[optimizer]


def optimizer_of(config: dict[str, Any]) -> str:
    """The optimizer a stored run used: its config's ``optimizer``, or torch's Adam for runs
    recorded before the field existed."""
    value = config.get("optimizer")
    return value if isinstance(value, str) else LEGACY_OPTIMIZER


class Adam(torch.optim.Adam):
    """Adam (no weight decay, no AMSGrad) in Keras's or torch's form, one C++ call per step on
    the CPU. ``form`` is ``"keras"`` (the paper's) or ``"torch"``; with ``"torch"`` the numbers are
    ``torch.optim.Adam``'s."""

    _static_ok: bool | None

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-7,
        *,
        form: str = "keras",
    ) -> None:
        if form not in FORMS:
            raise ValueError(f"unknown Adam form {form!r}; use one of {', '.join(FORMS)}")
        super().__init__(params, lr=lr, betas=betas, eps=eps, foreach=False)
        self.defaults["form"] = form
        for group in self.param_groups:
            group.setdefault("form", form)
        self._steps = 0  # steps taken by the fast path (state["step"] is synced on demand)
        self._static_ok = None
        self._moment_cache: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}

    def _fast_path(self) -> list[tuple[list[torch.Tensor], list[torch.Tensor], dict[str, Any]]] | None:
        """Per group (params, grads, group) when the C++ step applies now, else None.

        What cannot change between steps (dtype, device, layout, the group's options) is checked
        once; only the gradients are looked at every step.
        """
        if not self._static_checks():
            return None
        groups = []
        for group in self.param_groups:
            params = group["params"]
            grads = [p.grad for p in params]
            for p, g in zip(params, grads, strict=True):
                if g is None or g.dtype != p.dtype or g.is_sparse or not g.is_contiguous():
                    return None
            groups.append((params, grads, group))
        return groups

    def _static_checks(self) -> bool:
        if self._static_ok is None:
            self._static_ok = kernel_backend() == "cpp" and all(
                not (g["weight_decay"] or g["amsgrad"] or g["maximize"] or g.get("differentiable"))
                and all(
                    p.is_cpu and p.dtype in (torch.float32, torch.float64) and p.is_contiguous()
                    for p in g["params"]
                )
                for g in self.param_groups
            )
        return self._static_ok

    def fused_state(
        self, params: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], int, dict[str, Any]] | None:
        """(exp_avgs, exp_avg_sqs, steps taken, group) for ``params`` in that order, when this
        optimizer's one group holds exactly them and the C++ step applies; else None.

        For training loops that run whole steps in C++ (``layers.kernels.train_steps_t``); they
        call :meth:`advance` with the number of steps they took.
        """
        if self._steps < 0 or len(self.param_groups) != 1 or not self._static_checks():
            return None
        # The group carries its form ("keras"/"torch"), which the C++ whole steps apply.
        group = self.param_groups[0]
        if len(group["params"]) != len(params) or {id(p) for p in group["params"]} != {id(p) for p in params}:
            return None
        return (*self._moments_of(params), self._steps, group)

    def advance(self, steps: int) -> None:
        """Count ``steps`` steps taken outside :meth:`step` with the moments of :meth:`fused_state`."""
        if self._steps < 0:
            raise RuntimeError("this optimizer has left the fast path; its steps are torch's")
        self._steps += int(steps)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        self._static_ok = None  # a new group: check the fast path's conditions again
        if getattr(self, "_steps", 0) > 0:
            # The fast path keeps one step count for all parameters; the new ones start at zero,
            # so torch's per-parameter counts take over from here.
            self._sync_steps()
            self._steps = -1

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As torch's, without its per-call profiling and bookkeeping (``set_to_none`` default)."""
        if not set_to_none:
            return super().zero_grad(set_to_none=False)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None
        return None

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        groups = self._fast_path() if closure is None and self._steps >= 0 else None
        if groups is None:
            if self._steps >= 0:  # leaving the fast path for good: per-parameter counts from here
                self._sync_steps()
                self._steps = -1
            if all(group["form"] == "torch" for group in self.param_groups):
                return super().step(closure)
            return self._python_step(closure)
        self._steps += 1
        ops = torch.ops.dendritic
        for params, grads, group in groups:
            exp_avgs, exp_avg_sqs = self._moment_lists(params)
            beta1, beta2 = group["betas"]
            ops.adam_step_(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                self._steps,
                float(group["lr"]),
                float(beta1),
                float(beta2),
                float(group["eps"]),
                group["form"] == "keras",
            )
        return None

    def _python_step(self, closure: Any = None) -> Any:
        """One step of each group's form in plain PyTorch (any device, any dtype); per-parameter
        step counts in ``state["step"]``, as torch's Adam keeps them."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                exp_avg, exp_avg_sq = self._moments(p)
                state = self.state[p]
                state["step"] += 1
                step = float(state["step"])
                grad = p.grad
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                bc1, bc2 = 1 - beta1**step, 1 - beta2**step
                if group["form"] == "keras":
                    denom = exp_avg_sq.sqrt().add_(group["eps"])
                    p.addcdiv_(exp_avg, denom, value=-group["lr"] * bc2**0.5 / bc1)
                else:
                    denom = (exp_avg_sq.sqrt() / bc2**0.5).add_(group["eps"])
                    p.addcdiv_(exp_avg, denom, value=-group["lr"] / bc1)
        return loss

    def _moment_lists(self, params: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        key = id(params)
        if key not in self._moment_cache:
            self._moment_cache[key] = self._moments_of(params)
        return self._moment_cache[key]

    def _moments_of(self, params: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(exp_avgs, exp_avg_sqs) of ``params``, in their order."""
        moments = [self._moments(p) for p in params]
        return [m for m, _ in moments], [v for _, v in moments]

    def _moments(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state = self.state[p]
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
            state["step"] = torch.tensor(0.0)
        return state["exp_avg"], state["exp_avg_sq"]

    def _sync_steps(self) -> None:
        """Write the fast path's step count into ``state["step"]``, as torch's Adam keeps it."""
        if self._steps > 0:
            for state in self.state.values():
                if "step" in state:
                    state["step"].fill_(float(self._steps))

    def state_dict(self) -> dict[str, Any]:
        self._sync_steps()
        return super().state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # a state dict of torch's own Adam has no form
            group.setdefault("form", self.defaults["form"])
        self._steps = -1  # restored moments carry torch's step counts: let torch continue
        self._moment_cache.clear()


def make_optimizer(model: torch.nn.Module, lr: float, optimizer: str = "adam-keras") -> torch.optim.Optimizer:
    """The paper's Adam (β 0.9/0.999, ε 1e-7) in the form ``optimizer`` names: ``"adam-keras"``
    (the paper's code: ε on the uncorrected √v) or ``"adam-torch"``.

    :class:`Adam` on the CPU (one C++ call per step where the kernels are built) and for Keras's
    form everywhere; torch's fused implementation for torch's form off the CPU, where it has one.
    """
    form = form_of(optimizer)
    kwargs: dict[str, Any] = {"lr": lr, "betas": (0.9, 0.999), "eps": 1e-7}
    on_cpu = all(p.is_cpu for p in model.parameters())
    if form == "keras" or (on_cpu and kernel_backend() == "cpp"):
        return Adam(model.parameters(), form=form, **kwargs)
    try:
        return torch.optim.Adam(model.parameters(), fused=True, **kwargs)
    except (TypeError, RuntimeError):  # torch < 2.4, or an unsupported device
        return torch.optim.Adam(model.parameters(), **kwargs)
