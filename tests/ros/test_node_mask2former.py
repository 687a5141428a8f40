"""`iterprime_node` with the paper's proposal network: ``proposals_model:=mask2former`` on tiny-random, over DDS.

Under the tiny-random profile 'mask2former' is the tiny random Mask2Former (the real one needs its
weights: `ros2_iterprime download --mask2former`). Plumbing only: sizes, headers, one answer per
expression, a second expression on the same frame, SAM v1 not loaded, the tracker not shared.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ros_helpers as rh  # noqa: E402


def test_tracker_is_never_shared_with_a_mask2former():
    """mode track: a Mask2Former is no video model, so the tracker is loaded (profile's), not shared."""
    from ros2_iterprime.ros.model_loading import load_tracker_for

    class Log:
        def __init__(self):
            self.lines = []

        def info(self, text):
            self.lines.append(text)

    settings = {"tracker_model": "", "proposals_model": "mask2former", "model": "tiny-random", "device": "cpu",
                "dtype": "auto", "local_files_only": False, "tracker_image_size": 0, "tracker_memory_frames": 0}
    log = Log()
    tm = load_tracker_for(settings.__getitem__, log)
    assert tm is not None and tm.model_id == "tiny-random"
    assert not any("sharing" in line for line in log.lines)
    settings["proposals_model"] = "tiny-random"  # a SAM 2.1 proposer is still shared, as before
    assert load_tracker_for(settings.__getitem__, Log()) is None


@pytest.mark.ros
@pytest.mark.slow
def test_node_with_mask2former_proposals_answers_over_dds():
    rh.skip_without_rclpy()
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from ros2_iterprime.ros.image import msg_to_numpy

    domain = rh.pick_domain_id()
    node = rh.NodeProcess(domain, params={"proposals_model": "mask2former", "max_frame_age": 10.0,
                                          "iterations": 2})
    client = None
    try:
        node.wait_ready(timeout=180)
        client = rh.RosClient(domain)
        client.collect("/iterprime/result_json", String)
        client.collect("/iterprime/mask", Image)
        img_pub, expr_pub = client.input_publishers()
        client.wait_publishers("/iterprime/mask")
        msg = rh.make_image_msg(640, 480, client.now_ns())
        for _ in range(3):
            img_pub.publish(msg)
            time.sleep(0.05)
        time.sleep(0.1)
        same = lambda m: rh.headers_equal(m.header, msg.header)  # noqa: E731
        answers = []
        for expression in ("the bright square", "the dark background on the left"):
            expr_pub.publish(String(data=expression))
            res = client.first("/iterprime/result_json",
                               lambda m, e=expression: json.loads(m.data).get("expression") == e, timeout=90)
            answers.append(json.loads(res.data))
        mask = client.first("/iterprime/mask", same, timeout=30)
        assert (mask.width, mask.height, mask.encoding) == (640, 480, "mono8")
        assert set(np.unique(msg_to_numpy(mask))).issubset({0, 255})
        for a in answers:
            assert a["status"] in ("ok", "not_found", "low_confidence"), a
        log = node.log()
        assert "tiny-random-mask2former" in log and "SAM v1 (tiny-random) is not loaded" in log, log[-3000:]
    finally:
        if client is not None:
            client.close()
        code = node.stop()
    log = node.log()
    assert "Traceback" not in log and code == 0, log[-3000:]
