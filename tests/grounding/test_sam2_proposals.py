"""SAM 2 / EdgeTAM as the proposal network, and the encoder shared with the tracker (tiny models)."""
import numpy as np
import pytest
import torch
from tracking_helpers import H, ScriptedSegmenter, W, block_frame, red_mask

from ros2_iterprime.grounding.proposals import Proposals
from ros2_iterprime.grounding.sam2_proposals import Sam2Image, Sam2Proposer
from ros2_iterprime.grounding.segmenter import ReferringSegmenter, SegmenterConfig
from ros2_iterprime.tracking import ReferringTracker, RegroundPolicy, StreamingSession, load_tracker


class EncoderCalls:
    def __init__(self, module):
        self.n = 0
        self.handle = module.register_forward_hook(self)

    def __call__(self, *args):
        self.n += 1

    def remove(self):
        self.handle.remove()


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("name", ["tiny-random", "tiny-random-edgetam"])
def test_proposer_interface_matches_sam_proposer(name, one_thread):
    prop = Sam2Proposer(load_tracker(name, device="cpu"))
    img = prop.encode(block_frame(0))
    assert isinstance(img, Sam2Image) and img.original_size == (H, W)
    assert img.input_size == (64, 64) and img.grid == 16 and img.lowres_size == (16, 16)  # stretched: no padding
    props = prop.from_peaks(img, [(5, 6), (10, 3), (2, 2)], multimask=True)
    assert isinstance(props, Proposals) and props.logits.shape == (9, 16, 16) and props.iou.shape == (9,)
    assert props.masks.shape == (9, 16, 16) and torch.isfinite(props.logits).all()
    assert len(prop.from_peaks(img, [(5, 6)], multimask=False)) == 1
    full = prop.upsample(img, props.logits[0])
    assert full.shape == (H, W) and full.dtype == bool
    auto = prop.automatic(img, points_per_side=3, pred_iou_thresh=0.0, stability_thresh=0.0)
    assert auto.logits.shape[1:] == (16, 16) and len(auto) <= 27


def test_segmenter_with_sam2_proposals(tiny_models, one_thread):
    seg = ReferringSegmenter(tiny_models, SegmenterConfig(proposals_model="tiny-random"))
    assert isinstance(seg.sam, Sam2Proposer)
    rgb = block_frame(0)
    res = seg.segment_image(rgb, "the red cup on the left")
    assert res.mask.shape == (H, W) and res.mask.dtype == bool and (res.score >= 1.0) == res.found
    res = seg.segment("the red cup", proposals="automatic", points_per_side=3)
    assert res.mask.shape == (H, W)
    assert seg.sam.last is not None
    seg.reset_image()  # the node's deactivate: the proposer's image features go too
    assert seg.sam.last is None and seg.image_size is None
    with pytest.raises(ValueError):
        SegmenterConfig(proposals_model=" ").validate()


def test_grounding_features_seed_the_tracker_without_a_second_encoding(one_thread):
    tm = load_tracker("tiny-random", device="cpu")
    seg = ScriptedSegmenter()
    seg.sam = Sam2Proposer(tm)  # the grounding's proposer runs on the tracker's own model
    real_set_image = seg.set_image

    def set_image(rgb):
        real_set_image(rgb)
        seg.sam.encode(np.asarray(rgb))

    seg.set_image = set_image
    tr = ReferringTracker(seg, policy=RegroundPolicy(lost_threshold=-1e6, reground_period=0))
    assert tr.session.tracker is tm
    calls = EncoderCalls(tm.model.vision_encoder)
    try:
        first = tr.start(block_frame(0), "the red block")
        assert first.source == "grounding" and calls.n == 1  # proposals and the seed share one encoding
        shared = [tr.update(block_frame(i)) for i in (1, 2)]
        assert calls.n == 3  # then one encoding per tracked frame
    finally:
        calls.remove()
    # same result as a tracker that encodes the seed frame itself
    ref = StreamingSession(load_tracker("tiny-random", device="cpu"))
    ref.seed(block_frame(0), red_mask(block_frame(0)))
    for r, i in zip(shared, (1, 2), strict=True):
        out = ref.track(block_frame(i))
        assert np.array_equal(r.mask, out.mask) and r.object_score == pytest.approx(out.object_score, abs=1e-5)


def test_real_segmenter_and_tracker_share_one_model(tiny_models, one_thread):
    seg = ReferringSegmenter(tiny_models, SegmenterConfig(proposals_model="tiny-random"))
    tr = ReferringTracker(seg, policy=RegroundPolicy(reground_period=0))
    assert tr.session.tracker.model is seg.sam.model
    calls = EncoderCalls(seg.sam.model.vision_encoder)
    try:
        first = tr.start(block_frame(0), "the red cup")
        assert calls.n == 1 and first.source == "grounding"
        r = tr.update(block_frame(1))
        assert r.mask.shape == (H, W) and calls.n == (2 if first.grounding.found else 1)
    finally:
        calls.remove()
    with pytest.raises(ValueError, match="tracker_model"):
        ReferringTracker(ScriptedSegmenter())


def test_background_reseed_reuses_the_snapshot_features(one_thread):
    import threading

    tm = load_tracker("tiny-random", device="cpu")
    clock = [0.0]
    seg = ScriptedSegmenter()
    seg.sam = Sam2Proposer(tm)
    real_set_image = seg.set_image

    def set_image(rgb):
        real_set_image(rgb)
        seg.sam.encode(np.asarray(rgb))

    seg.set_image = set_image
    tr = ReferringTracker(seg, policy=RegroundPolicy(lost_threshold=-1e6, reground_period=5.0,
                                                     clock=lambda: clock[0]), background=True)
    try:
        tr.start(block_frame(0), "the red block")
        seg.gate = threading.Event()
        clock[0] = 5.0
        calls = EncoderCalls(tm.model.vision_encoder)
        r = tr.update(block_frame(1))  # starts the background grounding on a snapshot of frame 1
        assert r.reground_reason == "period" and r.grounding_pending
        r = tr.update(block_frame(2))  # tracking continues while the worker encodes / waits
        seg.gate.set()
        tr._pending.result(timeout=30)
        r = tr.update(block_frame(3))  # re-seed on frame 1 from the worker's features, then track frame 3
        assert r.grounding is not None and r.frames_since_grounding == 2
        # frames 1, 2, 3 tracked + one proposer encoding of the snapshot; the re-seed encodes nothing
        assert calls.n == 4
        calls.remove()
    finally:
        seg.gate.set()
        tr.close()


def test_sam2_proposals_do_not_load_sam_v1(one_thread, caplog):
    """proposals_model != 'sam': `load_segmenter` skips SAM v1 (BLIP + the SAM 2.1 model are all it needs)."""
    import logging

    from ros2_iterprime.grounding.segmenter import load_segmenter

    with caplog.at_level(logging.INFO, logger="ros2_iterprime"):
        seg = load_segmenter("tiny-random", config=SegmenterConfig(proposals_model="tiny-random"), device="cpu")
    assert seg.models.sam is None and seg.models.sam_processor is None and seg.models.sam_id is None
    assert "SAM v1" in caplog.text and isinstance(seg.sam, Sam2Proposer)
    res = seg.segment_image(block_frame(0), "the red block")
    assert res.mask.shape == (H, W) and np.isfinite(res.heatmap).all()
    # the default keeps SAM v1
    default = load_segmenter("tiny-random", device="cpu")
    assert default.models.sam is not None and default.models.sam_id == "tiny-random"
    assert type(default.sam).__name__ == "SamProposer"


def test_models_without_sam_v1_refuse_sam_proposals():
    from ros2_iterprime.models.loading import load_models

    models = load_models("tiny-random", None, device="cpu")
    assert models.sam is None and models.sam_id is None and models.blip is not None
    with pytest.raises(ValueError, match="SAM v1"):
        ReferringSegmenter(models)  # proposals_model='sam' needs it
    assert isinstance(ReferringSegmenter(models, SegmenterConfig(proposals_model="tiny-random")).sam, Sam2Proposer)
