"""Mask2Former as IteRPrimE's proposal network: the official code's configuration.

The official code (VoyageWang/IteRPrimE) runs Mask2Former Swin-L COCO panoptic once per image and hands
ALL its query masks to the selection (`demo/IteRPrimE.py` `iter_select`: ``bin_mask`` from
`demo/predictor.py`'s `run_on_image`, which the modified `mask2former/maskformer_model.py` returns next
to the panoptic result). What each step does here, and where it comes from:

- **which masks**: every query (200 for the paper's checkpoint), whatever its class and score: the
  official ``bin_mask`` is computed from ``mask_pred_results`` before any panoptic / instance filtering
  (``object_mask_threshold``, the class argmax and the overlap rule only shape the unused panoptic
  output), in the branch the modified `MaskFormer.__init__` forces on
  (``sem_seg_postprocess_before_inference = True``). No NMS, no class filter, no score threshold.
  (`demo/predictor.py` unpacks ``predictions, bin_mask`` from detectron2's `DefaultPredictor`, whose
  stock version returns ``model([inputs])[0]``; the official setup must run a locally changed
  detectron2 that returns the model's pair. We take ``bin_mask`` as the model code computes it.)
- **which logits**: the last decoder layer's mask logits (transformers' ``masks_queries_logits`` of
  `Mask2FormerForUniversalSegmentation`; detectron2's ``outputs["pred_masks"]``), at 1/4 of the padded
  input.
- **to the image**: bilinear to the padded input, crop to the resized image, bilinear to the original
  size (`models.mask2former_preprocess.query_mask_logits`: the official `F.interpolate` +
  `sem_seg_postprocess`), then ``sigmoid > 0.35`` (`binarise`): (Q, H, W) binary masks at the original
  resolution, as the official `post_process` (`demo/postproc.py`) receives them.
- **selection** (`selection.select`, unchanged): the peak-containment filter, the <= 12 4-connected
  pieces filter (``scipy.ndimage.label``'s default structure, as `post_process`) and the highest mean of
  (1 + G) over the mask, on those masks with the Grad-CAM map resized (bicubic, min-max normalised) to
  the same original-size grid, as the official `visualize_groundvlp` resizes it. Differences that remain
  (the peak's tie rule, the empty-mask answer when nothing passes, and the ``+ 1e-5`` in the official
  area) are listed in the README and pinned by `tests/grounding/test_mask2former_selection.py`.
- **grid cap**: the masks are kept as Q bools per pixel (60 MB for 200 queries at 640 x 480). Images
  above `DEFAULT_MAX_SELECTION_PIXELS` (every COCO / RefCOCO image is below it) are selected on a grid
  scaled down to that many pixels, and the chosen query's mask is then computed at the original size.

Per-image caching: the model runs once in `encode` (the segmenter's `set_image`); every expression on the
same frame reuses the cached masks (`from_peaks` / `automatic` return them; the masks do not depend on
the heatmap, so the proposer says ``prompted = False`` and the segmenter passes only the peak).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..models.mask2former import Mask2FormerModel, load_mask2former
from ..models.mask2former_preprocess import Mask2FormerFrame, binarise, query_mask_logits, selection_size
from .proposals import Proposals

#: selection grid cap in pixels (4:3 -> 1182 x 887); COCO images (<= 640 px) are selected at full size
DEFAULT_MAX_SELECTION_PIXELS = 1_048_576


@dataclass
class QueryProposals(Proposals):
    """All queries' masks of one image.

    Attributes (besides Proposals'): ``logits`` (Q, Hp/4, Wp/4) are the model's mask logits (what
    `Mask2FormerProposer.upsample` takes), ``iou`` (Q,) each query's best non-void class probability
    (informational: the official selection ignores classes), ``valid`` the selection grid (h, w).
        binary: (Q, h, w) bool, the official binarisation (sigmoid > 0.35) on the selection grid.
    """

    binary: torch.Tensor | None = None

    @property
    def masks(self) -> torch.Tensor:
        """(Q, h, w) bool masks on the selection grid (the original size unless capped)."""
        return self.binary


@dataclass
class Mask2FormerImage:
    """Cached per-image state of `Mask2FormerProposer`.

    Attributes:
        proposals: every query's mask (`QueryProposals`).
        frame: the model input's geometry (resized / padded / original sizes; pixels dropped after the run).
        lowres_size: (h, w) selection grid (the original (H, W) unless above the pixel cap).
        original_size: (H, W).
    """

    proposals: QueryProposals
    frame: Mask2FormerFrame
    lowres_size: tuple[int, int]
    original_size: tuple[int, int]


class Mask2FormerProposer:
    """Class-agnostic proposals from a Mask2Former panoptic model: all query masks, computed once per image.

    Has `proposals.SamProposer`'s interface (``encode``, ``from_peaks``, ``automatic``, ``upsample``), so
    `ReferringSegmenter` uses it unchanged (``SegmenterConfig(proposals_model="mask2former")``).
    """

    #: the proposals do not depend on prompts: the segmenter computes only the selection's peak
    prompted = False

    def __init__(self, m2f: Mask2FormerModel, max_selection_pixels: int = DEFAULT_MAX_SELECTION_PIXELS,
                 chunk: int = 16):
        self.m2f = m2f
        self.model = m2f.model
        self.max_selection_pixels = int(max_selection_pixels)
        self.chunk = max(1, int(chunk))
        #: model forward passes so far (one per `encode`)
        self.calls = 0

    @property
    def device(self) -> torch.device:
        return self.m2f.device

    @property
    def dtype(self) -> torch.dtype:
        return self.m2f.dtype

    encoder_dtype = dtype

    @torch.inference_mode()
    def encode(self, rgb: np.ndarray) -> Mask2FormerImage:
        """(H, W, 3) uint8 RGB -> every query's binary mask (runs the model once)."""
        frame = self.m2f.input.image_to_pixels(rgb)
        out = self.model(pixel_values=frame.pixel_values.to(self.device, self.dtype))
        self.calls += 1
        logits = out.masks_queries_logits[0].float().cpu()  # (Q, Hp/4, Wp/4), last decoder layer
        probs = out.class_queries_logits[0].float().softmax(-1).cpu()  # (Q, classes + 1), last = no object
        score = probs[:, :-1].max(-1).values if probs.shape[-1] > 1 else torch.zeros(len(probs))
        grid = selection_size(frame.original_size, self.max_selection_pixels)
        binary = torch.empty((logits.shape[0], *grid), dtype=torch.bool)
        for i in range(0, logits.shape[0], self.chunk):
            binary[i:i + self.chunk] = binarise(query_mask_logits(logits[i:i + self.chunk], frame, grid))
        frame = Mask2FormerFrame(torch.empty(0), frame.resized_size, frame.padded_size, frame.original_size)
        props = QueryProposals(logits, score, grid, binary=binary)
        return Mask2FormerImage(props, frame, grid, frame.original_size)

    def from_peaks(self, image: Mask2FormerImage, peaks_rc=None, multimask: bool = True) -> QueryProposals:
        """The image's query masks (prompts are not used: Mask2Former proposes without them)."""
        return image.proposals

    def automatic(self, image: Mask2FormerImage, *args, **kwargs) -> QueryProposals:
        """The image's query masks (the same set: Mask2Former's proposals are already 'everything')."""
        return image.proposals

    def mask_for(self, image: Mask2FormerImage, index: int) -> np.ndarray:
        """Query `index`'s (H, W) bool mask: the cached one when the selection grid is the original size
        (exactly the mask selection saw, as the official code returns ``bin_mask[0, idx]``), else
        computed at the original size from its logits (`upsample`)."""
        if tuple(image.lowres_size) == tuple(image.original_size):
            return image.proposals.binary[index].numpy().copy()
        return self.upsample(image, image.proposals.logits[index])

    def upsample(self, image: Mask2FormerImage, logits: torch.Tensor) -> np.ndarray:
        """One query's (Hp/4, Wp/4) logits -> (H, W) bool at the original size (the official geometry)."""
        return binarise(query_mask_logits(logits, image.frame, image.original_size)).numpy()


def load_proposer(model: str, *, device="auto", dtype="auto", local_files_only: bool | None = None,
                  cache_dir: str | None = None, seed: int = 0) -> Mask2FormerProposer:
    """A `Mask2FormerProposer` over `models.mask2former.load_mask2former(model, ...)`."""
    return Mask2FormerProposer(load_mask2former(model, device=device, dtype=dtype, local_files_only=local_files_only,
                                                cache_dir=cache_dir, seed=seed))
