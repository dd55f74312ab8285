"""Dendritic networks for reinforcement learning with Stable-Baselines3 (the ``[rl]`` extra).

``DendriticPolicy`` (PPO: actor and critic each a dendritic network) and ``DendriticDQNPolicy``
(DQN: a dendritic Q-network) plug into SB3; :func:`plan_network` sizes the study's four networks
(SB3's default MLP, dendritic at <= 10 % of its parameters, and a dense and a random-sparse MLP
at the dendritic network's parameters); :func:`run_rl` runs one (task, network, seed) of the
study with the RL Zoo's hyperparameters (:mod:`dendritic.rl.zoo`) and records it in the store;
:func:`run_many` runs many, in parallel processes if asked.

Names are imported on first use: ``import dendritic.rl`` loads neither torch nor SB3.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dendritic.rl.networks import NETWORKS, NetworkPlan, build_extractor, plan_network
    from dendritic.rl.policies import DendriticDQNPolicy, DendriticPolicy
    from dendritic.rl.run import RLConfig, RLResult, run_many, run_rl

_HOMES = {
    "NETWORKS": "dendritic.rl.networks",
    "NetworkPlan": "dendritic.rl.networks",
    "build_extractor": "dendritic.rl.networks",
    "plan_network": "dendritic.rl.networks",
    "DendriticPolicy": "dendritic.rl.policies",
    "DendriticDQNPolicy": "dendritic.rl.policies",
    "RLConfig": "dendritic.rl.run",
    "RLResult": "dendritic.rl.run",
    "run_many": "dendritic.rl.run",
    "run_rl": "dendritic.rl.run",
}

__all__ = [
    "NETWORKS",
    "DendriticDQNPolicy",
    "DendriticPolicy",
    "NetworkPlan",
    "RLConfig",
    "RLResult",
    "build_extractor",
    "plan_network",
    "run_many",
    "run_rl",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'dendritic.rl' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
