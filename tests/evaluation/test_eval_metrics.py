"""oIoU / mIoU / Prec@X against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ros2_iterprime.evaluation.metrics import MetricAccumulator, compute_metrics, intersection_union, iou_from_counts


def _box(y0, y1, x0, x1, shape=(10, 10)):
    m = np.zeros(shape, dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def test_intersection_union_by_hand():
    gt = _box(2, 6, 2, 6)  # 16 px
    assert intersection_union(gt, gt) == (16, 16)
    pred = _box(2, 4, 2, 8)  # 12 px: 8 inside gt, 4 outside
    assert intersection_union(pred, gt) == (8, 20)
    assert iou_from_counts(8, 20) == pytest.approx(0.4)
    # an empty prediction (or none at all) scores 0 and its union is the GT area
    assert intersection_union(np.zeros_like(gt), gt) == (0, 16)
    assert intersection_union(None, gt) == (0, 16)
    # empty union: an empty prediction of an empty GT agrees perfectly (as in the official evaluator)
    z = np.zeros((10, 10), bool)
    assert intersection_union(z, z) == (0, 0)
    assert iou_from_counts(0, 0) == 1.0
    # uint8 / 0-255 masks are binarised
    assert intersection_union(pred.astype(np.uint8) * 255, gt.astype(np.uint8)) == (8, 20)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="original resolution"):
        intersection_union(np.zeros((5, 5), bool), np.zeros((10, 10), bool))


def test_metrics_by_hand():
    # IoUs: 0.4, 0 (empty prediction), 1 (empty union), 0.6 (exactly), 0.9 (exactly)
    pairs = [(8, 20), (0, 16), (0, 0), (3, 5), (9, 10)]
    m = compute_metrics(pairs)
    assert m["n"] == 5
    assert m["cum_I"] == 20 and m["cum_U"] == 51  # the empty union adds nothing to oIoU
    assert m["oIoU"] == pytest.approx(20 / 51)
    assert m["mIoU"] == pytest.approx((0.4 + 0 + 1 + 0.6 + 0.9) / 5)
    assert m["Prec@0.5"] == pytest.approx(3 / 5)
    assert m["Prec@0.6"] == pytest.approx(3 / 5)  # IoU = 3/5 counts at 0.6 (>=, exact arithmetic)
    assert m["Prec@0.7"] == pytest.approx(2 / 5)
    assert m["Prec@0.8"] == pytest.approx(2 / 5)
    assert m["Prec@0.9"] == pytest.approx(2 / 5)  # IoU = 9/10 counts at 0.9
    assert m["empty_union"] == 1


def test_metrics_without_empty_union_by_hand():
    m = compute_metrics([(8, 20), (0, 16), (3, 5), (9, 10)])
    assert m["oIoU"] == pytest.approx(20 / 51)
    assert m["mIoU"] == pytest.approx((0.4 + 0 + 0.6 + 0.9) / 4)
    assert [m[f"Prec@{t}"] for t in (0.5, 0.6, 0.7, 0.8, 0.9)] == pytest.approx([0.5, 0.5, 0.25, 0.25, 0.25])
    # just below a threshold does not count
    assert compute_metrics([(5999, 10000)])["Prec@0.6"] == 0.0


def test_empty_prediction_only_and_empty_set():
    m = compute_metrics([(0, 16), (0, 9)])
    assert m["oIoU"] == 0.0 and m["mIoU"] == 0.0 and m["Prec@0.5"] == 0.0 and m["n"] == 2
    m = compute_metrics([(0, 0)])
    assert m["oIoU"] == 1.0 and m["mIoU"] == 1.0 and m["Prec@0.9"] == 1.0 and m["empty_union"] == 1
    m = compute_metrics([])
    assert m["n"] == 0 and m["oIoU"] == 0.0 and m["mIoU"] == 0.0


def test_oiou_differs_from_miou():
    # a big object predicted well and a small one missed: oIoU is dominated by the big one
    m = compute_metrics([(90, 100), (0, 10)])
    assert m["oIoU"] == pytest.approx(90 / 110)
    assert m["mIoU"] == pytest.approx(0.45)


def test_invalid_counts():
    acc = MetricAccumulator()
    with pytest.raises(ValueError):
        acc.add(5, 4)
    with pytest.raises(ValueError):
        acc.add(-1, 4)


masks = st.integers(1, 6).flatmap(
    lambda h: st.integers(1, 6).flatmap(
        lambda w: st.tuples(*[st.lists(st.booleans(), min_size=h * w, max_size=h * w)] * 2).map(
            lambda ab: (np.array(ab[0]).reshape(h, w), np.array(ab[1]).reshape(h, w)))))


@settings(max_examples=60, deadline=None)
@given(st.lists(masks, min_size=1, max_size=8))
def test_metrics_properties(pairs_of_masks):
    counts = [intersection_union(p, g) for p, g in pairs_of_masks]
    m = compute_metrics(counts)
    ious = [(p & g).sum() / (p | g).sum() if (p | g).any() else 1.0 for p, g in pairs_of_masks]
    assert m["mIoU"] == pytest.approx(float(np.mean(ious)))
    su = sum(u for _, u in counts)
    assert m["oIoU"] == pytest.approx(sum(i for i, _ in counts) / su if su else 1.0)
    precs = [m[f"Prec@{t}"] for t in (0.5, 0.6, 0.7, 0.8, 0.9)]
    assert precs == sorted(precs, reverse=True)
    assert 0.0 <= m["oIoU"] <= 1.0 and 0.0 <= m["mIoU"] <= 1.0
    assert m["Prec@0.5"] == pytest.approx(np.mean([v >= 0.5 - 1e-12 for v in ious]))
