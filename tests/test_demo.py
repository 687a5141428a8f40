"""The README's main job: `bash scripts/demo.sh` (one photo) and `bash scripts/demo.sh --track` (a stream).

Runs the real scripts end to end (set-up check, model choice, node process over localhost DDS, demo
client), so a moved module or a renamed topic breaks CI instead of the front door. Both branches of the
model choice: an empty model cache (no weights, no hub: tiny-random, saying why in one line) and the
hub-faithful cache of tests/hub_fixture.py standing in for a machine that holds the default checkpoints.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hub_fixture as hf  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]


def _run(args, env=None):
    env = dict(os.environ, ITERPRIME_DEMO_TRACK_SECONDS="5", ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", **(env or {}))
    env.pop("ROS_DOMAIN_ID", None)  # demo.sh picks its own
    env.pop("ITERPRIME_DEMO_MODEL", None)
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"):  # HF_HOME alone decides
        env.pop(var, None)
    proc = subprocess.run(["bash", "scripts/demo.sh", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def test_demo_without_weights_falls_back_to_tiny_random_and_says_why(tmp_path):
    rc, out = _run([], {"HF_HOME": str(tmp_path / "empty_hf_home"), "HF_HUB_OFFLINE": "1"})
    assert rc == 0, out[-3000:]
    why = [line for line in out.splitlines() if line.startswith("[demo] no weights for the default model")]
    assert len(why) == 1, out[-3000:]  # one line: why, and what the meaningless result means
    assert "HF_HUB_OFFLINE=1 forbids fetching them" in why[0] and "meaningless" in why[0]
    assert "model:=tiny-random" in out and "[demo] status" in out and "node stopped cleanly" in out
    assert "(tiny-random: random weights" in out
    for name in ("input.png", "mask.png", "overlay.png", "result.json"):
        assert (ROOT / "outputs" / "demo" / name).exists()


def test_demo_runs_the_default_model_when_the_cache_holds_it(tmp_path):
    """The hub-faithful cache stands in for a machine with the real checkpoints (shrunk, random weights:
    the branch and the loading are under test here, not what is found)."""
    fx = hf.build_hub_cache(tmp_path / "hf_home", tracker=False)
    env = {k: v for k, v in hf.fixture_env(fx).items() if k in ("HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    rc, out = _run(["the coffee cup"], env)
    assert rc == 0, out[-3000:]
    assert f"[demo] model default: {hf.BLIP_REPO}, {hf.SAM_REPO} found in the model cache" in out, out[-3000:]
    assert "model:=default" in out and "no weights" not in out
    assert "[demo] status" in out and ("[demo] FOUND 'the coffee cup'" in out or "not found" in out)
    log = (ROOT / "outputs" / "demo" / "node.log").read_text()
    assert "weights read from pytorch_model.bin" in log and "tiny-random" not in log


def test_demo_track(tmp_path):
    rc, out = _run(["--track", "the red square"], {"HF_HOME": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"})
    assert rc == 0, out[-3000:]
    assert "'tracking':" in out and "[demo] tracking: median" in out and "node stopped cleanly" in out
    assert (ROOT / "outputs" / "demo" / "track_results.json").exists()
