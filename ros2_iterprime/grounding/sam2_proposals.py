"""SAM 2.1 / EdgeTAM as IteRPrimE's proposal network, sharing the image encoder with the tracker.

`Sam2Proposer` has `proposals.SamProposer`'s interface (``encode`` -> cached image state with its
low-res grid, ``from_peaks`` / ``decode_points`` -> `Proposals` of low-res logits, ``automatic``,
``upsample`` -> (H, W) bool), so `ReferringSegmenter` uses it unchanged
(``SegmenterConfig(proposals_model="facebook/sam2.1-hiera-tiny")``). It runs on the image-level parts
of the SAME `Sam2VideoModel` / `EdgeTamVideoModel` instance the tracker streams with (image encoder,
prompt encoder, mask decoder: the video checkpoints carry them; SAM 2's image predictor is these
parts with no memory), so one model is loaded once, and the grounding frame's image features are
computed once: `features_for(rgb)` hands them to `StreamingSession.seed`, which puts them in the
inference session's vision-feature cache so the tracker's seed frame skips its image encoder.

Geometry differs from SAM v1: the frame is stretched to S x S (no padding), so the whole
S/4 x S/4 low-res grid covers the image, and masks go back with one bilinear resize straight to the
original size (`..models.sam2_preprocess.FrameGeometry`). Prompts follow SAM 2's image predictor: points in
input-pixel coordinates (the prompt encoder adds the half-pixel shift and normalises by S), the mask
decoder called directly with ``multimask_output`` (3 masks per point), image embeddings with SAM 2's
"no memory" embedding added to the top level (``get_image_embeddings``), and no object-score gating
(the image predictor does not gate; the video path does).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..models.loading import to_device
from ..models.trackers import TrackerModel, load_tracker
from .proposals import Proposals, SamImage, SamProposer


@dataclass
class Sam2Image(SamImage):
    """Cached per-image state of `Sam2Proposer` (a `SamImage` whose grid covers the whole image).

    Attributes (besides SamImage's; ``embeddings`` is the top level (1, C, S/16, S/16) with the
    no-memory embedding added, ``input_size`` = ``(S, S)``, ``pad_size`` = S, ``grid`` = S/4):
        high_res: the two higher-resolution decoder feature maps, (1, C/8, S/4, S/4) and (1, C/4, S/8, S/8).
        vision_feats, vision_pos: the raw `get_image_features` output (per level (HW, 1, C)), what the
            video session caches for a frame.
        rgb: the (H, W, 3) uint8 frame these features belong to.
    """

    high_res: list = field(default_factory=list)
    vision_feats: list = field(default_factory=list)
    vision_pos: list = field(default_factory=list)
    rgb: np.ndarray | None = None


class Sam2Proposer(SamProposer):
    """Class-agnostic point-prompted proposals from a SAM 2 / EdgeTAM video model's image parts."""

    def __init__(self, tracker: TrackerModel):
        super().__init__(tracker.model, processor=None)
        self.tracker = tracker
        self.last: Sam2Image | None = None

    def reset(self) -> None:
        """Forget the last image's features (the segmenter's reset_image: deactivation frees them)."""
        self.last = None

    @torch.inference_mode()
    def encode(self, rgb: np.ndarray) -> Sam2Image:
        """(H, W, 3) uint8 -> Sam2Image (runs the image encoder once)."""
        m = self.model
        pixels = to_device(self.tracker.geometry.frame_to_pixels(rgb)[None], self.tracker.device, self.tracker.dtype)
        out = m.get_image_features(pixels, return_dict=True)
        feats, pos = list(out.fpn_hidden_states), list(out.fpn_position_encoding)
        sizes = m.backbone_feature_sizes
        maps = [f.permute(1, 2, 0).reshape(1, -1, *s) for f, s in zip(feats, sizes, strict=True)]
        top = maps[-1] + m.no_memory_embedding.reshape(1, -1, 1, 1)
        s = int(self.tracker.geometry.size)
        grid = int(sizes[0][0])  # stride-4 level = the mask decoder's low-res output grid
        img = Sam2Image(top, (s, s), (int(rgb.shape[0]), int(rgb.shape[1])), s, grid, high_res=maps[:-1],
                        vision_feats=feats, vision_pos=pos, rgb=rgb)
        self.last = img
        return img

    @torch.inference_mode()
    def decode_points(self, image: SamImage, points_xy: torch.Tensor, multimask: bool = True) -> Proposals:
        """One prompt per point ((k, 2) in S x S input pixels) -> k*3 (or k) low-res proposals."""
        m = self.model
        k = points_xy.shape[0]
        dt = image.embeddings.dtype
        pts = points_xy.to(self.device, dt).reshape(1, k, 1, 2)
        labels = torch.ones(1, k, 1, dtype=torch.int32, device=self.device)
        sparse, dense = m.prompt_encoder(input_points=pts, input_labels=labels, input_boxes=None, input_masks=None)
        logits, iou, _, _ = m.mask_decoder(
            image_embeddings=image.embeddings, image_positional_embeddings=m.get_image_wide_positional_embeddings(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask,
            high_resolution_features=image.high_res)
        return Proposals(logits[0].flatten(0, 1).float().cpu(), iou[0].flatten().float().cpu(), image.lowres_size)

    def upsample(self, image: SamImage, logits: torch.Tensor) -> np.ndarray:
        """(L, L) low-res logits -> (H, W) bool: one bilinear resize to the original size (SAM 2's post-processing)."""
        return self.tracker.geometry.logits_to_mask(logits, image.original_size)

    @property
    def encoder_dtype(self) -> torch.dtype:
        return self.tracker.dtype

    def features_for(self, rgb: np.ndarray) -> tuple[list, list] | None:
        """The cached image features of `rgb` if it is the last encoded frame, else None.

        Returns (vision_feats, vision_pos) as the video session caches them (see `StreamingSession.seed`).
        """
        last = self.last
        if last is None or last.rgb is None or last.rgb.shape != rgb.shape or not np.array_equal(last.rgb, rgb):
            return None
        return last.vision_feats, last.vision_pos


def load_proposer(model: str, *, device="auto", dtype="auto", local_files_only: bool | None = None,
                  cache_dir: str | None = None, seed: int = 0) -> Sam2Proposer:
    """A `Sam2Proposer` over `load_tracker(model, ...)` (a SAM 2.1 / EdgeTAM id, directory or tiny name)."""
    return Sam2Proposer(load_tracker(model, device=device, dtype=dtype, local_files_only=local_files_only,
                                     cache_dir=cache_dir, seed=seed))
