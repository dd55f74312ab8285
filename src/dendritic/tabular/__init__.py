"""The tabular study (``dendritic tabular``): dendritic estimators vs a matched MLP vs gradient
boosting on scikit-learn's bundled datasets, clean and with uninformative features."""

from dendritic.tabular.study import (
    DATASETS,
    EXPERIMENT,
    MAX_SEED,
    MODELS,
    NOISE_FRACTIONS,
    StudyResult,
    TabularStudy,
    clean_features,
    dendritic_parameters,
    load_dataset,
    matched_hidden,
    run_study,
    with_noise_features,
)

__all__ = [
    "DATASETS",
    "EXPERIMENT",
    "MAX_SEED",
    "MODELS",
    "NOISE_FRACTIONS",
    "StudyResult",
    "TabularStudy",
    "clean_features",
    "dendritic_parameters",
    "load_dataset",
    "matched_hidden",
    "run_study",
    "with_noise_features",
]
