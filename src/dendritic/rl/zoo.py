"""The RL Zoo's tuned hyperparameters for the study's tasks, in our own form.

Source: the Stable-Baselines3 RL Zoo (DLR-RM/rl-baselines3-zoo, MIT licence), files
``hyperparams/ppo.yml`` and ``hyperparams/dqn.yml``: PPO on CartPole-v1, LunarLander (the Zoo
lists ``LunarLander-v2``; v3 is the same task with Box2D fixes) and Acrobot-v1, and DQN on
Acrobot-v1. Only the numbers are taken; a schedule ``lin_X`` of the Zoo (X decaying linearly to 0
over training) is written ``Linear(X)`` here. Nothing here imports Stable-Baselines3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ALGOS", "SETTINGS", "TASKS", "THRESHOLDS", "Linear", "ZooSetting", "get_setting"]

ALGOS = ("ppo", "dqn")


@dataclass(frozen=True)
class Linear:
    """A value decaying linearly from ``start`` to 0 over training (the Zoo's ``lin_start``)."""

    start: float

    def __call__(self, progress_remaining: float) -> float:
        return progress_remaining * self.start

    def to_json(self) -> str:
        return f"lin_{self.start:g}"


@dataclass(frozen=True)
class ZooSetting:
    """One (algorithm, task) of the Zoo: environment copies, budget, VecNormalize, the default
    network's hidden layers, and the algorithm's keyword arguments."""

    algo: str
    task: str
    n_envs: int
    steps: int
    hidden: tuple[int, ...]  #: the Zoo's network for this pair (SB3's default 64 × 64 unless set)
    kwargs: dict[str, Any] = field(default_factory=dict)
    normalize: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (schedules as the Zoo writes them), for the store's config."""
        return {
            "n_envs": self.n_envs,
            "normalize": self.normalize,
            "hidden": list(self.hidden),
            **{k: (v.to_json() if isinstance(v, Linear) else v) for k, v in sorted(self.kwargs.items())},
        }


SETTINGS: dict[tuple[str, str], ZooSetting] = {
    ("ppo", "CartPole-v1"): ZooSetting(
        "ppo", "CartPole-v1", n_envs=8, steps=100_000, hidden=(64, 64),
        kwargs={"n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20,
                "ent_coef": 0.0, "learning_rate": Linear(0.001), "clip_range": Linear(0.2)},
    ),
    ("ppo", "LunarLander-v3"): ZooSetting(
        "ppo", "LunarLander-v3", n_envs=16, steps=1_000_000, hidden=(64, 64),
        kwargs={"n_steps": 1024, "batch_size": 64, "gae_lambda": 0.98, "gamma": 0.999, "n_epochs": 4,
                "ent_coef": 0.01},
    ),
    ("ppo", "Acrobot-v1"): ZooSetting(
        "ppo", "Acrobot-v1", n_envs=16, steps=1_000_000, hidden=(64, 64), normalize=True,
        kwargs={"n_steps": 256, "gae_lambda": 0.94, "gamma": 0.99, "n_epochs": 4, "ent_coef": 0.0},
    ),
    ("dqn", "Acrobot-v1"): ZooSetting(
        "dqn", "Acrobot-v1", n_envs=1, steps=100_000, hidden=(256, 256),
        kwargs={"learning_rate": 6.3e-4, "batch_size": 128, "buffer_size": 50_000, "learning_starts": 0,
                "gamma": 0.99, "target_update_interval": 250, "train_freq": 4, "gradient_steps": -1,
                "exploration_fraction": 0.12, "exploration_final_eps": 0.1},
    ),
}  # fmt: skip

#: Tasks of the study, and the return that counts as solved (steps to threshold).
THRESHOLDS: dict[str, float] = {"CartPole-v1": 475.0, "Acrobot-v1": -100.0, "LunarLander-v3": 200.0}
TASKS = tuple(THRESHOLDS)


def get_setting(algo: str, task: str) -> ZooSetting:
    """The Zoo's setting of ``algo`` on ``task``, else a one-line ValueError naming the pairs."""
    if algo not in ALGOS:
        raise ValueError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGOS)}")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    try:
        return SETTINGS[(algo, task)]
    except KeyError:
        pairs = ", ".join(f"{a} {t}" for a, t in SETTINGS)
        raise ValueError(f"no Zoo setting for {algo} on {task}; the study has {pairs}") from None
