"""Reduced precision against fp32, through the full pipeline, in the bench's run.

The same fp32 weights run twice on the same frame: once with the image encoders in fp32, once in the
run's dtype (bf16 / fp16). Per expression: the heatmap's largest difference, whether the SAM prompts
(the Grad-CAM peaks) are the same points, SAM's mask logits at the SAME prompts (the encoder's effect
alone), and the final masks' IoU where the prompts agree (a prompt one pixel off is another SAM query,
whose mask differs for reasons that are not precision). For the tracker: the same stream seeded with
the same mask in fp32 and in the tracker's dtype, per frame the mask IoU and the object-score logit
difference. With random weights these are numerical differences, never accuracy.
"""
from __future__ import annotations

import numpy as np


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


class _PromptRecorder:
    """Wraps a proposer's `from_peaks` to record the prompts (row, col) each call used."""

    def __init__(self, proposer):
        self.proposer = proposer
        self.calls: list[list[tuple[int, int]]] = []
        self._orig = proposer.from_peaks

        def recording(image, peaks_rc, multimask=True):
            self.calls.append([tuple(int(v) for v in p) for p in peaks_rc])
            return self._orig(image, peaks_rc, multimask)

        proposer.from_peaks = recording

    def close(self) -> None:
        self.proposer.__dict__.pop("from_peaks", None)


def compare_grounding(seg_ref, seg_low, frame: np.ndarray, expressions) -> dict:
    """fp32 (`seg_ref`) against reduced precision (`seg_low`) on one frame; see the module docstring."""
    rec_ref, rec_low = _PromptRecorder(seg_ref.sam), _PromptRecorder(seg_low.sam)
    rows = []
    try:
        seg_ref.set_image(frame)
        seg_low.set_image(frame)
        for expr in expressions:
            rec_ref.calls.clear()
            rec_low.calls.clear()
            a, b = seg_ref.segment(expr), seg_low.segment(expr)
            pa, pb = rec_ref.calls[0], rec_low.calls[0]
            same = pa == pb
            # the encoder's own effect: SAM decoded at the fp32 run's prompts from both embeddings
            la = rec_ref._orig(seg_ref._image.sam, pa).logits
            lb = rec_low._orig(seg_low._image.sam, pa).logits
            rows.append({
                "expression": expr,
                "heatmap_max_abs_diff": float(np.abs(a.heatmap - b.heatmap).max()),
                "heatmap_mean_abs_diff": float(np.abs(a.heatmap - b.heatmap).mean()),
                "prompts_fp32": pa, "prompts_low": pb, "prompts_agree": same,
                "first_prompt_agrees": pa[0] == pb[0],
                "sam_logits_max_abs_diff_same_prompts": float((la - lb).abs().max()),
                "sam_logits_max_abs": float(la.abs().max()),
                "sam_mask_iou_same_prompts": iou((la > 0).numpy(), (lb > 0).numpy()),
                "mask_iou": iou(a.mask, b.mask) if same else None,
                "match_prob_abs_diff": float(abs(a.match_probs[-1] - b.match_probs[-1])),
            })
    finally:
        rec_ref.close()
        rec_low.close()
    agree = [r for r in rows if r["prompts_agree"]]
    return {
        "expressions": rows,
        "heatmap_max_abs_diff": max(r["heatmap_max_abs_diff"] for r in rows),
        "prompt_agreement": sum(r["prompts_agree"] for r in rows) / len(rows),
        "min_mask_iou_where_prompts_agree": min((r["mask_iou"] for r in agree), default=None),
        "min_sam_mask_iou_same_prompts": min(r["sam_mask_iou_same_prompts"] for r in rows),
    }


def compare_tracking(tracker_ref, tracker_low, frames: list[np.ndarray], seed_mask: np.ndarray) -> dict:
    """The same stream through a fp32 and a reduced-precision `TrackerModel` (same weights)."""
    from ..tracking.session import StreamingSession

    ref, low = StreamingSession(tracker_ref), StreamingSession(tracker_low)
    ref.seed(frames[0], seed_mask)
    low.seed(frames[0], seed_mask)
    rows = []
    for f in frames[1:]:
        a, b = ref.track(f), low.track(f)
        rows.append({"mask_iou": iou(a.mask, b.mask), "object_score_fp32": a.object_score,
                     "object_score_low": b.object_score,
                     "object_score_abs_diff": abs(a.object_score - b.object_score)})
    return {"frames": rows, "min_mask_iou": min(r["mask_iou"] for r in rows),
            "max_object_score_abs_diff": max(r["object_score_abs_diff"] for r in rows)}

