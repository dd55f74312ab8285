"""A dendritic classifier as a scikit-learn estimator: a pipeline, a grid search, a held-out score.

scikit-learn's bundled breast-cancer set (569 tumours, 30 features; no download) with 90 uninformative
Gaussian columns appended (75 % of the columns are noise). ``GridSearchCV`` picks the receptive
field ("random", or "local" on an order of the features learned from their correlations) and the
number of somata of a ``DendriticClassifier`` behind a ``StandardScaler``; the winner is scored on
a held-out quarter next to scikit-learn's ``HistGradientBoostingClassifier``.

    python examples/sklearn_grid_search.py                 # about 30 seconds
    python examples/sklearn_grid_search.py --epochs 40 --seed 2
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from dendritic.sklearn import DendriticClassifier


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    x, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(args.seed)
    x = np.hstack([x, rng.standard_normal((len(x), 90))])
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=args.seed, stratify=y
    )
    pipe = Pipeline(
        [
            ("scale", StandardScaler()),
            (
                "dann",
                DendriticClassifier(
                    dendrites=8, synapses=8, epochs=args.epochs, lr=1e-2, random_state=args.seed
                ),
            ),
        ]
    )
    grid = GridSearchCV(
        pipe,
        {"dann__receptive_field": ["random", "local"], "dann__somata": [16, 32]},
        cv=StratifiedKFold(3, shuffle=True, random_state=args.seed),
    )
    grid.fit(x_train, y_train)
    best = grid.best_estimator_
    params = best.named_steps["dann"].n_trainable_params_
    print(f"best: {grid.best_params_} (CV accuracy {100 * grid.best_score_:.1f} %, {params:,} parameters)")
    trees = HistGradientBoostingClassifier(random_state=args.seed).fit(x_train, y_train)
    results = {"dendritic": float(best.score(x_test, y_test)), "hgb": float(trees.score(x_test, y_test))}
    print(
        f"held-out accuracy: dendritic {100 * results['dendritic']:.1f} %, gradient boosting {100 * results['hgb']:.1f} %"
    )
    return results


if __name__ == "__main__":
    main()
