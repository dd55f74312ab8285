"""Dendritic networks inside Stable-Baselines3: :class:`DendriticPolicy` for PPO (actor and
critic each a dendritic network) and :class:`DendriticDQNPolicy` for DQN (a dendritic Q-network).

Initialisation: SB3's orthogonal initialisation (``ortho_init=True``) rewrites ``nn.Linear`` and
``nn.Conv2d`` modules only. A :class:`~dendritic.nn.DendriticLayer` is neither, so it keeps its
own initialisation (the paper's Glorot over the dense shape, drawn from the network's seed);
the heads are ``nn.Linear`` and get SB3's orthogonal init (gain 0.01 for the action head, 1 for
the value head) exactly as in SB3's default policy. DQN's Q head is left at torch's default, as
SB3's own QNetwork is.

Target network: SB3 builds DQN's target as a second Q-network and copies the online one into it
with ``load_state_dict``; a dendritic layer keeps its wiring in persistent buffers, so the copy
takes the online network's wiring along with the weights (whatever seed the target was drawn from).
"""

from __future__ import annotations

from typing import Any

import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from torch import nn

from dendritic.rl.networks import NetworkPlan, build_extractor

__all__ = ["DendriticDQNPolicy", "DendriticExtractor", "DendriticPolicy", "DendriticQNetwork"]


def _plan_of(plan: NetworkPlan | dict[str, Any]) -> NetworkPlan:
    """A plan from itself or its dict (SB3 saves policy kwargs as plain data)."""
    if isinstance(plan, NetworkPlan):
        return plan
    data = dict(plan)
    data["hidden"] = tuple(data.get("hidden", ()))
    return NetworkPlan(**data)


class DendriticExtractor(nn.Module):
    """Actor and critic bodies for :class:`DendriticPolicy`: two dendritic networks over the same
    features (SB3's ``MlpExtractor`` interface: ``forward_actor``, ``forward_critic``)."""

    def __init__(self, feature_dim: int, plan: NetworkPlan, seed: int | None) -> None:
        super().__init__()
        self.policy_net = build_extractor(plan, feature_dim, seed=seed)
        self.value_net = build_extractor(plan, feature_dim, seed=None if seed is None else seed + 1)
        self.latent_dim_pi = self.latent_dim_vf = plan.somata

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return self.policy_net(features)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return self.value_net(features)


class DendriticPolicy(ActorCriticPolicy):
    """SB3's ``ActorCriticPolicy`` whose actor and critic are dendritic (or random-sparse)
    networks of ``plan`` (a :class:`~dendritic.rl.networks.NetworkPlan` or its dict);
    ``net_seed`` fixes their wiring and initial weights (the critic's from ``net_seed + 1``).
    Use it as ``PPO(DendriticPolicy, env, policy_kwargs={"plan": plan, "net_seed": 1})``."""

    def __init__(
        self, *args: Any, plan: NetworkPlan | dict[str, Any], net_seed: int | None = None, **kwargs: Any
    ) -> None:
        self.plan = _plan_of(plan)
        if not self.plan.is_dendritic:
            raise ValueError(f"DendriticPolicy takes a dendritic or sparse plan, not {self.plan.kind!r}")
        self.net_seed = net_seed
        super().__init__(*args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = DendriticExtractor(self.features_dim, self.plan, self.net_seed)  # type: ignore[assignment]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(plan=self.plan.to_dict(), net_seed=self.net_seed)
        return data


class DendriticQNetwork(QNetwork):
    """SB3's ``QNetwork`` with a dendritic (or random-sparse) body and a linear Q head."""

    def __init__(self, *args: Any, plan: NetworkPlan, net_seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        n_actions = int(self.action_space.n)
        self.q_net = nn.Sequential(
            build_extractor(plan, self.features_dim, seed=net_seed), nn.Linear(plan.somata, n_actions)
        )


class DendriticDQNPolicy(DQNPolicy):
    """SB3's ``DQNPolicy`` whose online and target Q-networks are :class:`DendriticQNetwork`
    (the target built from any seed, then given the online network's state, wiring included)."""

    def __init__(
        self, *args: Any, plan: NetworkPlan | dict[str, Any], net_seed: int | None = None, **kwargs: Any
    ) -> None:
        self.plan = _plan_of(plan)
        if not self.plan.is_dendritic:
            raise ValueError(f"DendriticDQNPolicy takes a dendritic or sparse plan, not {self.plan.kind!r}")
        self.net_seed = net_seed
        self._built = 0
        super().__init__(*args, **kwargs)

    def make_q_net(self) -> QNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        # The online network is drawn from net_seed; the target from a fresh seed: SB3 then copies
        # the online state into it, and the wiring must come along (a test checks that it does).
        seed = self.net_seed if self._built == 0 else None
        self._built += 1
        return DendriticQNetwork(**net_args, plan=self.plan, net_seed=seed).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(plan=self.plan.to_dict(), net_seed=self.net_seed)
        return data
