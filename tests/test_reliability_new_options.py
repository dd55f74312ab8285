"""Bad input to the features of the tabular, RL, selectivity and sparse-controls merges: each is
a one-line error (ValueError from the Python API, exit 1 or 2 from the command line) found before
anything is written to a store. Regression tests of an adversarial review."""

from __future__ import annotations

import pytest

from dendritic.cli import main


def _cli(argv, capsys):
    """Exit code and stderr of ``dendritic ARGV`` (argparse's usage errors included)."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


# ---------------------------------------------------------------------------- tabular


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seeds": (-1,)}, r"seeds must be integers in \[0, "),
        ({"seeds": (1.5,)}, "seeds must be integers"),
        ({"seeds": (True,)}, "seeds must be integers"),
        ({"seeds": (2**40,)}, "seeds must be integers"),
        ({"seeds": 5}, "seeds must be a list"),
        ({"datasets": "iris"}, "datasets must be a list"),
        ({"noise": 0.5}, "noise must be a list"),
        ({"noise": ("0.5",)}, r"noise fractions must be in \[0, 0.99\]"),
        ({"noise": (0.9999999,)}, r"noise fractions must be in \[0, 0.99\]"),
        ({"lr": True}, "lr must be a positive number"),
        ({"optimizer": "sgd"}, "optimizer must be one of adam-keras, adam-torch"),
        ({"folds": 1000}, r"folds must be an integer in \[2, 100\]"),
        ({"datasets": ("breast-cancer", "iris"), "folds": 60}, "folds=60 is more than iris allows"),
    ],
)
def test_tabular_study_refuses_what_only_a_fit_found(kwargs, message, tmp_path):
    """These passed the study's checks and failed in a fit, leaving a failed run (or, for the
    folds, the finished runs of the datasets before) in the store, or failed in NumPy/scikit-learn
    with their own wording (a TypeError for a string)."""
    from dendritic.tabular import TabularStudy

    with pytest.raises(ValueError, match=message) as info:
        TabularStudy(**kwargs)
    assert "\n" not in str(info.value)


def test_tabular_study_keeps_each_setting_once():
    """A dataset, model, noise level or seed named twice ran once and then failed: 'run 1 already
    finished; run it again with --replace'."""
    import numpy as np

    from dendritic.tabular import TabularStudy

    study = TabularStudy(
        datasets=("iris", "iris"), models=("mlp", "mlp"), noise=(0, 0.0), seeds=(1, 1), folds=np.int64(2)
    )
    assert (study.datasets, study.models, study.noise, study.seeds) == (("iris",), ("mlp",), (0.0,), (1,))
    assert type(study.folds) is int and study.size == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "99999999999999"], "--seeds must be at least 1 and at most"),  # was: out of memory
        (["--seeds", "1,99999999999999"], "--seeds: seeds must be integers in [0, "),
        (["--datasets", "breast-cancer,iris", "--folds", "60"], "--folds 60 is more than iris allows"),
        (["--noise", "0.9999999"], "noise fractions must be in [0, 0.99]"),  # was: out of memory
    ],
)
def test_tabular_run_refuses_before_the_store(argv, message, tmp_path, capsys):
    store = tmp_path / "never.db"
    code, err = _cli(["tabular", "run", "--store", str(store), *argv], capsys)
    assert code == 1
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not store.exists()


def test_tabular_run_fits_a_name_given_twice_once(tmp_path, capsys):
    pytest.importorskip("sklearn")
    store = tmp_path / "twice.db"
    argv = ["tabular", "run", "--store", str(store), "--datasets", "iris,iris", "--models", "mlp,mlp"]
    argv += ["--noise", "0,0.0", "--seeds", "1,1", "--folds", "2", "--epochs", "1", "--quiet"]
    code, err = _cli(argv, capsys)
    assert code == 0, err


def test_tabular_summary_checks_out_before_printing(tmp_path, capsys):
    """A bad --out printed the whole table and then refused the command."""
    from dendritic.store import RunStore

    store = tmp_path / "runs.db"
    RunStore(store).close()
    code, err = _cli(["tabular", "summary", "--store", str(store), "--out", str(store)], capsys)
    assert code == 1 and "an input of this command" in err and err.count("\n") == 1
    assert capsys.readouterr().out == ""


# ---------------------------------------------------------------------------- rl


@pytest.mark.parametrize("text", ["1-99999999999999", "99999999999", "1,4294967296"])
def test_rl_seeds_beyond_the_largest_are_one_line_errors(text):
    """A huge range was built in memory (the CLI answered 'out of memory'); a huge seed failed in
    NumPy ('Seed must be between 0 and 2**32 - 1') after the store was opened."""
    from dendritic.cli.rl import parse_seeds
    from dendritic.rl.run import MAX_SEED

    with pytest.raises(ValueError, match=rf"--seeds takes seeds in \[0, {MAX_SEED}\]"):
        parse_seeds(text)
    assert parse_seeds(f"{MAX_SEED - 1}-{MAX_SEED}") == [MAX_SEED - 1, MAX_SEED]


def test_rl_config_refuses_a_seed_numpy_cannot_take_and_a_bool_budget():
    from dendritic.rl.run import MAX_SEED, RLConfig

    with pytest.raises(ValueError, match="seed must be an integer in"):
        RLConfig(network="mlp", seed=MAX_SEED + 1)
    with pytest.raises(ValueError, match="budget must be in"):
        RLConfig(network="mlp", budget=True)


@pytest.mark.parametrize("budget", ["0.1", True])
def test_rl_plan_refuses_a_budget_that_is_no_number(budget):
    """A string budget was a TypeError ('<' not supported); True was taken as 1."""
    from dendritic.rl.networks import plan_network

    with pytest.raises(ValueError, match="budget must be in"):
        plan_network("dendritic", "ppo", "CartPole-v1", budget=budget)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threads": 0}, r"threads must be an integer in \[1, 1024\]"),  # was torch's RuntimeError
        ({"threads": -1}, r"threads must be an integer in \[1, 1024\]"),
        ({"store": "runs.db"}, "store takes an open RunStore"),  # was TypeError: must be str, not dict
        ({"replace": True}, "replace=True re-runs a run of the store: it needs a store"),  # was ignored
    ],
)
def test_run_rl_refuses_bad_arguments_before_training(kwargs, message, tmp_path, monkeypatch):
    from dendritic.rl.run import MAX_THREADS, RLConfig, run_rl
    from dendritic.training.loop import MAX_THREADS as TRAINING_MAX_THREADS

    assert MAX_THREADS == TRAINING_MAX_THREADS
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=message):
        run_rl(RLConfig(network="mlp", steps=64), **kwargs)
    assert not (tmp_path / "runs.db").exists()


def test_rl_networks_named_twice_run_once():
    from dendritic.cli.rl import _names

    assert _names("mlp, dendritic,mlp", ("mlp", "dendritic"), "networks") == ["mlp", "dendritic"]


# ---------------------------------------------------------------------------- sweeps' --dry-run


@pytest.mark.parametrize("experiment", ["selectivity", "sparse-controls"])
def test_dry_run_refuses_a_store_that_could_not_be_created(experiment, tmp_path, capsys):
    """The dry run printed every run 'to run' in a store inside a file or a missing folder, which
    the sweep itself then refused."""
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    for store, message in (
        (a_file / "runs.db", "is not a directory"),
        (tmp_path / "missing" / "runs.db", "does not exist"),
    ):
        code, err = _cli(["sweep", experiment, "--dry-run", "--trials", "1", "--store", str(store)], capsys)
        assert code == 1 and message in err and err.count("\n") == 1
    assert main(["sweep", experiment, "--dry-run", "--trials", "1", "--store", str(tmp_path / "new.db")]) == 0
    assert "to run" in capsys.readouterr().out and not (tmp_path / "new.db").exists()


# ---------------------------------------------------------------------------- lottery tickets


def test_rewind_epoch_with_a_fine_tuned_ticket_is_refused(tmp_path, capsys):
    """--lottery finetune --rewind-epoch N was accepted and ignored (a fine-tuned ticket keeps its
    trained weights), yet keyed a run of its own: the same ticket trained and stored again."""
    from dendritic.training import TrainConfig

    with pytest.raises(ValueError, match="rewind_epoch only applies to lottery='rewind'"):
        TrainConfig(model="vANN", dendrites=4, somata=20, epochs=3, lottery="finetune", rewind_epoch=2)
    TrainConfig(model="vANN", dendrites=4, somata=20, epochs=3, lottery="rewind", rewind_epoch=2)
    TrainConfig(model="vANN", dendrites=4, somata=20, epochs=3, lottery="finetune")
    store = tmp_path / "never.db"
    argv = ["train", "--model", "vANN", "--lottery", "finetune", "--rewind-epoch", "0", "--epochs", "1"]
    code, err = _cli([*argv, "--store", str(store)], capsys)
    assert code == 1 and "--rewind-epoch only applies to --lottery rewind" in err and err.count("\n") == 1
    assert not store.exists()


# ---------------------------------------------------------------------------- dendritic.sklearn


@pytest.mark.parametrize("bad", ["nan", "complex", "1-D"])
def test_sklearn_input_errors_are_one_line(bad):
    """scikit-learn's own input checks raised multi-line ValueErrors (a NaN's message runs to
    three lines, a 1-D input's and complex data's print the array)."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    from dendritic.sklearn import DendriticClassifier

    x = np.random.default_rng(0).random((20, 4))
    y = np.arange(20) % 2
    model = DendriticClassifier(epochs=1, random_state=0).fit(x, y)
    bad_x = {"nan": np.where(x > 0.9, np.nan, x), "complex": x + 1j, "1-D": x[0]}[bad]
    calls = [lambda: model.predict(bad_x)]
    if bad != "1-D":
        calls.append(lambda: DendriticClassifier(epochs=1).fit(bad_x, y))
    for call in calls:
        with pytest.raises(ValueError) as info:
            call()
        assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "argv",
    [
        ["--dendrites", "2147483647", "--models", "mlp"],  # was a 38-line traceback from torch
        ["--somata", "100000000", "--models", "dendritic-random"],  # was a failed run in the store
    ],
)
def test_tabular_networks_beyond_memory_are_refused_before_the_store(argv, tmp_path, capsys):
    store = tmp_path / "never.db"
    base = ["tabular", "run", "--store", str(store), "--datasets", "iris", "--noise", "0", "--seeds", "1"]
    code, err = _cli([*base, *argv], capsys)
    assert code == 1 and "the study takes at most 100,000,000" in err and err.count("\n") == 1
    assert not store.exists()


# ---------------------------------------------------------------------------- the class-specific read-out


def test_class_specific_config_check_allocates_nothing(monkeypatch):
    """TrainConfig(readout='class-specific', somata=2e9) built the soma -> class array (np.arange
    of the somata: 32 GB) to check it, before the network's memory check could refuse the size:
    `dendritic train --readout class-specific --somata 2000000000` was killed by the OOM killer."""
    import dendritic.nn.readout as readout
    from dendritic.training import TrainConfig

    def no_array(*args, **kwargs):
        raise AssertionError("the config's check built the array")

    monkeypatch.setattr(readout, "soma_classes", no_array)
    config = TrainConfig(model="dANN-R", readout="class-specific", somata=2_000_000_000, epochs=1)
    assert config.somata == 2_000_000_000
    with pytest.raises(ValueError, match="at least one soma per class: 5 somata for 10 classes"):
        TrainConfig(model="dANN-R", readout="class-specific", somata=5, epochs=1)


def test_an_estimator_beyond_memory_is_a_one_line_value_error():
    """DenseClassifier(hidden=10**11).fit and DendriticClassifier(cables='all') with many somata
    were torch's RuntimeError ('can't allocate memory')."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    from dendritic.sklearn import DenseClassifier, DenseRegressor

    x, y = np.random.default_rng(0).random((20, 4)), np.arange(20) % 2
    from dendritic.sklearn import DendriticClassifier

    models = [DenseClassifier(hidden=10**11, epochs=1), DenseRegressor(hidden=10**11, epochs=1)]
    models.append(DendriticClassifier(somata=10**6, cables="all", epochs=1))  # was 8 TB asked of torch
    # 10 M somata: the backward's blocked tables alone were 12.5 TB; the activations are 200 GB
    models.append(DendriticClassifier(somata=10**7, epochs=1))
    # receptive_field="all": every dendrite reads every feature (the check counted `synapses`)
    wide = np.zeros((20, 20_000))
    with pytest.raises(ValueError, match="with 4,000,[0-9,]+ trainable parameters needs about"):
        DendriticClassifier(somata=2000, dendrites=100, receptive_field="all", epochs=1).fit(wide, y)
    for model in models:
        with pytest.raises(ValueError, match="trainable parameters needs about .* GB to fit") as info:
            model.fit(x, y)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("experiment", ["selectivity", "sparse-controls"])
def test_sweep_with_a_data_dir_lacking_the_dataset_writes_nothing(experiment, tmp_path, capsys):
    """A --data-dir that exists but lacks the dataset ran the sweep: every run (240 for
    selectivity) recorded as failed with the same 'not found' message."""
    store, empty = tmp_path / "never.db", tmp_path / "empty"
    empty.mkdir()
    argv = ["sweep", experiment, "--trials", "1", "--store", str(store), "--data-dir", str(empty)]
    code, err = _cli(argv, capsys)
    assert code == 1 and "not found in --data-dir" in err and err.count("\n") == 1
    assert not store.exists()


def test_numpy_integer_settings_fit():
    """epochs=np.int64(1) passed the estimator's check (numpy integers are integers), then fit()
    refused it: 'epochs must be an integer >= 1, got np.int64(1)'."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    from dendritic.sklearn import DendriticClassifier, DenseClassifier

    x, y = np.random.default_rng(0).random((30, 5)), np.arange(30) % 3
    for model in (
        DenseClassifier(hidden=np.int64(4), epochs=np.int64(2), batch_size=np.int64(8)),
        DendriticClassifier(
            somata=np.int64(6), dendrites=np.int64(2), epochs=np.int64(2), batch_size=np.int64(8)
        ),
    ):
        assert model.fit(x, y).n_iter_ == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--address", "localhost:6379"], "--address is for --backend ray"),
        (["--backend", "ray", "--connect-timeout", "5"], "--connect-timeout is for joining a Ray cluster"),
    ],
)
def test_dry_run_refuses_contradictory_backend_options(extra, message, tmp_path, capsys):
    """--dry-run previewed a sweep that the same command without it refuses."""
    argv = [
        "sweep",
        "sparse-controls",
        "--dry-run",
        "--trials",
        "1",
        "--store",
        str(tmp_path / "s.db"),
        *extra,
    ]
    code, err = _cli(argv, capsys)
    assert code == 1 and message in err and err.count("\n") == 1
