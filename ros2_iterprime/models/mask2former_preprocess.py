"""Mask2Former's test-time input and output geometry, as the official IteRPrimE code runs it (no torchvision).

The official code (VoyageWang/IteRPrimE `demo/IteRPrimE.py`) builds its proposals with detectron2's
`DefaultPredictor` on the Mask2Former config
`configs/coco/panoptic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_100ep.yaml`, whose bases
(facebookresearch/Mask2Former `Base-COCO-PanopticSegmentation.yaml`, `maskformer2_R50_bs16_50ep.yaml`)
and detectron2's defaults give (detectron2 `engine/defaults.py`, `data/transforms/augmentation_impl.py`,
`data/transforms/transform.py`, `structures/image_list.py`, `modeling/postprocessing.py`):

- **input** ``INPUT.FORMAT`` "RGB": the BGR image `read_image` returns is flipped to RGB, i.e. the model
  sees RGB, as here.
- **resize** ``ResizeShortestEdge([MIN_SIZE_TEST] * 2, MAX_SIZE_TEST)`` with detectron2's defaults
  ``MIN_SIZE_TEST`` 800, ``MAX_SIZE_TEST`` 1333 (neither config changes them): scale = 800 / short side;
  if the long side would pass 1333, scale = 1333 / long side instead; each side ``int(x + 0.5)``
  (`resize_shortest_edge_shape`). The pixels go through ``PIL.Image.resize(..., BILINEAR)`` on the uint8
  image (`ResizeTransform.apply_image`), which is what `Mask2FormerInput.image_to_pixels` calls.
- **normalise** (`MaskFormer.forward`): float pixels in 0..255, ``(x - PIXEL_MEAN) / PIXEL_STD`` with
  PIXEL_MEAN (123.675, 116.280, 103.530), PIXEL_STD (58.395, 57.120, 57.375) (= ImageNet's mean/std x 255).
- **pad** (`ImageList.from_tensors(images, size_divisibility=32)`, ``MASK_FORMER.SIZE_DIVISIBILITY`` 32):
  bottom and right, with 0 AFTER normalisation, up to the next multiple of 32. No pixel mask is used
  (transformers' `Mask2FormerModel` ignores ``pixel_mask`` as well).
- **output** (`MaskFormer.forward` in the official `mask2former/maskformer_model.py`): the last decoder
  layer's mask logits, (Q, Hp/4, Wp/4), are resized bilinearly (``align_corners=False``) to the padded
  input (Hp, Wp), cropped to the resized image (h', w'), resized bilinearly to the original (H, W)
  (`sem_seg_postprocess`), and binarised with ``sigmoid(logits) > 0.35`` (`MASK_THRESHOLD`): all Q query
  masks, whatever their class, are the proposals (`query_mask_logits`, `binarise`).

transformers' `Mask2FormerImageProcessor` differs and is NOT used: its shortest-edge rule truncates
(``int``) where detectron2 rounds, its ``size_divisor`` *stretches* the image to a multiple of 32
instead of padding, and the hub's `preprocessor_config.json` of every Mask2Former COCO checkpoint says
``size`` {"height": 384, "width": 384}, i.e. a 384 x 384 stretch (the converter wrote 800 / 1333; a
later hub commit changed it). The fast (default) processor class also imports torchvision, which does
not load with the CPU-only torch of these machines. The same constants with other values (an ADE20K
checkpoint is tested at 640 / 2560 in the original configs) go in a `Mask2FormerInput` of their own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: detectron2 MODEL.PIXEL_MEAN / PIXEL_STD of the official config (0..255 scale, RGB)
PIXEL_MEAN = (123.675, 116.280, 103.530)
PIXEL_STD = (58.395, 57.120, 57.375)
#: the official wrapper's binarisation: a query's pixel is in its mask when sigmoid(logit) > 0.35
MASK_THRESHOLD = 0.35
#: the model's mask logits are at 1/4 of the padded input (transformers `common_stride`, detectron2 COMMON_STRIDE)
MASK_STRIDE = 4


def resize_shortest_edge_shape(h: int, w: int, short_edge: int, max_size: int) -> tuple[int, int]:
    """(new_h, new_w) of detectron2's `ResizeShortestEdge.get_output_shape`.

    The short side becomes `short_edge` unless the long side would then exceed `max_size`, in which
    case the long side becomes `max_size`; both sides are rounded half up (``int(x + 0.5)``).
    """
    if h < 1 or w < 1:
        raise ValueError(f"image size must be positive, got {h}x{w}")
    size = float(short_edge)
    scale = size / min(h, w)
    if h < w:
        newh, neww = size, scale * w
    else:
        newh, neww = scale * h, size
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    return max(1, int(newh + 0.5)), max(1, int(neww + 0.5))


@dataclass(frozen=True)
class Mask2FormerFrame:
    """One image prepared for the model.

    Attributes:
        pixel_values: (1, 3, Hp, Wp) float32, normalised, zero-padded bottom/right.
        resized_size: (h', w') of the resized image inside the padded input.
        padded_size: (Hp, Wp), multiples of the size divisibility.
        original_size: (H, W) of the image given.
    """

    pixel_values: torch.Tensor
    resized_size: tuple[int, int]
    padded_size: tuple[int, int]
    original_size: tuple[int, int]


@dataclass(frozen=True)
class Mask2FormerInput:
    """Test-time resize / normalise / pad constants (defaults: the official config, see the module docstring).

    Attributes:
        short_edge: target of the shorter side (detectron2 INPUT.MIN_SIZE_TEST).
        max_size: cap on the longer side (INPUT.MAX_SIZE_TEST).
        size_divisibility: the padded input's sides are multiples of this (MASK_FORMER.SIZE_DIVISIBILITY).
        pixel_mean, pixel_std: per channel, on the 0..255 scale (MODEL.PIXEL_MEAN / PIXEL_STD).
    """

    short_edge: int = 800
    max_size: int = 1333
    size_divisibility: int = 32
    pixel_mean: tuple[float, float, float] = PIXEL_MEAN
    pixel_std: tuple[float, float, float] = PIXEL_STD

    def __post_init__(self):
        if self.short_edge < 1 or self.max_size < self.short_edge or self.size_divisibility < 0:
            raise ValueError(f"invalid Mask2Former input sizes: short_edge={self.short_edge}, "
                             f"max_size={self.max_size}, size_divisibility={self.size_divisibility}")
        if len(self.pixel_mean) != 3 or len(self.pixel_std) != 3 or min(self.pixel_std) <= 0:
            raise ValueError("pixel_mean and pixel_std need 3 values each, std > 0")

    def output_shape(self, h: int, w: int) -> tuple[int, int]:
        """(h', w') the image is resized to."""
        return resize_shortest_edge_shape(h, w, self.short_edge, self.max_size)

    def padded_shape(self, h: int, w: int) -> tuple[int, int]:
        """(Hp, Wp): (h, w) rounded up to the size divisibility."""
        d = self.size_divisibility
        if d <= 1:
            return h, w
        return int(math.ceil(h / d) * d), int(math.ceil(w / d) * d)

    def image_to_pixels(self, rgb: np.ndarray) -> Mask2FormerFrame:
        """(H, W, 3) uint8 RGB -> `Mask2FormerFrame` (PIL bilinear resize, normalise, zero pad)."""
        from PIL import Image

        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 array, got {getattr(rgb, 'shape', None)} "
                             f"{getattr(rgb, 'dtype', type(rgb).__name__)}")
        h, w = int(rgb.shape[0]), int(rgb.shape[1])
        nh, nw = self.output_shape(h, w)
        img = np.ascontiguousarray(rgb)
        if (nh, nw) != (h, w):
            img = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))
        x = torch.from_numpy(img.astype(np.float32).transpose(2, 0, 1))  # (3, h', w'), 0..255
        mean = torch.tensor(self.pixel_mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.pixel_std, dtype=torch.float32).view(3, 1, 1)
        x = (x - mean) / std
        hp, wp = self.padded_shape(nh, nw)
        x = F.pad(x, (0, wp - nw, 0, hp - nh), value=0.0)
        return Mask2FormerFrame(x[None].contiguous(), (nh, nw), (hp, wp), (h, w))


def query_mask_logits(logits: torch.Tensor, frame: Mask2FormerFrame, size: tuple[int, int] | None = None,
                      chunk: int = 16) -> torch.Tensor:
    """The official geometry: (Q, Hp/4, Wp/4) mask logits -> (Q, *size) logits (default: the original size).

    Bilinear (align_corners=False) to the padded input, crop to the resized image, bilinear to `size`;
    done `chunk` queries at a time (the padded-input step alone is Q x Hp x Wp floats). Output float32.
    """
    size = tuple(frame.original_size if size is None else size)
    hp, wp = frame.padded_size
    rh, rw = frame.resized_size
    x = logits.detach().float()
    squeeze = x.dim() == 2
    if squeeze:
        x = x[None]
    out = torch.empty((x.shape[0], *size), dtype=torch.float32, device=x.device)
    for i in range(0, x.shape[0], max(1, int(chunk))):
        y = F.interpolate(x[None, i:i + chunk], size=(hp, wp), mode="bilinear", align_corners=False)
        y = y[..., :rh, :rw]
        out[i:i + chunk] = F.interpolate(y, size=size, mode="bilinear", align_corners=False)[0]
    return out[0] if squeeze else out


def binarise(logits: torch.Tensor) -> torch.Tensor:
    """Masks as the official wrapper binarises them: ``sigmoid(logits) > 0.35`` (bool, same shape)."""
    return torch.sigmoid(logits.float()) > MASK_THRESHOLD


def selection_size(original_size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """The grid the proposals are selected on: the original (H, W), or, above `max_pixels`, (H, W) scaled
    down (aspect kept) so that it holds at most `max_pixels` (N query masks are kept as N x grid bools)."""
    h, w = (int(v) for v in original_size)
    if max_pixels <= 0 or h * w <= max_pixels:
        return h, w
    s = math.sqrt(max_pixels / float(h * w))
    return max(1, int(h * s)), max(1, int(w * s))
