"""Shared helpers of the tracking tests: a synthetic moving-block stream and a scripted grounding."""
import threading

import numpy as np

from ros2_iterprime import SegmentationResult

H, W = 48, 64


def block_frame(i: int, h: int = H, w: int = W) -> np.ndarray:
    """Frame i of the synthetic stream: noisy grey background, a red 15x15 block moving right 1 px/frame."""
    rng = np.random.default_rng(1000 + i)
    img = rng.integers(40, 90, (h, w, 3), dtype=np.uint8)
    x = 5 + i % (w - 20)
    img[15:30, x:x + 15] = (220, 40, 40)
    return img


def red_mask(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] > 200) & (rgb[..., 1] < 80)


class ScriptedSegmenter:
    """Stands in for ReferringSegmenter: the red block is 'found' (or nothing is, when found=False)."""

    def __init__(self, found: bool = True, gate: threading.Event | None = None):
        self.found = found
        self.gate = gate  # when set, segment() blocks until the event is set (background tests)
        self.calls: list[tuple[str, np.ndarray]] = []
        self._rgb = None

    def set_image(self, rgb):
        self._rgb = np.asarray(rgb).copy()

    def segment(self, expression, **overrides):
        if self.gate is not None:
            assert self.gate.wait(30), "test gate never opened"
        self.calls.append((expression, self._rgb))
        mask = red_mask(self._rgb)
        if not self.found:  # a fallback mask exists but found is False: must never seed the tracker
            return SegmentationResult(expression, mask, 0.5, None, None, np.zeros(mask.shape, np.float32),
                                      None, [], 1, [0.5], False)
        ys, xs = np.nonzero(mask)
        return SegmentationResult(expression, mask, 1.5, (int(xs.min()), int(ys.min()), int(xs.max()) + 1,
                                  int(ys.max()) + 1), (float(xs.mean()), float(ys.mean())),
                                  mask.astype(np.float32), "block", [], 1, [0.9], True)
