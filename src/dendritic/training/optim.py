"""Adam with one C++ call per step on the CPU.

For a dANN of 76 k parameters the arithmetic of an Adam step takes tens of microseconds, while
``torch.optim.Adam.step`` spends about 0.4 ms in Python (grouping tensors, state bookkeeping,
hooks) on the project's 2 GHz machine: a tenth of a whole training step. :class:`Adam` keeps
torch's class (``param_groups``, ``state``, ``state_dict``, ``zero_grad``) and its formula, and
replaces only the per-step path when every parameter is a contiguous float CPU tensor with a
gradient and the C++ kernels are built; anything else falls back to torch's own step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from dendritic.layers.kernels import kernel_backend

__all__ = ["Adam"]


class Adam(torch.optim.Adam):
    """``torch.optim.Adam`` (no weight decay, no AMSGrad) with a C++ fast path on the CPU."""

    _static_ok: bool | None

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-7,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, foreach=False)
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
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        groups = self._fast_path() if closure is None and self._steps >= 0 else None
        if groups is None:
            if self._steps >= 0:  # leaving the fast path for good: torch's step counts from here
                self._sync_steps()
                self._steps = -1
            return super().step(closure)
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
            )
        return None

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
        self._steps = -1  # restored moments carry torch's step counts: let torch continue
        self._moment_cache.clear()
