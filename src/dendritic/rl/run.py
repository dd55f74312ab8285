"""One RL run of the study: an SB3 algorithm with the RL Zoo's hyperparameters, one network,
one seed; its learning curve (deterministic evaluation return vs environment steps) and final
return recorded in the run store, tagged with experiment ``rl``.

The same config and seed give the same returns: SB3 seeds Python, NumPy, torch and the
environments from the seed, the networks' wiring and initial weights come from it, the
evaluation environment is reseeded before every evaluation, and torch runs on one thread
(``threads``) unless told otherwise.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dendritic.errors import MissingDependencyError
from dendritic.rl.networks import NETWORKS, NetworkPlan, activation_of, plan_network
from dendritic.rl.zoo import THRESHOLDS, Linear, ZooSetting, get_setting
from dendritic.training.loop import MAX_THREADS as MAX_THREADS  # the bound run_rl checks
from dendritic.training.loop import check_threads

__all__ = ["EXPERIMENT", "RLConfig", "RLResult", "build_model", "require_rl", "run_many", "run_rl"]

log = logging.getLogger(__name__)

#: The experiment tag of the study's runs in the store.
EXPERIMENT = "rl"
#: The evaluation environment's seeds are the run's seed plus this (never a training seed).
EVAL_SEED_OFFSET = 1_000_000
#: Largest seed of a run: its environments' seeds (plus their index, and the evaluation's
#: offset) must stay below NumPy's 2**32.
MAX_SEED = 2**31 - 1


def require_rl() -> None:
    """A one-line error naming the extra when Stable-Baselines3 or gymnasium is missing."""
    import importlib.util

    for module in ("stable_baselines3", "gymnasium"):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(
                f"the RL study needs {module}: pip install 'dendritic[rl]' (stable-baselines3, gymnasium[box2d])"
            )


def _positive(name: str, value: Any, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class RLConfig:
    """What one run is: task, algorithm, network kind, seed, environment steps (None: the Zoo's
    budget), evaluation episodes per point, points on the learning curve, the dendritic network's
    parameter budget (fraction of SB3's default)."""

    task: str = "CartPole-v1"
    algo: str = "ppo"
    network: str = "dendritic"
    seed: int = 1
    steps: int | None = None
    eval_episodes: int = 5
    eval_points: int = 20
    budget: float = 0.10

    def __post_init__(self) -> None:
        get_setting(self.algo, self.task)
        if self.network not in NETWORKS:
            raise ValueError(f"unknown network {self.network!r}; choose one of {', '.join(NETWORKS)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer in [0, {MAX_SEED}], got {self.seed!r}")
        _positive("steps", self.steps, allow_none=True)
        _positive("eval_episodes", self.eval_episodes)
        _positive("eval_points", self.eval_points)
        if (
            isinstance(self.budget, bool)
            or not isinstance(self.budget, (int, float))
            or not 0.0 < self.budget <= 1.0
        ):
            raise ValueError(f"budget must be in (0, 1], got {self.budget!r}")

    @property
    def setting(self) -> ZooSetting:
        return get_setting(self.algo, self.task)

    @property
    def total_steps(self) -> int:
        return self.steps if self.steps is not None else self.setting.steps

    @property
    def plan(self) -> NetworkPlan:
        return plan_network(self.network, self.algo, self.task, budget=self.budget)

    def to_dict(self) -> dict[str, Any]:
        """The store's config: the run's identity, with the Zoo's setting and the network's sizes."""
        return {
            "experiment": EXPERIMENT,
            "model": self.network,
            "dataset": self.task,
            "algo": self.algo,
            "seed": self.seed,
            "steps": self.total_steps,
            "eval_episodes": self.eval_episodes,
            "eval_points": self.eval_points,
            "budget": self.budget,
            "zoo": self.setting.to_dict(),
            "plan": self.plan.to_dict(),
        }


@dataclass
class RLResult:
    """A run's learning curve (environment steps, mean and s.d. of the evaluation return), final
    return, parameters and times; ``run_id`` in the store (None without one); ``reused`` when the
    store already had it."""

    config: RLConfig
    steps: list[int] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)
    return_sds: list[float] = field(default_factory=list)
    params: int = 0
    wall_seconds: float = 0.0
    train_seconds: float = 0.0
    train_cpu_seconds: float = 0.0
    run_id: int | None = None
    reused: bool = False

    @property
    def final_return(self) -> float:
        return self.returns[-1] if self.returns else math.nan

    @property
    def final_sd(self) -> float:
        return self.return_sds[-1] if self.return_sds else math.nan

    @property
    def steps_to_threshold(self) -> float | None:
        from dendritic.analysis.rl import steps_to_threshold

        return steps_to_threshold(self.steps, self.returns, THRESHOLDS[self.config.task])

    def store_extra(self) -> dict[str, Any]:
        return {
            "final_return": self.final_return,
            "final_return_sd": self.final_sd,
            "train_seconds": self.train_seconds,
            "train_cpu_seconds": self.train_cpu_seconds,
            "steps_to_threshold": self.steps_to_threshold,
            "threshold": THRESHOLDS[self.config.task],
        }

    def summary(self) -> str:
        c = self.config
        reached = self.steps_to_threshold
        where = "not reached" if reached is None else f"at {reached:,.0f} steps"
        return (
            f"{c.algo.upper()} {c.task} {c.network} seed {c.seed}: final return {self.final_return:.1f} "
            f"± {self.final_sd:.1f} after {self.steps[-1] if self.steps else 0:,} steps; threshold "
            f"{THRESHOLDS[c.task]:g} {where}; {self.params:,} parameters; {self.train_seconds:.1f} s training"
        )


def _schedules(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The Zoo's ``Linear`` schedules as SB3's callables (progress remaining 1 → 0)."""
    return {k: (v.__call__ if isinstance(v, Linear) else v) for k, v in kwargs.items()}


def _make_env(config: RLConfig, *, n_envs: int, seed: int, training: bool) -> Any:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env = make_vec_env(config.task, n_envs=n_envs, seed=seed)
    if config.setting.normalize:
        gamma = float(config.setting.kwargs.get("gamma", 0.99))
        env = VecNormalize(env, gamma=gamma, training=training, norm_reward=training)
    return env


def build_model(config: RLConfig, env: Any) -> Any:
    """The SB3 algorithm of ``config`` on ``env`` with its network (seeded by the config)."""
    require_rl()
    from stable_baselines3 import DQN, PPO

    from dendritic.rl.policies import DendriticDQNPolicy, DendriticPolicy

    plan = config.plan
    algo_class = PPO if config.algo == "ppo" else DQN
    policy_kwargs: dict[str, Any]
    if plan.is_dendritic:
        policy: Any = DendriticPolicy if config.algo == "ppo" else DendriticDQNPolicy
        policy_kwargs = {"plan": plan, "net_seed": config.seed}
    else:
        policy = "MlpPolicy"
        hidden = list(plan.hidden)
        policy_kwargs = {"net_arch": {"pi": hidden, "vf": hidden} if config.algo == "ppo" else hidden}
        activation = activation_of(plan)
        if activation is not None:
            policy_kwargs["activation_fn"] = activation
    kwargs = _schedules(dict(config.setting.kwargs))
    return algo_class(
        policy, env, policy_kwargs=policy_kwargs, seed=config.seed, device="cpu", verbose=0, **kwargs
    )


def trainable_params(model: Any) -> int:
    """The policy's trainable parameters (DQN: the online Q-network; its target is a copy)."""
    from dendritic.models import count_parameters

    net = model.policy.q_net if hasattr(model.policy, "q_net") else model.policy
    return int(count_parameters(net))


class _Curve:
    """Evaluates the policy at step 0 and every ``total / points`` steps (deterministic actions,
    the evaluation environment reseeded each time, so every point sees the same episodes)."""

    def __init__(self, config: RLConfig, eval_env: Any, train_env: Any, recorder: Any) -> None:
        self.config, self.eval_env, self.train_env, self.recorder = config, eval_env, train_env, recorder
        self.steps: list[int] = []
        self.means: list[float] = []
        self.sds: list[float] = []
        self.eval_seconds = 0.0
        self.eval_cpu_seconds = 0.0
        self.every = max(1, config.total_steps // config.eval_points)

    def evaluate(self, model: Any, step: int) -> None:
        from stable_baselines3.common.evaluation import evaluate_policy
        from stable_baselines3.common.vec_env import sync_envs_normalization

        t0, c0 = time.perf_counter(), time.process_time()
        if self.config.setting.normalize:
            sync_envs_normalization(self.train_env, self.eval_env)
        self.eval_env.seed(self.config.seed + EVAL_SEED_OFFSET)
        got: Any = evaluate_policy(
            model, self.eval_env, n_eval_episodes=self.config.eval_episodes, deterministic=True, warn=False
        )
        mean, sd = float(got[0]), float(got[1])
        self.eval_seconds += time.perf_counter() - t0
        self.eval_cpu_seconds += time.process_time() - c0
        self.steps.append(int(step))
        self.means.append(float(mean))
        self.sds.append(float(sd))
        if self.recorder is not None:
            self.recorder.log_epoch(
                len(self.steps), steps=int(step), return_mean=float(mean), return_sd=float(sd)
            )
        log.info("%s %s seed %d: %d steps, return %.1f ± %.1f", self.config.network, self.config.task,
                 self.config.seed, step, mean, sd)  # fmt: skip

    def callback(self) -> Any:
        from stable_baselines3.common.callbacks import BaseCallback

        curve = self

        class _Evaluate(BaseCallback):
            def _on_step(self) -> bool:
                # The last point is taken after learn() returns: the final policy, after its last update.
                if len(curve.steps) * curve.every <= self.num_timesteps < curve.config.total_steps:
                    curve.evaluate(self.model, self.num_timesteps)
                return True

        return _Evaluate()


def _from_store(config: RLConfig, run: dict[str, Any], epochs: list[dict[str, Any]]) -> RLResult:
    return RLResult(
        config=config,
        steps=[int(e["steps"]) for e in epochs],
        returns=[float(e["return_mean"]) for e in epochs],
        return_sds=[float(e["return_sd"]) for e in epochs],
        params=int(run.get("trainable_params") or 0),
        wall_seconds=float(run.get("wall_seconds") or 0.0),
        train_seconds=float((run.get("extra") or {}).get("train_seconds") or 0.0),
        train_cpu_seconds=float((run.get("extra") or {}).get("train_cpu_seconds") or 0.0),
        run_id=int(run["id"]),
        reused=True,
    )


def run_rl(
    config: RLConfig, *, store: Any = None, replace: bool = False, threads: int | None = 1
) -> RLResult:
    """Train and evaluate one run (see the module's docstring); with ``store``, record it there
    (a finished run of the same config is returned as it is unless ``replace``)."""
    import os

    if isinstance(store, (str, bytes, os.PathLike)):
        raise ValueError(
            f"store takes an open RunStore (dendritic.store.RunStore(path)), not a path: {store!r}"
        )
    if replace and store is None:
        raise ValueError("replace=True re-runs a run of the store: it needs a store")
    check_threads(threads)  # the bound every training run has (OpenMP dies far above it)
    require_rl()
    import contextlib

    import torch

    if store is not None and not replace:
        found = store.find(config.to_dict())
        if found is not None and found["status"] == "finished":
            return _from_store(config, found, store.epochs(found["id"]))
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        env = _make_env(config, n_envs=config.setting.n_envs, seed=config.seed, training=True)
        eval_env = _make_env(config, n_envs=1, seed=config.seed + EVAL_SEED_OFFSET, training=False)
        model = build_model(config, env)
        params = trainable_params(model)
        meta = {"experiment": EXPERIMENT, "trainable_params": params, "device": "cpu"}
        recording = (
            store.record(config.to_dict(), meta=meta, replace=replace)
            if store is not None
            else contextlib.nullcontext()
        )
        with recording as recorder:
            curve = _Curve(config, eval_env, env, recorder)
            curve.evaluate(model, 0)
            model.learn(total_timesteps=config.total_steps, callback=curve.callback())
            curve.evaluate(model, model.num_timesteps)
            wall = time.perf_counter() - t0
            result = RLResult(
                config=config,
                steps=curve.steps,
                returns=curve.means,
                return_sds=curve.sds,
                params=params,
                wall_seconds=wall,
                train_seconds=wall - curve.eval_seconds,
                train_cpu_seconds=time.process_time() - c0 - curve.eval_cpu_seconds,
                run_id=None if recorder is None else recorder.id,
            )
            if recorder is not None:
                recorder.finish(wall_seconds=wall, extra=result.store_extra())
        env.close()
        eval_env.close()
        return result
    finally:
        torch.set_num_threads(old_threads)


def _pool_run(task: tuple[RLConfig, str | None, bool, int | None]) -> RLResult:
    """One run in a worker process of :func:`run_many`, with its own connection to the store."""
    config, path, replace, threads = task
    if path is None:
        return run_rl(config, threads=threads)
    from dendritic.store import RunStore

    with RunStore(path) as store:
        return run_rl(config, store=store, replace=replace, threads=threads)


def run_many(
    configs: Sequence[RLConfig],
    *,
    store: Any = None,
    workers: int = 1,
    replace: bool = False,
    threads: int | None = 1,
) -> Iterator[RLResult]:
    """:func:`run_rl` for every config, yielding each result as its run ends: in this process
    with ``workers=1`` (in order), else in ``workers`` processes of ``threads`` torch threads
    each (in the order they end), every process recording its runs in ``store``'s file through a
    connection of its own (the store takes concurrent writers; a run is started at most once).
    The first run that raises stops the others (their rows say interrupted) and re-raises."""
    from dendritic.nn.spec import check_int
    from dendritic.sweeps.backends import MAX_WORKERS, process_map

    check_int("workers", workers, maximum=MAX_WORKERS)
    if workers == 1 or len(configs) <= 1:
        for config in configs:
            yield run_rl(config, store=store, replace=replace, threads=threads)
        return
    if replace and store is None:
        raise ValueError("replace=True re-runs a run of the store: it needs a store")
    check_threads(threads)
    require_rl()
    path = None if store is None else os.fspath(store.path)
    tasks = [(config, path, replace, threads) for config in configs]
    # a run in flight when another raises dies with its process: the store reports it interrupted
    yield from process_map(_pool_run, tasks, workers, ordered=False)


def with_seed(config: RLConfig, seed: int) -> RLConfig:
    """The same run at another seed."""
    return replace(config, seed=seed)
