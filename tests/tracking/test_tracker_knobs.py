"""The tracker's cost knobs: input size and memory size (tiny models; the published defaults unchanged)."""
import numpy as np
import pytest
import torch
from tracking_helpers import block_frame, red_mask

from ros2_iterprime.models.trackers import (
    build_random_tracker,
    check_knobs,
    load_tracker,
    published_config,
    sized_config,
)
from ros2_iterprime.tracking import StreamingSession


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _memory_tokens(tm, frames):
    """Memory tokens the memory attention read on each tracked frame (forward pre-hook)."""
    seen = []

    def hook(module, args, kwargs):
        seen.append((int(kwargs["memory"].shape[0]), int(kwargs["num_object_pointer_tokens"])))

    h = tm.model.memory_attention.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        sess = StreamingSession(tm)
        sess.seed(frames[0], red_mask(frames[0]))
        outs = [sess.track(f) for f in frames[1:]]
    finally:
        h.remove()
    return seen, outs, sess


def test_defaults_stay_the_published_configuration():
    tm = load_tracker("tiny-random", device="cpu")
    assert tm.geometry.size == 64 and tm.num_maskmem == 3 == tm.model.config.num_maskmem
    cfg = published_config("sam2.1-hiera-tiny")
    assert check_knobs(cfg, None, None) == (None, None) and check_knobs(cfg, 0, 0) == (None, None)
    assert check_knobs(cfg, 1024, 7) == (None, None)  # the published values are "as published"
    assert check_knobs(cfg, 512, 3) == (512, 3)


@pytest.mark.parametrize("size, memory, why", [
    (500, None, "multiple of 32"), (128, None, r"\[256, 2048\]"), (4096, None, r"\[256, 2048\]"),
    (None, 8, r"\[1, 7\]"), (None, -1, r"\[1, 7\]"),
])
def test_knobs_out_of_range_are_refused_with_the_range(size, memory, why):
    with pytest.raises(ValueError, match=why):
        check_knobs(published_config("sam2.1-hiera-tiny"), size, memory)


def test_sized_config_moves_every_size_derived_field():
    cfg = sized_config(published_config("sam2.1-hiera-tiny"), 512)
    assert cfg.image_size == 512 and cfg.prompt_encoder_config.image_size == 512
    assert cfg.vision_config.backbone_config.image_size == [512, 512]
    assert cfg.vision_config.backbone_feature_sizes == [[128, 128], [64, 64], [32, 32]]
    assert cfg.memory_attention_rope_feat_sizes == [32, 32]
    assert published_config("sam2.1-hiera-tiny").image_size == 1024  # a copy: the published one is untouched


def test_memory_frames_bounds_what_the_memory_attention_reads():
    frames = [block_frame(i) for i in range(7)]
    full = load_tracker("tiny-random", device="cpu", dtype="fp32")
    one = load_tracker("tiny-random", device="cpu", dtype="fp32", memory_frames=1)
    two = load_tracker("tiny-random", device="cpu", dtype="fp32", memory_frames=2)
    assert (full.num_maskmem, two.num_maskmem, one.num_maskmem) == (3, 2, 1)
    tokens = (64 // 16) ** 2  # S/16 x S/16 memory tokens per memory
    for tm, k in ((full, 3), (two, 2), (one, 1)):
        seen, outs, sess = _memory_tokens(tm, frames)
        # frame t reads the prompt frame + min(t - 1, k - 1) past frames, plus the object pointers
        spatial = [m - p for m, p in seen]
        assert spatial == [tokens * min(1 + t, k) for t in range(len(seen))], (k, spatial)
        assert all(o.mask.shape == frames[0].shape[:2] and np.isfinite(o.object_score) for o in outs)
        assert sess.stored_frames()["non_cond_outputs"] <= sess.memory_window
    # the same weights: the first tracked frame (prompt memory only) is identical whatever the knob
    a = StreamingSession(full)
    b = StreamingSession(one)
    a.seed(frames[0], red_mask(frames[0]))
    b.seed(frames[0], red_mask(frames[0]))
    assert np.array_equal(a.track(frames[1]).mask, b.track(frames[1]).mask)


def test_input_size_changes_the_model_input_and_keeps_the_output_size():
    tm = load_tracker("tiny-random", device="cpu", image_size=96, memory_frames=2)
    assert tm.geometry.size == 96 and tm.model.config.image_size == 96 and tm.num_maskmem == 2
    assert tm.geometry.frame_to_pixels(block_frame(0)).shape == (3, 96, 96)
    seen, outs, _ = _memory_tokens(tm, [block_frame(i) for i in range(4)])
    assert all(o.mask.shape == (48, 64) for o in outs)
    assert seen[0][0] - seen[0][1] == (96 // 16) ** 2  # one prompt memory of (S/16)^2 tokens


def test_full_size_random_tracker_at_512_px():
    tm = build_random_tracker("sam2.1-hiera-tiny", dtype="fp32", image_size=512, memory_frames=2)
    assert tm.geometry.size == 512 and tm.num_maskmem == 2
    assert tm.model.config.vision_config.backbone_feature_sizes == [[128, 128], [64, 64], [32, 32]]
    with torch.inference_mode():
        out = tm.model.get_image_features(torch.zeros(1, 3, 512, 512), return_dict=True)
    assert [tuple(f.shape[:2]) for f in out.fpn_hidden_states] == [(128 * 128, 1), (64 * 64, 1), (32 * 32, 1)]
