"""Tracker preprocessing against the SAM 2 processors' documented math (hand-computed values).

Constants from transformers 5.23 `Sam2ImageProcessor` / `Sam2VideoVideoProcessor`: size 1024 x 1024
(no aspect ratio, no padding), BILINEAR with antialias (torchvision resize on the uint8 tensor, so the
result is rounded), rescale 1/255, ImageNet mean (0.485, 0.456, 0.406) / std (0.229, 0.224, 0.225);
mask prompts resized bilinear + antialias and thresholded at >= 0.5; output logits resized bilinear
(align_corners=False) straight to the original size, > 0.
"""
import numpy as np
import pytest
import torch

from ros2_iterprime.models.sam2_preprocess import IMAGENET_MEAN, IMAGENET_STD, FrameGeometry, resize_uint8


def _norm(v, c):
    return (v / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]


def test_constants_are_the_processor_defaults():
    from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    assert IMAGENET_MEAN == tuple(IMAGENET_DEFAULT_MEAN) == (0.485, 0.456, 0.406)
    assert IMAGENET_STD == tuple(IMAGENET_DEFAULT_STD) == (0.229, 0.224, 0.225)
    g = FrameGeometry(1024)
    assert g.mean == IMAGENET_MEAN and g.std == IMAGENET_STD


def test_uniform_frame_normalises_every_pixel():
    rgb = np.empty((48, 64, 3), np.uint8)
    rgb[:] = (200, 100, 50)
    x = FrameGeometry(64).frame_to_pixels(rgb)
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    for c, v in enumerate((200, 100, 50)):
        assert torch.allclose(x[c], torch.full((64, 64), _norm(v, c)), atol=1e-6)
    assert x[0, 0, 0].item() == pytest.approx(1.307047, abs=1e-6)  # (200 / 255 - 0.485) / 0.229


def test_bilinear_upscale_half_pixel_centres_and_uint8_rounding():
    # 2x2 -> 4x4: output pixel (1, 1) sits at input (0.25, 0.25): weights 0.75/0.25 per axis
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = [[0, 100], [200, 40]]
    x = FrameGeometry(4).frame_to_pixels(rgb)
    v11 = 0.75 * 0.75 * 0 + 0.75 * 0.25 * 100 + 0.25 * 0.75 * 200 + 0.25 * 0.25 * 40  # 58.75 -> 59
    assert x[0, 1, 1].item() == pytest.approx(_norm(59, 0), abs=1e-6)
    assert x[0, 0, 0].item() == pytest.approx(_norm(0, 0), abs=1e-6)  # corner: clamped to input (0, 0)
    assert x[0, 3, 3].item() == pytest.approx(_norm(40, 0), abs=1e-6)
    assert v11 == 58.75


def test_downscale_uses_the_antialias_triangle_filter():
    # 8 -> 4 columns (factor 2): torchvision's antialiased bilinear is a triangle of half-width 2
    # input pixels, i.e. weights (1/8, 3/8, 3/8, 1/8) over inputs 2j-1 .. 2j+2. An impulse of 255 at
    # column 3 gives column 1 = 3/8 * 255 = 95.625 -> 96 and column 2 = 1/8 * 255 = 31.875 -> 32
    # (plain bilinear without antialias would give 127.5 and 0).
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:, 3, :] = 255
    x = FrameGeometry(4).frame_to_pixels(rgb)
    assert x[0, 1, 1].item() == pytest.approx(_norm(96, 0), abs=1e-6)
    assert x[0, 1, 2].item() == pytest.approx(_norm(32, 0), abs=1e-6)
    assert x[1, 2, 1].item() == pytest.approx(_norm(96, 1), abs=1e-6)


def test_native_uint8_and_float_resize_paths_agree_within_one_grey_level():
    # torchvision keeps uint8 (torch's fixed-point kernel) on AVX2/AVX512/ARM64 CPUs and resizes in
    # float + rounds elsewhere; both must give the documented values up to one level
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 3, 48, 64), dtype=np.uint8))
    for size in (16, 64, 100):
        a, b = resize_uint8(x, size, native=True), resize_uint8(x, size, native=False)
        assert a.dtype == b.dtype == torch.uint8 and a.shape == (1, 3, size, size)
        assert (a.int() - b.int()).abs().max() <= 1
    impulse = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    impulse[..., 3] = 255
    for native in (True, False):
        y = resize_uint8(impulse, 4, native=native)
        assert abs(int(y[0, 0, 1, 1]) - 95.625) <= 1 and abs(int(y[0, 0, 1, 2]) - 31.875) <= 1


def test_frame_is_stretched_not_padded():
    # SAM 2 resizes to S x S regardless of the aspect ratio: a left/right split stays at the middle
    rgb = np.zeros((40, 160, 3), np.uint8)
    rgb[:, 80:] = 255
    x = FrameGeometry(64).frame_to_pixels(rgb)
    assert torch.allclose(x[0, :, :31], torch.full((64, 31), _norm(0, 0)))
    assert torch.allclose(x[0, :, 33:], torch.full((64, 31), _norm(255, 0)))


def test_mask_prompt_resize_and_threshold():
    mask = np.zeros((128, 96), bool)
    mask[:, :48] = True  # left half
    p = FrameGeometry(64).mask_to_prompt(mask)
    assert p.shape == (1, 1, 64, 64) and p.dtype == torch.float32
    assert set(p.unique().tolist()) <= {0.0, 1.0}
    assert p[0, 0, :, :32].all() and not p[0, 0, :, 32:].any()
    same = np.zeros((64, 64), bool)
    same[3:9, 5:7] = True
    assert torch.equal(FrameGeometry(64).mask_to_prompt(same)[0, 0], torch.from_numpy(same).float())


def test_output_logits_map_back_to_the_original_resolution():
    # a 16x16 low-res grid (S/4 for S = 64) over a 64x48 frame: x scale 4, y scale 3. A +10 block on
    # rows 4..7, cols 8..11 has its zero crossings exactly half way between grid centres, i.e. at the
    # block's edges in the original frame: rows 12..23, cols 32..47. Bilinear rounds the 4 corners:
    # at (12, 32) the block's weight is (2/3) * (5/8) = 0.42 < 0.5, so the logit is negative.
    logits = torch.full((16, 16), -10.0)
    logits[4:8, 8:12] = 10.0
    mask = FrameGeometry.logits_to_mask(logits, (48, 64))
    assert mask.shape == (48, 64) and mask.dtype == bool
    ys, xs = np.nonzero(mask)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (12, 23, 32, 47)
    assert mask.sum() == 12 * 16 - 4
    assert not mask[12, 32] and not mask[23, 47] and mask[12, 33] and mask[13, 32]


def test_geometry_from_a_saved_preprocessor_config():
    cfg = {"size": {"height": 1024, "width": 1024}, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}
    g = FrameGeometry.from_preprocessor_config(cfg, default_size=512)
    assert g.size == 1024 and g.mean == (0.5, 0.5, 0.5) and g.std == (0.25, 0.25, 0.25)
    assert FrameGeometry.from_preprocessor_config({}, default_size=512) == FrameGeometry(512)
    with pytest.raises(ValueError):
        FrameGeometry(0)
