"""Benchmark evaluation: RefCOCO / RefCOCO+ / RefCOCOg and PhraseCut loaders, metrics, the eval loop.

    from ros2_iterprime.evaluation import load_dataset, run_evaluation, compute_metrics

Owns the dataset loaders (`datasets`), the metrics (`metrics`), the resumable evaluation loop
(`runner`) and the results table (`report`). It sits above the library: the loop takes any object
with the segmenter's interface, so it imports only the root helpers; the ``eval`` command
(`..cli.evaluate`) loads the segmenter. Importing this package does not import torch.
See docs/evaluation.md.
"""
from .datasets import (
                       DATASETS,
                       CorruptDatasetError,
                       DatasetError,
                       DatasetNotFoundError,
                       InvalidSplitError,
                       Sample,
                       load_dataset,
                       load_phrasecut,
                       load_refer,
)
from .metrics import PREC_THRESHOLDS, MetricAccumulator, compute_metrics, intersection_union
from .runner import EvalConfig, EvalOutputError, ablation_grid, prepare_output, read_records, run_evaluation, summarize

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
