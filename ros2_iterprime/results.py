"""Typed results of the segmentation pipeline."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SegmentationResult:
    """The referred object's mask and everything a caller may want to log or threshold.

    Attributes:
        expression: the referring expression as given (before truncation).
        mask: (H, W) bool, original image resolution. When ``found`` is False this is the fallback
            (the best remaining guess, see ``selection``): callers that act on the mask (a grasp
            planner) must check ``found`` first; the ROS node publishes an empty mask then.
        score: selection score, mean over the mask of (1 + G) with G the final heatmap in [0, 1],
            so in [1, 2] for a selected proposal and below 1 for a fallback (see ``found``).
        bbox: (x0, y0, x1, y1) pixel box of the mask, inclusive-exclusive; None for an empty mask.
        centroid: (u, v) pixel centroid of the mask (column, row); None for an empty mask.
        heatmap: (H, W) float32 in [0, 1], the final (refined) Grad-CAM at image resolution.
        primary_word: the word PWEM emphasised (the head of the referred phrase: "man" in "man far
            right", "2nd" in "2nd from left"), or None when no word stands for the object ("left").
        kept_tokens: BLIP word pieces kept by the PWEM token filter (without [CLS]).
        rounds: IGRS rounds whose maps were used (1..T).
        match_probs: ITM match probability of every round run (the last may be the one that dropped).
        found: True when a proposal passed the selection filters; False for the fallback.
        timings: seconds per stage (keys: 'vision', 'gradcam', 'sam_image', 'proposals',
            'selection', 'total', ...).
    """

    expression: str
    mask: np.ndarray
    score: float
    bbox: tuple[int, int, int, int] | None
    centroid: tuple[float, float] | None
    heatmap: np.ndarray
    primary_word: str | None
    kept_tokens: list[str]
    rounds: int
    match_probs: list[float]
    found: bool
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def confidence(self) -> float:
        """ITM match probability of the last IGRS round whose map was used, in [0, 1] (0.0 if none).

        How well BLIP judges that the expression matches the image; it is NOT calibrated as a probability
        that the mask is correct, and says nothing about which object was segmented. Use it to reject
        expressions that match nothing in view (e.g. with the node's ``min_confidence``).
        """
        if self.rounds < 1 or len(self.match_probs) < self.rounds:
            return 0.0
        p = float(self.match_probs[self.rounds - 1])
        return p if 0.0 <= p <= 1.0 else 0.0

    @property
    def height(self) -> int:
        return int(self.mask.shape[0])

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    def summary(self) -> dict:
        """JSON-serialisable summary (no arrays)."""
        return {
            "expression": self.expression,
            "score": float(self.score),
            "found": bool(self.found),
            "bbox": list(self.bbox) if self.bbox is not None else None,
            "centroid": list(self.centroid) if self.centroid is not None else None,
            "primary_word": self.primary_word,
            "kept_tokens": list(self.kept_tokens),
            "rounds": int(self.rounds),
            "match_probs": [float(p) for p in self.match_probs],
            "confidence": self.confidence,
            "mask_area": int(self.mask.sum()),
            "image_size": [self.width, self.height],
            "timings": {k: float(v) for k, v in self.timings.items()},
        }


def mask_to_rle(mask: np.ndarray) -> dict:
    """COCO RLE (pycocotools) of a (H, W) bool mask, JSON-ready (counts as an ASCII string)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def mask_bbox_centroid(mask: np.ndarray) -> tuple[tuple[int, int, int, int] | None, tuple[float, float] | None]:
    """Box (x0, y0, x1, y1; exclusive ends) and centroid (u, v) of a (H, W) bool mask, or Nones."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None, None
    bbox = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return bbox, (float(xs.mean()), float(ys.mean()))
