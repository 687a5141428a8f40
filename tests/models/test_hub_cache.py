"""The real-checkpoint route, tested offline on a hub-faithful model cache (tests/hub_fixture.py).

`Salesforce/blip-itm-base-coco` (pytorch_model.bin only, as on the hub's main), `facebook/sam-vit-base`
(safetensors) and the tracker `facebook/sam2.1-hiera-tiny` (safetensors + SAM 2 processor files) are
written into a temp HF_HOME laid out as huggingface_hub caches them; then, with HF_HUB_OFFLINE=1:
`segment --model default`, `load_segmenter("default")`, `download` (verify only; exit 1 naming a missing
file), `download --tracker`, `download --to DIR` and the exported folders, `load_tracker` of the hub id
and of its export, SAM 2.1 proposals without SAM v1 on disk, the unsafe-pickle refusal, and the ROS node
with `model:=default`. Random weights: plumbing, not accuracy.
"""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hub_fixture as hf  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "ros2_iterprime.cli"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> hf.HubFixture:
    return hf.build_hub_cache(tmp_path_factory.mktemp("hf_home"))


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    img = np.full((240, 320, 3), 120, np.uint8)
    img[60:160, 80:200] = (220, 20, 20)
    p = tmp_path_factory.mktemp("img") / "scene.png"
    Image.fromarray(img).save(p)
    return p


def run_cli(args, env, timeout=240):
    return subprocess.run(CLI + list(args), env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------------------ the cache
def test_cache_is_laid_out_as_the_hub_publishes(hub):
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(hub.hub)
    assert not info.warnings
    repos = {r.repo_id: r for r in info.repos}
    assert set(repos) == {hf.BLIP_REPO, hf.SAM_REPO, hf.SAM21_REPO}
    blip_files = {f.file_name for rev in repos[hf.BLIP_REPO].revisions for f in rev.files}
    assert blip_files == {"config.json", "pytorch_model.bin", "preprocessor_config.json", "tokenizer.json",
                          "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"}
    assert not any(f.endswith(".safetensors") for f in blip_files)  # .bin only, as on main
    assert {f.file_name for rev in repos[hf.SAM_REPO].revisions for f in rev.files} == {
        "config.json", "model.safetensors", "preprocessor_config.json"}
    assert {f.file_name for rev in repos[hf.SAM21_REPO].revisions for f in rev.files} == {
        "config.json", "model.safetensors", "preprocessor_config.json", "video_preprocessor_config.json",
        "processor_config.json"}
    assert all(r.refs == {"main"} for rev in info.repos for r in rev.revisions)

    snap = hub.snapshots[hf.BLIP_REPO]
    cfg = json.loads((snap / "config.json").read_text())
    t = cfg["text_config"]
    assert (t["num_attention_heads"], t["vocab_size"], t["bos_token_id"], t["sep_token_id"], t["is_decoder"]) == (
        12, 30524, 30522, 102, True)
    # every key of the published files is kept (the shrunk widths need one extra: encoder_hidden_size)
    from ros2_iterprime.models.published import published

    pub = published("BLIP_ITM_BASE_COCO_CONFIG")
    assert set(cfg) == set(pub) and set(t) == set(pub["text_config"]) | {"encoder_hidden_size"}
    assert set(cfg["vision_config"]) == set(pub["vision_config"])
    vocab = (snap / "vocab.txt").read_text().splitlines()
    assert len(vocab) == 30522 and vocab[101] == "[CLS]" and vocab[102] == "[SEP]"
    tok_files = "".join((snap / f).read_text() for f in ("tokenizer.json", "tokenizer_config.json",
                                                           "special_tokens_map.json", "vocab.txt"))
    assert "[DEC]" not in tok_files and "[ENC]" not in tok_files
    pre = json.loads((snap / "preprocessor_config.json").read_text())
    assert pre["size"] == {"height": 384, "width": 384} and pre["image_mean"][0] == 0.48145466
    sam_pre = json.loads((hub.snapshots[hf.SAM_REPO] / "preprocessor_config.json").read_text())
    assert sam_pre["size"] == {"longest_edge": 1024}
    # SAM 2.1: every key of the converter's Sam2VideoConfig as save_pretrained writes it, shrunk widths
    import tempfile

    from ros2_iterprime.tracking import published_config

    s21 = hub.snapshots[hf.SAM21_REPO]
    cfg21 = json.loads((s21 / "config.json").read_text())
    with tempfile.TemporaryDirectory() as d:
        published_config(hf.SAM21_REPO).save_pretrained(d)
        full = json.loads((Path(d) / "config.json").read_text())
    # (the model's save_pretrained, as in the converter, adds "architectures")
    assert set(cfg21) == set(full) | {"architectures"} and cfg21["architectures"] == ["Sam2VideoModel"]
    assert cfg21["model_type"] == "sam2_video"
    for sub in ("vision_config", "prompt_encoder_config", "mask_decoder_config"):
        assert set(cfg21[sub]) == set(full[sub]), sub
    assert set(cfg21["vision_config"]["backbone_config"]) == set(full["vision_config"]["backbone_config"])
    assert (cfg21["image_size"], cfg21["num_maskmem"], cfg21["max_object_pointers_in_encoder"]) == (1024, 7, 16)
    assert cfg21["enable_temporal_pos_encoding_for_object_pointers"] and cfg21["enable_occlusion_spatial_embedding"]
    assert json.loads((s21 / "processor_config.json").read_text()) == {
        "point_pad_value": -10, "processor_class": "Sam2VideoProcessor", "target_size": 1024}
    state = torch.load(snap / "pytorch_model.bin", weights_only=True)
    assert "text_encoder.embeddings.position_ids" in state and "itm_head.weight" in state


# ------------------------------------------------------------------------------------------ loading
def test_load_segmenter_default_reads_the_bin_safely_and_runs(hub, caplog, monkeypatch):
    from ros2_iterprime.grounding.segmenter import load_segmenter

    calls = []
    real_load = torch.load

    def spy(*a, **kw):
        calls.append(kw.get("weights_only"))
        return real_load(*a, **kw)

    monkeypatch.setattr(torch, "load", spy)
    with caplog.at_level(logging.INFO, logger="ros2_iterprime.models.loading"):
        seg = load_segmenter("default", cache_dir=str(hub.hub), device="cpu")
    log = caplog.text
    assert "weights read from pytorch_model.bin" in log and "weights read from model.safetensors" in log
    assert calls and all(w is True for w in calls)  # every torch.load of the .bin was weights_only=True
    blip = seg.models.blip
    assert blip.config.text_config.num_attention_heads == 12
    n = len(blip.text_encoder.encoder.layer)
    assert seg.gradcam.layer < n - 1  # the Grad-CAM layer is not the last: token gradients are non-zero
    # [ENC] resolved from the model's vocabulary: bert-base-uncased 30522 + [DEC] 30522 -> [ENC] 30523
    assert seg._first_token == {"enc": 30523}
    img = np.asarray(Image.new("RGB", (320, 240), (90, 90, 90)))
    res = seg.segment_image(img, "the red square on the left")
    assert res.mask.shape == (240, 320) and np.isfinite(res.heatmap).all()
    assert res.primary_word == "square" and res.kept_tokens == ["red", "square", "left"]


def test_itm_pass_receives_enc_at_position_0_and_pwem_pieces_do_not_change(hub):
    from ros2_iterprime.grounding.segmenter import ReferringSegmenter, SegmenterConfig
    from ros2_iterprime.models.loading import load_models

    models = load_models("Salesforce/blip-itm-base-coco", "facebook/sam-vit-base", cache_dir=str(hub.hub),
                         device="cpu")
    seen = []
    h = models.blip.text_encoder.embeddings.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["input_ids"][0].tolist()), with_kwargs=True)
    try:
        img = np.asarray(Image.new("RGB", (160, 120), (200, 40, 40)))
        out, ids = {}, {}
        for choice in ("enc", "cls"):
            seg = ReferringSegmenter(models, SegmenterConfig(itm_first_token=choice, iterations=1))
            seen.clear()
            out[choice] = seg.segment_image(img, "the man on the left holding a bike")
            assert seen, "the ITM text pass did not run"
            ids[choice] = seen[0]
    finally:
        h.remove()
    assert ids["enc"][0] == 30523 and ids["cls"][0] == 101  # [ENC] from the vocabulary; BERT's [CLS]
    assert ids["enc"][1:] == ids["cls"][1:]  # only position 0 differs
    a, b = out["enc"], out["cls"]
    assert (a.kept_tokens, a.primary_word) == (b.kept_tokens, b.primary_word)
    assert a.primary_word == "man" and "bike" in a.kept_tokens


def test_unsafe_bin_is_refused_without_running_it(hub, tmp_path):
    from transformers import BlipForImageTextRetrieval

    from ros2_iterprime.errors import UnsafeCheckpointError
    from ros2_iterprime.models.loading import load_pretrained

    d = tmp_path / "blip"
    shutil.copytree(hub.snapshots[hf.BLIP_REPO], d)  # follows the cache links
    state = torch.load(d / "pytorch_model.bin", weights_only=True)
    marker = tmp_path / "code_ran"
    state["payload"] = _Payload(str(marker))
    (d / "pytorch_model.bin").unlink()
    torch.save(state, d / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match="refused to load pytorch_model.bin"):
        load_pretrained(BlipForImageTextRetrieval, "vlm", str(d))
    assert not marker.exists()


class _Payload:
    """Pickles to a call that would create a file when unpickled by a full (unsafe) torch.load."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_missing_weights_error_names_the_model_and_the_route(hub, tmp_path):
    from ros2_iterprime.errors import ModelNotFoundError
    from ros2_iterprime.grounding.segmenter import load_segmenter

    empty = tmp_path / "empty_hub"
    empty.mkdir()
    with pytest.raises(ModelNotFoundError) as ei:
        load_segmenter("default", cache_dir=str(empty), device="cpu")
    msg = str(ei.value)
    assert "Salesforce/blip-itm-base-coco" in msg and "ros2_iterprime download --vlm" in msg
    assert "HF_HUB_OFFLINE=1" in msg and "--to DIR" in msg and "pytorch_model.bin" in msg


# ------------------------------------------------------------------------------------------ CLI
@pytest.mark.slow
def test_cli_segment_default_offline(hub, scene, tmp_path):
    out = tmp_path / "out"
    r = run_cli(["segment", str(scene), "the red square", "--model", "default", "-o", str(out)], hf.fixture_env(hub))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "weights read from pytorch_model.bin" in r.stderr
    stem = "scene__the-red-square"
    assert sorted(p.name for p in out.iterdir()) == [f"{stem}.json", f"{stem}_mask.png", f"{stem}_overlay.png"]


def test_download_offline_verifies_and_reports_the_cache(hub):
    r = run_cli(["download", "--tracker", hf.SAM21_REPO], hf.fixture_env(hub))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "HF_HUB_OFFLINE=1: nothing is fetched" in r.stdout
    assert "Salesforce/blip-itm-base-coco (vlm): OK" in r.stdout and "weights pytorch_model.bin" in r.stdout
    assert "facebook/sam-vit-base (sam): OK" in r.stdout and "weights model.safetensors" in r.stdout
    assert "facebook/sam2.1-hiera-tiny (tracker): OK" in r.stdout
    assert r.stdout.count("weights model.safetensors") == 2  # SAM and the tracker


def test_download_offline_names_a_missing_tokenizer(hub, tmp_path):
    home = tmp_path / "hf_home"
    shutil.copytree(hub.hf_home, home, symlinks=True)
    snap = home / "hub" / hub.snapshots[hf.BLIP_REPO].relative_to(hub.hub)
    (snap / "tokenizer.json").unlink()
    env = hf.fixture_env(hf.HubFixture(home, home / "hub", {}))
    r = run_cli(["download"], env)
    assert r.returncode == 1
    assert "Salesforce/blip-itm-base-coco (vlm): INCOMPLETE" in r.stdout
    assert "tokenizer (tokenizer.json)" in r.stderr and "facebook/sam-vit-base (sam): OK" in r.stdout


@pytest.mark.slow
def test_download_to_dir_writes_loadable_safetensors_folders(hub, scene, tmp_path):
    to = tmp_path / "export"
    r = run_cli(["download", "--to", str(to)], hf.fixture_env(hub))
    assert r.returncode == 0, r.stdout + r.stderr
    blip_dir, sam_dir = to / "blip-itm-base-coco", to / "sam-vit-base"
    assert f"--vlm {blip_dir} --sam {sam_dir}" in r.stdout and f"-p vlm:={blip_dir}" in r.stdout
    for d in (blip_dir, sam_dir):
        assert (d / "model.safetensors").is_file() and not (d / "pytorch_model.bin").exists()
    # the folders are self-contained: an empty model cache, offline
    empty = tmp_path / "empty_home"
    empty.mkdir()
    env = hf.fixture_env(hf.HubFixture(empty, empty / "hub", {}))
    out = tmp_path / "out"
    r = run_cli(["segment", str(scene), "the red square", "--vlm", str(blip_dir), "--sam", str(sam_dir),
                 "-o", str(out)], env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "weights read from model.safetensors" in r.stderr and "pytorch_model.bin" not in r.stderr
    assert len(list(out.glob("*_mask.png"))) == 1


# ------------------------------------------------------------------------------------------ tracker (SAM 2.1)
@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_load_tracker_reads_the_cached_hub_id_offline(hub, offline, caplog):
    from tracking_helpers import block_frame, red_mask

    from ros2_iterprime.tracking import StreamingSession, load_tracker

    with caplog.at_level(logging.INFO, logger="ros2_iterprime.models.loading"):
        tm = load_tracker(hf.SAM21_REPO, cache_dir=str(hub.hub), device="cpu")
    assert "weights read from model.safetensors" in caplog.text
    assert type(tm.model).__name__ == "Sam2VideoModel" and tm.family == "sam2" and not tm.is_tiny
    assert (tm.num_maskmem, tm.max_object_pointers) == (7, 16)
    # geometry from the checkpoint's video_preprocessor_config.json
    assert tm.geometry.size == 1024 and tm.geometry.mean == (0.485, 0.456, 0.406)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sess = StreamingSession(tm)
        assert sess.seed(block_frame(0), red_mask(block_frame(0))).object_score == 10.0  # mask prompt as output
        out = sess.track(block_frame(1))
    finally:
        torch.set_num_threads(n)
    assert out.mask.shape == block_frame(1).shape[:2] and np.isfinite(out.object_score)


def test_load_tracker_cost_knobs_on_the_cached_hub_id(hub, offline):
    """The real loading path with the cost knobs: the published weights under a sized config."""
    from tracking_helpers import block_frame, red_mask

    from ros2_iterprime.tracking import StreamingSession, load_tracker

    published = load_tracker(hf.SAM21_REPO, cache_dir=str(hub.hub), device="cpu", dtype="fp32")
    tm = load_tracker(hf.SAM21_REPO, cache_dir=str(hub.hub), device="cpu", dtype="fp32", image_size=512,
                      memory_frames=3)
    assert tm.geometry.size == 512 and tm.model.config.image_size == 512 and tm.num_maskmem == 3
    assert tm.geometry.mean == published.geometry.mean  # normalisation still from the checkpoint's files
    for name, p in published.model.state_dict().items():  # same weights, every one
        assert torch.equal(p, tm.model.state_dict()[name]), name
    with pytest.raises(ValueError, match="multiple of 32"):
        load_tracker(hf.SAM21_REPO, cache_dir=str(hub.hub), device="cpu", image_size=500)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sess = StreamingSession(tm)
        sess.seed(block_frame(0), red_mask(block_frame(0)))
        out = sess.track(block_frame(1))
    finally:
        torch.set_num_threads(n)
    assert out.mask.shape == block_frame(1).shape[:2] and np.isfinite(out.object_score)


def test_download_to_dir_exports_a_loadable_tracker(hub, offline, tmp_path, capsys):
    from ros2_iterprime.cli import main as cli
    from ros2_iterprime.tracking import load_tracker

    to = tmp_path / "export"
    assert cli.main(["download", "--repo", hf.SAM21_REPO, "--cache-dir", str(hub.hub), "--to", str(to)]) == 0
    out = capsys.readouterr().out
    d = to / "sam2.1-hiera-tiny"
    assert f"-p tracker_model:={d}" in out and f"load_tracker({str(d)!r})" in out and "segment IMAGE" not in out
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "model.safetensors", "preprocessor_config.json",
                                                   "processor_config.json", "video_preprocessor_config.json"]
    snap = hub.snapshots[hf.SAM21_REPO]
    for name in ("preprocessor_config.json", "video_preprocessor_config.json", "processor_config.json"):
        assert (d / name).read_bytes() == (snap / name).read_bytes(), name  # copied as published
    assert json.loads((d / "config.json").read_text())["model_type"] == "sam2_video"
    # self-contained: loads from the folder with an empty cache, same weights as the cached checkpoint
    exported = load_tracker(str(d), device="cpu", cache_dir=str(tmp_path / "empty"))
    cached = load_tracker(hf.SAM21_REPO, cache_dir=str(hub.hub), device="cpu")
    a, b = exported.model.state_dict(), cached.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert exported.geometry == cached.geometry and exported.family == "sam2"


def test_missing_tracker_message_gives_the_download_command_that_works(hub, offline, tmp_path, capsys):
    import re
    import shlex

    from ros2_iterprime.cli import main as cli
    from ros2_iterprime.errors import ModelNotFoundError
    from ros2_iterprime.tracking import load_tracker

    with pytest.raises(ModelNotFoundError) as ei:
        load_tracker("facebook/sam2.1-hiera-small", cache_dir=str(hub.hub), device="cpu")
    msg = str(ei.value)
    assert "-p tracker_model:=DIR/sam2.1-hiera-small" in msg and "load_tracker('DIR/sam2.1-hiera-small')" in msg
    command = re.search(r"`ros2_iterprime (download [^`]+)`", msg).group(1)
    assert command == "download --tracker facebook/sam2.1-hiera-small"
    # the command the message gives is a real one: offline it verifies and names what is missing
    assert cli.main(shlex.split(command) + ["--cache-dir", str(hub.hub)]) == 1
    out = capsys.readouterr()
    assert "facebook/sam2.1-hiera-small (tracker): MISSING" in out.out
    assert "facebook/sam2.1-hiera-tiny" not in out.out  # only what was asked (+ the profile's BLIP/SAM)


def test_sam21_proposals_need_only_blip_and_sam21_on_disk(hub, offline, tmp_path):
    """A robot that grounds with SAM 2.1 proposals and tracks with SAM 2.1: BLIP + SAM 2.1, no SAM v1."""
    from ros2_iterprime.errors import ModelNotFoundError
    from ros2_iterprime.grounding.sam2_proposals import Sam2Proposer
    from ros2_iterprime.grounding.segmenter import SegmenterConfig, load_segmenter
    from ros2_iterprime.tracking import ReferringTracker, RegroundPolicy

    cache = tmp_path / "hub"
    cache.mkdir()
    for repo in (hf.BLIP_REPO, hf.SAM21_REPO):  # no facebook/sam-vit-base in this cache
        folder = "models--" + repo.replace("/", "--")
        shutil.copytree(hub.hub / folder, cache / folder, symlinks=True)
    with pytest.raises(ModelNotFoundError, match="facebook/sam-vit-base"):  # SAM v1 proposals need SAM v1
        load_segmenter("default", cache_dir=str(cache), device="cpu")
    cfg = SegmenterConfig(proposals_model=hf.SAM21_REPO, iterations=1)
    seg = load_segmenter("default", config=cfg, cache_dir=str(cache), device="cpu")
    assert seg.models.sam is None and seg.models.sam_processor is None and seg.models.sam_id is None
    assert isinstance(seg.sam, Sam2Proposer) and seg.sam.tracker.model_id == hf.SAM21_REPO
    img = np.asarray(Image.new("RGB", (160, 120), (90, 90, 90)))
    tr = ReferringTracker(seg, policy=RegroundPolicy(reground_period=0))
    assert tr.session.tracker.model is seg.sam.model  # one SAM 2.1 model: proposals and tracking
    first = tr.start(img, "the red square")
    nxt = tr.update(img)
    assert first.source == "grounding" and first.mask.shape == nxt.mask.shape == (120, 160)
    assert first.grounding is not None and first.grounding.mask.shape == (120, 160)


# ------------------------------------------------------------------------------------------ online route
#: the files on `main` of the two repositories (hub file listings)
HUB_LISTINGS = {
    hf.BLIP_REPO: [".gitattributes", "README.md", "config.json", "preprocessor_config.json", "pytorch_model.bin",
                   "special_tokens_map.json", "tf_model.h5", "tokenizer.json", "tokenizer_config.json", "vocab.txt"],
    hf.SAM_REPO: [".gitattributes", "README.md", "config.json", "model.safetensors", "preprocessor_config.json",
                  "pytorch_model.bin", "tf_model.h5"],
    hf.SAM21_REPO: list(hf.SAM21_HUB_LISTING),
}


@pytest.fixture
def fake_hub(hub, monkeypatch):
    """huggingface_hub's listing and snapshot_download answered from the fixture files (no network)."""
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    files = {repo: {f.name: f.read_bytes() for f in snap.iterdir()} for repo, snap in hub.snapshots.items()}
    fetched = {}

    class Api:
        def list_repo_files(self, repo_id, **kw):
            return list(HUB_LISTINGS[repo_id])

    def snapshot_download(repo_id, allow_patterns=None, cache_dir=None, **kw):
        fetched[repo_id] = list(allow_patterns)
        have = {n: b for n, b in files[repo_id].items() if n in allow_patterns}
        return str(hf.write_cached_repo(Path(cache_dir), repo_id, have, lfs={"pytorch_model.bin", "model.safetensors"}))

    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    from ros2_iterprime.models import checkpoints

    monkeypatch.setattr(checkpoints, "hub_unreachable", lambda timeout_s=5.0: None)  # the fake hub is "up"
    return fetched


def test_an_unreachable_hub_fails_the_fetch_at_once(monkeypatch):
    """No ~30 s of huggingface_hub retries on a machine without internet: one quick check, one error."""
    import time

    from ros2_iterprime.models import checkpoints

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed local port: no network touched
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "ENDPOINT", "http://127.0.0.1:9")
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match="unreachable"):
        checkpoints.fetch("Salesforce/blip-itm-base-coco")
    assert time.monotonic() - t0 < 10


def test_download_fetches_the_published_weight_format_and_verifies(fake_hub, tmp_path, capsys):
    from ros2_iterprime.cli import main as cli

    assert cli.main(["download", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert fake_hub[hf.BLIP_REPO] == ["pytorch_model.bin", "config.json", "preprocessor_config.json",
                                      "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"]
    assert fake_hub[hf.SAM_REPO] == ["model.safetensors", "config.json", "preprocessor_config.json"]
    out = capsys.readouterr().out
    assert "Salesforce/blip-itm-base-coco (vlm): OK" in out and "facebook/sam-vit-base (sam): OK" in out


def test_download_tracker_fetches_safetensors_and_processor_files_not_the_pickle(fake_hub, tmp_path, capsys):
    from ros2_iterprime.cli import main as cli

    assert cli.main(["download", "--repo", hf.SAM21_REPO, "--cache-dir", str(tmp_path / "cache")]) == 0
    # the repository also holds the original sam2.1_hiera_tiny.pt (a pickle) and its YAML: never fetched
    assert fake_hub == {hf.SAM21_REPO: ["model.safetensors", "config.json", "preprocessor_config.json",
                                        "processor_config.json", "video_preprocessor_config.json"]}
    assert "facebook/sam2.1-hiera-tiny (tracker): OK" in capsys.readouterr().out


def test_uncached_model_is_fetched_then_loaded(fake_hub, tmp_path):
    from ros2_iterprime.models.loading import load_models

    m = load_models(hf.BLIP_REPO, hf.SAM_REPO, cache_dir=str(tmp_path / "cache"), device="cpu")
    assert set(fake_hub) == {hf.BLIP_REPO, hf.SAM_REPO} and m.blip.config.text_config.num_attention_heads == 12


# ------------------------------------------------------------------------------------------ ROS node
@pytest.mark.ros
@pytest.mark.slow
def test_node_with_model_default_answers_over_dds(hub):
    import ros_helpers as rh

    rh.skip_without_rclpy()
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image as ImageMsg
    from std_msgs.msg import String

    domain = rh.pick_domain_id()
    env = {k: v for k, v in hf.fixture_env(hub).items() if k in ("HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    node = rh.NodeProcess(domain, model="default", env=env, params={"max_frame_age": 10.0})
    client = None
    try:
        node.wait_ready(timeout=180)
        client = rh.RosClient(domain)
        client.collect("/iterprime/result_json", String)
        img_pub = client.node.create_publisher(ImageMsg, "/image", qos_profile_sensor_data)
        expr_pub = client.node.create_publisher(String, "/referring_expression",
                                                QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        client.wait_subscribers(img_pub)
        client.wait_subscribers(expr_pub)
        msg = rh.make_image_msg(320, 240, client.now_ns())
        for _ in range(3):
            img_pub.publish(msg)
            time.sleep(0.05)
        expr_pub.publish(String(data="the bright square"))
        res = json.loads(client.first("/iterprime/result_json", timeout=90).data)
        assert res["expression"] == "the bright square"
        # the library's log reaches the ROS log: which weight file the node read
        assert "weights read from pytorch_model.bin" in node.log(), node.log()[-2000:]
    finally:
        if client is not None:
            client.close()
        code = node.stop()
    log = node.log()
    assert "Traceback" not in log and code == 0, log[-3000:]
