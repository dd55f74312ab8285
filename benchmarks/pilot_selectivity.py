"""The selectivity sweep's pilot (issue 23): which α moves the measured entropy clearly?

Trains dANN-LRF (D 16, S 256) and its matched vANN (D 1, S 87) with the class-selectivity
regulariser at each α on a small budget of real Fashion-MNIST, and class-specific somata, and
prints what each run reached on the test set (node entropy and selectivity index of the dendrites
and somata, dead somata) as a Markdown table, means over seeds. Runs go to a scratch store (never
the committed one). The table in docs/sweeps.md came from these calls (run from a scratch copy of this script)::

    python benchmarks/pilot_selectivity.py --alphas=-1,-0.3,-0.1,-0.03,0,0.03,0.1,0.3,1,3,10 --seeds 1
    python benchmarks/pilot_selectivity.py --alphas=-1,-0.3,-0.03,0,0.03,0.3,1 --seeds 2
    python benchmarks/pilot_selectivity.py --alphas=-1,-0.3,0,0.3,1 --models dANN-LRF --epochs 6 \\
        --limit 20000 --no-class-specific

(all with ``--data-dir`` the folder of the Fashion-MNIST files, one thread, under ``nice``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from dendritic.store import RunStore
from dendritic.training import TrainConfig, train
from dendritic.training.loop import data_for

MODELS = {"dANN-LRF": (16, 256), "vANN": (1, 87)}
LAYERS = "dendrites+somata"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alphas", default="-1,-0.3,-0.1,0,0.1,0.3,1")
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--models", default="dANN-LRF,vANN")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=5000)
    parser.add_argument("--no-class-specific", action="store_true")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--store", default=None, help="scratch store (default: a temporary file)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    alphas: list[Any] = [float(a) for a in args.alphas.split(",")]
    conditions = alphas + ([] if args.no_class_specific else ["class-specific"])
    store_path = args.store or str(Path(tempfile.mkdtemp()) / "pilot.db")
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with RunStore(store_path) as store:
        for seed in (int(s) for s in args.seeds.split(",")):
            data = data_for(TrainConfig(epochs=args.epochs, limit=args.limit, seed=seed), args.data_dir)
            for model in args.models.split(","):
                dendrites, somata = MODELS[model]
                for condition in conditions:
                    options: dict[str, Any] = (
                        {"readout": "class-specific"}
                        if condition == "class-specific"
                        else {"selectivity_alpha": condition, "selectivity_layers": LAYERS}
                    )
                    config = TrainConfig(
                        model=model, dendrites=dendrites, somata=somata, epochs=args.epochs,
                        limit=args.limit, seed=seed, **options,
                    )  # fmt: skip
                    run = train(config, store=store, data=data, threads=1, experiment="selectivity-pilot")
                    activity = run.extra["activity"]
                    label = condition if isinstance(condition, str) else f"{condition:g}"
                    results.setdefault((model, label), []).append(
                        {
                            "acc": 100 * run.test_accuracy,
                            "dend_entropy": activity["dendrites_1"]["entropy_mean"],
                            "soma_entropy": activity["somata_1"]["entropy_mean"],
                            "dend_index": activity["dendrites_1"]["index_mean"],
                            "soma_index": activity["somata_1"]["index_mean"],
                            "dead": activity["somata_1"]["dead_fraction"],
                        }
                    )
                    print(model, label, f"seed {seed}: {100 * run.test_accuracy:.1f} %", flush=True)
    print(f"\n{args.epochs} epochs on {args.limit:,} images; regulariser on {LAYERS}\n")
    print(
        "| model | α | seeds | test acc % | dendrites entropy | somata entropy | dendrites SI | somata SI | dead somata |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (model, label), runs in results.items():

        def mean(key: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.fmean(r[key] for r in runs)

        print(
            f"| {model} | {label} | {len(runs)} | {mean('acc'):.1f} | {mean('dend_entropy'):.2f} | "
            f"{mean('soma_entropy'):.2f} | {mean('dend_index'):.2f} | {mean('soma_index'):.2f} | {mean('dead'):.2f} |"
        )


if __name__ == "__main__":
    main()
