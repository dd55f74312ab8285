"""Everything SPEC §7 measures on one trained run, from its checkpoint (``dendritic analyze``).

The test split is rebuilt exactly as in training (same dataset, seed, noise σ, subset limit),
the model is run over it once, streaming activations into hit counters, and the analyses of
node activity, real weights and (optionally) t-SNE embeddings are collected into one dict of
plain numbers. Large per-node arrays (hit matrices, entropies, embeddings) live under the
``"arrays"`` key, which :func:`write_analysis` saves as ``arrays.npz`` next to the JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dendritic.analysis.activity import SELECTIVITY_THRESHOLD, HitCounter
from dendritic.analysis.embedding import DEFAULT_K, separability, tsne
from dendritic.analysis.weights import weight_histogram, weight_kde, weight_stats
from dendritic.files import atomic_path, atomic_write_text

__all__ = [
    "NO_CHECKPOINT",
    "analyze_model",
    "analyze_run",
    "format_summary",
    "layer_weights",
    "resolve_checkpoint",
    "write_analysis",
]

NO_CHECKPOINT = "run {run_id} has no checkpoint; train with --checkpoint or a sweep with --checkpoints"
PERPLEXITY = 50.0
ENTROPY_BINS = 30
WEIGHT_BINS = 60
EVAL_BATCH = 1024


# ---------------------------------------------------------------- checkpoint and data


def resolve_checkpoint(run: Mapping[str, Any], store_path: str | os.PathLike[str] | None = None) -> Path:
    """The checkpoint file of a run; relative paths are tried as given, then next to the store."""
    ref = run.get("checkpoint")
    if not ref:
        raise ValueError(NO_CHECKPOINT.format(run_id=run.get("id", "?")))
    from dendritic.models.checkpoint import checkpoint_paths

    path = Path(ref)
    candidates = [path]
    if not path.is_absolute() and store_path is not None:
        candidates.append(Path(store_path).resolve().parent / path)
    for candidate in candidates:
        if checkpoint_paths(candidate)[1].is_file():
            return candidate
    raise FileNotFoundError(f"checkpoint of run {run.get('id', '?')} not found at {ref}")


def _test_split(run: Mapping[str, Any], data_dir: Any, download: bool) -> Any:
    """The run's test split, prepared with the very settings it was trained with."""
    from dendritic.data import prepare

    cfg = run.get("config") or {}
    return prepare(
        str(cfg.get("dataset", run.get("dataset"))),
        seed=int(cfg.get("seed", run.get("seed", 1))),
        sigma=float(cfg.get("sigma", 0.0)),
        sequential=bool(cfg.get("sequential", False)),
        val_fraction=float(cfg.get("val_fraction", 0.1)),
        data_dir=data_dir,
        download=download,
        limit=cfg.get("limit"),
        batch_size=int(cfg.get("batch_size", 128)),
        # a limited run stored without a limit_scope was tested on `limit` test images
        test_limit=cfg.get("limit") if cfg.get("limit_scope", "train+test") == "train+test" else None,
    )


# ---------------------------------------------------------------- weights


def layer_weights(model: Any) -> list[tuple[str, np.ndarray]]:
    """(name, real connection weights) for every hidden layer and the output layer.

    Sparse layers store only real connections (1-D); dense layers store the full matrix, all
    real. A masked layer keeps only its mask's entries. Exact zeros that are real connections stay.
    """
    out = []
    for name, layer in [*model.hidden_layers(), ("output", model.output)]:
        w = layer.weight.detach().cpu().numpy().astype(float)
        mask = getattr(layer, "mask", None)
        if mask is not None and w.ndim == 2:
            w = w[mask.detach().cpu().numpy().astype(bool)]
        out.append((name, w.ravel()))
    return out


def _weight_summary(w: np.ndarray) -> dict[str, Any]:
    keep = np.ones(w.shape, dtype=bool)  # every entry is a real connection
    stats = weight_stats(w, keep)
    counts, edges = weight_histogram(w, WEIGHT_BINS, mask=keep, density=True)
    grid, density = weight_kde(w, mask=keep, n_grid=200)
    return {
        **{k: v if isinstance(v, int) else _num(v) for k, v in dataclasses.asdict(stats).items()},
        "hist": {"edges": edges.tolist(), "density": counts.tolist()},
        "kde": {"x": grid.tolist(), "density": density.tolist()},
    }


# ---------------------------------------------------------------- activity


def _activity_summary(counter: HitCounter) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    stats = counter.stats(SELECTIVITY_THRESHOLD)
    k = counter.n_classes
    live = stats.live_entropy
    max_bits = math.log2(k + 1)
    counts, edges = np.histogram(live, bins=ENTROPY_BINS, range=(0.0, max_bits))
    q25, q50, q75 = np.percentile(live, [25, 50, 75]) if live.size else (math.nan,) * 3
    live_sel = stats.selectivity[~stats.dead]
    summary = {
        "n_nodes": int(stats.dead.size),
        "dead": int(stats.dead.sum()),
        "sparsity": float(stats.sparsity),
        "entropy": {
            "median": _num(q50),
            "q25": _num(q25),
            "q75": _num(q75),
            "iqr": _num(q75 - q25),
            "mean": _num(live.mean()) if live.size else None,
            "max_bits": max_bits,
        },
        "entropy_hist": {"edges": edges.tolist(), "counts": counts.tolist()},
        "selectivity": {
            "threshold": SELECTIVITY_THRESHOLD,
            "mean": _num(live_sel.mean()) if live_sel.size else None,
            "median": _num(np.median(live_sel)) if live_sel.size else None,
            # counts[c] = live nodes that fire for > 40 % of the samples of exactly c classes
            "counts": np.bincount(live_sel, minlength=k + 1).tolist(),
        },
    }
    arrays = {"hits": stats.hits, "entropy": stats.entropy, "selectivity": stats.selectivity}
    return summary, arrays


# ---------------------------------------------------------------- embedding


def effective_perplexity(n: int, perplexity: float = PERPLEXITY) -> float:
    """Perplexity 50 (the paper's), reduced to (n − 1) / 3 when there are too few points for it."""
    return float(min(perplexity, max(1.0, (n - 1) / 3)))


def _openmp_threads() -> Any:
    """Run scikit-learn's t-SNE on one OpenMP thread.

    Its Barnes-Hut t-SNE otherwise starts a spinning thread per core; on a shared or busy
    machine that made a 300-point embedding take 87 s instead of 7 s (and two threads gain at
    most 2x on an idle one).
    """
    import contextlib

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="openmp")


def _embedding(
    activations: np.ndarray, labels: np.ndarray, *, repeats: int, seed: int, k: int
) -> tuple[dict[str, Any], list[np.ndarray]]:
    n = activations.shape[0]
    perplexity = effective_perplexity(n)
    runs, maps = [], []
    # PCA initialisation is deterministic, so repeats only differ with random initialisations
    init = "pca" if repeats == 1 else "random"
    for r in range(repeats):
        with _openmp_threads():
            emb = tsne(activations, perplexity=perplexity, seed=seed + r, init=init)
        sep = separability(activations, emb, labels, k)
        runs.append(
            {
                "seed": seed + r,
                "silhouette": sep.silhouette,
                "neighbourhood_hit": sep.neighbourhood_hit,
                "trustworthiness": sep.trustworthiness,
            }
        )
        maps.append(emb.astype(np.float32))
    summary: dict[str, Any] = {
        "n_samples": n,
        "perplexity": perplexity,
        "k": k,
        "init": init,
        "repeats": runs,
    }
    for name in ("silhouette", "neighbourhood_hit", "trustworthiness"):
        summary[name] = float(np.mean([r[name] for r in runs]))
    return summary, maps


# ---------------------------------------------------------------- the analysis


def analyze_model(
    model: Any,
    x: Any,
    y: Any,
    *,
    n_classes: int | None = None,
    tsne_samples: int = 2000,
    tsne_repeats: int = 1,
    seed: int = 0,
    k: int = DEFAULT_K,
    layers: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Activity, weight and embedding analyses of ``model`` on inputs ``x`` with labels ``y``.

    ``tsne_samples`` = how many of the first test images are embedded (0 skips t-SNE; fewer
    than 2k + 2 points cannot be scored, so they skip it too, with a note). One repeat uses
    PCA initialisation (deterministic); ``tsne_repeats`` > 1 use random initialisations seeded
    ``seed``, ``seed + 1``, … so that the repeats differ. ``layers`` limits the hidden layers
    analysed (default: all).
    """
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(x)
    y = torch.as_tensor(y).long()
    if len(x) == 0:
        raise ValueError("no test samples to analyse")
    k_classes = int(n_classes if n_classes is not None else getattr(model, "n_classes", int(y.max()) + 1))
    names = [name for name, _ in model.hidden_layers()]
    if layers is not None:
        unknown = sorted(set(layers) - set(names))
        if unknown:
            raise ValueError(f"unknown layer(s) {', '.join(unknown)}; the model has {', '.join(names)}")
        names = [n for n in names if n in set(layers)]
    counters = {name: HitCounter(k_classes) for name in names}
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(x), EVAL_BATCH):
            xb, yb = x[start : start + EVAL_BATCH], y[start : start + EVAL_BATCH]
            logits, acts = model(xb, return_activations=True)
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(dim=1) == yb).sum())
            for name in names:
                counters[name].update(acts[name], yb)
        n_embed = min(int(tsne_samples), len(x))
        embed_acts = {}
        if n_embed > 0:
            _, acts = model(x[:n_embed], return_activations=True)
            embed_acts = {name: acts[name].cpu().numpy().astype(np.float64) for name in names}
    model.train(was_training)

    result: dict[str, Any] = {
        "test": {"n_samples": len(x), "accuracy": correct / len(x), "loss": loss_sum / len(x)},
        "n_classes": k_classes,
        "layers": names,
        "activity": {},
        "weights": {},
        "embedding": {},
        "notes": [],
        "settings": {
            "tsne_samples": n_embed,
            "tsne_repeats": int(tsne_repeats),
            "perplexity": effective_perplexity(n_embed) if n_embed else None,
            "k": k,
            "seed": seed,
            "selectivity_threshold": SELECTIVITY_THRESHOLD,
        },
        "arrays": {},
    }
    arrays = result["arrays"]
    for name in names:
        summary, arr = _activity_summary(counters[name])
        result["activity"][name] = summary
        for key, value in arr.items():
            arrays[f"{key}/{name}"] = value
    for name, w in layer_weights(model):
        if w.size == 0:
            result["notes"].append(f"layer {name} has no weights")
            continue
        result["weights"][name] = _weight_summary(w)

    labels = y[:n_embed].cpu().numpy()
    if 0 < n_embed < 2 * k + 2 or (n_embed and np.unique(labels).size < 2):
        result["notes"].append(
            f"t-SNE skipped: {n_embed} samples are too few to score with k = {k} (need >= {2 * k + 2}, 2+ classes)"
        )
    elif n_embed:
        arrays["tsne_labels"] = labels
        for name in names:
            summary, maps = _embedding(embed_acts[name], labels, repeats=tsne_repeats, seed=seed, k=k)
            result["embedding"][name] = summary
            for r, emb in enumerate(maps):
                arrays[f"tsne/{name}/{r}"] = emb
    return result


def analyze_run(
    store: Any,
    run_id: int,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    tsne_samples: int = 2000,
    seed: int = 0,
    tsne_repeats: int = 1,
    download: bool = True,
    layers: Sequence[str] | None = None,
) -> dict[str, Any]:
    """All SPEC §7 analyses of run ``run_id`` of ``store`` (a :class:`~dendritic.store.RunStore`).

    Raises ValueError (one line) when the run has no checkpoint, FileNotFoundError when its
    checkpoint file is gone; ``RunNotFound`` for an unknown id; ``CheckpointOwnerError`` (a
    ValueError) naming both runs when the checkpoint is another run's (its run id or training
    config differ, see :func:`dendritic.models.checkpoint.check_run`).
    """
    from dendritic.models.checkpoint import check_run, load

    run = store.get_run(run_id)
    if run.get("status") != "finished":
        raise ValueError(f"run {run_id} is {run.get('status')}, not finished: nothing to analyse")
    path = resolve_checkpoint(run, getattr(store, "path", None))
    ownership = check_run(path, run)  # another run's model is never reported under this run's label
    model = load(path, run=run)
    data = _test_split(run, data_dir, download)
    result = analyze_model(
        model,
        data.x_test,
        data.y_test,
        n_classes=data.n_classes,
        tsne_samples=tsne_samples,
        tsne_repeats=tsne_repeats,
        seed=seed,
        layers=layers,
    )
    cfg = run.get("config") or {}
    result["run"] = {
        "id": run["id"],
        "model": run.get("model"),
        "dataset": run.get("dataset"),
        "dendrites": run.get("dendrites"),
        "somata": run.get("somata"),
        "seed": run.get("seed"),
        "layers": cfg.get("layers", 1),
        "sigma": cfg.get("sigma", 0.0),
        "sequential": cfg.get("sequential", False),
        "lr": cfg.get("lr"),
        "dropout": cfg.get("dropout", 0.0),
        "trainable_params": run.get("trainable_params"),
        "test_accuracy": run.get("test_accuracy"),
        "test_loss": run.get("test_loss"),
        "best_epoch": run.get("best_epoch"),
        "checkpoint": str(path),
    }
    if ownership is not None:
        result["notes"].append(ownership)
    stored = run.get("test_accuracy")
    if stored is not None and abs(stored - result["test"]["accuracy"]) > 1e-6:
        result["notes"].append(
            f"test accuracy from the checkpoint ({result['test']['accuracy']:.4f}) differs from the stored "
            f"one ({stored:.4f}): the checkpoint or the data changed since training"
        )
    return {"run": result.pop("run"), **result}


# ---------------------------------------------------------------- output


def _num(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def to_jsonable(result: Mapping[str, Any]) -> dict[str, Any]:
    """The result without its arrays, NaN → null, numpy scalars → Python numbers."""

    def clean(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, np.ndarray):
            return clean(v.tolist())
        if isinstance(v, (np.integer,)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            return _num(v)
        return v

    return clean({k: v for k, v in result.items() if k != "arrays"})


def write_analysis(result: Mapping[str, Any], out: str | os.PathLike[str]) -> list[Path]:
    """``analysis.json`` (numbers), ``arrays.npz`` (per-node arrays, embeddings) and the PNGs."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    path = out / "analysis.json"
    atomic_write_text(path, json.dumps(to_jsonable(result), indent=2))
    written.append(path)
    arrays = result.get("arrays") or {}
    if arrays:
        path = out / "arrays.npz"
        with atomic_path(path) as tmp:
            np.savez_compressed(tmp, **{k.replace("/", "__"): v for k, v in arrays.items()})
        written.append(path)
    from dendritic.figures.runplots import run_figures
    from dendritic.figures.style import save_figure, use_headless_backend

    use_headless_backend()
    for name, fig in run_figures(result).items():
        written += save_figure(fig, out / name, formats=("png",))
    return written


def format_summary(result: Mapping[str, Any]) -> str:
    """A few readable lines: the run, its test metrics, then one line per layer and analysis."""
    run = result.get("run", {})
    test = result["test"]
    lines = []
    if run:
        lines.append(
            f"run {run['id']}: {run['model']} on {run['dataset']}, D={run['dendrites']} S={run['somata']} "
            f"seed={run['seed']}, {run.get('trainable_params') or 0:,} trainable parameters"
        )
    lines.append(
        f"test set: {test['n_samples']} images, accuracy {100 * test['accuracy']:.2f} %, loss {test['loss']:.4f}"
    )
    lines.append(f"activity (live nodes; entropy in bits, max {math.log2(result['n_classes'] + 1):.2f}):")
    for name, a in result["activity"].items():
        e, s = a["entropy"], a["selectivity"]
        lines.append(
            f"  {name:<12} {a['n_nodes']:>7} nodes, {a['dead']:>6} dead (sparsity {a['sparsity']:.3f}), "
            f"entropy median {_fmt(e['median'])} IQR {_fmt(e['iqr'])}, selectivity mean {_fmt(s['mean'])} classes"
        )
    lines.append("weights (real connections):")
    for name, w in result["weights"].items():
        lines.append(
            f"  {name:<12} n={w['n']:>9,}  mean {w['mean']:+.4f} sd {w['sd']:.4f} range {w['range']:.3f} "
            f"skew {_fmt(w['skewness'])} excess kurtosis {_fmt(w['excess_kurtosis'])}"
        )
    if result["embedding"]:
        lines.append(
            f"embedding (t-SNE of the first {result['settings']['tsne_samples']} test images, "
            f"perplexity {result['settings']['perplexity']:.3g}, k = {result['settings']['k']}):"
        )
        for name, m in result["embedding"].items():
            lines.append(
                f"  {name:<12} silhouette {m['silhouette']:+.3f}, neighbourhood hit {m['neighbourhood_hit']:.3f}, "
                f"trustworthiness {m['trustworthiness']:.3f}"
            )
    lines += [f"note: {n}" for n in result.get("notes", [])]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"
