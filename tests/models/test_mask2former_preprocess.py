"""Mask2Former test-time input / output geometry against the documented math (hand-computed values).

What the official code runs (detectron2 `DefaultPredictor` on the Mask2Former COCO panoptic config;
see `ros2_iterprime.models.mask2former_preprocess`): ResizeShortestEdge(800, max 1333) with sides
rounded half up, PIL bilinear on the uint8 image, (x - PIXEL_MEAN) / PIXEL_STD on 0..255 pixels, zero
padding (after normalisation) to multiples of 32; mask logits bilinear to the padded input, cropped,
bilinear to the original size, sigmoid > 0.35. Where transformers' Mask2Former processor agrees (same
resize target), its PIL backend is the reference for the pixels.
"""
import math

import numpy as np
import pytest
import torch

from ros2_iterprime.models.mask2former_preprocess import (
    MASK_THRESHOLD,
    PIXEL_MEAN,
    PIXEL_STD,
    Mask2FormerFrame,
    Mask2FormerInput,
    binarise,
    query_mask_logits,
    resize_shortest_edge_shape,
    selection_size,
)


def test_constants_are_the_official_config_values():
    from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    spec = Mask2FormerInput()
    assert (spec.short_edge, spec.max_size, spec.size_divisibility) == (800, 1333, 32)
    assert PIXEL_MEAN == (123.675, 116.280, 103.530) and PIXEL_STD == (58.395, 57.120, 57.375)
    # detectron2's 0..255 constants are ImageNet's mean/std x 255 (what the hub processor stores / 255)
    assert np.allclose(np.array(PIXEL_MEAN) / 255, IMAGENET_DEFAULT_MEAN, atol=1e-9)
    assert np.allclose(np.array(PIXEL_STD) / 255, IMAGENET_DEFAULT_STD, atol=1e-9)
    assert MASK_THRESHOLD == 0.35


@pytest.mark.parametrize("hw, expected", [
    ((480, 640), (800, 1067)),    # 800 / 480 * 640 = 1066.67 -> rounded half up
    ((640, 427), (1199, 800)),    # portrait COCO: 800 / 427 * 640 = 1199.06
    ((100, 1000), (133, 1333)),   # 8000 > 1333: long side capped, 133.3 -> 133
    ((800, 800), (800, 800)),
    ((2, 3), (800, 1200)),
])
def test_resize_shortest_edge_rule(hw, expected):
    assert resize_shortest_edge_shape(*hw, 800, 1333) == expected
    assert Mask2FormerInput().output_shape(*hw) == expected


def test_sides_round_half_up_where_transformers_truncates():
    # 2 x 3 to a short edge of 3: scale 1.5 -> 3 x 4.5 -> detectron2 int(4.5 + 0.5) = 5
    assert resize_shortest_edge_shape(2, 3, 3, 100) == (3, 5)
    from transformers.image_transforms import get_size_with_aspect_ratio

    assert get_size_with_aspect_ratio((2, 3), 3, 100) == (3, 4)  # the processor's int(): not the official size
    assert get_size_with_aspect_ratio((480, 640), 800, 1333) == (800, 1066)  # official: 1067


@pytest.mark.parametrize("hw, padded", [((800, 1067), (800, 1088)), ((1199, 800), (1216, 800)),
                                        ((133, 1333), (160, 1344)), ((64, 64), (64, 64))])
def test_padding_to_multiples_of_32(hw, padded):
    assert Mask2FormerInput().padded_shape(*hw) == padded


def test_uniform_image_normalised_and_zero_padded():
    rgb = np.empty((30, 40, 3), np.uint8)
    rgb[:] = (200, 100, 50)
    frame = Mask2FormerInput(short_edge=60, max_size=100, size_divisibility=32).image_to_pixels(rgb)
    assert isinstance(frame, Mask2FormerFrame)
    assert frame.resized_size == (60, 80) and frame.padded_size == (64, 96) and frame.original_size == (30, 40)
    x = frame.pixel_values
    assert x.shape == (1, 3, 64, 96) and x.dtype == torch.float32
    expect = [(200 - 123.675) / 58.395, (100 - 116.28) / 57.12, (50 - 103.53) / 57.375]
    assert expect[0] == pytest.approx(1.307047, abs=1e-6)
    for c in range(3):
        assert torch.allclose(x[0, c, :60, :80], torch.full((60, 80), expect[c]), atol=1e-6)
    assert (x[0, :, 60:, :] == 0).all() and (x[0, :, :, 80:] == 0).all()  # padded after normalising


def test_bilinear_upscale_is_pil_with_half_pixel_centres_and_uint8_rounding():
    # 2x2 -> 4x4 (short edge 4): output pixel (1, 1) sits at input (0.25, 0.25): weights 0.75 / 0.25
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = [[0, 100], [200, 40]]
    x = Mask2FormerInput(short_edge=4, max_size=8, size_divisibility=0).image_to_pixels(rgb).pixel_values
    v11 = 0.75 * 0.75 * 0 + 0.75 * 0.25 * 100 + 0.25 * 0.75 * 200 + 0.25 * 0.25 * 40
    assert v11 == 58.75  # PIL keeps uint8: 59
    assert x[0, 0, 1, 1].item() == pytest.approx((59 - 123.675) / 58.395, abs=1e-6)
    assert x[0, 0, 0, 0].item() == pytest.approx((0 - 123.675) / 58.395, abs=1e-6)
    assert x[0, 0, 3, 3].item() == pytest.approx((40 - 123.675) / 58.395, abs=1e-6)


def test_pixels_match_the_transformers_pil_processor_where_the_resize_rules_agree():
    from transformers import Mask2FormerImageProcessorPil

    rgb = np.random.default_rng(0).integers(0, 256, (400, 600, 3), dtype=np.uint8)  # -> 800 x 1200 in both
    ref = Mask2FormerImageProcessorPil(size={"shortest_edge": 800, "longest_edge": 1333}, size_divisor=0)(
        images=rgb, return_tensors="pt", input_data_format="channels_last")["pixel_values"]
    ours = Mask2FormerInput().image_to_pixels(rgb)
    assert ref.shape == (1, 3, 800, 1200) and ours.padded_size == (800, 1216)
    assert torch.allclose(ours.pixel_values[..., :800, :1200], ref, atol=1e-5)
    assert (ours.pixel_values[..., 1200:] == 0).all()


def test_the_hub_preprocessor_config_is_a_384_stretch_and_not_what_we_run():
    from transformers import Mask2FormerImageProcessorPil

    from ros2_iterprime.models.published import published

    cfg = published("MASK2FORMER_SWIN_LARGE_COCO_PANOPTIC_PREPROCESSOR")
    assert cfg["size"] == {"height": 384, "width": 384} and cfg["_max_size"] == 1333 and cfg["size_divisor"] == 32
    proc = Mask2FormerImageProcessorPil(size=cfg["size"], size_divisor=cfg["size_divisor"])
    out = proc(images=np.zeros((480, 640, 3), np.uint8), return_tensors="pt", input_data_format="channels_last")
    assert tuple(out["pixel_values"].shape[-2:]) == (384, 384)  # aspect ratio lost
    assert Mask2FormerInput().image_to_pixels(np.zeros((480, 640, 3), np.uint8)).resized_size == (800, 1067)


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        Mask2FormerInput().image_to_pixels(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError):
        Mask2FormerInput().image_to_pixels(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError):
        Mask2FormerInput(short_edge=0)
    with pytest.raises(ValueError):
        resize_shortest_edge_shape(0, 4, 800, 1333)


def _frame(resized, padded, original):
    return Mask2FormerFrame(torch.empty(0), resized, padded, original)


def test_mask_geometry_hand_computed():
    # logits on the 2x2 grid of an 8x8 padded input: left column -2, right column +2
    logits = torch.tensor([[[-2.0, 2.0], [-2.0, 2.0]]])
    frame = _frame((4, 6), (8, 8), (4, 3))
    out = query_mask_logits(logits, frame)
    # 2 -> 8 columns (align_corners=False): centres at (j + 0.5) / 4 - 0.5 -> -2 + 4 * clamp(x, 0, 1)
    #   = [-2, -2, -1.5, -0.5, 0.5, 1.5, 2, 2]; cropped to 6 columns; 6 -> 3 columns: centres at input
    #   0.5, 2.5, 4.5 -> [-2, -1, 1]
    assert out.shape == (1, 4, 3)
    assert torch.allclose(out[0], torch.tensor([[-2.0, -1.0, 1.0]] * 4), atol=1e-6)
    assert binarise(out)[0].tolist() == [[False, False, True]] * 4
    # a single (h, w) map works too
    assert torch.allclose(query_mask_logits(logits[0], frame), out[0])


def test_binarisation_is_strictly_above_035():
    edge = math.log(0.35 / 0.65)  # sigmoid(edge) = 0.35
    x = torch.tensor([edge - 1e-3, edge + 1e-3, 0.0, -10.0, 10.0])
    assert binarise(x).tolist() == [False, True, True, False, True]


def test_chunking_does_not_change_the_masks():
    logits = torch.randn(37, 6, 9, generator=torch.Generator().manual_seed(0)) * 3
    frame = _frame((21, 30), (24, 36), (50, 70))
    a = query_mask_logits(logits, frame, chunk=37)
    b = query_mask_logits(logits, frame, chunk=5)
    # the same interpolation, batched differently: equal up to float rounding (not bit for bit, which is
    # why the segmenter takes the chosen query's mask from the cached binary masks, `mask_for`)
    assert torch.allclose(a, b, atol=1e-5) and torch.equal(binarise(a), binarise(b))
    assert torch.allclose(query_mask_logits(logits[7], frame), a[7], atol=1e-5)


def test_selection_grid_is_the_original_size_up_to_the_cap():
    assert selection_size((480, 640), 1_048_576) == (480, 640)
    assert selection_size((640, 640), 1_048_576) == (640, 640)  # every COCO image
    h, w = selection_size((2000, 3000), 1_048_576)
    assert h * w <= 1_048_576 and abs(w / h - 1.5) < 0.01 and (h, w) == (836, 1254)
