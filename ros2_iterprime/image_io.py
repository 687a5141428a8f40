"""Turn any reasonable image into (H, W, 3) uint8 RGB, or raise a clear `InvalidInputError`.

Accepted: PIL images of any mode (RGBA/LA/P lose alpha, I;16 and I are scaled from their full range,
F is treated like a float array), numpy arrays (H, W), (H, W, 1), (H, W, 3), (H, W, 4) of dtype
bool, uint8, uint16 (scaled by 1/257), other integers (clipped to 0..255) or floats (values in [0, 1]
are scaled by 255, otherwise clipped to 0..255; NaN/inf become 0).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InvalidInputError

#: 100 megapixels; larger images are refused before any model runs (memory safety).
DEFAULT_MAX_PIXELS = 100_000_000
#: Longer side / shorter side beyond this is refused: resizing to the models' inputs would squash the
#: short side to zero pixels (no camera produces such frames).
MAX_ASPECT_RATIO = 100


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file into (H, W, 3) uint8 RGB."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb_uint8(im)
    except FileNotFoundError as exc:
        raise InvalidInputError(f"image file not found: {path}") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidInputError(f"cannot read image {path}: {exc}") from exc


def to_rgb_uint8(image, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Convert `image` (PIL.Image or numpy array) to a C-contiguous (H, W, 3) uint8 RGB array."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a hard dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            arr = np.asarray(image)
            if image.mode == "I":  # 32-bit integer: scale its observed range
                arr = arr.astype(np.float64)
                arr = arr / max(arr.max(), 1.0)
        else:
            arr = np.asarray(image.convert("RGB"))
    elif isinstance(image, np.ndarray):
        arr = image
    else:
        raise InvalidInputError(
            f"unsupported image type {type(image).__name__}: pass a PIL.Image or an (H, W[, C]) numpy array"
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InvalidInputError(f"image must be (H, W), (H, W, 3) or (H, W, 4); got shape {arr.shape}")
    h, w = arr.shape[:2]
    if h < 1 or w < 1:
        raise InvalidInputError(f"image is empty ({w}x{h})")
    if max(h, w) > MAX_ASPECT_RATIO * min(h, w):
        raise InvalidInputError(f"image {w}x{h} is too elongated (aspect ratio above {MAX_ASPECT_RATIO}:1)")
    if h * w > max_pixels:
        raise InvalidInputError(f"image {w}x{h} has {h * w / 1e6:.0f} MP, more than the {max_pixels / 1e6:.0f} MP limit")
    arr = _to_uint8(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16 or arr.dtype == np.dtype(">u2"):
        return (arr.astype(np.uint32) // 257).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        return np.clip(arr, 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        a = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if a.size and a.min() >= 0.0 and a.max() <= 1.0:
            a = a * 255.0
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)
    raise InvalidInputError(f"unsupported image dtype {arr.dtype}")
