"""ReferringSegmenter with the tiny-random profile: caching, result contract, bad input."""
import numpy as np
import pytest
from PIL import Image

from ros2_iterprime import InvalidInputError, NoImageError, SegmentationResult
from ros2_iterprime.grounding.segmenter import SegmenterConfig


class CallCounter:
    def __init__(self, module):
        self.n = 0
        self.handle = module.register_forward_hook(self)

    def __call__(self, *args):
        self.n += 1

    def remove(self):
        self.handle.remove()


def test_per_image_encoders_run_once_for_three_rounds_and_two_expressions(tiny_segmenter, rgb_image):
    m = tiny_segmenter.models
    vision, sam_enc, text = CallCounter(m.blip.vision_model), CallCounter(m.sam.vision_encoder), \
        CallCounter(m.blip.text_encoder)
    try:
        tiny_segmenter.set_image(rgb_image)
        r1 = tiny_segmenter.segment("the red cup behind the laptop", iterations=3)
        r2 = tiny_segmenter.segment("left guy", iterations=3)
        assert vision.n == 1 and sam_enc.n == 1
        # every round ran the text encoder (tiny random weights keep the match probability flat)
        assert text.n == len(r1.match_probs) + len(r2.match_probs)  # one text pass per round run
        assert r1.rounds >= 1 and len(r1.match_probs) >= r1.rounds
        tiny_segmenter.set_image(rgb_image)  # a new frame is encoded again
        assert vision.n == 2 and sam_enc.n == 2
    finally:
        for c in (vision, sam_enc, text):
            c.remove()


def test_result_contract(tiny_segmenter, rgb_image):
    res = tiny_segmenter.segment_image(rgb_image, "the man on the left holding a bike")
    assert isinstance(res, SegmentationResult)
    h, w = rgb_image.shape[:2]
    assert res.mask.shape == (h, w) and res.mask.dtype == bool
    assert res.heatmap.shape == (h, w) and res.heatmap.dtype == np.float32
    assert 0.0 <= res.heatmap.min() and res.heatmap.max() <= 1.0 + 1e-6
    assert res.primary_word == "man"
    assert "man" in res.kept_tokens and "holding" in res.kept_tokens and "the" not in res.kept_tokens
    assert "there" not in res.kept_tokens  # template words never kept
    assert 1 <= res.rounds <= 3 and all(0 < p < 1 for p in res.match_probs)
    if res.mask.any():
        x0, y0, x1, y1 = res.bbox
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        ys, xs = np.nonzero(res.mask)
        assert res.centroid == pytest.approx((xs.mean(), ys.mean()))
    assert (res.score >= 1.0) == res.found
    for k in ("text_prep", "gradcam", "proposals", "selection", "postprocess", "total"):
        assert res.timings[k] >= 0
    assert set(res.summary()) >= {"score", "bbox", "centroid", "primary_word", "timings"}


@pytest.mark.parametrize("mode", [0, 1, 2, 3, 4])
def test_every_pwem_mode_and_automatic_proposals(tiny_segmenter, rgb_image, mode):
    tiny_segmenter.set_image(rgb_image)
    res = tiny_segmenter.segment("blue car next to the red cup", pwem_mode=mode, iterations=2)
    assert res.mask.shape == rgb_image.shape[:2]
    auto = tiny_segmenter.segment("red cup", proposals="automatic", pred_iou_thresh=0.0,
                                  stability_thresh=0.0, points_per_side=4, pwem_mode=mode)
    assert auto.mask.shape == rgb_image.shape[:2]


def test_deterministic(tiny_segmenter, rgb_image):
    a = tiny_segmenter.segment_image(rgb_image, "the red cup")
    b = tiny_segmenter.segment_image(rgb_image, "the red cup")
    assert np.array_equal(a.mask, b.mask) and np.allclose(a.heatmap, b.heatmap)


@pytest.mark.parametrize("expr", ["", "   \n\t "])
def test_empty_expression_is_a_clear_error(tiny_segmenter, rgb_image, expr):
    tiny_segmenter.set_image(rgb_image)
    with pytest.raises(InvalidInputError, match="empty"):
        tiny_segmenter.segment(expr)


def test_non_string_expression(tiny_segmenter, rgb_image):
    tiny_segmenter.set_image(rgb_image)
    with pytest.raises(InvalidInputError):
        tiny_segmenter.segment(None)


@pytest.mark.parametrize("expr", [
    "the red cup " * 170,  # ~2,000 characters: truncated to the model's limit
    "x" * 2000,
    "le café à gauche 🙂 👍",
    "🙂🙂🙂",
    "左边的杯子",
])
def test_long_and_non_ascii_expressions(tiny_segmenter, rgb_image, expr):
    tiny_segmenter.set_image(rgb_image)
    res = tiny_segmenter.segment(expr)
    assert res.mask.shape == rgb_image.shape[:2]
    assert len(res.kept_tokens) <= tiny_segmenter.max_text_tokens


def test_segment_before_set_image(tiny_models):
    from ros2_iterprime.grounding.segmenter import ReferringSegmenter

    with pytest.raises(NoImageError):
        ReferringSegmenter(tiny_models).segment("cup")


def _forms(rgb):
    gray = rgb.mean(2).astype(np.uint8)
    yield "gray2d", gray
    yield "gray3d", gray[:, :, None]
    yield "rgba", np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
    yield "uint16", rgb.astype(np.uint16) * 257
    yield "float01", rgb.astype(np.float32) / 255
    yield "pil_L", Image.fromarray(gray)
    yield "pil_RGBA", Image.fromarray(rgb).convert("RGBA")
    yield "pil_I16", Image.fromarray(gray.astype(np.uint16) * 200)
    yield "pil_P", Image.fromarray(rgb).convert("P")


def test_image_forms(tiny_segmenter, rgb_image):
    for name, img in _forms(rgb_image):
        res = tiny_segmenter.segment_image(img, "the red cup")
        assert res.mask.shape == rgb_image.shape[:2], name


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 90, 3), (200, 2, 3)])
def test_tiny_and_elongated_images(tiny_segmenter, shape):
    res = tiny_segmenter.segment_image(np.full(shape, 100, np.uint8), "a cup")
    assert res.mask.shape == shape[:2] and res.heatmap.shape == shape[:2]


@pytest.mark.parametrize("shape", [(1, 500, 3), (700, 2, 3)])
def test_absurd_aspect_ratio_is_a_clear_error(tiny_segmenter, shape):
    with pytest.raises(InvalidInputError, match="elongated"):
        tiny_segmenter.set_image(np.zeros(shape, np.uint8))


@pytest.mark.slow
def test_8000x6000_image(tiny_segmenter):
    img = np.zeros((6000, 8000, 3), np.uint8)
    img[1000:3000, 2000:5000] = 200
    res = tiny_segmenter.segment_image(img, "the white box")
    assert res.mask.shape == (6000, 8000) and res.heatmap.shape == (6000, 8000)


@pytest.mark.parametrize("bad, msg", [
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    (np.zeros((10, 10, 2), np.uint8), "shape"),
    (np.zeros((4, 4, 4, 4), np.uint8), "shape"),
    ("not an image", "unsupported image type"),
    (np.zeros((10, 10, 3), np.complex64), "dtype"),
])
def test_bad_images_are_clear_errors(tiny_segmenter, bad, msg):
    with pytest.raises(InvalidInputError, match=msg):
        tiny_segmenter.set_image(bad)


def test_too_many_pixels_refused_before_models_run(tiny_models):
    from ros2_iterprime.grounding.segmenter import ReferringSegmenter

    seg = ReferringSegmenter(tiny_models, SegmenterConfig(max_image_pixels=1000))
    with pytest.raises(InvalidInputError, match="MP"):
        seg.set_image(np.zeros((100, 100, 3), np.uint8))


def test_config_validation():
    with pytest.raises(ValueError):
        SegmenterConfig(prompt_template="no placeholder").validate()
    with pytest.raises(ValueError):
        SegmenterConfig(proposals="boxes").validate()
    with pytest.raises(TypeError):
        SegmenterConfig().replace(not_a_field=1)


def test_automatic_proposals_cached_per_image_and_setting(tiny_segmenter, rgb_image):
    calls = []
    seg = tiny_segmenter
    orig = seg.sam.automatic
    seg.sam.automatic = lambda *a, **k: calls.append(a[1]) or orig(*a, **k)
    try:
        seg.set_image(rgb_image)
        kw = dict(proposals="automatic", pred_iou_thresh=0.0, stability_thresh=0.0)
        seg.segment("red cup", points_per_side=4, **kw)
        seg.segment("blue bar", points_per_side=4, **kw)  # same image and setting: reused
        seg.segment("blue bar", points_per_side=6, **kw)  # another setting: computed
        assert calls == [4, 6]
    finally:
        seg.sam.automatic = orig
