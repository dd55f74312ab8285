"""Continual learning with dendritic ANNs: split / permuted / class-sorted benchmarks, the
accuracy matrix R[i, j] and its metrics (ACC, BWT, forgetting, FWT), comparisons at matched
parameters. See ``docs/continual.md``.

    from dendritic.continual import ContinualConfig, run_continual
    result = run_continual(ContinualConfig(benchmark="split", scenario="class-il", seed=1))
    print(result.format_matrix()); result.metrics["acc"]
"""

from dendritic.continual.benchmarks import (
    BENCHMARKS,
    SCENARIOS,
    Benchmark,
    Task,
    build_benchmark,
    parse_benchmark,
    split_classes,
    task_permutation,
    task_permutations,
)
from dendritic.continual.compare import (
    COMPARE_MODELS,
    Comparison,
    ComparisonRow,
    compare,
    comparisons_from_runs,
    match_parameters,
    parameter_count,
    parse_seeds,
    summarize_results,
)
from dendritic.continual.metrics import (
    average_accuracy,
    backward_transfer,
    forgetting,
    forgetting_last,
    forward_transfer,
    learning_accuracy,
    summarize,
)
from dendritic.continual.runner import ContinualConfig, ContinualResult, evaluate_task, run_continual

__all__ = [
    "BENCHMARKS",
    "COMPARE_MODELS",
    "SCENARIOS",
    "Benchmark",
    "Comparison",
    "ComparisonRow",
    "ContinualConfig",
    "ContinualResult",
    "Task",
    "average_accuracy",
    "backward_transfer",
    "build_benchmark",
    "compare",
    "comparisons_from_runs",
    "evaluate_task",
    "forgetting",
    "forgetting_last",
    "forward_transfer",
    "learning_accuracy",
    "match_parameters",
    "parameter_count",
    "parse_benchmark",
    "parse_seeds",
    "run_continual",
    "split_classes",
    "summarize",
    "summarize_results",
    "task_permutation",
    "task_permutations",
]
