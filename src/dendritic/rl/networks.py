"""The study's networks for a policy (PPO: actor + critic) or a Q-network (DQN), sized per task:

- ``mlp``: SB3's default (the Zoo's hidden layers: 64 × 64 for PPO, 256 × 256 for DQN on Acrobot);
- ``dendritic``: one :class:`~dendritic.nn.DendriticLayer` per network over the observation (1-D
  random receptive fields: each dendrite samples ``synapses`` of the observation's features),
  the largest number of somata within ``budget`` (10 %) of ``mlp``'s parameters;
- ``dense``: an MLP of two equal hidden layers at the dendritic network's parameters;
- ``sparse``: the dendritic network's layers and connection counts, wired at random in both
  stages (random dendrite → soma cables: the paper's sANN) — sparsity without dendritic structure;
- ``mlp-leaky``: ``mlp`` with the dANNs' leaky ReLU (slope 0.1) in place of SB3's activation,
  and ``dendritic-tanh``: ``dendritic`` with tanh (SB3's PPO activation) at dendrites and somata —
  the two controls that separate the nonlinearity from the dendrites.

The counts are of the whole trainable policy (heads included) and match the built modules (a test
checks); nothing here imports Stable-Baselines3.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from dendritic.rl.zoo import get_setting

__all__ = [
    "NETWORKS",
    "SPACES",
    "LeakyReLU10",
    "NetworkPlan",
    "activation_of",
    "build_extractor",
    "plan_network",
]

NETWORKS = ("mlp", "dendritic", "dense", "sparse", "mlp-leaky", "dendritic-tanh")
#: Kinds sized as SB3's default MLP, and kinds built as a dendritic layer (sized by the budget).
MLP_KINDS = ("mlp", "mlp-leaky")
DENDRITIC_KINDS = ("dendritic", "sparse", "dendritic-tanh")

#: Observation features and discrete actions of each task (checked against gymnasium in the tests).
SPACES: dict[str, tuple[int, int]] = {"CartPole-v1": (4, 2), "Acrobot-v1": (6, 3), "LunarLander-v3": (8, 4)}

#: Dendrites per soma of the dendritic and sparse networks.
DENDRITES = 4


@dataclass(frozen=True)
class NetworkPlan:
    """One network kind at one (algorithm, task): its sizes and trainable parameters."""

    kind: str
    algo: str
    task: str
    params: int
    hidden: tuple[int, ...] = ()  #: mlp / dense: hidden widths
    somata: int = 0  #: dendritic / sparse: somata (the features the heads read)
    dendrites: int = 0
    synapses: int = 0

    @property
    def is_dendritic(self) -> bool:
        return self.kind in DENDRITIC_KINDS

    @property
    def latent(self) -> int:
        """Features the heads read."""
        return self.somata if self.is_dendritic else self.hidden[-1]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["hidden"] = list(self.hidden)
        return data


def _mlp_params(n_in: int, hidden: tuple[int, ...]) -> int:
    total, width = 0, n_in
    for h in hidden:
        total += width * h + h
        width = h
    return total


def _dendritic_params(somata: int, dendrites: int, synapses: int) -> int:
    """Synapses + dendrite biases + cable weights + soma biases (structured or random cables alike)."""
    return somata * dendrites * synapses + 2 * somata * dendrites + somata


def _heads(algo: str, latent: int, n_actions: int) -> int:
    """PPO: action and value heads; DQN: the Q head."""
    q_or_action = latent * n_actions + n_actions
    return q_or_action + (latent + 1 if algo == "ppo" else 0)


def _networks(algo: str) -> int:
    return 2 if algo == "ppo" else 1  # PPO's actor and critic are separate networks (SB3's default)


def _total(algo: str, n_actions: int, body: int, latent: int) -> int:
    return _networks(algo) * body + _heads(algo, latent, n_actions)


def plan_network(kind: str, algo: str, task: str, *, budget: float = 0.10) -> NetworkPlan:
    """The sizes of network ``kind`` for ``algo`` on ``task`` (see the module's docstring)."""
    if kind not in NETWORKS:
        raise ValueError(f"unknown network {kind!r}; choose one of {', '.join(NETWORKS)}")
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0.0 < budget <= 1.0:
        raise ValueError(f"budget must be in (0, 1], got {budget!r}")
    setting = get_setting(algo, task)
    n_in, n_actions = SPACES[task]
    hidden = tuple(setting.hidden)
    default = _total(algo, n_actions, _mlp_params(n_in, hidden), hidden[-1])
    if kind in MLP_KINDS:
        return NetworkPlan(kind, algo, task, default, hidden=hidden)
    synapses = max(2, n_in // 2)

    def dendritic_total(somata: int) -> int:
        return _total(algo, n_actions, _dendritic_params(somata, DENDRITES, synapses), somata)

    somata = 1
    while dendritic_total(somata + 1) <= budget * default:
        somata += 1
    target = dendritic_total(somata)
    if kind in DENDRITIC_KINDS:
        return NetworkPlan(kind, algo, task, target, somata=somata, dendrites=DENDRITES, synapses=synapses)

    def dense_total(width: int) -> int:
        return _total(algo, n_actions, _mlp_params(n_in, (width, width)), width)

    width = min(range(1, 4 * max(hidden) + 1), key=lambda w: (abs(dense_total(w) - target), w))
    return NetworkPlan(kind, algo, task, dense_total(width), hidden=(width, width))


class LeakyReLU10(nn.LeakyReLU):
    """The dANNs' leaky ReLU (slope 0.1) as a class that takes no arguments: SB3's
    ``activation_fn`` for the ``mlp-leaky`` control (and a name SB3 can save)."""

    def __init__(self) -> None:
        from dendritic.nn.layer import DEFAULT_SLOPE

        super().__init__(DEFAULT_SLOPE)


#: The controls' nonlinearity, in place of the default one (SB3's for MLPs, the paper's leaky
#: ReLU for dendritic layers).
_SWAPPED_ACTIVATION: dict[str, type[nn.Module]] = {"mlp-leaky": LeakyReLU10, "dendritic-tanh": nn.Tanh}


def activation_of(plan: NetworkPlan) -> type[nn.Module] | None:
    """The nonlinearity class of ``plan`` where it is not the default one (SB3's
    ``activation_fn`` for an MLP); None for the default."""
    return _SWAPPED_ACTIVATION.get(plan.kind)


def build_extractor(plan: NetworkPlan, n_in: int, *, seed: int | None) -> nn.Module:
    """The dendritic or sparse network body of ``plan`` over ``n_in`` features (``seed`` fixes its
    wiring and initial weights; the wiring lives in persistent buffers, so ``load_state_dict``
    carries it: DQN's target network gets the online network's wiring that way)."""
    from dendritic.nn import DendriticLayer

    if not plan.is_dendritic:
        raise ValueError(f"build_extractor builds the dendritic and sparse networks, not {plan.kind!r}")
    # None: the paper's leaky ReLU; another one runs part by part (the fused operators are for leaky ReLUs)
    swapped = activation_of(plan)
    activation = None if swapped is None else swapped()
    return DendriticLayer(
        n_in,
        somata=plan.somata,
        dendrites=plan.dendrites,
        synapses=min(plan.synapses, n_in),
        receptive_field="random",
        cables="random" if plan.kind == "sparse" else "structured",
        activation=activation,
        seed=seed,
    )
