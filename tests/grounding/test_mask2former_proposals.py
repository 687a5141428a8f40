"""Mask2Former as the proposal network (tiny random model): interface, segmenter, caching, names."""
import numpy as np
import pytest
import torch

from ros2_iterprime.grounding.mask2former_proposals import (
    Mask2FormerImage,
    Mask2FormerProposer,
    QueryProposals,
)
from ros2_iterprime.grounding.segmenter import ReferringSegmenter, SegmenterConfig, load_segmenter
from ros2_iterprime.models.mask2former import (
    DEFAULT_MASK2FORMER,
    TINY_MASK2FORMER,
    is_mask2former,
    load_mask2former,
    mask2former_id,
)
from ros2_iterprime.models.tiny import TINY_MASK2FORMER_QUERIES


class ForwardCalls:
    """Counts forward passes of a module (a hook, independent of the proposer's own counter)."""

    def __init__(self, module):
        self.n = 0
        self.handle = module.register_forward_hook(self)

    def __call__(self, *args):
        self.n += 1

    def remove(self):
        self.handle.remove()


@pytest.fixture(scope="module")
def proposer():
    return Mask2FormerProposer(load_mask2former(TINY_MASK2FORMER, device="cpu"))


@pytest.fixture(scope="module")
def m2f_segmenter(tiny_models):
    return ReferringSegmenter(tiny_models, SegmenterConfig(proposals_model="mask2former"))


def test_proposer_interface(proposer, rgb_image):
    img = proposer.encode(rgb_image)
    assert isinstance(img, Mask2FormerImage) and img.original_size == (120, 160) and img.lowres_size == (120, 160)
    # tiny input: short edge 64 -> 64 x 85, padded to 64 x 96; masks at 1/4 of that
    assert img.frame.resized_size == (64, 85) and img.frame.padded_size == (64, 96)
    props = proposer.from_peaks(img, [(3, 4)], multimask=True)
    assert isinstance(props, QueryProposals) and len(props) == TINY_MASK2FORMER_QUERIES
    assert props.logits.shape == (TINY_MASK2FORMER_QUERIES, 16, 24) and torch.isfinite(props.logits).all()
    assert props.masks.shape == (TINY_MASK2FORMER_QUERIES, 120, 160) and props.masks.dtype == torch.bool
    assert props.iou.shape == (TINY_MASK2FORMER_QUERIES,) and ((props.iou >= 0) & (props.iou <= 1)).all()
    assert proposer.automatic(img, 16) is props  # the same set: every query, computed once
    full = proposer.upsample(img, props.logits[2])
    assert full.shape == (120, 160) and full.dtype == bool
    assert np.array_equal(proposer.mask_for(img, 2), props.masks[2].numpy())
    assert img.frame.pixel_values.numel() == 0  # the input pixels are not kept per image


def test_segmenter_with_mask2former_proposals(m2f_segmenter, rgb_image):
    seg = m2f_segmenter
    assert isinstance(seg.sam, Mask2FormerProposer) and seg.sam.m2f.model_id == TINY_MASK2FORMER
    res = seg.segment_image(rgb_image, "the red square on the left")
    assert res.mask.shape == (120, 160) and res.mask.dtype == bool and (res.score >= 1.0) == res.found
    assert np.isfinite(res.heatmap).all() and res.heatmap.shape == (120, 160)
    if res.found:  # the selected query's cached mask at the original size
        assert res.mask.any()
    # the proposals mode does not apply to Mask2Former: same proposals, same answer
    res2 = seg.segment("the red square on the left", proposals="automatic")
    assert np.array_equal(res.mask, res2.mask) and res.score == res2.score


def test_a_second_expression_reuses_the_proposals(m2f_segmenter, rgb_image):
    seg = m2f_segmenter
    hook = ForwardCalls(seg.sam.model)
    calls = seg.sam.calls
    try:
        seg.set_image(rgb_image)
        seg.segment("the red square")
        seg.segment("the blue bar at the bottom")
        seg.segment("the grey background", iterations=1)
        assert hook.n == 1 and seg.sam.calls == calls + 1  # one Mask2Former pass for three expressions
        seg.set_image(rgb_image[::-1].copy())  # a new frame: one more
        seg.segment("the red square")
        assert hook.n == 2 and seg.sam.calls == calls + 2
    finally:
        hook.remove()


def test_selection_runs_on_the_original_size_like_the_official_code(m2f_segmenter, rgb_image, monkeypatch):
    import ros2_iterprime.grounding.segmenter as segmod

    seen = {}
    real = segmod.select

    def spy(masks, heatmap, peak=None, max_components=12):
        seen.update(masks=tuple(masks.shape), heat=tuple(heatmap.shape), peak=peak)
        return real(masks, heatmap, peak, max_components)

    monkeypatch.setattr(segmod, "select", spy)
    m2f_segmenter.segment_image(rgb_image, "the red square")
    assert seen["masks"] == (TINY_MASK2FORMER_QUERIES, 120, 160) and seen["heat"] == (120, 160)
    assert 0 <= seen["peak"][0] < 120 and 0 <= seen["peak"][1] < 160


def test_large_images_are_selected_on_a_capped_grid(rgb_image):
    prop = Mask2FormerProposer(load_mask2former(TINY_MASK2FORMER, device="cpu"), max_selection_pixels=4800)
    img = prop.encode(rgb_image)  # 120 x 160 = 19200 pixels > 4800 -> 60 x 80
    assert img.lowres_size == (60, 80) and img.proposals.masks.shape[1:] == (60, 80)
    full = prop.mask_for(img, 0)  # computed at the original size from the query's logits
    assert full.shape == (120, 160) and full.dtype == bool


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 500, 3), (300, 3, 3)])
def test_odd_image_shapes(m2f_segmenter, shape):
    rgb = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    res = m2f_segmenter.segment_image(rgb, "the thing")
    assert res.mask.shape == shape[:2] and np.isfinite(res.heatmap).all()


def test_mask2former_proposals_do_not_load_sam_v1(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="ros2_iterprime"):
        seg = load_segmenter("tiny-random", config=SegmenterConfig(proposals_model="mask2former"), device="cpu")
    assert seg.models.sam is None and seg.models.sam_id is None
    assert isinstance(seg.sam, Mask2FormerProposer) and seg.sam.m2f.is_tiny
    assert "SAM v1" in caplog.text
    # tracking cannot share a Mask2Former (it is no video model): a tracker model must be given
    from ros2_iterprime.tracking import ReferringTracker

    with pytest.raises(ValueError, match="tracker_model is required"):
        ReferringTracker(seg)


def test_proposals_model_names():
    assert mask2former_id("mask2former") == DEFAULT_MASK2FORMER == "facebook/mask2former-swin-large-coco-panoptic"
    assert mask2former_id("mask2former", tiny=True) == TINY_MASK2FORMER
    assert mask2former_id(" tiny-random-mask2former ") == TINY_MASK2FORMER
    base = "facebook/mask2former-swin-base-coco-panoptic"
    assert mask2former_id(base) == base
    assert mask2former_id("mask2former:/robot/models/m2f") == "/robot/models/m2f"
    for other in ("sam", "tiny-random", "facebook/sam2.1-hiera-tiny", "tiny-random-edgetam", ""):
        assert mask2former_id(other) is None and not is_mask2former(other)
    with pytest.raises(ValueError):
        mask2former_id("mask2former:")


def test_a_saved_directory_is_recognised_by_its_config(tmp_path):
    m = load_mask2former(TINY_MASK2FORMER, device="cpu")
    out = tmp_path / "my-panoptic-model"
    m.model.save_pretrained(out)
    assert mask2former_id(str(out)) == str(out)  # model_type mask2former, whatever the folder's name
    loaded = load_mask2former(str(out), device="cpu")
    assert loaded.model_id == str(out) and loaded.input.short_edge == 800  # real checkpoints: the official input
    rgb = np.zeros((40, 60, 3), np.uint8)
    with torch.inference_mode():
        a = m.model(pixel_values=torch.zeros(1, 3, 64, 96)).masks_queries_logits
        b = loaded.model(pixel_values=torch.zeros(1, 3, 64, 96)).masks_queries_logits
    assert torch.allclose(a, b)
    assert Mask2FormerProposer(loaded).encode(rgb).proposals.masks.shape == (TINY_MASK2FORMER_QUERIES, 40, 60)


def test_missing_checkpoint_names_the_model_and_the_route(tmp_path, monkeypatch):
    from ros2_iterprime.errors import ModelNotFoundError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as e:
        load_mask2former("mask2former", device="cpu", cache_dir=str(tmp_path))
    msg = str(e.value)
    assert DEFAULT_MASK2FORMER in msg and "ros2_iterprime download --mask2former" in msg
    assert "--proposals-model DIR/mask2former-swin-large-coco-panoptic" in msg
    assert "proposals_model:=DIR/mask2former-swin-large-coco-panoptic" in msg
