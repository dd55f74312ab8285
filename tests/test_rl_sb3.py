"""dendritic.rl with the ``[rl]`` extra (skipped without it): dendritic policies inside
Stable-Baselines3 (orthogonal init, DQN's target wiring, seeding, save/load), runs in the store,
the command line and the figure. Everything runs on a few hundred environment steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dendritic.rl.networks import NETWORKS, SPACES, build_extractor, plan_network
from dendritic.rl.zoo import SETTINGS, get_setting

sb3 = pytest.importorskip("stable_baselines3")
gym = pytest.importorskip("gymnasium")

from dendritic.rl.policies import DendriticDQNPolicy, DendriticPolicy  # noqa: E402
from dendritic.rl.run import RLConfig, build_model, run_rl, trainable_params  # noqa: E402


def test_spaces_are_gymnasiums():
    for task, (n_in, n_actions) in SPACES.items():
        if task.startswith("LunarLander"):
            pytest.importorskip("Box2D")
        env = gym.make(task)
        assert (env.observation_space.shape, env.action_space.n) == ((n_in,), n_actions)
        env.close()


@pytest.mark.parametrize("algo,task", list(SETTINGS))
@pytest.mark.parametrize("network", NETWORKS)
def test_built_models_have_the_planned_parameters(algo, task, network):
    if task.startswith("LunarLander"):
        pytest.importorskip("Box2D")
    from stable_baselines3.common.env_util import make_vec_env

    config = RLConfig(task=task, algo=algo, network=network)
    model = build_model(config, make_vec_env(task, n_envs=get_setting(algo, task).n_envs, seed=0))
    assert trainable_params(model) == config.plan.params


def test_ppo_policy_keeps_dendritic_init_and_ortho_inits_the_heads():
    from stable_baselines3.common.env_util import make_vec_env

    from dendritic.nn import DendriticLayer

    config = RLConfig(network="dendritic", seed=5)
    model = build_model(config, make_vec_env("CartPole-v1", n_envs=8, seed=0))
    policy = model.policy
    assert isinstance(policy, DendriticPolicy)
    actor = policy.mlp_extractor.policy_net
    assert isinstance(actor, DendriticLayer)
    fresh = build_extractor(config.plan, 4, seed=5)  # SB3's ortho init left the layer as drawn
    for name, value in fresh.state_dict().items():
        torch.testing.assert_close(actor.state_dict()[name], value)
    w = policy.action_net.weight.detach()  # orthogonal, gain 0.01: rows orthonormal × 0.01
    torch.testing.assert_close(w @ w.T, 1e-4 * torch.eye(w.shape[0]), atol=1e-7, rtol=1e-4)
    critic = policy.mlp_extractor.value_net
    assert not torch.equal(critic.dendrite_linear.indices, actor.dendrite_linear.indices)


def test_dqn_target_gets_the_online_wiring():
    from stable_baselines3.common.env_util import make_vec_env

    config = RLConfig(task="Acrobot-v1", algo="dqn", network="dendritic", seed=2)
    model = build_model(config, make_vec_env("Acrobot-v1", n_envs=1, seed=0))
    assert isinstance(model.policy, DendriticDQNPolicy)
    online, target = model.policy.q_net.q_net[0], model.policy.q_net_target.q_net[0]
    stranger = build_extractor(config.plan, 6, seed=12345)  # another seed draws another wiring
    assert not torch.equal(stranger.dendrite_linear.indices, online.dendrite_linear.indices)
    for part in ("dendrite_linear", "soma_linear"):
        for buffer in ("indices", "offsets", "weight", "bias"):
            torch.testing.assert_close(
                getattr(getattr(target, part), buffer), getattr(getattr(online, part), buffer)
            )
    x = torch.randn(7, 6)
    torch.testing.assert_close(model.policy.q_net_target(x), model.policy.q_net(x))


def test_sparse_network_wires_cables_at_random():
    plan = plan_network("sparse", "ppo", "CartPole-v1")
    layer = build_extractor(plan, 4, seed=1)
    assert layer.spec.cables == "random"


def _tiny(**overrides):
    values = {"steps": 512, "eval_episodes": 2, "eval_points": 2, **overrides}
    return RLConfig(**values)


def test_same_seed_same_returns_and_the_store_records_the_run(tmp_path):
    from dendritic.store import RunStore

    config = _tiny(network="dendritic", seed=3)
    first = run_rl(config)
    second = run_rl(config)
    assert first.steps == second.steps and first.returns == second.returns
    assert first.steps[0] == 0 and first.steps[-1] >= 512 and len(first.steps) == 3
    with RunStore(tmp_path / "runs.db") as store:
        result = run_rl(config, store=store)
        assert result.returns == first.returns and result.run_id is not None
        runs = store.list_runs(experiment="rl", status="finished")
        assert [r["id"] for r in runs] == [result.run_id]
        run = runs[0]
        assert (run["model"], run["dataset"], run["seed"]) == ("dendritic", "CartPole-v1", 3)
        assert run["trainable_params"] == config.plan.params
        assert run["extra"]["final_return"] == first.returns[-1] and run["extra"]["train_seconds"] > 0
        assert run["extra"]["train_cpu_seconds"] > 0
        epochs = store.epochs(result.run_id)
        assert [e["steps"] for e in epochs] == first.steps
        assert [e["return_mean"] for e in epochs] == first.returns
        again = run_rl(config, store=store)
        assert again.reused and again.returns == first.returns


def test_dqn_run_is_repeatable():
    config = _tiny(task="Acrobot-v1", algo="dqn", network="dendritic", steps=300, eval_episodes=1, seed=4)
    assert run_rl(config).returns == run_rl(config).returns


def test_dendritic_ppo_saves_and_loads(tmp_path):
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    model = build_model(_tiny(network="sparse", seed=6), make_vec_env("CartPole-v1", n_envs=8, seed=0))
    model.save(tmp_path / "ppo")
    loaded = PPO.load(tmp_path / "ppo", device="cpu")
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(
        model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )


@pytest.mark.parametrize("algo,task", [("ppo", "Acrobot-v1"), ("dqn", "Acrobot-v1")])
def test_mlp_leaky_is_the_default_mlp_with_the_danns_leaky_relu(algo, task, tmp_path):
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.env_util import make_vec_env

    def modules(model):
        return [m for m in model.policy.modules() if not list(m.children())]

    env = make_vec_env(task, n_envs=get_setting(algo, task).n_envs, seed=0)
    leaky = build_model(RLConfig(task=task, algo=algo, network="mlp-leaky", seed=3), env)
    mlp = build_model(RLConfig(task=task, algo=algo, network="mlp", seed=3), env)
    acts = [m for m in modules(leaky) if not isinstance(m, (torch.nn.Linear, torch.nn.Flatten))]
    assert all(isinstance(m, torch.nn.LeakyReLU) and m.negative_slope == 0.1 for m in acts)
    assert not any(isinstance(m, torch.nn.Tanh) for m in modules(leaky))
    assert any(isinstance(m, torch.nn.Tanh if algo == "ppo" else torch.nn.ReLU) for m in modules(mlp))
    # the same shapes, so the same parameter count; only the nonlinearity differs
    assert [p.shape for p in leaky.policy.parameters()] == [p.shape for p in mlp.policy.parameters()]
    leaky.save(tmp_path / "leaky")  # SB3 saves activation_fn by name: the class must load back
    loaded = (PPO if algo == "ppo" else DQN).load(tmp_path / "leaky", device="cpu")
    obs = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    np.testing.assert_array_equal(
        leaky.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )


def test_dendritic_tanh_differs_from_dendritic_only_in_its_nonlinearity():
    plan, tanh_plan = (
        plan_network("dendritic", "ppo", "Acrobot-v1"),
        plan_network("dendritic-tanh", "ppo", "Acrobot-v1"),
    )
    assert tanh_plan.params == plan.params and tanh_plan.somata == plan.somata
    leaky, tanh = build_extractor(plan, 6, seed=7), build_extractor(tanh_plan, 6, seed=7)
    for name, value in leaky.state_dict().items():  # the same wiring and initial weights
        torch.testing.assert_close(tanh.state_dict()[name], value)
    assert isinstance(tanh.dendrite_activation, torch.nn.Tanh) and isinstance(
        tanh.soma_activation, torch.nn.Tanh
    )
    x = torch.randn(9, 6)
    with torch.no_grad():
        d = torch.tanh(tanh.dendrite_linear(x))
        torch.testing.assert_close(tanh(x), torch.tanh(tanh.soma_linear(d)))


def test_bad_configs_are_one_line_errors():
    for kwargs, match in (({"network": "cnn"}, "unknown network"), ({"steps": 0}, "steps must be"),
                          ({"seed": -1}, "seed must be"), ({"budget": 2.0}, "budget must be"),
                          ({"algo": "dqn"}, "no Zoo setting")):  # fmt: skip
        with pytest.raises(ValueError, match=match) as err:
            RLConfig(**kwargs)
        assert "\n" not in str(err.value)


def test_cli_run_networks_summary(tmp_path, capsys):
    from dendritic.cli import main

    store = tmp_path / "runs.db"
    args = ["rl", "run", "--network", "mlp,dendritic", "--seeds", "1-2", "--steps", "256",
            "--eval-episodes", "1", "--eval-points", "2", "--store", str(store), "--quiet"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("CartPole-v1") == 4 and "parameters" in out
    assert main(["rl", "networks", "--task", "CartPole-v1"]) == 0
    table = capsys.readouterr().out
    assert "| ppo | CartPole-v1 | mlp | 9,155 | 100.0 |" in table and "| dendritic |" in table
    assert main(["rl", "summary", "--store", str(store), "--out", str(tmp_path / "out")]) == 0
    summary = capsys.readouterr().out
    assert "| ppo | CartPole-v1 | dendritic | 2 |" in summary
    assert (tmp_path / "out" / "rl-learning-curves.png").stat().st_size > 0
    assert (tmp_path / "out" / "rl-summary.csv").read_text().startswith("algo,task,network,seeds")


def test_parallel_runs_record_what_one_process_does(tmp_path, capsys):
    """--workers 2: each process records its runs in the one store; the returns are those of the
    same runs made one after another (same seeds, one thread each)."""
    from dendritic.cli import main
    from dendritic.rl.run import run_many
    from dendritic.store import RunStore

    common = ["rl", "run", "--network", "mlp,dendritic", "--seeds", "1-2", "--steps", "256",
              "--eval-episodes", "1", "--eval-points", "2", "--quiet"]  # fmt: skip
    returns = {}
    for workers in (1, 2):
        store = tmp_path / f"runs{workers}.db"
        assert main([*common, "--workers", str(workers), "--store", str(store), "--json"]) == 0
        lines = [__import__("json").loads(line) for line in capsys.readouterr().out.splitlines()]
        assert len(lines) == 4 and not any(line["reused"] for line in lines)
        with RunStore(store, readonly=True) as s:
            runs = s.list_runs(experiment="rl", status="finished")
            assert len(runs) == 4  # recorded here, or by the worker processes
            assert {r["pid"] == __import__("os").getpid() for r in runs} == {workers == 1}
            returns[workers] = {(r["model"], r["seed"]): r["extra"]["final_return"] for r in runs}
    assert returns[1] == returns[2]
    with pytest.raises(ValueError, match=r"workers must be an integer in \[1, 256\], got 0"):
        next(run_many([_tiny()], workers=0))


@pytest.mark.parametrize(
    "args,message",
    [
        (["rl", "run", "--task", "Pong-v5"], "unknown task 'Pong-v5'"),
        (["rl", "run", "--network", "mlp,cnn"], "unknown network 'cnn'"),
        (["rl", "run", "--seeds", "3-1"], "--seeds takes"),
        (["rl", "run", "--algo", "dqn"], "no Zoo setting for dqn on CartPole-v1"),
        (["rl", "networks", "--task", "Pong-v5"], "no Zoo setting"),
    ],
)
def test_cli_bad_arguments_are_one_line_errors(args, message, capsys, tmp_path):
    from dendritic.cli import main

    assert main([*args, "--store", str(tmp_path / "x.db")] if args[1] == "run" else args) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "x.db").exists()


def test_figure_spec_draws_from_a_store(tmp_path):
    pytest.importorskip("matplotlib")
    from dendritic.figures.specs import FIGURES, Skip
    from dendritic.report.runs import load_runs
    from dendritic.store import RunStore

    with RunStore(tmp_path / "runs.db") as store:
        for seed in (1, 2):
            run_rl(_tiny(network="mlp", seed=seed, steps=256, eval_episodes=1), store=store)
        runs = load_runs(store)
    assert len(runs.of("rl")) == 2

    class Inputs:
        pass

    inputs = Inputs()
    inputs.runs = runs
    fig = FIGURES["rl-learning-curves"].draw(inputs)
    assert len(fig.axes) == 1 and "CartPole-v1" in fig.axes[0].get_title()
    inputs.runs = load_runs(RunStore(tmp_path / "empty.db"))
    with pytest.raises(Skip, match="dendritic rl run"):
        FIGURES["rl-learning-curves"].draw(inputs)


def test_figures_write_the_rl_table_beside_the_curves(tmp_path):
    pytest.importorskip("matplotlib")
    from dendritic.report import make_figures
    from dendritic.store import RunStore

    with RunStore(tmp_path / "runs.db") as store:
        for seed in (1, 2):
            run_rl(_tiny(network="mlp", seed=seed, steps=256, eval_episodes=1), store=store)
        result = make_figures(
            store, tmp_path / "out", formats=("png",), only=["rl-learning-curves"], download=False
        )
    assert set(result.figures) == {"rl-learning-curves"}, result.skipped
    table = (tmp_path / "out" / "rl-learning-curves.md").read_text()
    assert "| ppo | CartPole-v1 | mlp | 9,155 | 2 |" in table
    csv = (tmp_path / "out" / "rl-learning-curves.csv").read_text().splitlines()
    assert csv[0].startswith("algo,task,network,seeds,params,final_mean") and len(csv) == 2
    assert result.figure_tables["rl-learning-curves"]["rows"][0][:3] == ["ppo", "CartPole-v1", "mlp"]
