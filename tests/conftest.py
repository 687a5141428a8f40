"""Shared fixtures: tiny randomly initialised models (same classes as the real ones), built once."""
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
_ROS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ros") + os.sep


def pytest_collection_modifyitems(config, items):
    """Mark every test under tests/ros/ `ros_adapter`: scripts/test.sh runs `-m "ros or ros_adapter"` on the
    second ROS distribution (the adapter's message handling and the node/DDS tests)."""
    for item in items:
        if str(item.fspath).startswith(_ROS_DIR):
            item.add_marker(pytest.mark.ros_adapter)


@pytest.fixture(scope="session")
def tiny_models():
    from ros2_iterprime.models.loading import load_models

    # fp32: these tests compare the method with references computed in fp32 (dtype 'auto' is bf16 on
    # CPUs with AVX512-BF16 / AMX); reduced precision has its own tests (tests/benchmark/test_bench.py)
    return load_models("tiny-random", "tiny-random", device="cpu", dtype="fp32")


@pytest.fixture(scope="session")
def tiny_segmenter(tiny_models):
    from ros2_iterprime.grounding.segmenter import ReferringSegmenter

    return ReferringSegmenter(tiny_models)


@pytest.fixture
def rgb_image():
    """A 120x160 RGB test scene: grey background, a red square and a blue bar."""
    img = np.full((120, 160, 3), 90, np.uint8)
    img[30:80, 40:90] = (210, 30, 30)
    img[90:110, 10:150] = (30, 40, 200)
    return img
