"""A dendritic policy for Stable-Baselines3: PPO on CartPole-v1 with the RL Zoo's hyperparameters.

The actor and the critic are each one ``DendriticLayer`` over the 4 observation features (random
receptive fields, 4 dendrites of 2 synapses per soma), at under 10 % of the parameters of SB3's
default 64 × 64 MLP, which is trained alongside for comparison. Needs the ``[rl]`` extra
(``pip install 'dendritic[rl]'``).

    python examples/rl_cartpole.py                 # 100,000 steps each: a few minutes on one core
    python examples/rl_cartpole.py --steps 20000 --seed 2
"""

from __future__ import annotations

import argparse

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from dendritic.rl import DendriticPolicy, plan_network
from dendritic.rl.zoo import get_setting


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # small networks: one thread is fastest
    zoo = get_setting("ppo", "CartPole-v1")  # n_envs 8, n_steps 32, batch 256, ... (lin_ schedules)
    plan = plan_network("dendritic", "ppo", "CartPole-v1")  # the largest dendritic net within 10 %
    policies = {
        "dendritic": (DendriticPolicy, {"plan": plan, "net_seed": args.seed}),
        "mlp": ("MlpPolicy", {}),
    }
    results = {}
    for name, (policy, policy_kwargs) in policies.items():
        env = make_vec_env("CartPole-v1", n_envs=zoo.n_envs, seed=args.seed)
        model = PPO(policy, env, policy_kwargs=policy_kwargs, seed=args.seed, device="cpu", **zoo.kwargs)
        model.learn(total_timesteps=args.steps)
        eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=args.seed + 1_000_000)
        mean, sd = evaluate_policy(model, eval_env, n_eval_episodes=args.episodes, deterministic=True)
        params = sum(p.numel() for p in model.policy.parameters() if p.requires_grad)
        results[name] = float(mean)
        print(f"{name:>9}: return {mean:.1f} ± {sd:.1f} after {args.steps:,} steps, {params:,} parameters")
    return results


if __name__ == "__main__":
    main()
