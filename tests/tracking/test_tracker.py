"""ReferringTracker / StreamingSession / tracker models with tiny random models (plumbing, never quality).

Most tests ground with `ScriptedSegmenter` (returns the red block's mask, or not-found on demand) so the
tracker always has something to follow; the tracker itself is always the real tiny Sam2VideoModel.
`test_real_tiny_segmenter_then_tracker` runs the real IteRPrimE pipeline (tiny BLIP + SAM) into it.
"""
import dataclasses
import threading
import time

import numpy as np
import pytest
import torch
from tracking_helpers import H, ScriptedSegmenter, W, block_frame, red_mask

from ros2_iterprime import InvalidInputError, ModelNotFoundError
from ros2_iterprime.tracking import (
    KNOWN_TRACKERS,
    NotTrackingError,
    ReferringTracker,
    RegroundPolicy,
    StreamingSession,
    TrackResult,
    load_tracker,
    published_config,
)


@pytest.fixture(scope="module")
def tiny_tracker_model():
    return load_tracker("tiny-random", device="cpu")


@pytest.fixture
def one_thread():
    """Tiny models on a busy 2-core machine run 5-10x faster on one intra-op thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def scripted_scores(monkeypatch, tracker: ReferringTracker, scores):
    """Replace the object score of each tracked frame by the next scripted value (the model still runs),
    and its mask by the block's (tiny random masks are often empty, and an empty mask is always lost):
    the score alone then decides "lost"."""
    it = iter(scores)
    real = tracker.session.track

    def track(rgb, frame_index=None):
        out = real(rgb, frame_index=frame_index)
        return dataclasses.replace(out, object_score=float(next(it)), mask=red_mask(rgb))

    monkeypatch.setattr(tracker.session, "track", track)


# ------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------
def test_known_trackers_and_published_configs():
    assert KNOWN_TRACKERS == ("facebook/sam2.1-hiera-tiny", "facebook/sam2.1-hiera-small",
                              "facebook/sam2.1-hiera-base-plus", "facebook/sam2.1-hiera-large", "facebook/EdgeTAM")
    from ros2_iterprime.models.checkpoints import KINDS, KNOWN_REPOS

    assert all(KNOWN_REPOS[t] == "tracker" for t in KNOWN_TRACKERS)  # `download --tracker ID` / `--repo ID`
    assert KINDS["tracker"].node_param == "tracker_model"
    tiny = published_config("facebook/sam2.1-hiera-tiny")
    bb = tiny.vision_config.backbone_config
    assert (tiny.image_size, tiny.num_maskmem, tiny.max_object_pointers_in_encoder) == (1024, 7, 16)
    assert bb.blocks_per_stage == [1, 2, 7, 2] and bb.embed_dim_per_stage == [96, 192, 384, 768]
    assert bb.global_attention_blocks == [5, 7, 9]
    assert tiny.enable_temporal_pos_encoding_for_object_pointers and tiny.enable_occlusion_spatial_embedding
    large = published_config("sam2.1-hiera-large").vision_config
    assert large.backbone_config.blocks_per_stage == [2, 6, 36, 4] and large.backbone_channel_list[0] == 1152
    edgetam = published_config("facebook/EdgeTAM")
    assert edgetam.vision_config.backbone_config.architecture == "repvit_m1"
    assert not edgetam.enable_temporal_pos_encoding_for_object_pointers
    assert not edgetam.enable_occlusion_spatial_embedding
    assert edgetam.memory_attention_num_layers == 2 and edgetam.perceiver_resampler_num_latents_2d == 256


def test_missing_tracker_weights_give_the_one_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="facebook/sam2.1-hiera-small"):
        load_tracker("facebook/sam2.1-hiera-small", device="cpu", local_files_only=True, cache_dir=str(tmp_path))


def test_tracker_loads_from_a_saved_directory(tmp_path, one_thread):
    from ros2_iterprime.models.trackers import build_tiny_tracker, family_of

    build_tiny_tracker("sam2", seed=3).save_pretrained(tmp_path / "sam2")
    build_tiny_tracker("edgetam", seed=3).config.save_pretrained(tmp_path / "edgetam")
    assert family_of(str(tmp_path / "sam2")) == "sam2" and family_of(str(tmp_path / "edgetam")) == "edgetam"
    loaded = load_tracker(str(tmp_path / "sam2"), device="cpu")  # the safe loading path (safetensors)
    built = load_tracker("tiny-random", device="cpu", seed=3)
    assert loaded.family == "sam2" and loaded.geometry.size == 64 and not loaded.is_tiny
    a, b = StreamingSession(loaded), StreamingSession(built)
    m0 = red_mask(block_frame(0))
    a.seed(block_frame(0), m0)
    b.seed(block_frame(0), m0)
    oa, ob = a.track(block_frame(1)), b.track(block_frame(1))
    assert np.array_equal(oa.mask, ob.mask) and oa.object_score == ob.object_score


def test_full_size_edgetam_needs_timm():
    import importlib.util

    from ros2_iterprime.tracking import build_random_tracker

    if importlib.util.find_spec("timm") is None:  # this machine: timm cannot be imported (needs torchvision)
        with pytest.raises(ImportError, match="timm"):
            build_random_tracker("EdgeTAM")
    else:
        tm = build_random_tracker("EdgeTAM")
        assert tm.family == "edgetam" and tm.geometry.size == 1024


@pytest.mark.parametrize("name", ["tiny-random", "tiny-random-edgetam"])
def test_tiny_trackers_stream_frames(name, one_thread):
    tm = load_tracker(name, device="cpu")
    assert tm.family == ("edgetam" if "edgetam" in name else "sam2") and tm.geometry.size == 64
    s = StreamingSession(tm)
    seed = s.seed(block_frame(0), red_mask(block_frame(0)))
    assert seed.object_score == pytest.approx(10.0)  # the prompt mask is taken as output
    assert seed.mask.shape == (H, W) and seed.mask[red_mask(block_frame(0))].mean() > 0.9
    for i in range(1, 6):
        out = s.track(block_frame(i))
        assert out.mask.shape == (H, W) and out.mask.dtype == bool and np.isfinite(out.object_score)
        assert out.frame_index == i


# ------------------------------------------------------------------------------------------------
# memory bound
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tiny-random", "tiny-random-edgetam"])
def test_pruning_keeps_the_output_identical(name, one_thread):
    tiny_tracker_model = load_tracker(name, device="cpu")
    pruned, full = StreamingSession(tiny_tracker_model), StreamingSession(tiny_tracker_model, prune=False)
    m0 = red_mask(block_frame(0))
    pruned.seed(block_frame(0), m0)
    full.seed(block_frame(0), m0)
    window = pruned.memory_window
    assert window == max(tiny_tracker_model.num_maskmem, tiny_tracker_model.max_object_pointers) - 1 == 3
    for i in range(1, 13):
        a, b = pruned.track(block_frame(i)), full.track(block_frame(i))
        assert np.array_equal(a.mask, b.mask) and a.object_score == b.object_score
    assert full.stored_frames()["non_cond_outputs"] == 12 and full.stored_frames()["processed_frames"] == 13
    kept = pruned.stored_frames()
    assert kept == {"processed_frames": 0, "vision_features": 0, "cond_outputs": 1, "non_cond_outputs": window,
                    "frames_tracked": 0, "mask_inputs": 0}


def test_memory_bounded_over_1000_frames(tiny_tracker_model, one_thread):
    """1,000 tracked frames: stored frames <= 1 + window, session bytes constant, RSS flat.

    Tolerance: RSS growth < 16 MB between frame 200 and frame 1000. Without pruning this stream
    grows by ~64 MB over those 800 frames (measured: ~80 KB per 64 px frame), so the bound catches it.
    """
    import psutil

    proc = psutil.Process()
    s = StreamingSession(tiny_tracker_model)
    s.seed(block_frame(0), red_mask(block_frame(0)))
    limit = 1 + s.memory_window
    rss = {}
    state = {}
    for i in range(1, 1001):
        s.track(block_frame(i % 50))  # 50 distinct frames, cycled (frame creation is not what we measure)
        stored = s.stored_frames()
        assert sum(stored.values()) <= limit, (i, stored)
        if i in (200, 1000):
            rss[i] = proc.memory_info().rss
            state[i] = s.state_bytes()
    assert state[1000] == state[200] > 0
    assert rss[1000] - rss[200] < 16 * 2**20, f"RSS grew by {(rss[1000] - rss[200]) / 2**20:.1f} MB"


# ------------------------------------------------------------------------------------------------
# ReferringTracker
# ------------------------------------------------------------------------------------------------
def test_synthetic_sequence_one_result_per_frame(tiny_tracker_model, one_thread):
    seg = ScriptedSegmenter()
    # lost_frames out of reach: tiny random masks are sometimes empty, which counts as lost
    tr = ReferringTracker(seg, tiny_tracker_model, RegroundPolicy(lost_threshold=-1e6, lost_frames=10**9,
                                                                  reground_period=0))
    first = tr.start(block_frame(0), "the red block")
    assert isinstance(first, TrackResult) and first.source == "grounding" and not first.lost
    assert first.frame_index == 0 and first.frames_since_grounding == 0 and first.grounding.found
    assert np.array_equal(first.mask, red_mask(block_frame(0))) and first.reground_reason == "new_expression"
    assert first.object_score == pytest.approx(10.0)
    for i in range(1, 31):
        r = tr.update(block_frame(i))
        assert r.mask.shape == (H, W) and r.mask.dtype == bool and (r.width, r.height) == (W, H)
        assert r.frame_index == i and r.source == "tracking" and r.frames_since_grounding == i
        assert r.expression == "the red block" and r.grounding is None
        assert r.lost == (not r.mask.any()), "an empty tracked mask is lost, whatever the score"
        assert np.isfinite(r.object_score) and r.timings["total"] > 0 and r.timings["model"] > 0
        bbox, centroid = r.bbox, r.centroid
        assert (bbox is None) == (centroid is None) == (not r.mask.any())
        assert set(r.summary()) >= {"source", "lost", "object_score", "frames_since_grounding", "timings"}
    assert len(seg.calls) == 1  # one grounding, then tracking only


def test_low_object_score_regrounds_after_n_frames(tiny_tracker_model, one_thread, monkeypatch):
    seg = ScriptedSegmenter()
    tr = ReferringTracker(seg, tiny_tracker_model, RegroundPolicy(lost_threshold=0.0, lost_frames=4,
                                                                  reground_period=0))
    tr.start(block_frame(0), "the red block")
    scripted_scores(monkeypatch, tr, [2.0, 1.0, -1.0, -3.0, -3.0, -3.0] + [5.0] * 10)
    rs = [tr.update(block_frame(i)) for i in range(1, 8)]
    assert [r.source for r in rs] == ["tracking"] * 6 + ["grounding"]
    assert [r.lost for r in rs[:6]] == [False, False, True, True, True, True]
    assert all(not r.mask.any() and r.bbox is None for r in rs[2:6])  # lost -> empty mask
    assert rs[6].reground_reason == "lost" and rs[6].frames_since_grounding == 0 and len(seg.calls) == 2
    r = tr.update(block_frame(8))
    assert r.source == "tracking" and r.frames_since_grounding == 1 and r.object_score == 5.0


def test_new_expression_regrounds(tiny_tracker_model, one_thread):
    seg = ScriptedSegmenter()
    tr = ReferringTracker(seg, tiny_tracker_model, RegroundPolicy(lost_threshold=-1e6, reground_period=0))
    tr.start(block_frame(0), "the red block")
    tr.update(block_frame(1))
    tr.set_expression("the   moving red square ")
    r = tr.update(block_frame(2))
    assert r.source == "grounding" and r.reground_reason == "new_expression"
    assert r.expression == "the moving red square" and seg.calls[-1][0] == "the moving red square"
    assert tr.update(block_frame(3)).frames_since_grounding == 1


def test_reground_period_with_injected_clock(tiny_tracker_model, one_thread):
    clock = FakeClock()
    seg = ScriptedSegmenter()
    tr = ReferringTracker(seg, tiny_tracker_model,
                          RegroundPolicy(lost_threshold=-1e6, reground_period=10.0, clock=clock))
    tr.start(block_frame(0), "the red block")
    clock.t += 9.99
    assert tr.update(block_frame(1)).source == "tracking"
    clock.t += 0.01
    r = tr.update(block_frame(2))
    assert r.source == "grounding" and r.reground_reason == "period" and len(seg.calls) == 2
    clock.t += 5.0
    assert tr.update(block_frame(3)).source == "tracking"  # the period restarts at each grounding


def test_not_found_never_seeds_the_tracker(tiny_tracker_model, one_thread):
    seg = ScriptedSegmenter(found=False)
    tr = ReferringTracker(seg, tiny_tracker_model, RegroundPolicy(lost_frames=3, reground_period=0))
    r = tr.start(block_frame(0), "a purple elephant")
    assert r.source == "grounding" and r.lost and not r.mask.any() and r.object_score is None
    assert r.grounding is not None and not r.grounding.found and r.grounding.mask.any()  # fallback ignored
    assert not tr.has_track
    rs = [tr.update(block_frame(i)) for i in range(1, 5)]
    assert [r.source for r in rs] == ["none", "none", "none", "grounding"]
    assert all(r.lost and not r.mask.any() and r.frames_since_grounding is None for r in rs)
    assert rs[3].reground_reason == "lost" and len(seg.calls) == 2
    seg.found = True
    rs = [tr.update(block_frame(i)) for i in range(5, 9)]
    assert rs[-1].source == "grounding" and not rs[-1].lost and tr.has_track


def test_bad_frames_mid_stream_do_not_end_the_track(tiny_tracker_model, one_thread):
    tr = ReferringTracker(ScriptedSegmenter(), tiny_tracker_model,
                          RegroundPolicy(lost_threshold=-1e6, reground_period=0))
    with pytest.raises(NotTrackingError):
        tr.update(block_frame(0))
    tr.start(block_frame(0), "the red block")
    assert tr.update(block_frame(1)).frame_index == 1
    nan = block_frame(2).astype(np.float32) / 255
    nan[3, 4, 1] = np.nan
    bad = {
        "wrong channels": np.zeros((H, W, 2), np.uint8),
        "1x1": np.zeros((1, 1, 3), np.uint8),
        "other size": np.zeros((H * 2, W * 2, 3), np.uint8),
        "NaN floats": nan,
        "4-D": np.zeros((1, H, W, 3), np.uint8),
        "not an image": "frame.png",
    }
    for name, frame in bad.items():
        with pytest.raises(InvalidInputError):
            tr.update(frame)
            pytest.fail(f"{name} frame was accepted")
    gray = block_frame(2)[..., 0]  # a mono frame of the stream's size is a usable frame (as everywhere)
    r = tr.update(gray)
    assert r.source == "tracking" and r.mask.shape == (H, W) and r.frame_index == 2
    r = tr.update(block_frame(3))
    assert r.source == "tracking" and r.frame_index == 3 and r.frames_since_grounding == 3 and tr.has_track


def test_background_regrounding_keeps_tracking(tiny_tracker_model, one_thread):
    clock = FakeClock()
    gate = threading.Event()
    seg = ScriptedSegmenter()
    tr = ReferringTracker(seg, tiny_tracker_model,
                          RegroundPolicy(lost_threshold=-1e6, reground_period=10.0, clock=clock), background=True)
    try:
        tr.start(block_frame(0), "the red block")  # start() is always synchronous
        seg.gate = gate
        clock.t += 10.0
        r = tr.update(block_frame(1))
        assert r.source == "tracking" and r.reground_reason == "period" and r.grounding_pending
        for i in range(2, 6):  # grounding blocked: tracking goes on with the old track
            r = tr.update(block_frame(i))
            assert r.source == "tracking" and r.grounding_pending and r.frames_since_grounding == i
            assert r.reground_reason is None
        gate.set()
        deadline = time.monotonic() + 30
        while not tr._pending.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        r = tr.update(block_frame(6))
        assert r.grounding is not None and r.grounding.found and not r.grounding_pending
        assert r.source == "tracking" and r.frames_since_grounding == 5  # grounded on the snapshot, frame 1
        assert np.array_equal(seg.calls[-1][1], block_frame(1))  # IteRPrimE ran on the snapshot
        assert "reseed" in r.timings and len(seg.calls) == 2
        assert tr.update(block_frame(7)).frames_since_grounding == 6
    finally:
        gate.set()
        tr.close()


def test_background_new_expression_drops_the_old_track(tiny_tracker_model, one_thread):
    gate = threading.Event()
    seg = ScriptedSegmenter()
    tr = ReferringTracker(seg, tiny_tracker_model, RegroundPolicy(lost_threshold=-1e6, reground_period=0),
                          background=True)
    try:
        tr.start(block_frame(0), "the red block")
        seg.gate = gate
        tr.set_expression("the red square")
        r = tr.update(block_frame(1))
        assert r.source == "none" and r.lost and r.reground_reason == "new_expression" and r.grounding_pending
        gate.set()
        tr._pending.result(timeout=30)
        r = tr.update(block_frame(2))
        assert r.grounding is not None and r.source == "tracking" and r.frames_since_grounding == 1
        assert r.expression == "the red square" and seg.calls[-1][0] == "the red square"
    finally:
        gate.set()
        tr.close()


def test_real_tiny_segmenter_then_tracker(tiny_segmenter, tiny_tracker_model, one_thread):
    tr = ReferringTracker(tiny_segmenter, tiny_tracker_model, RegroundPolicy(reground_period=0))
    first = tr.start(block_frame(0), "the red cup")
    assert first.source == "grounding" and first.grounding is not None
    assert first.lost == (not first.grounding.found)  # found -> seeded; fallback -> no track
    for i in range(1, 4):
        r = tr.update(block_frame(i))
        assert r.mask.shape == (H, W)
        assert r.source == ("tracking" if first.grounding.found else "none")


def test_an_empty_tracked_mask_is_lost_whatever_the_score(tiny_tracker_model, one_thread, monkeypatch):
    """SAM 2 blanks its mask when its own logit is <= 0; with lost_threshold below that, a frame must
    still never be reported as found with an empty mask."""
    seg = ScriptedSegmenter()
    tr = ReferringTracker(seg, tiny_tracker_model, RegroundPolicy(lost_threshold=-100.0, lost_frames=100,
                                                                  reground_period=0))
    tr.start(block_frame(0), "the red block")
    real = tr.session.track

    def track(rgb, frame_index=None):
        out = real(rgb, frame_index=frame_index)
        return dataclasses.replace(out, object_score=-0.5, mask=np.zeros_like(out.mask))

    monkeypatch.setattr(tr.session, "track", track)
    r = tr.update(block_frame(1))
    assert r.lost and not r.mask.any() and r.bbox is None and r.object_score == -0.5


# ---- issue 14: a failed re-grounding never drops a healthy track; limits in seconds and frames


def test_failed_periodic_regrounding_keeps_the_track_inline(tiny_tracker_model, one_thread):
    clock = FakeClock()
    seg = ScriptedSegmenter()
    tr = ReferringTracker(seg, tiny_tracker_model,
                          RegroundPolicy(lost_threshold=-1e6, reground_period=10.0, lost_frames=1000, clock=clock))
    tr.start(block_frame(0), "the red block")
    tr.update(block_frame(1))
    seg.found = False  # the periodic check finds nothing (a bad frame for the grounding, glare, ...)
    clock.t += 10.0
    r = tr.update(block_frame(2))
    assert r.reground_reason == "period" and r.grounding is not None and not r.grounding.found
    assert r.source == "tracking" and tr.has_track and r.frames_since_grounding == 2
    assert len(seg.calls) == 2
    r = tr.update(block_frame(3))  # the period restarted: no grounding on every frame
    assert r.source == "tracking" and r.frames_since_grounding == 3 and len(seg.calls) == 2


def test_failed_background_regrounding_keeps_the_track(tiny_tracker_model, one_thread):
    clock = FakeClock()
    seg = ScriptedSegmenter()
    tr = ReferringTracker(seg, tiny_tracker_model, RegroundPolicy(lost_threshold=-1e6, reground_period=10.0,
                                                                  lost_frames=1000, clock=clock), background=True)
    try:
        tr.start(block_frame(0), "the red block")
        seg.found = False
        clock.t += 10.0
        assert tr.update(block_frame(1)).grounding_pending
        tr._pending.result(timeout=30)
        r = tr.update(block_frame(2))
        assert r.grounding is not None and not r.grounding.found  # applied, and it found nothing
        assert r.source == "tracking" and tr.has_track and r.frames_since_grounding == 2
        assert tr.update(block_frame(3)).reground_reason is None  # period restarted
    finally:
        tr.close()


class _FailingFor(ScriptedSegmenter):
    def __init__(self, failing: str, gate):
        super().__init__(gate=gate)
        self.failing = failing

    def segment(self, expression, **overrides):
        if expression == self.failing:
            assert self.gate.wait(30)
            raise RuntimeError("grounding crashed")
        return super().segment(expression, **overrides)


def test_a_failed_old_grounding_does_not_clear_a_new_expressions_trigger(tiny_tracker_model, one_thread):
    clock = FakeClock()
    gate = threading.Event()
    seg = _FailingFor("the red block", gate)
    seg.gate = None
    tr = ReferringTracker(seg, tiny_tracker_model, RegroundPolicy(lost_threshold=-1e6, reground_period=10.0,
                                                                  lost_frames=1000, clock=clock), background=True)
    try:
        seg.failing = "never"
        tr.start(block_frame(0), "the red block")
        seg.failing, seg.gate = "the red block", gate
        clock.t += 10.0
        assert tr.update(block_frame(1)).reground_reason == "period"  # old expression, in the background
        tr.set_expression("the red square")  # arrives while the old grounding still runs
        gate.set()
        deadline = time.monotonic() + 30
        while not tr._pending.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        r = tr.update(block_frame(2))  # the old grounding's failure is collected here
        assert r.reground_reason == "new_expression" and r.grounding_pending
        tr._pending.result(timeout=30)
        r = tr.update(block_frame(3))
        assert r.grounding is not None and r.grounding.found and r.expression == "the red square"
    finally:
        gate.set()
        tr.close()


def test_lost_limit_in_seconds_and_period_in_frames():
    clock = FakeClock()
    p = RegroundPolicy(lost_threshold=0.0, lost_frames=1000, lost_seconds=0.5, reground_period=0,
                       reground_period_frames=0, clock=clock)
    p.grounded()
    p.observe(-1.0)  # first lost frame at t
    assert p.due() is None
    clock.t += 0.49
    p.observe(-1.0)
    assert p.due() is None
    clock.t += 0.01
    assert p.due() == "lost"  # 0.5 s lost, 2 frames (at 4 fps: 15 frames would be 3.75 s)
    p.grounded()
    p.observe(1.0)
    clock.t += 10
    assert p.due() is None and p.lost_seconds() == 0.0
    # the stream's own time instead of the clock
    q = RegroundPolicy(lost_frames=1000, lost_seconds=2.0, reground_period=0, reground_period_frames=3)
    q.grounded(now=100.0)
    q.observe(-1.0, now=100.1)
    assert q.due(now=101.0) is None and q.due(now=102.1) == "lost"
    q.grounded(now=103.0)
    for k in range(3):
        assert q.due(now=103.0 + k) is None
        q.observe(5.0, now=103.0 + k)
    assert q.due(now=106.0) == "period"
    with pytest.raises(ValueError):
        RegroundPolicy(lost_seconds=-1)
    with pytest.raises(ValueError):
        RegroundPolicy(reground_period_frames=-1)
