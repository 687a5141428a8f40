"""Overlay rendering shared by the CLI and the ROS node (PIL + numpy only)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .results import SegmentationResult


def jet(x: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) uint8 'jet'-like colour map (blue -> cyan -> yellow -> red)."""
    x = np.clip(x, 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4.0 * x - 3.0), 0.0, 1.0)
    g = np.clip(1.5 - np.abs(4.0 * x - 2.0), 0.0, 1.0)
    b = np.clip(1.5 - np.abs(4.0 * x - 1.0), 0.0, 1.0)
    return (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


def mask_outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """(H, W) bool boundary pixels of a mask (inner edge, `width` pixels thick)."""
    m = mask.astype(bool)
    inner = m.copy()
    for _ in range(max(1, width)):
        shrunk = inner.copy()
        shrunk[1:, :] &= inner[:-1, :]
        shrunk[:-1, :] &= inner[1:, :]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        inner = shrunk
    return m & ~inner


def render_overlay(image_rgb: np.ndarray, result: SegmentationResult, heat_alpha: float = 0.35,
                   mask_alpha: float = 0.35) -> np.ndarray:
    """Image + heatmap + tinted mask + outline + centroid + expression text.

    Args:
        image_rgb: (H, W, 3) uint8, the image the result belongs to.
    Returns:
        (H, W, 3) uint8 RGB.
    """
    img = image_rgb.astype(np.float32)
    heat = jet(result.heatmap).astype(np.float32)
    out = (1.0 - heat_alpha) * img + heat_alpha * heat
    m = result.mask.astype(bool)
    colour = np.array([0, 255, 0] if result.found else [255, 160, 0], dtype=np.float32)
    out[m] = (1.0 - mask_alpha) * out[m] + mask_alpha * colour
    h, w = m.shape
    out[mask_outline(m, max(1, min(h, w) // 200 + 1))] = colour
    pil = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    if result.centroid is not None:
        u, v = result.centroid
        r = max(3, min(h, w) // 80)
        draw.ellipse([u - r, v - r, u + r, v + r], outline=(255, 0, 0), width=max(1, r // 2))
        draw.line([u - 2 * r, v, u + 2 * r, v], fill=(255, 0, 0))
        draw.line([u, v - 2 * r, u, v + 2 * r], fill=(255, 0, 0))
    label = f"{result.expression[:80]}  [{result.primary_word or '-'}] score {result.score:.2f}"
    if not result.found:
        label += " (fallback)"
    try:
        font = ImageFont.load_default(size=max(10, min(h, w) // 30))
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    if h >= 12 and w >= 12:
        box = draw.textbbox((4, 4), label, font=font)
        draw.rectangle([box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2], fill=(0, 0, 0))
        draw.text((4, 4), label, fill=(255, 255, 255), font=font)
    return np.asarray(pil)
