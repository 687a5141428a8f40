"""Referring-segmentation metrics: oIoU, mIoU and Prec@X.

Definitions (the protocol of the paper's official evaluator, VoyageWang/IteRPrimE ``evaluator.py``,
and of the RIS literature):

- per sample, at the original image resolution: I = |pred AND gt|, U = |pred OR gt|, IoU = I / U;
- oIoU (overall / cumulative IoU) = sum_i I_i / sum_i U_i;
- mIoU = mean_i IoU_i;
- Prec@X = fraction of samples with IoU_i >= X, for X in {0.5, 0.6, 0.7, 0.8, 0.9}.

Every sample counts: a missing prediction (no proposal, an error) is an empty mask, so its IoU is 0
and its U is |gt|. A sample with an empty union (empty GT and empty prediction, which a well-formed
benchmark never has) agrees perfectly: IoU 1, it passes every Prec@X and adds nothing to oIoU; it is
counted in ``empty_union``. (The official evaluator computes (I + 1e-6) / (U + 1e-6) and tests
``> X``: that gives the same IoU 1 for an empty union and counts an IoU of exactly X, hence ``>=``
here, evaluated exactly: ``I >= X * U`` in rational arithmetic, so IoU = 3/5 passes 0.6.)
With no sample at all every metric is 0.0; with only empty unions oIoU is 1.0.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "PREC_THRESHOLDS",
    "MetricAccumulator",
    "compute_metrics",
    "intersection_union",
    "iou_from_counts",
    "prec_key",
]

PREC_THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)


def prec_key(x: float) -> str:
    """Summary key of a precision threshold: 0.5 -> 'Prec@0.5'."""
    return f"Prec@{x:g}"


def intersection_union(pred: np.ndarray | None, gt: np.ndarray) -> tuple[int, int]:
    """(I, U) pixel counts of a predicted and a ground-truth mask of the same (H, W) shape.

    ``pred=None`` (no prediction) is an empty mask. Non-bool masks are binarised with ``!= 0``.
    """
    gt = np.asarray(gt) != 0
    if pred is None:
        return 0, int(gt.sum())
    pred = np.asarray(pred) != 0
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {gt.shape}; "
                         "IoU is computed at the original resolution")
    inter = int(np.count_nonzero(pred & gt))
    union = int(np.count_nonzero(pred | gt))
    return inter, union


def iou_from_counts(inter: int, union: int) -> float:
    """I / U, and 1.0 for an empty union (empty prediction of an empty ground truth)."""
    return float(inter) / float(union) if union > 0 else 1.0


def _passes(inter: int, union: int, threshold: Fraction) -> bool:
    return union == 0 or Fraction(inter) >= threshold * union


@dataclass
class MetricAccumulator:
    """Running oIoU / mIoU / Prec@X over (I, U) pairs; ``add`` is O(1)."""

    thresholds: Sequence[float] = PREC_THRESHOLDS
    n: int = 0
    cum_i: int = 0
    cum_u: int = 0
    iou_sum: float = 0.0
    empty_union: int = 0
    hits: dict[float, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._fr = {t: Fraction(str(t)) for t in self.thresholds}
        self.hits = {t: 0 for t in self.thresholds}

    def add(self, inter: int, union: int) -> float:
        """Add one sample; returns its IoU."""
        inter, union = int(inter), int(union)
        if inter < 0 or union < 0 or inter > union:
            raise ValueError(f"invalid counts I={inter}, U={union}")
        self.n += 1
        self.cum_i += inter
        self.cum_u += union
        if union == 0:
            self.empty_union += 1
        iou = iou_from_counts(inter, union)
        self.iou_sum += iou
        for t, fr in self._fr.items():
            if _passes(inter, union, fr):
                self.hits[t] += 1
        return iou

    @property
    def oiou(self) -> float:
        if self.cum_u > 0:
            return self.cum_i / self.cum_u
        return 1.0 if self.n else 0.0

    @property
    def miou(self) -> float:
        return self.iou_sum / self.n if self.n else 0.0

    def result(self) -> dict:
        """JSON-serialisable metrics (fractions in [0, 1], not percent)."""
        out = {
            "n": self.n,
            "oIoU": self.oiou,
            "mIoU": self.miou,
        }
        for t in self.thresholds:
            out[prec_key(t)] = self.hits[t] / self.n if self.n else 0.0
        out["cum_I"] = self.cum_i
        out["cum_U"] = self.cum_u
        out["empty_union"] = self.empty_union
        return out


def compute_metrics(pairs: Iterable[tuple[int, int]],
                    thresholds: Sequence[float] = PREC_THRESHOLDS) -> dict:
    """Metrics of an iterable of per-sample (I, U) counts (see the module docstring)."""
    acc = MetricAccumulator(thresholds=thresholds)
    for inter, union in pairs:
        acc.add(inter, union)
    return acc.result()
