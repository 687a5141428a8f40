"""Opt-in tests with the real checkpoints (ITERPRIME_REAL_WEIGHTS=1, weights in the local model cache).

They exercise what tiny-random cannot: the real BERT tokenizer's offsets, the checkpoints' own
preprocessor configs, and full-size shapes (24x24 BLIP patches, 256x256 SAM masks). They check the
pipeline, not accuracy (accuracy comes from `ros2_iterprime eval`).
"""
import os

import numpy as np
import pytest

pytestmark = [
    pytest.mark.real_weights,
    pytest.mark.skipif(os.environ.get("ITERPRIME_REAL_WEIGHTS") != "1",
                       reason="opt-in: set ITERPRIME_REAL_WEIGHTS=1 with the default weights in the model cache"),
]


@pytest.fixture(scope="module")
def real_segmenter():
    from ros2_iterprime.grounding.segmenter import load_segmenter

    return load_segmenter("default", local_files_only=True)


def test_real_pipeline_end_to_end(real_segmenter):
    img = np.full((480, 640, 3), 120, np.uint8)
    img[100:300, 150:350] = (220, 20, 20)
    real_segmenter.set_image(img)
    assert real_segmenter.gradcam.layer == 7
    res = real_segmenter.segment("the red square on the left")
    assert res.mask.shape == (480, 640) and res.heatmap.shape == (480, 640)
    assert res.primary_word == "square" and "red" in res.kept_tokens and "square" in res.kept_tokens
    assert 1 <= res.rounds <= 3 and all(0.0 < p < 1.0 for p in res.match_probs)
    res2 = real_segmenter.segment("the grey background")
    assert res2.mask.shape == (480, 640)


def _layer_free(keys):
    import re

    return {re.sub(r"\.\d+\.", ".N.", k) for k in keys}


def test_hub_fixture_matches_real_cache(tmp_path, real_segmenter):
    """The CI fixture (tests/hub_fixture.py, ros2_iterprime/model_configs.py) has the real files' keys."""
    import json
    import sys
    from pathlib import Path

    import torch
    from safetensors import safe_open

    from ros2_iterprime.models.checkpoints import cached_snapshot
    from ros2_iterprime.models.published import published

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import hub_fixture as hf

    fx = hf.build_hub_cache(tmp_path / "hf_home")
    real_blip, real_sam = cached_snapshot(hf.BLIP_REPO), cached_snapshot(hf.SAM_REPO)
    assert real_blip is not None and real_sam is not None
    assert real_segmenter._first_token == {"enc": 30523}

    def keys(d):
        return {k: sorted(v) if isinstance(v, dict) and k.endswith("_config") else None for k, v in d.items()}

    pairs = [(real_blip, "config.json", published("BLIP_ITM_BASE_COCO_CONFIG")),
             (real_blip, "preprocessor_config.json", published("BLIP_ITM_BASE_COCO_PREPROCESSOR")),
             (real_blip, "tokenizer_config.json", published("BLIP_TOKENIZER_CONFIG")),
             (real_blip, "special_tokens_map.json", published("BLIP_SPECIAL_TOKENS_MAP")),
             (real_sam, "config.json", published("SAM_VIT_BASE_CONFIG")),
             (real_sam, "preprocessor_config.json", published("SAM_VIT_BASE_PREPROCESSOR"))]
    for snap, name, ours in pairs:
        real = json.loads((snap / name).read_text())
        assert keys(real) == keys(ours), f"{snap.parent.parent.name}/{name}: keys differ from model_configs"
    real_cfg = json.loads((real_blip / "config.json").read_text())["text_config"]
    assert (real_cfg["num_attention_heads"], real_cfg["vocab_size"], real_cfg["bos_token_id"]) == (12, 30524, 30522)
    vocab = (real_blip / "vocab.txt").read_text().splitlines()
    assert len(vocab) == 30522 and "[ENC]" not in vocab and "[DEC]" not in vocab
    # weight key names (layer indices aside) as in the fixture
    real_bin = real_blip / "pytorch_model.bin"
    if real_bin.is_file():
        real_keys = torch.load(real_bin, map_location="meta", weights_only=True).keys()
        ours = torch.load(fx.snapshots[hf.BLIP_REPO] / "pytorch_model.bin", weights_only=True).keys()
        assert _layer_free(real_keys) == _layer_free(ours)
    with safe_open(str(real_sam / "model.safetensors"), "pt") as f:
        real_sam_keys = set(f.keys())
    with safe_open(str(fx.snapshots[hf.SAM_REPO] / "model.safetensors"), "pt") as f:
        assert _layer_free(real_sam_keys) == _layer_free(f.keys())


def test_sam21_fixture_matches_real_cache(tmp_path):
    """The CI tracker fixture (tests/hub_fixture.py) has the real facebook/sam2.1-hiera-tiny files' keys.

    Opt-in like the rest of this file: needs `ros2_iterprime download --tracker facebook/sam2.1-hiera-tiny`.
    """
    import json
    import sys
    from pathlib import Path

    from safetensors import safe_open

    from ros2_iterprime.models.checkpoints import cached_snapshot

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import hub_fixture as hf

    real = cached_snapshot(hf.SAM21_REPO)
    if real is None:
        pytest.fail(f"{hf.SAM21_REPO} is not in the model cache: ros2_iterprime download --tracker {hf.SAM21_REPO}")
    fx = hf.build_hub_cache(tmp_path / "hf_home")
    ours = fx.snapshots[hf.SAM21_REPO]
    for name in ("config.json", "preprocessor_config.json", "video_preprocessor_config.json",
                 "processor_config.json"):
        if (real / name).is_file():
            assert set(json.loads((real / name).read_text())) == set(json.loads((ours / name).read_text())), name
    with safe_open(str(real / "model.safetensors"), "pt") as f:
        real_keys = set(f.keys())
    with safe_open(str(ours / "model.safetensors"), "pt") as f:
        assert _layer_free(real_keys) == _layer_free(f.keys())


def test_mask2former_fixture_matches_real_cache(tmp_path):
    """The CI Mask2Former fixture has the real facebook/mask2former-swin-large-coco-panoptic files' keys,
    and the real checkpoint runs as the paper's proposal network (200 query masks at the image's size).

    Opt-in like the rest of this file: needs `ros2_iterprime download --mask2former`.
    """
    import json
    import sys
    from pathlib import Path

    import torch

    from ros2_iterprime.grounding.mask2former_proposals import Mask2FormerProposer
    from ros2_iterprime.models.checkpoints import cached_snapshot
    from ros2_iterprime.models.mask2former import load_mask2former
    from ros2_iterprime.models.published import published

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import hub_fixture as hf

    real = cached_snapshot(hf.MASK2FORMER_REPO)
    if real is None:
        pytest.fail(f"{hf.MASK2FORMER_REPO} is not in the model cache: ros2_iterprime download --mask2former")
    fx = hf.build_hub_cache(tmp_path / "hf_home", tracker=False, mask2former=True)
    ours = fx.snapshots[hf.MASK2FORMER_REPO]
    real_cfg = json.loads((real / "config.json").read_text())
    ours_cfg = json.loads((ours / "config.json").read_text())
    assert set(real_cfg) == set(ours_cfg)
    assert set(real_cfg["backbone_config"]) == set(ours_cfg["backbone_config"])
    assert (real_cfg["num_queries"], len(real_cfg["id2label"])) == (200, 133)
    assert json.loads((real / "preprocessor_config.json").read_text()) == published(
        "MASK2FORMER_SWIN_LARGE_COCO_PANOPTIC_PREPROCESSOR")
    real_keys = torch.load(real / "pytorch_model.bin", map_location="meta", weights_only=True).keys()
    ours_keys = torch.load(ours / "pytorch_model.bin", weights_only=True).keys()
    assert _layer_free(real_keys) == _layer_free(ours_keys)
    prop = Mask2FormerProposer(load_mask2former(hf.MASK2FORMER_REPO, local_files_only=True))
    img = np.full((480, 640, 3), 120, np.uint8)
    img[100:300, 150:350] = (220, 20, 20)
    state = prop.encode(img)
    assert state.proposals.masks.shape == (200, 480, 640) and state.frame.resized_size == (800, 1067)
