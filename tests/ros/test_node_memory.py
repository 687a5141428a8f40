"""Lifecycle memory release, in-process (no second process; DDS discovery OFF).

deactivate must drop the per-image caches (image embeddings) and cleanup must release the model itself:
checked with a weak reference to the loaded segmenter, which only dies when nothing holds it.
"""
from __future__ import annotations

import gc
import sys
import weakref
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ros_helpers as rh  # noqa: E402

pytestmark = [pytest.mark.ros]
rh.skip_without_rclpy()


@pytest.mark.parametrize("mode", ["on_command", "track"])
def test_deactivate_drops_image_caches_and_cleanup_releases_the_model(rgb_image, monkeypatch, mode):
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "OFF")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(rh.pick_domain_id()))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn

    from ros2_iterprime.ros.node import IterPrimeNode

    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=["--ros-args", "-p", "model:=tiny-random", "-p", "autostart:=false",
                                  "-p", f"mode:={mode}"])
    node = IterPrimeNode(context=ctx)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        seg = node.processor.segmenter
        ref = weakref.ref(seg)
        tracker_ref = None
        if mode == "track":  # the tracker (and its video model) is loaded at configure in mode track
            assert node.track.loaded
            tracker_ref = weakref.ref(node.track.tracker.session)
        seg.set_image(rgb_image)
        assert seg.image_size is not None
        del seg
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert ref().image_size is None, "deactivate must free the per-image embeddings"
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        gc.collect()
        assert ref() is None, "cleanup must release the model"
        assert tracker_ref is None or tracker_ref() is None, "cleanup must release the tracker"
        assert node.processor is None and node.lifecycle_state == "unconfigured"
        # configurable again
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.processor is not None
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
