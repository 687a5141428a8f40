"""The README's main job: `bash scripts/demo.sh` (one frame) and `bash scripts/demo.sh --track` (a stream).

Runs the real scripts end to end (set-up check, node process over localhost DDS, demo client), so a moved
module or a renamed topic breaks CI instead of the front door.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]


def _run(args, tmp_path):
    env = dict(os.environ, ITERPRIME_DEMO_TRACK_SECONDS="5", ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env.pop("ROS_DOMAIN_ID", None)  # demo.sh picks its own
    proc = subprocess.run(["bash", "scripts/demo.sh", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def test_demo_one_frame(tmp_path):
    rc, out = _run(["the red square on the left"], tmp_path)
    assert rc == 0, out[-3000:]
    assert "[demo] status" in out and "node stopped cleanly" in out
    for name in ("input.png", "mask.png", "overlay.png", "result.json"):
        assert (ROOT / "outputs" / "demo" / name).exists()


def test_demo_track(tmp_path):
    rc, out = _run(["--track", "the red square"], tmp_path)
    assert rc == 0, out[-3000:]
    assert "'tracking':" in out and "[demo] tracking: median" in out and "node stopped cleanly" in out
    assert (ROOT / "outputs" / "demo" / "track_results.json").exists()
