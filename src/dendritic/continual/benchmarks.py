"""Continual-learning benchmarks built from any dataset of the registry.

* **split**: the classes, in a seeded random order, cut into T tasks (Fashion-MNIST: 5 tasks of
  2 classes). ``class-il`` trains plainly on the current task and predicts with argmax over
  all K outputs; ``task-il`` masks the logits of classes outside the task to -inf, in training
  and at test.
* **permuted**: T tasks, each the whole dataset under its own fixed pixel permutation, one
  shared head (``domain-il``). Task 0 is the unpermuted data unless ``identity_first=False``.
* **sorted**: the paper's class-sorted stream (SPEC §4): one task per class in class order
  0..K-1, one shared head (``class-il``).

Class orders and permutations come from ``numpy`` generators seeded by the run seed (and, for
permutations, the task index), so they are reproducible and differ between seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = [
    "BENCHMARKS",
    "SCENARIOS",
    "Benchmark",
    "Task",
    "build_benchmark",
    "parse_benchmark",
    "resolve_scenario",
    "resolve_tasks",
    "split_classes",
    "task_permutation",
    "task_permutations",
]

BENCHMARKS = ("split", "permuted", "sorted")
SCENARIOS = ("class-il", "task-il", "domain-il")
#: Scenarios each benchmark supports; the first is its default.
ALLOWED_SCENARIOS: dict[str, tuple[str, ...]] = {
    "split": ("class-il", "task-il"),
    "permuted": ("domain-il",),
    "sorted": ("class-il",),
}
DEFAULT_TASKS = {"split": 5, "permuted": 5}

# SeedSequence entropy: the run seed, a constant naming this module's streams, and a purpose,
# so class orders and permutations never share a stream with wiring, weights or data splits.
_STREAM = 0xC1
_CLASS_ORDER, _PERMUTATION = 1, 2


def _rng(seed: int, purpose: int, *extra: int) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), _STREAM, purpose, *extra]))


def parse_benchmark(text: str, dataset: str | None = None) -> tuple[str, str | None]:
    """``"split"`` or ``"split-fmnist"`` (benchmark-dataset shorthand) → (benchmark, dataset).

    ``dataset`` given separately must agree with the shorthand's.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"unknown benchmark {text!r}; choose one of {', '.join(BENCHMARKS)}")
    kind, _, suffix = text.strip().lower().partition("-")
    if kind not in BENCHMARKS:
        raise ValueError(
            f"unknown benchmark {text!r}; choose one of {', '.join(BENCHMARKS)} "
            "(optionally with a dataset, e.g. split-fmnist)"
        )
    if not suffix:
        return kind, dataset
    from dendritic.data import canonical_name

    named = canonical_name(suffix)
    if dataset is not None and canonical_name(dataset) != named:
        raise ValueError(f"benchmark {text!r} names dataset {named!r} but --dataset is {dataset!r}")
    return kind, named


def resolve_scenario(benchmark: str, scenario: str | None) -> str:
    """The scenario to run (the benchmark's default for None), or ValueError if it does not apply."""
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose one of {', '.join(BENCHMARKS)}")
    allowed = ALLOWED_SCENARIOS[benchmark]
    if scenario is None:
        return allowed[0]
    name = str(scenario).strip().lower().replace("_", "-")
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    if name not in allowed:
        why = {
            "permuted": "permuted tasks share all classes, so there is nothing to mask",
            "sorted": "a one-class task would be solved by the mask alone",
        }.get(benchmark, "")
        raise ValueError(
            f"scenario {name} does not apply to the {benchmark} benchmark"
            + (f" ({why})" if why else "")
            + f"; use {' or '.join(allowed)}"
        )
    return name


def resolve_tasks(benchmark: str, tasks: int | None, n_classes: int) -> int:
    """Number of tasks: the benchmark's default for None; ValueError when impossible."""
    if tasks is not None and (isinstance(tasks, bool) or not isinstance(tasks, int) or tasks < 1):
        raise ValueError(f"tasks must be a positive integer, got {tasks!r}")
    if benchmark == "sorted":
        if tasks not in (None, n_classes):
            raise ValueError(f"the sorted stream has one task per class ({n_classes}); got tasks={tasks}")
        return n_classes
    if tasks is None:
        tasks = DEFAULT_TASKS[benchmark]
    if benchmark == "split" and tasks > n_classes:
        raise ValueError(f"cannot split {n_classes} classes into {tasks} tasks: more tasks than classes")
    if benchmark == "split" and tasks < 2:
        raise ValueError("a split benchmark needs at least 2 tasks")
    return tasks


def split_classes(n_classes: int, n_tasks: int, seed: int) -> tuple[tuple[int, ...], ...]:
    """Seeded class order cut into ``n_tasks`` disjoint tasks covering every class.

    Tasks differ in size by at most one class when ``n_classes`` is not a multiple (EMNIST's
    47 classes in 5 tasks: 10, 10, 9, 9, 9); classes are listed ascending within a task.
    """
    if n_tasks < 1 or n_tasks > n_classes:
        raise ValueError(f"cannot split {n_classes} classes into {n_tasks} tasks")
    order = _rng(seed, _CLASS_ORDER).permutation(n_classes)
    return tuple(tuple(sorted(int(c) for c in chunk)) for chunk in np.array_split(order, n_tasks))


def task_permutation(n_inputs: int, task: int, seed: int) -> np.ndarray:
    """Permutation of the flattened input (all channels) for one task; depends on (seed, task)."""
    return _rng(seed, _PERMUTATION, int(task)).permutation(n_inputs).astype(np.int64)


def task_permutations(
    n_inputs: int, n_tasks: int, seed: int, *, identity_first: bool = True
) -> list[np.ndarray]:
    """One permutation per task. Task t uses :func:`task_permutation` (seed, t), so the first
    five of a ten-task run are those of a five-task run; with ``identity_first`` task 0 is
    the identity (the original images)."""
    perms = [task_permutation(n_inputs, t, seed) for t in range(n_tasks)]
    if identity_first and perms:
        perms[0] = np.arange(n_inputs, dtype=np.int64)
    return perms


@dataclass(eq=False)
class Task:
    """One task of a benchmark: which samples, which classes, which input transformation."""

    index: int
    name: str
    classes: tuple[int, ...]
    train_idx: torch.Tensor
    test_idx: torch.Tensor
    permutation: torch.Tensor | None = None
    mask: torch.Tensor | None = None  # bool (K,): the classes a task-IL head may predict

    def describe(self) -> dict[str, Any]:
        """JSON-able description kept with the run."""
        out: dict[str, Any] = {
            "name": self.name,
            "classes": list(self.classes),
            "n_train": len(self.train_idx),
            "n_test": len(self.test_idx),
        }
        if self.permutation is not None:
            out["permuted"] = not bool(torch.equal(self.permutation, torch.arange(len(self.permutation))))
        return out


@dataclass(eq=False)
class Benchmark:
    """The tasks of one run over one prepared dataset (tensors are shared, never copied)."""

    kind: str
    scenario: str
    tasks: list[Task]
    n_classes: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tasks)

    def inputs(self, task: Task, x: torch.Tensor) -> torch.Tensor:
        """``x`` as task ``task`` presents it (pixel-permuted for permuted tasks)."""
        return x if task.permutation is None else x[:, task.permutation]

    def logits(self, task: Task, logits: torch.Tensor) -> torch.Tensor:
        """Task-IL: logits of classes outside the task set to -inf; otherwise unchanged."""
        if task.mask is None:
            return logits
        return logits.masked_fill(~task.mask, float("-inf"))

    def test_set(self, task: Task) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs(task, self.x_test[task.test_idx]), self.y_test[task.test_idx]

    def describe(self) -> list[dict[str, Any]]:
        return [t.describe() for t in self.tasks]


def _indices(labels: torch.Tensor, classes: tuple[int, ...]) -> torch.Tensor:
    return torch.nonzero(torch.isin(labels, torch.tensor(classes, dtype=labels.dtype))).flatten()


def build_benchmark(
    data: Any,
    benchmark: str,
    *,
    scenario: str | None = None,
    tasks: int | None = None,
    seed: int,
    identity_first: bool = True,
) -> Benchmark:
    """The tasks of ``benchmark`` over ``data`` (a :class:`dendritic.data.PreparedData`).

    Training uses ``data.x_train`` (the validation split stays untouched) and evaluation
    ``data.x_test``, restricted to each task's classes.
    """
    scenario = resolve_scenario(benchmark, scenario)
    n_classes = int(data.n_classes)
    n_tasks = resolve_tasks(benchmark, tasks, n_classes)
    y_train, y_test = data.y_train, data.y_test
    built: list[Task] = []
    meta: dict[str, Any] = {}
    if benchmark in ("split", "sorted"):
        if benchmark == "split":
            groups = split_classes(n_classes, n_tasks, seed)
        else:
            groups = tuple((c,) for c in range(n_classes))
        meta["class_order"] = [c for g in groups for c in g]
        for t, classes in enumerate(groups):
            mask = None
            if scenario == "task-il":
                mask = torch.zeros(n_classes, dtype=torch.bool)
                mask[list(classes)] = True
            name = f"classes {','.join(map(str, classes))}" if len(classes) > 1 else f"class {classes[0]}"
            built.append(
                Task(t, name, classes, _indices(y_train, classes), _indices(y_test, classes), mask=mask)
            )
    else:
        n_inputs = int(data.x_train.shape[1])
        perms = task_permutations(n_inputs, n_tasks, seed, identity_first=identity_first)
        everything = tuple(range(n_classes))
        for t, perm in enumerate(perms):
            name = "identity" if identity_first and t == 0 else f"permutation {t}"
            built.append(
                Task(
                    t,
                    name,
                    everything,
                    torch.arange(len(y_train)),
                    torch.arange(len(y_test)),
                    permutation=torch.from_numpy(perm),
                )
            )
        meta["identity_first"] = identity_first
    empty = [t.name for t in built if len(t.train_idx) == 0 or len(t.test_idx) == 0]
    if empty:
        raise ValueError(f"task(s) without training or test images: {', '.join(empty)}")
    return Benchmark(benchmark, scenario, built, n_classes, data.x_train, y_train, data.x_test, y_test, meta)
