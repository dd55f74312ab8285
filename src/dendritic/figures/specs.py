"""The figures of SPEC §8 as a table: name → label, caption, the sweeps it needs, and a drawing
function from :class:`FigureInputs` (runs sorted by experiment, analyses) to a Figure.

A drawing function raises :class:`Skip` with the note a reader sees ("Fig 7 skipped: needs runs
of `dendritic sweep noise`"); it never reads a store or a file: whoever draws
(:func:`dendritic.report.make_figures`) gathers the inputs, and writes the files.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dendritic.analysis.beyond import depth_rows, morphology_rows
from dendritic.analysis.selection import Group, best_configuration, group_runs
from dendritic.errors import DendriticError
from dendritic.figures import beyond, paper
from dendritic.figures.style import PAPER_MODELS, dataset_label, order_datasets
from dendritic.figures.tables import selectable

__all__ = [
    "FIGURES",
    "FigureInputs",
    "FigureSpec",
    "RunSource",
    "Skip",
    "best_by_model",
    "depth_runs",
    "grid_runs",
    "groups_of",
    "rl_groups",
    "skip_note",
    "tabular_runs",
]


class Skip(DendriticError):
    """A figure cannot be drawn from these runs; the message is the note the reader sees."""


def skip_note(figure: str, experiments: Sequence[str], extra: str = "") -> str:
    """``Fig 7 skipped: needs runs of `dendritic sweep noise` …`` — the one wording used everywhere."""
    sweeps = " or ".join(f"`dendritic sweep {e}`" for e in experiments)
    return f"{figure} skipped: needs runs of {sweeps}{extra}"


class RunSource(Protocol):
    """Finished runs by experiment (``of("noise", "fmnist")``) and their epoch rows."""

    def of(self, experiment: str, dataset: str | None = None) -> list[dict[str, Any]]: ...

    def epochs_of(self, run: Mapping[str, Any]) -> list[dict[str, Any]]: ...


@dataclass
class FigureInputs:
    """Everything the drawing functions read.

    ``dataset`` is the per-dataset figures' dataset; ``on`` the split configurations are chosen
    on. ``analyses`` (model → analyses of checkpointed runs, for Figs 5–6) is None when not
    gathered, empty with ``no_analyses`` saying why. ``examples()`` returns test images, labels
    and class names of ``dataset`` (or raises :class:`Skip`). Drawing functions may add notes on
    panels they left out to ``skipped``.
    """

    runs: RunSource
    dataset: str | None
    on: str = "validation"
    analyses: dict[str, list[dict[str, Any]]] | None = None
    no_analyses: str = ""
    examples: Callable[[], tuple[Any, Any, Sequence[str]]] | None = None
    #: Finished runs of a named grid (tagged with it, or of one of its configs under any tag).
    grid: Callable[[str], list[dict[str, Any]]] | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.main = self.runs.of("main", self.dataset) if self.dataset else []
        self.main_groups = groups_of(self.main)
        every = self.runs.of("main")
        datasets = order_datasets(r["dataset"] for r in every if r.get("dataset"))
        self.by_dataset = {d: groups_of(self.runs.of("main", d)) for d in datasets}
        self.of_dataset = f" of {dataset_label(self.dataset)}" if self.dataset else ""

    def need_main(self, label: str) -> None:
        if not self.main_groups:
            raise Skip(skip_note(label, ["main"], self.of_dataset))


@dataclass(frozen=True)
class FigureSpec:
    label: str  #: "Fig 2", "Supplementary: dropout", …
    caption: str  #: what the figure shows
    sweeps: tuple[str, ...]  #: the `dendritic sweep NAME` runs it needs (any of them)
    draw: Callable[[FigureInputs], Any]
    checkpoints: bool = False  #: needs analyses of checkpoints (``FigureInputs.analyses``)


# ---------------------------------------------------------------------------- helpers


def groups_of(runs: Sequence[Mapping[str, Any]], extra: Sequence[str] = ()) -> list[Group]:
    return group_runs(runs, extra) if runs else []


def best_by_model(groups: Sequence[Group], on: str) -> dict[str, Group]:
    usable = selectable(groups, on)
    return best_configuration(usable, "accuracy", on) if usable else {}  # type: ignore[arg-type]


def _split(groups: Sequence[Group], key: str) -> dict[Any, list[Group]]:
    out: dict[Any, list[Group]] = {}
    for g in groups:
        out.setdefault(g[key], []).append(g)
    return out


def _dataset_for(primary: str | None, runs: Sequence[Mapping[str, Any]]) -> str | None:
    """The primary dataset when these runs have it, else their most common dataset."""
    counts = Counter(r.get("dataset") for r in runs)
    if not counts:
        return primary
    if primary in counts:
        return primary
    return max(counts, key=lambda d: (counts[d], str(d)))


def _need_pairs(i: FigureInputs, label: str, pairs: Any, what: str) -> None:
    i.need_main(label)
    if not paper._present_pairs(i.main_groups, pairs):
        raise Skip(skip_note(label, ["main"], f"{i.of_dataset} with {what}"))


def _need_analyses(i: FigureInputs, label: str) -> dict[str, list[dict[str, Any]]]:
    i.need_main(label)
    if not i.analyses:
        raise Skip(f"{label} skipped: {i.no_analyses or 'no checkpoint was analysed'}")
    return i.analyses


# ---------------------------------------------------------------------------- drawing functions


def _fig2(i: FigureInputs) -> Any:
    i.need_main("Fig 2")
    return paper.fig2(i.main_groups, on=i.on, dataset=i.dataset or "")


def _fig3(i: FigureInputs) -> Any:
    if not i.runs.of("main"):
        raise Skip(skip_note("Fig 3", ["main"]))
    return paper.fig3(i.by_dataset, on=i.on)


def _fig4(i: FigureInputs) -> Any:
    _need_pairs(i, "Fig 4", paper.PAIRS_VANN, "a dANN-X and its vANN-X (e.g. --models dANN-LRF,vANN-LRF)")
    return paper.fig4(i.main_groups, on=i.on, dataset=i.dataset or "")


def _fig5(i: FigureInputs) -> Any:
    analyses = _need_analyses(i, "Fig 5")
    return paper.fig5({m: rs[0] for m, rs in analyses.items()})


def _fig6(i: FigureInputs) -> Any:
    analyses = _need_analyses(i, "Fig 6")
    if not any(r.get("embedding") for rs in analyses.values() for r in rs):
        notes = {n for rs in analyses.values() for r in rs for n in r.get("notes", [])}
        raise Skip("Fig 6 skipped: " + ("; ".join(sorted(notes)) or "no t-SNE embeddings"))
    return paper.fig6(analyses)


def _fig7(i: FigureInputs) -> Any:
    runs = i.runs
    noise_runs, seq_runs = runs.of("noise"), runs.of("sequential")
    if not noise_runs and not seq_runs:
        raise Skip(skip_note("Fig 7", ["noise", "sequential"]))
    d7 = _dataset_for(i.dataset, noise_runs + seq_runs)
    noise: dict[float, list[Group]] = {}
    for sigma, gs in _split(groups_of(runs.of("noise", d7), ["sigma"]), "sigma").items():
        noise[float(sigma)] = gs
    if noise:
        noisy_models = {r.get("model") for r in runs.of("noise", d7)}
        base = groups_of([r for r in runs.of("main", d7) if r.get("model") in noisy_models])
        if base:
            noise[0.0] = base
    else:
        i.skipped["fig7 (noise)"] = "Fig 7 noise panels skipped: needs runs of `dendritic sweep noise`"
    seq = groups_of(runs.of("sequential", d7))
    if not seq:
        i.skipped["fig7 (sequential)"] = (
            "Fig 7 sequential panels skipped: needs runs of `dendritic sweep sequential`"
        )
    seq_models = {r.get("model") for r in runs.of("sequential", d7)}
    shuffled = groups_of([r for r in runs.of("main", d7) if r.get("model") in seq_models])
    return paper.fig7(noise or None, seq or None, shuffled, on=i.on, dataset=d7 or "")


def _learning_curves(i: FigureInputs) -> Any:
    i.need_main("Learning curves")
    best = best_by_model(i.main_groups, i.on)
    by_id = {r["id"]: r for r in i.main}
    curves = {m: [i.runs.epochs_of(by_id[r]) for r in g.run_ids if r in by_id] for m, g in best.items()}
    where = f" — {dataset_label(i.dataset)}" if i.dataset else ""
    return paper.supp_learning_curves(
        curves, title=f"Learning curves of each model's best configuration{where}"
    )


def _dropout(i: FigureInputs) -> Any:
    drop = i.runs.of("dropout", _dataset_for(i.dataset, i.runs.of("dropout")))
    if not drop:
        raise Skip(skip_note("Dropout figure", ["dropout"]))
    d = drop[0]["dataset"]
    controls = [r for r in i.runs.of("main", d) if r.get("model") in PAPER_MODELS]
    return paper.supp_dropout(groups_of(drop + controls), dataset=d)


def _lr(i: FigureInputs) -> Any:
    lr_runs = i.runs.of("lr", _dataset_for(i.dataset, i.runs.of("lr")))
    if not lr_runs:
        raise Skip(skip_note("Learning-rate figure", ["lr"]))
    d = lr_runs[0]["dataset"]
    models = {r.get("model") for r in lr_runs}
    by_lr = _split(groups_of(lr_runs, ["lr"]), "lr")
    base = [r for r in i.runs.of("main", d) if r.get("model") in models]
    if base:
        by_lr[1e-3] = groups_of(base)
    return paper.supp_lr({float(k): v for k, v in by_lr.items()}, dataset=d)


def _early_stop(i: FigureInputs) -> Any:
    es = i.runs.of("early-stop", _dataset_for(i.dataset, i.runs.of("early-stop")))
    if not es:
        raise Skip(skip_note("Early-stopping figure", ["early-stop"]))
    return paper.supp_early_stop(groups_of(es), dataset=es[0]["dataset"])


def _depth(i: FigureInputs) -> Any:
    deep = i.runs.of("depth", _dataset_for(i.dataset, i.runs.of("depth")))
    if not deep:
        raise Skip(skip_note("Depth figure", ["depth"]))
    d = deep[0]["dataset"]
    shapes = {(r.get("model"), r.get("dendrites"), r.get("somata")) for r in deep}
    mine = {r["id"] for r in deep}  # the depth sweep's own L = 1 runs are main's too
    shallow = [
        r
        for r in i.runs.of("main", d)
        if (r.get("model"), r.get("dendrites"), r.get("somata")) in shapes and r["id"] not in mine
    ]
    return paper.supp_depth(groups_of(deep + shallow, ["layers"]), on=i.on, dataset=d)


def _epochs_to_minimum(i: FigureInputs) -> Any:
    i.need_main("Epochs-to-minimum figure")
    return paper.supp_epochs_to_minimum(i.main_groups, dataset=i.dataset or "")


def _vann_x(i: FigureInputs) -> Any:
    _need_pairs(i, "dANN-X vs vANN-X curves", paper.PAIRS_VANN, "a dANN-X and its vANN-X")
    return paper.supp_vann_x_curves(i.main_groups, on=i.on, dataset=i.dataset or "")


def _sann(i: FigureInputs) -> Any:
    _need_pairs(i, "dANN-X − sANN-X figure", paper.PAIRS_SPARSE, "a dANN-X and its sANN-X (e.g. sANN)")
    return paper.supp_sann_differences(i.main_groups, dataset=i.dataset or "")


def _examples(i: FigureInputs) -> Any:
    if i.dataset is None:
        raise Skip("Dataset examples skipped: no dataset to show (no main-sweep runs)")
    if i.examples is None:
        raise Skip("Dataset examples skipped: no images given")
    x, y, class_names = i.examples()
    return paper.supp_dataset_examples(
        x, y, class_names=class_names, title=f"{dataset_label(i.dataset)} — test examples"
    )


def grid_runs(i: FigureInputs, name: str) -> list[dict[str, Any]]:
    return i.grid(name) if i.grid is not None else i.runs.of(name) if name in _TAGGED else []


_TAGGED = ("depth-deep", "depth-init", "morphology", "sparse-controls", "selectivity")


def depth_runs(i: FigureInputs) -> list[dict[str, Any]]:
    """The runs of the depth study: ``depth-deep``'s and ``depth-init``'s (each run once)."""
    deep = grid_runs(i, "depth-deep")
    seen = {r["id"] for r in deep}
    return deep + [r for r in grid_runs(i, "depth-init") if r["id"] not in seen]


def tabular_runs(i: FigureInputs) -> list[dict[str, Any]]:
    """The tabular study's runs (tagged ``tabular`` by ``dendritic tabular run``, not a sweep)."""
    return [r for r in getattr(i.runs, "runs", []) if r.get("experiment") == "tabular"]


def rl_groups(i: FigureInputs) -> list[Any]:
    """The RL study's finished runs grouped per (algorithm, task, network) (``dendritic rl run``)."""
    from dendritic.rl.summary import group_rl_runs

    return list(group_rl_runs((r, i.runs.epochs_of(r)) for r in i.runs.of("rl")))


def _depth_deep(i: FigureInputs) -> Any:
    runs = depth_runs(i)
    if not runs:
        raise Skip(skip_note("Depth-to-20 figure", ["depth-deep", "depth-init"]))
    return beyond.depth_deep(
        depth_rows(runs, i.runs.epochs_of), dataset=dataset_label(runs[0].get("dataset", ""))
    )


def _morphology(i: FigureInputs) -> Any:
    runs = grid_runs(i, "morphology")
    if not runs:
        raise Skip(skip_note("Morphology figure", ["morphology"]))
    return beyond.morphology(morphology_rows(runs), dataset=dataset_label(runs[0].get("dataset", "")))


def _sparse_controls(i: FigureInputs) -> Any:
    from dendritic.analysis.controls import control_rows
    from dendritic.figures.controls import sparse_controls

    runs = grid_runs(i, "sparse-controls")
    if not runs:
        raise Skip(skip_note("Sparse-controls figure", ["sparse-controls"]))
    return sparse_controls(control_rows(runs), dataset=dataset_label(runs[0].get("dataset", "")))


def _selectivity(i: FigureInputs) -> Any:
    from dendritic.analysis.mixed_selectivity import selectivity_rows
    from dendritic.figures.selectivity import selectivity

    runs = grid_runs(i, "selectivity")
    rows = selectivity_rows(runs)
    if not any(r["sigma"] == 0.0 and not r["sequential"] for r in rows):
        raise Skip(skip_note("Selectivity figure", ["selectivity"]))
    return selectivity(rows, dataset=dataset_label(runs[0].get("dataset", "")))


def _rl_curves(i: FigureInputs) -> Any:
    from dendritic.figures.rl import rl_learning_curves

    groups = rl_groups(i)
    if not groups:
        raise Skip("RL learning curves skipped: needs runs of `dendritic rl run`")
    return rl_learning_curves(groups)


def _tabular(i: FigureInputs) -> Any:
    from dendritic.analysis.tabular import tabular_rows
    from dendritic.figures.tabular import accuracy_vs_noise

    runs = tabular_runs(i)
    if not runs:
        raise Skip("Tabular figure skipped: needs runs of `dendritic tabular run`")
    return accuracy_vs_noise(tabular_rows(runs))


#: Every figure, in the order they are drawn.
FIGURES: dict[str, FigureSpec] = {
    "fig2": FigureSpec(
        "Fig 2",
        "Test loss and accuracy vs trainable parameters (log scale) for dANN-R, dANN-LRF, dANN-GRF, pdANN "
        "and vANN (mean ± 95 % CI over trials, Student's t with n − 1 degrees of freedom; dashed: vANN's "
        "best configuration), and vs dendrites per soma D at S = 256 and 512 (or the largest S swept). "
        "Each panel states the trials n behind its points; hollow markers have fewer trials than the rest.",
        ("main",),
        _fig2,
    ),
    "fig3": FigureSpec(
        "Fig 3",
        "Per dataset: trainable parameters of the cheapest configuration of each model that beats vANN's "
        "best accuracy / loss (black bar: vANN's best; ×: none does), and the accuracy / loss efficiency "
        "of each model's best configuration (pool: the best configurations of one dataset).",
        ("main",),
        _fig3,
    ),
    "fig4": FigureSpec(
        "Fig 4",
        "Dendritic structure with the same input sampling: best test accuracy and loss, parameters of "
        "the best-accuracy configuration and accuracy efficiency of dANN-X vs vANN-X (X = R, LRF, GRF; "
        "pdANN vs vANN for all-to-all inputs).",
        ("main",),
        _fig4,
    ),
    "fig5": FigureSpec(
        "Fig 5",
        "Distributions of real dendritic, somatic and output weights (KDE), node entropy and "
        "selectivity of the first dendritic and somatic layers, and the fraction of dead nodes, for "
        "each model's best configuration that has a checkpoint.",
        ("main",),
        _fig5,
        checkpoints=True,
    ),
    "fig6": FigureSpec(
        "Fig 6",
        "t-SNE maps (perplexity 50) of dendritic and somatic activations for the first test images, "
        "coloured by class, and silhouette, neighbourhood hit (k = 11) and trustworthiness "
        "(k = 11), mean ± sd over trials × t-SNE repeats.",
        ("main",),
        _fig6,
        checkpoints=True,
    ),
    "fig7": FigureSpec(
        "Fig 7",
        "Accuracy and loss efficiency of each model's best configuration vs input noise σ (σ = 0 from "
        "the main sweep), and under class-sequential training (hatched) next to shuffled training.",
        ("noise", "sequential"),
        _fig7,
    ),
    "supp-learning-curves": FigureSpec(
        "Supplementary: learning curves",
        "Train and validation loss / accuracy per epoch of each model's best configuration "
        "(mean ± sd over trials).",
        ("main",),
        _learning_curves,
    ),
    "supp-dropout": FigureSpec(
        "Supplementary: dropout",
        "vANN with dropout 0.2 / 0.5 / 0.8 next to vANN and the dANNs: test accuracy and loss vs "
        "trainable parameters.",
        ("dropout",),
        _dropout,
    ),
    "supp-lr": FigureSpec(
        "Supplementary: learning rate",
        "Test accuracy and loss vs trainable parameters at each learning rate (0.001 = main sweep).",
        ("lr",),
        _lr,
    ),
    "supp-early-stop": FigureSpec(
        "Supplementary: early stopping",
        "With early stopping (patience 10, best weights restored): test accuracy, test loss and the "
        "epoch of minimum validation loss vs trainable parameters.",
        ("early-stop",),
        _early_stop,
    ),
    "supp-depth": FigureSpec(
        "Supplementary: depth",
        "Best test accuracy and loss, and the parameters of the best-accuracy configuration, vs the "
        "number of dendro-somatic layers (L = 1 from the main sweep at the depth sweep's D and S).",
        ("depth",),
        _depth,
    ),
    "supp-epochs-to-minimum": FigureSpec(
        "Supplementary: epochs to minimum",
        "Epoch of minimum validation loss (1-based) vs trainable parameters, and its distribution "
        "over all configurations of each model: early minima mean early overfitting.",
        ("main",),
        _epochs_to_minimum,
    ),
    "supp-vann-x-curves": FigureSpec(
        "Supplementary: dANN-X vs vANN-X",
        "Test accuracy and loss vs trainable parameters of each dANN-X and its vANN-X (mean ± t-based "
        "95 % CI over trials; hollow: fewer trials than the rest).",
        ("main",),
        _vann_x,
    ),
    "supp-sann-differences": FigureSpec(
        "Supplementary: dANN-X − sANN-X",
        "Difference in mean test accuracy (points) and loss between each dANN-X and its sANN-X "
        "(random sparse dendrite → soma) per (D, S): what structured dendrites add over sparsity alone.",
        ("main",),
        _sann,
    ),
    "beyond-depth": FigureSpec(
        "Beyond the paper: depth to 20 layers",
        "Test accuracy, test loss and train − test accuracy gap (mean ± s.d. over trials), trainable "
        "parameters and the first layer's gradient norm at initialisation vs the number of "
        "dendro-somatic layers L, plain (solid) and with residual connections + normalisation "
        "(dashed), for dANN-LRF, dANN-GRF, dANN-R (D = 16, S = 256) and a vANN with dANN-LRF's "
        "parameters; with `depth-init`'s runs, plain (dotted) and residual (dash-dotted) stacks "
        "initialised He-uniform over each unit's real fan-in instead of the paper's Glorot over the "
        "dense shape; last panel: the gradient norm of every layer of the deepest stack after epoch 1.",
        ("depth-deep", "depth-init"),
        _depth_deep,
    ),
    "beyond-morphology": FigureSpec(
        "Beyond the paper: dendritic morphology",
        "dANN-LRF's morphology at matched trainable parameters (the somata adjusted): branching "
        "dendrites (B branches of 16/B synapses), dendrites × synapses at 256 synapses per soma, "
        "and cable weights fixed at 1, fixed random positive or learned positive; test accuracy, "
        "test loss and accuracy efficiency (mean ± s.d.; dotted: the paper's dANN-LRF D = 16, "
        "S = 256), and each family's best (on validation) under input noise σ.",
        ("morphology",),
        _morphology,
    ),
    "beyond-sparse-controls": FigureSpec(
        "Beyond the paper: sparse controls at matched parameters",
        "dANN-LRF at three sizes (D4×S128, D16×S256, D64×S512) against sparse networks of its "
        "trainable parameters: linear dendrites, sANN, sANN-LRF, an Erdős–Rényi random-sparse MLP, "
        "pdANN (dense fan-in, fewer somata), and lottery tickets from the dense vANN of the dANN's "
        "widths pruned by magnitude to its nonzeros per layer, rewound to epoch 1 or fine-tuned "
        "(5 rounds; one-shot from a 3-epoch parent at D64×S512); test accuracy and loss vs "
        "parameters (mean ± s.d. over trials) and each control's difference from dANN-LRF "
        "(*: Welch p < 0.05 after Bonferroni).",
        ("sparse-controls",),
        _sparse_controls,
    ),
    "beyond-selectivity": FigureSpec(
        "Beyond the paper: is mixed selectivity causal?",
        "A class-selectivity regulariser (loss = cross-entropy − α × mean selectivity index of the "
        "dendrites' and somata's nodes; α < 0 lowers selectivity, α > 0 raises it) and class-specific "
        "somata (each wired to one class's output), for dANN-LRF and a vANN of matched trainable "
        "parameters: the node entropy and selectivity index reached on the test set vs α, test "
        "accuracy vs α and vs the somata's entropy reached (★: class-specific somata), and test "
        "accuracy under input noise σ and class-sequential training at the α ends, α = 0 and "
        "class-specific (mean ± s.d. over trials).",
        ("selectivity",),
        _selectivity,
    ),
    "beyond-tabular": FigureSpec(
        "Beyond the paper: tabular data",
        "Test accuracy (R² for diabetes) vs the fraction of uninformative Gaussian features appended "
        "(0, 50, 90 % of the columns) on scikit-learn's bundled datasets, shuffled stratified 5-fold "
        "cross-validation × seeds (mean ± s.d. across seeds of each seed's CV mean): dendritic "
        "estimators with random receptive fields and with local ones on a learned feature order, an "
        "MLP of one hidden layer at matched trainable parameters trained the same way, and "
        "histogram gradient boosting (scikit-learn's defaults).",
        ("tabular",),
        _tabular,
    ),
    "supp-dataset-examples": FigureSpec(
        "Supplementary: dataset examples",
        "Example test images of each class of the figures' dataset.",
        ("main",),
        _examples,
    ),
    "rl-learning-curves": FigureSpec(
        "Beyond the paper: reinforcement learning",
        "Deterministic evaluation return vs environment steps of PPO / DQN with the RL Zoo's "
        "hyperparameters: SB3's default MLP, a dendritic network at <= 10 % of its parameters, and a "
        "dense and a random-sparse MLP at the dendritic network's parameters; interquartile mean over "
        "seeds and its 95 % bootstrap band (dotted: the task's threshold).",
        ("rl",),
        _rl_curves,
    ),
}
