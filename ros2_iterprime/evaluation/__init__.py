"""Benchmark evaluation: RefCOCO / RefCOCO+ / RefCOCOg and PhraseCut loaders, metrics, the eval loop.

    from ros2_iterprime.evaluation import load_dataset, run_evaluation, compute_metrics

Importing this package does not import torch; only the ``eval`` command loads the segmenter.
See docs/evaluation.md.
"""
from .datasets import (DATASETS, CorruptDatasetError, DatasetError, DatasetNotFoundError,
                       InvalidSplitError, Sample, load_dataset, load_phrasecut, load_refer)
from .metrics import PREC_THRESHOLDS, MetricAccumulator, compute_metrics, intersection_union
from .runner import (EvalConfig, EvalOutputError, ablation_grid, prepare_output, read_records,
                     run_evaluation, summarize)

__all__ = [
    "DATASETS",
    "PREC_THRESHOLDS",
    "CorruptDatasetError",
    "DatasetError",
    "DatasetNotFoundError",
    "EvalConfig",
    "EvalOutputError",
    "InvalidSplitError",
    "MetricAccumulator",
    "Sample",
    "ablation_grid",
    "compute_metrics",
    "intersection_union",
    "load_dataset",
    "load_phrasecut",
    "load_refer",
    "prepare_output",
    "read_records",
    "run_evaluation",
    "summarize",
]
