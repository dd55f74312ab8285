"""Analyses of trained dANNs (SPEC §7): efficiency, configuration selection, node activity,
weight distributions, embeddings and their separability, and the statistics behind the figures.

Pure functions over plain data (run dicts from ``RunStore.list_runs()``, numpy arrays or torch
tensors), so each can be checked by hand. Needs the ``analysis`` extra (scipy, scikit-learn);
those are imported only when a function needs them. Selection uses validation metrics by
default and neighbourhood hit leaves each point out of its own neighbourhood (SPEC §10.6–7).
"""

from dendritic.analysis.activity import (
    ActivityStats,
    HitCounter,
    activity_stats,
    class_counts,
    dead_nodes,
    drop_dead,
    hit_matrix,
    node_entropy,
    selectivity,
    sparsity,
)
from dendritic.analysis.efficiency import (
    Efficiency,
    efficiency,
    efficiency_score,
    group_efficiency,
    normalised_efficiency_score,
)
from dendritic.analysis.embedding import (
    Separability,
    neighbourhood_hit,
    neighbourhood_hit_per_point,
    separability,
    silhouette,
    trustworthiness,
    tsne,
)
from dendritic.analysis.selection import (
    Group,
    Summary,
    attach_val_metrics,
    best_configuration,
    cheapest_matching,
    final_val_metrics,
    group_runs,
    run_val_metrics,
    summarise,
)
from dendritic.analysis.stats import (
    AnovaResult,
    AnovaRow,
    PairwiseTest,
    bonferroni,
    pairwise_by_level,
    pairwise_welch,
    two_way_anova,
)
from dendritic.analysis.weights import WeightStats, real_weights, weight_histogram, weight_kde, weight_stats

__all__ = [
    "ActivityStats",
    "AnovaResult",
    "AnovaRow",
    "Efficiency",
    "Group",
    "HitCounter",
    "PairwiseTest",
    "Separability",
    "Summary",
    "WeightStats",
    "activity_stats",
    "attach_val_metrics",
    "best_configuration",
    "bonferroni",
    "cheapest_matching",
    "class_counts",
    "dead_nodes",
    "drop_dead",
    "efficiency",
    "efficiency_score",
    "final_val_metrics",
    "group_efficiency",
    "group_runs",
    "hit_matrix",
    "neighbourhood_hit",
    "neighbourhood_hit_per_point",
    "node_entropy",
    "normalised_efficiency_score",
    "pairwise_by_level",
    "pairwise_welch",
    "real_weights",
    "run_val_metrics",
    "selectivity",
    "separability",
    "silhouette",
    "sparsity",
    "summarise",
    "trustworthiness",
    "tsne",
    "two_way_anova",
    "weight_histogram",
    "weight_kde",
    "weight_stats",
]
