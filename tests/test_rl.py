"""dendritic.rl without the ``[rl]`` extra: the analysis (IQM, bootstrap band, steps to
threshold), the Zoo's settings, the study's networks and their 1-D wiring, and the one-line error
when the extra is missing. The tests with Stable-Baselines3 are in test_rl_sb3.py."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from dendritic.analysis.rl import bootstrap_band, iqm, steps_to_threshold
from dendritic.rl.networks import SPACES, build_extractor, plan_network
from dendritic.rl.zoo import SETTINGS, THRESHOLDS, Linear, get_setting

# ---------------------------------------------------------------------------- without the extra


def test_import_dendritic_loads_neither_torch_nor_sb3():
    code = (
        "import sys, dendritic, dendritic.rl, dendritic.rl.zoo; "
        "print(sorted(m for m in ('torch', 'stable_baselines3', 'gymnasium') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_iqm_cuts_a_quarter_from_each_end():
    assert iqm([1.0, 2.0, 3.0, 4.0, 100.0]) == pytest.approx(3.0)  # 1 cut each end
    assert iqm([1.0, 3.0]) == pytest.approx(2.0)  # too few to cut: the mean
    scipy_stats = pytest.importorskip("scipy.stats")
    values = np.random.default_rng(0).normal(size=(11, 4))
    np.testing.assert_allclose(iqm(values, axis=0), scipy_stats.trim_mean(values, 0.25, axis=0))


def test_bootstrap_band_holds_the_iqm_and_one_seed_is_the_curve():
    curves = np.random.default_rng(1).normal(size=(10, 6)) + np.arange(6)
    centre, low, high = bootstrap_band(curves)
    assert np.all(low <= centre + 1e-12) and np.all(centre <= high + 1e-12) and np.all(high > low)
    one = bootstrap_band(curves[:1])
    np.testing.assert_array_equal(one[0], one[1])
    with pytest.raises(ValueError, match="seeds × points"):
        bootstrap_band(np.zeros(3))


def test_steps_to_threshold():
    assert steps_to_threshold([0, 10, 20], [1.0, 5.0, 9.0], 5.0) == 10.0
    assert steps_to_threshold([0, 10], [1.0, 2.0], 5.0) is None
    with pytest.raises(ValueError):
        steps_to_threshold([0], [1.0, 2.0], 0.0)


def _group(network, finals, curves, task="CartPole-v1"):
    from dendritic.rl.summary import RLGroup

    g = RLGroup("ppo", task, network, seeds=list(range(1, len(finals) + 1)))
    g.steps = np.arange(len(curves[0]), dtype=float) * 1000
    g.curves = np.asarray(curves, dtype=float)
    g.finals = list(finals)
    g.train_seconds = g.train_cpu_seconds = g.wall_seconds = [1.0] * len(finals)
    return g


def test_summary_rows_compare_every_network_with_the_dendritic_one():
    scipy_stats = pytest.importorskip("scipy.stats")
    from dendritic.rl.summary import summary_rows

    dend = _group("dendritic", [400.0, 450.0, 500.0], [[0, 200, 400], [0, 300, 450], [0, 400, 500]])
    mlp = _group("mlp", [500.0, 500.0, 500.0], [[0, 500, 500], [100, 500, 500], [0, 400, 500]])
    other_task = _group("mlp", [1.0, 2.0], [[0, 1], [0, 2]], task="Acrobot-v1")  # no dendritic there
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every seed of the MLP at 500: an exact test, no warning
        rows = {(r["task"], r["network"]): r for r in summary_rows([dend, mlp, other_task])}
    d, m = rows["CartPole-v1", "dendritic"], rows["CartPole-v1", "mlp"]
    assert (
        np.isnan(d["vs_dendritic"]) and np.isnan(d["p_vs_dendritic"]) and np.isnan(d["p_curve_vs_dendritic"])
    )
    assert m["vs_dendritic"] == pytest.approx(50.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = scipy_stats.ttest_ind([500.0] * 3, [400.0, 450.0, 500.0], equal_var=False).pvalue
    assert m["p_vs_dendritic"] == pytest.approx(expected) and 0 < expected < 1
    # the mean return over the curve, per seed: dendritic 200, 250, 300; mlp 333.3, 366.7, 300
    assert d["curve_mean"] == pytest.approx(250.0) and d["curve_sd"] == pytest.approx(50.0)
    assert m["curve_vs_dendritic"] == pytest.approx(1000 / 3 - 250.0)
    assert m["p_curve_vs_dendritic"] == pytest.approx(
        scipy_stats.ttest_ind([1000 / 3, 1100 / 3, 300.0], [200.0, 250.0, 300.0], equal_var=False).pvalue
    )
    lonely = rows["Acrobot-v1", "mlp"]
    assert np.isnan(lonely["vs_dendritic"]) and np.isnan(lonely["p_curve_vs_dendritic"])


def test_summary_rows_without_scipy_keep_the_differences_and_say_why_p_is_missing(monkeypatch, caplog):
    import dendritic.analysis.stats as stats
    from dendritic.rl.summary import summary_rows

    def no_scipy(module, purpose):
        raise ImportError(f"{purpose} needs scipy")

    monkeypatch.setattr(stats, "require", no_scipy)
    dend = _group("dendritic", [400.0, 450.0, 500.0], [[0, 200], [0, 300], [0, 400]])
    mlp = _group("mlp", [500.0, 490.0, 500.0], [[0, 500], [100, 500], [0, 400]])
    with caplog.at_level("WARNING", logger="dendritic.rl.summary"):
        rows = {r["network"]: r for r in summary_rows([dend, mlp])}
    assert rows["mlp"]["vs_dendritic"] == pytest.approx(1490 / 3 - 450.0)
    assert np.isnan(rows["mlp"]["p_vs_dendritic"]) and np.isnan(rows["mlp"]["p_curve_vs_dendritic"])
    assert "needs scipy" in caplog.text


def test_zoo_settings_are_the_zoos():
    ppo = get_setting("ppo", "CartPole-v1")
    assert (ppo.n_envs, ppo.steps, ppo.kwargs["n_steps"], ppo.kwargs["batch_size"]) == (8, 100_000, 32, 256)
    assert ppo.kwargs["learning_rate"] == Linear(0.001) and ppo.kwargs["learning_rate"](0.5) == 0.0005
    assert (
        get_setting("dqn", "Acrobot-v1").hidden == (256, 256) and get_setting("ppo", "Acrobot-v1").normalize
    )
    assert {t for _, t in SETTINGS} == set(THRESHOLDS)
    assert json.dumps(ppo.to_dict())  # JSON-able for the store
    for bad, match in ((("sac", "CartPole-v1"), "unknown algorithm"), (("ppo", "Pong"), "unknown task"),
                       (("dqn", "CartPole-v1"), "no Zoo setting")):  # fmt: skip
        with pytest.raises(ValueError, match=match) as err:
            get_setting(*bad)
        assert "\n" not in str(err.value)


def test_networks_sizes():
    default = plan_network("mlp", "ppo", "CartPole-v1")
    assert default.params == 9_155  # SB3's 64 × 64 actor and critic with their heads (issue 24)
    for algo, task in SETTINGS:
        mlp = plan_network("mlp", algo, task).params
        dend = plan_network("dendritic", algo, task)
        assert (
            dend.params <= 0.10 * mlp and plan_network("dendritic", algo, task, budget=0.2).params > 0.1 * mlp
        )
        assert plan_network("sparse", algo, task).params == dend.params
        dense = plan_network("dense", algo, task)
        assert abs(dense.params - dend.params) <= 0.15 * dend.params, (algo, task, dense, dend)
    with pytest.raises(ValueError, match="unknown network 'cnn'"):
        plan_network("cnn", "ppo", "CartPole-v1")


def test_dendritic_extractor_is_1d_random_wiring_with_the_planned_parameters():
    from dendritic.models import count_parameters

    plan = plan_network("dendritic", "ppo", "LunarLander-v3")
    layer = build_extractor(plan, SPACES["LunarLander-v3"][0], seed=3)
    assert layer.geometry.n_inputs == 8 and layer.spec.receptive_field == "random"
    inputs = layer.dendrite_linear.indices.numpy()  # each dendrite: `synapses` distinct features of 8
    per_dendrite = inputs.reshape(plan.somata * plan.dendrites, plan.synapses)
    assert per_dendrite.min() >= 0 and per_dendrite.max() <= 7
    assert all(len(set(row)) == plan.synapses for row in per_dendrite.tolist())
    assert len({tuple(sorted(r)) for r in per_dendrite.tolist()}) > 1  # not one field for all
    expected = plan.somata * plan.dendrites * plan.synapses + 2 * plan.somata * plan.dendrites + plan.somata
    assert count_parameters(layer) == expected
    again = build_extractor(plan, 8, seed=3)
    for a, b in zip(layer.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_missing_extra_is_a_one_line_cli_error(monkeypatch, capsys):
    import importlib.util

    from dendritic.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "stable_baselines3" else real(name, *a)
    )
    assert main(["rl", "run", "--no-store"]) == 1
    err = capsys.readouterr().err.strip()
    assert "pip install 'dendritic[rl]'" in err and "\n" not in err


def test_learning_curves_give_a_network_one_colour_in_every_panel():
    pytest.importorskip("matplotlib")
    from dendritic.figures.rl import rl_learning_curves

    curves = [[0, 100, 200], [0, 150, 250]]
    cartpole = [_group("mlp", [1.0, 2.0], curves), _group("sparse", [1.0, 2.0], curves)]
    acrobot = [_group(n, [1.0, 2.0], curves, task="Acrobot-v1") for n in ("mlp", "mlp-leaky", "sparse")]
    fig = rl_learning_curves(cartpole + acrobot)
    colours = [
        {
            line.get_label().rsplit(" (", 1)[0]: line.get_color()
            for line in ax.get_lines()
            if not line.get_label().startswith("_")
        }
        for ax in fig.axes
    ]
    assert colours[0]["random-sparse (matched)"] == colours[1]["random-sparse (matched)"]
    assert colours[1]["SB3 default MLP, leaky ReLU"] != colours[1]["random-sparse (matched)"]
    assert colours[0]["SB3 default MLP"] == colours[1]["SB3 default MLP"]
