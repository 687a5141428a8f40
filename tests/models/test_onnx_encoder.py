"""The optional ONNX Runtime path of SAM's image encoder: export, cache, same outputs, opt-in (tiny SAM)."""
import numpy as np
import pytest
import torch

from ros2_iterprime.models import onnx_encoder as ox
from ros2_iterprime.models.loading import load_models

pytest.importorskip("onnxruntime", reason="onnxruntime is a dev requirement (requirements-dev.txt)")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ITERPRIME_ONNX_CACHE", str(tmp_path / "onnx"))
    return tmp_path / "onnx"


def test_export_is_cached_by_model_weights_and_versions(cache, monkeypatch):
    m = load_models("tiny-random", "tiny-random", device="cpu", dtype="fp32")
    enc = ox.ort_sam_encoder(m.sam, m.sam_id)
    assert enc.path.parent == cache and enc.path.is_file()
    name = enc.path.name
    assert name.startswith("tiny-random-") and "-128px-fp32-torch" in name and "-tf" in name and "-ort" in name
    # a second use loads the file: no second export
    monkeypatch.setattr(ox, "export_sam_encoder", lambda *a, **k: pytest.fail("exported twice"))
    assert ox.ort_sam_encoder(m.sam, m.sam_id).path == enc.path
    # other weights under the same id: another file
    other = load_models("tiny-random", "tiny-random", device="cpu", dtype="fp32", seed=1)
    assert ox.cache_path(other.sam_id, other.sam.vision_encoder, 128) != enc.path


def test_same_outputs_within_the_documented_tolerance(cache):
    m = load_models("tiny-random", "tiny-random", device="cpu", dtype="fp32")
    enc = ox.ort_sam_encoder(m.sam, m.sam_id)
    s = m.sam.config.vision_config.image_size
    for seed in range(2):
        pv = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(seed))
        r = ox.check_same_outputs(m.sam, enc, pv)
        assert r["same"] and r["relative"] <= ox.TOLERANCE
        assert enc(pv).shape == m.sam.get_image_embeddings(pv).shape


def test_opt_in_routes_the_segmenter_through_onnxruntime_and_back(cache, rgb_image, monkeypatch):
    from ros2_iterprime.grounding.segmenter import ReferringSegmenter

    m = load_models("tiny-random", "tiny-random", device="cpu", dtype="fp32")
    seg = ReferringSegmenter(m)
    a = seg.segment_image(rgb_image, "the red cup")
    enc = ox.use_onnxruntime(m)
    assert m.sam.get_image_embeddings is enc
    calls = []
    monkeypatch.setattr(enc.session, "run", lambda *args, _run=enc.session.run: calls.append(1) or _run(*args))
    b = seg.segment_image(rgb_image, "the red cup")
    assert calls == [1]  # SAM's encoder ran in ONNX Runtime
    np.testing.assert_allclose(a.heatmap, b.heatmap)  # BLIP side untouched
    ox.use_torch(m)
    assert m.sam.get_image_embeddings.__func__ is type(m.sam).get_image_embeddings


def test_backend_switch_in_load_models(cache, monkeypatch):
    monkeypatch.setenv("ITERPRIME_ENCODER_BACKEND", "onnxruntime")
    m = load_models("tiny-random", "tiny-random", device="cpu", dtype="fp32")
    assert isinstance(m.sam.get_image_embeddings, ox.OrtSamEncoder)
    monkeypatch.setenv("ITERPRIME_ENCODER_BACKEND", "tensorrt")
    with pytest.raises(ValueError, match="'torch' or 'onnxruntime'"):
        load_models("tiny-random", "tiny-random", device="cpu", dtype="fp32")


def test_an_export_that_differs_is_refused(cache, monkeypatch):
    m = load_models("tiny-random", "tiny-random", device="cpu", dtype="fp32")
    monkeypatch.setattr(ox, "check_same_outputs", lambda *a: {"same": False, "relative": 0.5, "max_abs_diff": 1.0})
    with pytest.raises(ValueError, match="differs from torch"):
        ox.use_onnxruntime(m)
    assert "get_image_embeddings" not in m.sam.__dict__


def test_tracker_image_features_through_onnxruntime(cache):
    """SAM 2.1's per-frame image features in ONNX Runtime: the tracked masks are the torch path's."""
    from tracking_helpers import block_frame, red_mask

    from ros2_iterprime.models.trackers import load_tracker
    from ros2_iterprime.tracking import StreamingSession

    tm = load_tracker("tiny-random", device="cpu", dtype="fp32")

    def run():
        s = StreamingSession(tm)
        s.seed(block_frame(0), red_mask(block_frame(0)))
        return [s.track(block_frame(i)) for i in range(1, 5)]

    a = run()
    enc = ox.use_onnxruntime_tracker(tm)
    assert tm.model.get_image_features is enc and enc.path.parent == cache and "-64px-fp32-" in enc.path.name
    calls = []
    real = enc.session.run
    enc.session.run = lambda *args: calls.append(1) or real(*args)
    b = run()
    assert len(calls) == 5  # the seed frame + 4 tracked frames ran the encoder in ONNX Runtime
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.mask, y.mask) and abs(x.object_score - y.object_score) < 1e-4
    ox.use_torch_tracker(tm)
    assert "get_image_features" not in tm.model.__dict__
