"""`--proposals` (how SAM is prompted) and `--proposals-model` (which network proposes), in one place."""
import json

import numpy as np
import pytest
from PIL import Image

from ros2_iterprime.cli import main as cli
from ros2_iterprime.cli.common import proposal_settings


def test_the_two_flags_map_to_distinct_config_fields():
    assert proposal_settings(None, None) == {}
    assert proposal_settings("automatic", None) == {"proposals": "automatic"}
    assert proposal_settings("mask2former", None) == {"proposals_model": "mask2former"}
    assert proposal_settings("mask2former", "mask2former") == {"proposals_model": "mask2former"}
    assert proposal_settings("cam_points", "facebook/sam2.1-hiera-tiny") == {
        "proposals": "cam_points", "proposals_model": "facebook/sam2.1-hiera-tiny"}
    with pytest.raises(ValueError, match="contradict"):
        proposal_settings("mask2former", "sam")


def test_segment_with_mask2former_proposals_on_tiny_random(tmp_path, capsys):
    img = tmp_path / "scene.png"
    rgb = np.full((90, 120, 3), 100, np.uint8)
    rgb[20:60, 30:80] = (220, 30, 30)
    Image.fromarray(rgb).save(img)
    out = tmp_path / "out"
    assert cli.main(["segment", str(img), "the red block", "-o", str(out), "--model", "tiny-random",
                     "--proposals-model", "mask2former", "--iters", "1", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[0])
    assert summary["expression"] == "the red block"
    mask = np.asarray(Image.open(out / "scene__the-red-block_mask.png"))
    assert mask.shape == (90, 120) and set(np.unique(mask)) <= {0, 255}


def test_contradicting_flags_and_an_empty_mask2former_name_are_refused(tmp_path, capsys):
    img = tmp_path / "scene.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    assert cli.main(["segment", str(img), "x", "-o", str(tmp_path), "--model", "tiny-random",
                     "--proposals", "mask2former", "--proposals-model", "sam"]) == 2
    assert "contradict" in capsys.readouterr().err
    assert cli.main(["segment", str(img), "x", "-o", str(tmp_path), "--model", "tiny-random",
                     "--proposals-model", "mask2former:"]) == 2
    assert "needs a Mask2Former hub id or directory" in capsys.readouterr().err
