"""Class-agnostic mask proposals from SAM (`transformers.SamModel`), without torchvision.

The SAM image embedding is per-image work: `encode` runs once per frame and every expression reuses it.
Two proposal modes:
- `cam_points` (default, for robots): prompt SAM with the top-k Grad-CAM peaks, one prompt per peak,
  multimask output (3 masks each) — a handful of decoder passes.
- `automatic`: a regular point grid over the image (the paper's "all proposals, then select", as SAM's
  automatic mask generator does), filtered by predicted IoU and stability score, then box NMS.

Proposals are returned as low-resolution logits on SAM's mask grid (256 x 256 for SAM ViT, covering the
padded 1024 x 1024 input), cropped to the image's valid region; selection runs there, and only the chosen
mask is upsampled to the original resolution (as SAM's own post-processing does: grid -> padded input ->
crop -> original size).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..models.loading import to_device


@dataclass
class SamImage:
    """Cached per-image SAM state.

    Attributes:
        embeddings: (1, C, e, e) image embedding.
        input_size: (h', w') of the resized image fed to SAM (longest side = pad_size).
        original_size: (H, W).
        pad_size: S, side of the square padded input.
        grid: L, side of the low-resolution mask grid.
    """

    embeddings: torch.Tensor
    input_size: tuple[int, int]
    original_size: tuple[int, int]
    pad_size: int
    grid: int

    @property
    def lowres_size(self) -> tuple[int, int]:
        """(hl, wl): part of the L x L mask grid covering the image (the rest is padding)."""
        s = self.grid / self.pad_size
        return max(1, math.ceil(self.input_size[0] * s)), max(1, math.ceil(self.input_size[1] * s))


@dataclass
class Proposals:
    logits: torch.Tensor  # (N, L, L) mask logits on SAM's low-res grid (> 0 = inside)
    iou: torch.Tensor  # (N,) SAM's predicted IoU
    valid: tuple[int, int]  # (hl, wl) part of the grid covering the image

    @property
    def masks(self) -> torch.Tensor:
        """(N, hl, wl) bool masks on the valid part of the grid (selection resolution)."""
        return self.logits[:, : self.valid[0], : self.valid[1]] > 0

    def __len__(self) -> int:
        return int(self.logits.shape[0])


def box_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression (torchvision.ops.nms semantics) in plain torch.

    Args:
        boxes: (N, 4) x0, y0, x1, y1. scores: (N,).
    Returns:
        indices kept, in decreasing score order (stable on ties: lower index first).
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order].float()
    area = (b[:, 2] - b[:, 0]).clamp_min(0) * (b[:, 3] - b[:, 1]).clamp_min(0)
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp_min(0).prod(-1)
    iou = inter / (area[:, None] + area[None, :] - inter).clamp_min(1e-9)
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long)]


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N, h, w) bool -> (N, 4) x0, y0, x1, y1 (exclusive); zeros for empty masks."""
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros(0, 4)
    rows, cols = masks.any(2), masks.any(1)
    ar_h, ar_w = torch.arange(h), torch.arange(w)
    y0 = torch.where(rows, ar_h, h).min(1).values
    y1 = torch.where(rows, ar_h + 1, 0).max(1).values
    x0 = torch.where(cols, ar_w, w).min(1).values
    x1 = torch.where(cols, ar_w + 1, 0).max(1).values
    boxes = torch.stack([x0, y0, x1, y1], 1).float()
    return torch.where(masks.flatten(1).any(1)[:, None], boxes, torch.zeros_like(boxes))


def stability_score(logits: torch.Tensor, offset: float = 1.0) -> torch.Tensor:
    """SAM's stability: |logits > +offset| / |logits > -offset| per mask."""
    hi = (logits > offset).flatten(1).sum(1).float()
    lo = (logits > -offset).flatten(1).sum(1).float()
    return hi / lo.clamp_min(1)


def find_peaks(heatmap: torch.Tensor, k: int, min_distance: int | None = None) -> list[tuple[int, int]]:
    """Top-k local maxima (row, col) of a (h, w) heatmap, strongest first; the global max is first."""
    h, w = heatmap.shape
    if min_distance is None:
        min_distance = max(1, min(h, w) // 10)
    ks = 2 * min_distance + 1
    hm = heatmap.float()[None, None]
    pooled = F.max_pool2d(hm, ks, stride=1, padding=min_distance)
    is_max = (hm == pooled)[0, 0] & (heatmap > 0)
    idx = torch.nonzero(is_max)
    if len(idx) == 0:
        flat = int(torch.argmax(heatmap))
        return [(flat // w, flat % w)]
    vals = heatmap[idx[:, 0], idx[:, 1]]
    order = torch.sort(vals, descending=True, stable=True).indices[:k]
    return [(int(idx[i, 0]), int(idx[i, 1])) for i in order]


class SamProposer:
    """SAM wrapper: per-image encoding once, then cheap prompt decoding."""

    def __init__(self, model, processor):
        self.model = model
        self.processor = processor

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the prompt decoder (fp32); the image encoder may run in reduced precision."""
        return next(self.model.mask_decoder.parameters()).dtype

    @property
    def encoder_dtype(self) -> torch.dtype:
        return next(self.model.vision_encoder.parameters()).dtype

    @torch.inference_mode()
    def encode(self, rgb: np.ndarray) -> SamImage:
        """(H, W, 3) uint8 -> cached SamImage (runs the SAM image encoder once)."""
        enc = self.processor(images=rgb, return_tensors="pt", input_data_format="channels_last")
        pv = to_device(enc["pixel_values"], self.device, self.encoder_dtype)
        emb = self.model.get_image_embeddings(pv).to(self.dtype)
        h_in, w_in = (int(v) for v in enc["reshaped_input_sizes"][0])
        pad = int(pv.shape[-1])
        grid = int(emb.shape[-1]) * 4  # the mask decoder upsamples the embedding 4x
        return SamImage(emb, (h_in, w_in), (rgb.shape[0], rgb.shape[1]), pad, grid)

    def to_input_coords(self, image: SamImage, points_rc: list[tuple[int, int]]) -> torch.Tensor:
        """Low-res grid (row, col) -> SAM input-frame (x, y) at pixel centres; (k, 2) float."""
        s = image.pad_size / image.grid
        return torch.tensor([[(c + 0.5) * s, (r + 0.5) * s] for r, c in points_rc], dtype=torch.float32)

    @torch.inference_mode()
    def decode_points(self, image: SamImage, points_xy: torch.Tensor, multimask: bool = True) -> Proposals:
        """One prompt per point. points_xy: (k, 2) in SAM input coords. Returns k*3 (or k) proposals."""
        k = points_xy.shape[0]
        pts = points_xy.to(self.device, self.dtype).reshape(1, k, 1, 2)
        labels = torch.ones(1, k, 1, dtype=torch.long, device=self.device)
        out = self.model(image_embeddings=image.embeddings, input_points=pts, input_labels=labels,
                         multimask_output=multimask)
        logits = out.pred_masks[0].flatten(0, 1).float().cpu()
        return Proposals(logits, out.iou_scores[0].flatten().float().cpu(), image.lowres_size)

    def from_peaks(self, image: SamImage, peaks_rc: list[tuple[int, int]], multimask: bool = True) -> Proposals:
        return self.decode_points(image, self.to_input_coords(image, peaks_rc), multimask)

    def automatic(self, image: SamImage, points_per_side: int = 16, batch_size: int = 64,
                  pred_iou_thresh: float = 0.88, stability_thresh: float = 0.92, nms_iou: float = 0.7,
                  max_masks: int = 100) -> Proposals:
        """Point-grid proposals (SAM automatic-mask-generator style) on the low-res grid."""
        hl, wl = image.lowres_size
        ys = (torch.arange(points_per_side) + 0.5) / points_per_side * hl
        xs = (torch.arange(points_per_side) + 0.5) / points_per_side * wl
        grid = [(int(y), int(x)) for y in ys for x in xs]
        logits, ious = [], []
        for i in range(0, len(grid), batch_size):
            p = self.from_peaks(image, grid[i:i + batch_size], multimask=True)
            crop = p.logits[:, :hl, :wl]
            good = (p.iou >= pred_iou_thresh) & (stability_score(crop) >= stability_thresh)
            good &= (crop > 0).flatten(1).any(1)
            logits.append(p.logits[good])
            ious.append(p.iou[good])
        logits_t = torch.cat(logits)
        iou_t = torch.cat(ious)
        keep = box_nms(mask_boxes(logits_t[:, :hl, :wl] > 0), iou_t, nms_iou)[:max_masks]
        return Proposals(logits_t[keep], iou_t[keep], (hl, wl))

    @staticmethod
    def upsample(image: SamImage, logits: torch.Tensor) -> np.ndarray:
        """(L, L) low-res logits -> (H, W) bool at the original resolution.

        Same geometry as SAM's post-processing: grid -> padded input (S x S) -> crop (h', w') -> (H, W).
        """
        x = F.interpolate(logits.float()[None, None], size=(image.pad_size, image.pad_size),
                          mode="bilinear", align_corners=False)
        x = x[..., : image.input_size[0], : image.input_size[1]]
        x = F.interpolate(x, size=image.original_size, mode="bilinear", align_corners=False)
        return (x[0, 0] > 0).numpy()
