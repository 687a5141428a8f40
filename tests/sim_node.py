"""`iterprime_node` with a model stand-in, for the simulator-driven DDS tests (tests/ros/test_node_timing.py).

Runs the real node (ros2_iterprime.ros.entry.main: parameters, lifecycle, scheduling, depth pairing, TF,
outputs, tracking with the real tiny SAM 2 model) with one substitution: the grounding model is
:class:`TimedColourSegmenter`, which finds the simulator's red box exactly (its colour) after a
configurable time, like a real model that takes 0.05-15 s, and can be told to find nothing from some
call on (a failed re-grounding). Configured by the environment variable ITERPRIME_SIM_MODEL, JSON:
``{"delay": 0.2, "found_calls": 1}`` (delay in seconds; found_calls: how many calls find the box, -1 =
all). Usage: ``python tests/sim_node.py --ros-args ...`` (the same arguments as iterprime_node).
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time

import numpy as np


class TimedColourSegmenter:
    def __init__(self, delay: float = 0.1, found_calls: int = -1):
        self.delay, self.found_calls = float(delay), int(found_calls)
        self.calls = 0
        self.image_generation = 0
        self._rgb = None
        self._lock = threading.Lock()

    def set_image(self, rgb):
        self._rgb = np.asarray(rgb).copy()
        self.image_generation += 1

    def reset_image(self):
        self._rgb = None
        self.image_generation += 1

    def segment(self, expression, **overrides):
        from ros2_iterprime.results import SegmentationResult, mask_bbox_centroid

        time.sleep(self.delay)
        with self._lock:
            self.calls += 1
            found = self.found_calls < 0 or self.calls <= self.found_calls
        rgb = self._rgb
        mask = (rgb[..., 0] > 150) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
        bbox, centroid = mask_bbox_centroid(mask)
        found = found and bool(mask.any())
        return SegmentationResult(expression, mask, 1.5 if found else 0.4, bbox, centroid,
                                  mask.astype(np.float32), "box", ["box"], 1, [0.9], found)


def main() -> int:
    cfg = json.loads(os.environ.get("ITERPRIME_SIM_MODEL", "{}") or "{}")
    from ros2_iterprime.ros import entry, node

    stand_in = TimedColourSegmenter(**cfg)
    node.load_segmenter_for = lambda setting, logger: (logger.info("model stand-in: TimedColourSegmenter "
                                                                   f"{json.dumps(cfg)}"), stand_in)[1]
    return entry.main()


if __name__ == "__main__":
    sys.exit(main())
