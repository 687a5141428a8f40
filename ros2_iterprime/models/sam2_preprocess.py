"""Frame and mask geometry of the SAM 2 / EdgeTAM video models, in plain torch (no torchvision).

`transformers`' `Sam2VideoProcessor` (used by every SAM 2.1 and EdgeTAM checkpoint) is built on the
torchvision image backend, which cannot be imported with the CPU torch of these machines. This module
re-implements exactly the part of it a streaming tracker needs, from the processor source of
transformers 5.23 (`sam2/image_processing_sam2.py`, `sam2_video/video_processing_sam2_video.py`,
`sam2_video/processing_sam2_video.py`):

- **frame** (`Sam2ImageProcessor` / `Sam2VideoVideoProcessor` defaults: ``size`` {"height": 1024,
  "width": 1024}, ``resample`` BILINEAR, ``do_rescale`` 1/255, ``do_normalize`` with
  ``IMAGENET_DEFAULT_MEAN`` (0.485, 0.456, 0.406) / ``IMAGENET_DEFAULT_STD`` (0.229, 0.224, 0.225)):
  the (H, W, 3) uint8 frame is resized to S x S WITHOUT keeping the aspect ratio and without padding
  (unlike SAM v1), by torchvision's tensor ``resize`` (bilinear, ``antialias=True``, half-pixel
  centres); the resize runs on the uint8 tensor, so its result is uint8 again (torch's native uint8
  kernel on AVX2/AVX512/ARM64 CPUs, else float32 and rounding: `resize_uint8`); then
  ``(x / 255 - mean) / std`` per channel. Output: (3, S, S) float32.
- **mask prompt** (`Sam2VideoProcessor.process_new_mask_for_video_frame`): the (H, W) bool mask is
  resized to S x S (bilinear, antialias) as float and thresholded at >= 0.5. Output: (1, 1, S, S)
  float32 in {0, 1}.
- **output mask** (`Sam2ImageProcessor.post_process_masks`, which the video processor delegates to):
  the model's low-resolution logits (S/4 x S/4, i.e. 256 x 256 for S = 1024) are bilinearly resized
  (``align_corners=False``) straight to the original (H, W) and thresholded at > 0. Output: (H, W) bool.

S is the model's ``config.image_size`` (1024 for every published SAM 2.1 / EdgeTAM checkpoint; 64
for the tiny test models).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: transformers.image_utils.IMAGENET_DEFAULT_MEAN / _STD, the SAM 2 processors' defaults
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def native_uint8_resize() -> bool:
    """Whether torchvision would resize a uint8 tensor with torch's native uint8 kernel on this CPU.

    torchvision (`transforms.v2.functional.resize_image`) keeps uint8 for bilinear on CPUs with AVX2 /
    AVX512 or on ARM64; elsewhere it resizes in float32 and rounds. The two differ by at most one
    grey level (fixed-point vs float weights).
    """
    import platform

    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") or platform.machine() in ("aarch64", "arm64")


def resize_uint8(x: torch.Tensor, size: int, native: bool | None = None) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> (N, 3, size, size) uint8, bilinear + antialias, torchvision's way."""
    native = native_uint8_resize() if native is None else native
    if native:
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    y = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return y.round_().clamp_(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class FrameGeometry:
    """Resize/normalise constants of one tracker model.

    Attributes:
        size: S, side of the square model input (``config.image_size``).
        mean, std: per-channel normalisation applied after scaling to [0, 1].
    """

    size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        if int(self.size) < 1:
            raise ValueError(f"model input size must be >= 1, got {self.size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need 3 values each, std > 0")

    @classmethod
    def from_preprocessor_config(cls, cfg: dict, default_size: int) -> FrameGeometry:
        """Read ``size`` / ``image_mean`` / ``image_std`` of a saved (video) preprocessor config dict.

        Missing keys fall back to the processor defaults (ImageNet mean/std, ``default_size``).
        """
        size = cfg.get("size")
        if isinstance(size, dict):
            side = size.get("height") or size.get("longest_edge") or default_size
        else:
            side = size or default_size
        mean = tuple(float(v) for v in cfg.get("image_mean") or IMAGENET_MEAN)
        std = tuple(float(v) for v in cfg.get("image_std") or IMAGENET_STD)
        return cls(int(side), mean, std)  # type: ignore[arg-type]

    def frame_to_pixels(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 RGB -> (3, S, S) float32 model input (see the module docstring)."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
        rgb = np.ascontiguousarray(rgb)
        if not rgb.flags.writeable:  # e.g. np.asarray(PIL image): torch.from_numpy warns on read-only memory
            rgb = rgb.copy()
        x = resize_uint8(torch.from_numpy(rgb).permute(2, 0, 1)[None], self.size).float()
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        return ((x / 255.0 - mean) / std)[0]

    def mask_to_prompt(self, mask: np.ndarray) -> torch.Tensor:
        """(H, W) bool mask -> (1, 1, S, S) float32 {0, 1} mask prompt (see the module docstring)."""
        if mask.ndim != 2 or mask.size == 0:
            raise ValueError(f"expected an (H, W) mask, got shape {mask.shape}")
        m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
        if m.shape[-2:] != (self.size, self.size):
            m = F.interpolate(m, size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=True)
            m = (m >= 0.5).float()
        return m

    @staticmethod
    def logits_to_mask(logits: torch.Tensor, original_size: tuple[int, int]) -> np.ndarray:
        """(h, w) low-res mask logits -> (H, W) bool at the original resolution (logit > 0 inside)."""
        x = logits.detach().float().cpu()
        while x.dim() < 4:
            x = x[None]
        x = F.interpolate(x, size=tuple(original_size), mode="bilinear", align_corners=False)
        return (x[0, 0] > 0).numpy()
