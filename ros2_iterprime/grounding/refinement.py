"""IGRS — Iterative Grad-CAM Refinement Strategy (IteRPrimE, AAAI 2025).

A single Grad-CAM often lights up only the most discriminative part of the target. IGRS runs up to T
rounds; after each round the patches already salient are erased from the cross-attention (through the
image-token attention mask) so the next round must find evidence elsewhere, and the maps are blended:

    s(x)  = sigmoid(gain * (x - center)) / max(sigmoid(gain * (x - center)))   (steep sigmoid, gain 20)
    erase_t = erase_{t-1} OR (s(g_t) >= threshold)                               (cumulative, threshold 0.5)
    G_t   = (1 - alpha) * G_{t-1} + alpha * g_t                                  (alpha 0.2)

with g_t the min-max normalised patch-level map of round t. This is the official code step by step
(VoyageWang/IteRPrimE, models/albef/engine.py `process_gradcam` and the `epoch` branch of
`visualize_groundvlp`; demo/itergradcam.py `IterGradCAM`): the erase mask and the blend use the
un-stretched normalised maps g_t; the blend is upsampled (bicubic) and min-max normalised by the
caller. Round 0's map *alone* (T = 1) is passed through s before it is used (`IterGradCAM` applies
`mySig` to round 0's output; see :func:`finalise`); a blend never is.

Stop rule: rounds stop as soon as the ITM match probability drops below the previous round's. The
official code compares `u_{t-1} p_t < u_{t-1} p_{t-1}`, u the un-erased fraction of the previous map:
u is on both sides and cancels, so it is this plain test. The round that triggered the stop has
already been blended into the map the official code returns; we do the same by default
(``keep_stop_round=True``). ``keep_stop_round=False`` discards that round instead, since it was
computed on an image the model matches worse.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Min-max normalise to [0, 1]; a constant map becomes all zeros."""
    x = x - x.min()
    m = x.max()
    return x / m if m > 0 else torch.zeros_like(x)


def steep_sigmoid(x: torch.Tensor, gain: float = 20.0, center: float = 0.5) -> torch.Tensor:
    """s(x) = sigmoid(gain (x - center)) / max(...), the paper's saliency stretch."""
    s = torch.sigmoid(gain * (x - center))
    return s / s.max().clamp_min(1e-12)


def salient_patches(g: torch.Tensor, threshold: float = 0.5, gain: float = 20.0, center: float = 0.5) -> torch.Tensor:
    """Bool map of the patches to erase: s(g) >= threshold. g: (p, p) normalised map."""
    return steep_sigmoid(g, gain, center) >= threshold


def finalise(heat: torch.Tensor, rounds: int, gain: float = 20.0, center: float = 0.5) -> torch.Tensor:
    """The map IGRS hands on, at the resolution it is used (after upsampling + min-max normalising).

    Round 0's map alone (``rounds == 1``: T = 1, or with ``keep_stop_round=False`` a stop at round 1)
    passes through the steep sigmoid, as the official `IterGradCAM` returns `mySig(gradcam)` for T = 1;
    a blend of several rounds is returned as it is. The sigmoid is monotonic: peaks do not move.
    """
    return steep_sigmoid(heat, gain, center) if rounds == 1 else heat


@dataclass
class RoundOutput:
    """What one Grad-CAM round returns to the refinement loop."""

    heatmap: torch.Tensor  # (p, p) patch-level map, normalised to [0, 1]
    match_prob: float


@dataclass
class RefinementResult:
    heatmap: torch.Tensor  # (p, p) blended map G
    rounds: int  # number of maps blended (1..T)
    match_probs: list[float] = field(default_factory=list)  # every round run, incl. a dropped last one
    erased: torch.Tensor | None = None  # (p, p) bool: salient patches of the blended rounds (not a stop round's)


def refine(
    run_round: Callable[[torch.Tensor], RoundOutput],
    grid: int,
    iterations: int = 3,
    alpha: float = 0.2,
    threshold: float = 0.5,
    gain: float = 20.0,
    center: float = 0.5,
    early_stop: bool = True,
    keep_stop_round: bool = True,
) -> RefinementResult:
    """Run IGRS.

    Args:
        run_round: callable taking the (p*p,) bool keep mask (False = erased patch) and returning the
            round's normalised map and ITM match probability.
        grid: p, the side of the patch grid.
        iterations: T >= 1, maximum number of rounds.
        early_stop: apply the stop rule (default, the paper); False runs and blends all T rounds
            (an ablation, and how the benchmark times a fixed T).
        keep_stop_round: blend the round whose match probability dropped before stopping (default,
            the official code); False discards it (see module docstring).
    """
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError("alpha must be in [0, 1]")
    erased = torch.zeros(grid, grid, dtype=torch.bool)
    blended: torch.Tensor | None = None
    probs: list[float] = []
    rounds = 0
    for t in range(iterations):
        out = run_round(~erased.flatten())
        probs.append(float(out.match_prob))
        stop = early_stop and t > 0 and probs[-1] < probs[-2]
        if stop and not keep_stop_round:
            break  # the match dropped: stop, and do not use this round's map
        g = out.heatmap.float().cpu()
        blended = g if blended is None else (1.0 - alpha) * blended + alpha * g
        rounds += 1
        if stop:
            break  # official: the round that dropped is blended, then the loop ends
        erased = erased | salient_patches(g, threshold, gain, center)
    return RefinementResult(blended, rounds, probs, erased)
