"""`ros2_iterprime segment / download` end to end, with the tiny-random profile."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


def run_cli(*args, env=None, timeout=300):
    e = dict(os.environ, HF_HUB_OFFLINE="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "ros2_iterprime.cli", *args], capture_output=True, text=True,
                          env=e, timeout=timeout)


@pytest.fixture
def scene(tmp_path, rgb_image):
    p = tmp_path / "scene.png"
    Image.fromarray(rgb_image).save(p)
    return p


def test_segment_writes_mask_overlay_and_json(tmp_path, scene, rgb_image):
    from pycocotools import mask as mask_utils

    out = tmp_path / "out"
    r = run_cli("segment", str(scene), "the red cup behind the laptop", "-o", str(out), "--model", "tiny-random")
    assert r.returncode == 0, r.stderr
    assert "MEANINGLESS" in r.stderr  # tiny-random says loudly that its output means nothing
    stem = "scene__the-red-cup-behind-the-laptop"
    mask = np.asarray(Image.open(out / f"{stem}_mask.png"))
    overlay = np.asarray(Image.open(out / f"{stem}_overlay.png"))
    doc = json.loads((out / f"{stem}.json").read_text())
    assert mask.shape == rgb_image.shape[:2] and set(np.unique(mask)) <= {0, 255}
    assert overlay.shape == rgb_image.shape
    rle = dict(doc["rle"], counts=doc["rle"]["counts"].encode())
    assert np.array_equal(mask_utils.decode(rle).astype(bool), mask > 0)
    assert doc["primary_word"] == "cup" and doc["image_size"] == [160, 120]
    assert doc["mask_area"] == int((mask > 0).sum())
    for k in ("score", "bbox", "centroid", "timings", "rounds", "match_probs"):
        assert k in doc
    assert json.loads(r.stdout.splitlines()[0])["primary_word"] == "cup"


def test_batch_mode_folder_and_expressions_file(tmp_path, rgb_image):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(rgb_image).save(imgs / "a.png")
    Image.fromarray(rgb_image[:, ::-1]).save(imgs / "b.jpg")
    exprs = tmp_path / "exprs.txt"
    exprs.write_text("# comment\nthe red cup\nb.jpg\tthe blue bar at the bottom\n\n")
    out = tmp_path / "out"
    r = run_cli("segment", "--image-dir", str(imgs), "--expressions", str(exprs), "-o", str(out),
                "--model", "tiny-random", "--iters", "2", "--mode", "3")
    assert r.returncode == 0, r.stderr
    jsons = sorted(p.name for p in out.glob("*.json"))
    assert jsons == ["a__the-red-cup.json", "b__the-blue-bar-at-the-bottom.json", "b__the-red-cup.json"]
    assert len(list(out.glob("*_mask.png"))) == 3 and len(list(out.glob("*_overlay.png"))) == 3


def test_bad_image_file_is_reported_not_a_traceback(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    r = run_cli("segment", str(bad), "a cup", "-o", str(tmp_path / "o"), "--model", "tiny-random")
    assert r.returncode == 1 and "cannot read image" in r.stderr and "Traceback" not in r.stderr


def test_missing_weights_error_names_model_and_how_to_get_it(tmp_path, scene):
    r = run_cli("segment", str(scene), "a cup", "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "Salesforce/blip-itm-base-coco" in r.stderr and "ros2_iterprime download" in r.stderr
    empty = tmp_path / "empty_model_dir"
    empty.mkdir()
    r = run_cli("segment", str(scene), "a cup", "-o", str(tmp_path / "o"), "--vlm", str(empty), "--sam", "tiny-random")
    assert r.returncode == 2 and str(empty) in r.stderr and "save_pretrained" in r.stderr


def test_missing_sam_weights_named_too(tmp_path):
    from ros2_iterprime.errors import ModelNotFoundError
    from ros2_iterprime.models.loading import load_models

    with pytest.raises(ModelNotFoundError, match="facebook/sam-vit-base"):
        load_models("tiny-random", "facebook/sam-vit-base", local_files_only=True)


def test_every_subcommand_registers_itself_without_importing_the_entry_module():
    code = ("import sys; from ros2_iterprime.cli import segment, download, evaluate, bench; "
            "from ros2_iterprime.cli.common import SUBCOMMANDS; "
            "assert 'ros2_iterprime.cli.main' not in sys.modules; "
            "assert sorted(SUBCOMMANDS) == ['bench', 'download', 'eval', 'segment'], sorted(SUBCOMMANDS)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    from ros2_iterprime.cli.main import build_parser

    help_text = build_parser().format_help()
    for name in ("segment", "download", "eval", "bench"):
        assert name in help_text
