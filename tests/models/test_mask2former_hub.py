"""The paper's proposal network from a hub-faithful cache, offline (tests/hub_fixture.py).

`facebook/mask2former-swin-large-coco-panoptic` as main publishes it: config.json (published keys,
shrunk widths), pytorch_model.bin only (transformers 4.26 state-dict names) and the 538-byte
preprocessor_config.json. Then, with HF_HUB_OFFLINE=1: `load_segmenter` with `proposals_model
mask2former` and no SAM v1 on disk, `segment --proposals mask2former`, `download --mask2former`
(verify; exit 1 naming what is missing), `download --to` and the exported folder, and the online route
(`download --repo`) answered from the fixture files. Random weights: plumbing, not accuracy.
"""
from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hub_fixture as hf  # noqa: E402

from ros2_iterprime.models.published import published  # noqa: E402


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> hf.HubFixture:
    return hf.build_hub_cache(tmp_path_factory.mktemp("hf_home"), tracker=False, mask2former=True)


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def paper_cache(hub, tmp_path_factory) -> Path:
    """A cache with only what the paper's setup needs: BLIP + Mask2Former (no SAM v1)."""
    cache = tmp_path_factory.mktemp("paper") / "hub"
    cache.mkdir()
    for repo in (hf.BLIP_REPO, hf.MASK2FORMER_REPO):
        folder = "models--" + repo.replace("/", "--")
        shutil.copytree(hub.hub / folder, cache / folder, symlinks=True)
    return cache


def test_the_repository_is_laid_out_as_main_publishes_it(hub):
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(hub.hub)
    assert not info.warnings
    repo = {r.repo_id: r for r in info.repos}[hf.MASK2FORMER_REPO]
    files = {f.file_name for rev in repo.revisions for f in rev.files}
    assert files == {"config.json", "pytorch_model.bin", "preprocessor_config.json"}  # no safetensors on main
    assert files == set(hf.MASK2FORMER_HUB_LISTING) - {".gitattributes", "README.md"}
    snap = hub.snapshots[hf.MASK2FORMER_REPO]
    cfg = json.loads((snap / "config.json").read_text())
    pub = published("MASK2FORMER_SWIN_LARGE_COCO_PANOPTIC_CONFIG")
    assert set(cfg) == set(pub) and set(cfg["backbone_config"]) == set(pub["backbone_config"])
    assert (cfg["num_queries"], len(cfg["id2label"]), cfg["model_type"]) == (200, 133, "mask2former")
    b = cfg["backbone_config"]
    assert (b["window_size"], b["image_size"], b["num_heads"], b["model_type"]) == (12, 384, [6, 12, 24, 48], "swin")
    pre = (snap / "preprocessor_config.json").read_bytes()
    assert len(pre) == 538 and json.loads(pre) == published("MASK2FORMER_SWIN_LARGE_COCO_PANOPTIC_PREPROCESSOR")
    state = torch.load(snap / "pytorch_model.bin", weights_only=True)
    names = list(state)
    # transformers 4.26 names: what the published file holds and 5.x renames on load
    assert any(".attention.self.query.weight" in k for k in names)
    assert any(k.endswith("attention.self.relative_position_index") for k in names)
    assert not any(".q_proj." in k and "pixel_level_module.encoder" in k for k in names)
    assert "class_predictor.weight" in state and state["class_predictor.weight"].shape[0] == 134
    assert state["model.transformer_module.queries_features.weight"].shape[0] == 200


def test_the_papers_setup_loads_offline_without_sam_v1(hub, paper_cache, offline, caplog):
    from ros2_iterprime.errors import ModelNotFoundError
    from ros2_iterprime.grounding.mask2former_proposals import Mask2FormerProposer
    from ros2_iterprime.grounding.segmenter import SegmenterConfig, load_segmenter

    with pytest.raises(ModelNotFoundError, match="facebook/sam-vit-base"):  # SAM v1 proposals need SAM v1
        load_segmenter("default", cache_dir=str(paper_cache), device="cpu")
    with caplog.at_level(logging.INFO, logger="ros2_iterprime"):
        seg = load_segmenter("default", config=SegmenterConfig(proposals_model="mask2former", iterations=1),
                             cache_dir=str(paper_cache), device="cpu")
    assert seg.models.sam is None and isinstance(seg.sam, Mask2FormerProposer)
    assert seg.sam.m2f.model_id == hf.MASK2FORMER_REPO and seg.sam.m2f.num_queries == 200
    assert "MASK2FORMER 'facebook/mask2former-swin-large-coco-panoptic': weights read from pytorch_model.bin" \
        in caplog.text
    spec = seg.sam.m2f.input  # the official test-time input, not the file's 384 x 384
    assert (spec.short_edge, spec.max_size, spec.size_divisibility) == (800, 1333, 32)
    img = np.full((120, 160, 3), 90, np.uint8)
    img[30:80, 40:90] = (220, 20, 20)
    res = seg.segment_image(img, "the red square")
    assert res.mask.shape == (120, 160) and np.isfinite(res.heatmap).all()
    state = seg._image.sam
    assert state.frame.resized_size == (800, 1067) and state.frame.padded_size == (800, 1088)
    assert state.proposals.masks.shape == (200, 120, 160)


def test_cli_segment_with_the_papers_proposals_offline(paper_cache, offline, tmp_path, capsys):
    from ros2_iterprime.cli import main as cli

    img = tmp_path / "scene.png"
    Image.fromarray(np.full((96, 128, 3), 120, np.uint8)).save(img)
    rc = cli.main(["segment", str(img), "the grey wall", "-o", str(tmp_path / "out"), "--proposals", "mask2former",
                   "--iters", "1", "--cache-dir", str(paper_cache), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "scene__the-grey-wall_mask.png").is_file()


def test_download_mask2former_verifies_offline_and_names_what_is_missing(hub, tmp_path, offline, capsys):
    from ros2_iterprime.cli import main as cli

    assert cli.main(["download", "--repo", hf.BLIP_REPO, "--mask2former", "--cache-dir", str(hub.hub)]) == 0
    out = capsys.readouterr().out
    assert "facebook/mask2former-swin-large-coco-panoptic (mask2former): OK" in out
    assert "weights pytorch_model.bin (PyTorch pickle" in out
    # the same repository without its config: exit 1 and the file named
    broken = tmp_path / "hub"
    folder = "models--" + hf.MASK2FORMER_REPO.replace("/", "--")
    shutil.copytree(hub.hub / folder, broken / folder, symlinks=True)
    snap = next((broken / folder / "snapshots").iterdir())
    (snap / "config.json").unlink()
    assert cli.main(["download", "--repo", hf.MASK2FORMER_REPO, "--cache-dir", str(broken)]) == 1
    assert "MISSING: config (config.json)" in capsys.readouterr().out


def test_download_to_writes_a_loadable_safetensors_folder(hub, paper_cache, offline, tmp_path, capsys):
    from ros2_iterprime.cli import main as cli
    from ros2_iterprime.grounding.mask2former_proposals import Mask2FormerProposer
    from ros2_iterprime.grounding.segmenter import SegmenterConfig, load_segmenter

    to = tmp_path / "export"
    rc = cli.main(["download", "--repo", hf.BLIP_REPO, "--mask2former", "--cache-dir", str(hub.hub), "--to", str(to)])
    assert rc == 0
    out = capsys.readouterr().out
    m2f_dir = to / "mask2former-swin-large-coco-panoptic"
    assert sorted(p.name for p in m2f_dir.iterdir()) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    assert (m2f_dir / "preprocessor_config.json").read_bytes() == (
        hub.snapshots[hf.MASK2FORMER_REPO] / "preprocessor_config.json").read_bytes()  # copied verbatim
    assert f"--proposals-model {m2f_dir.resolve()}" in out and f"-p proposals_model:={m2f_dir.resolve()}" in out
    # the exported folder is recognised as a Mask2Former by its config, and loads with no cache at all
    cfg = SegmenterConfig(proposals_model=str(m2f_dir), iterations=1)
    seg = load_segmenter("default", vlm=str(to / "blip-itm-base-coco"), config=cfg, device="cpu",
                         cache_dir=str(tmp_path / "empty"))
    assert isinstance(seg.sam, Mask2FormerProposer) and seg.sam.m2f.model_id == str(m2f_dir)
    res = seg.segment_image(np.full((60, 80, 3), 100, np.uint8), "the wall")
    assert res.mask.shape == (60, 80)
    # same weights as the cached .bin
    ref = load_segmenter("default", config=cfg.replace(proposals_model="mask2former"), cache_dir=str(paper_cache),
                         device="cpu").sam.model.state_dict()
    got = seg.sam.model.state_dict()
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_download_fetches_the_bin_and_processor_files(hub, tmp_path, monkeypatch, capsys):
    """Online route, answered from the fixture: main's files minus README/.gitattributes, the .bin as published."""
    import huggingface_hub

    from ros2_iterprime.cli import main as cli

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    files = {f.name: f.read_bytes() for f in hub.snapshots[hf.MASK2FORMER_REPO].iterdir()}
    fetched = {}

    class Api:
        def list_repo_files(self, repo_id, **kw):
            assert repo_id == hf.MASK2FORMER_REPO
            return list(hf.MASK2FORMER_HUB_LISTING)

    def snapshot_download(repo_id, allow_patterns=None, cache_dir=None, **kw):
        fetched[repo_id] = list(allow_patterns)
        have = {n: b for n, b in files.items() if n in allow_patterns}
        return str(hf.write_cached_repo(Path(cache_dir), repo_id, have, lfs={"pytorch_model.bin"}))

    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    from ros2_iterprime.models import checkpoints

    monkeypatch.setattr(checkpoints, "hub_unreachable", lambda timeout_s=5.0: None)  # the fake hub is "up"
    assert cli.main(["download", "--repo", hf.MASK2FORMER_REPO, "--cache-dir", str(tmp_path / "cache")]) == 0
    assert fetched == {hf.MASK2FORMER_REPO: ["pytorch_model.bin", "config.json", "preprocessor_config.json"]}
    assert "facebook/mask2former-swin-large-coco-panoptic (mask2former): OK" in capsys.readouterr().out
