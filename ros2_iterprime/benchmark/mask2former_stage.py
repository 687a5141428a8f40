"""The Mask2Former proposal stage (the paper's proposal network), timed and FLOP-counted in the bench run.

`measure_mask2former_stage` builds the FULL-SIZE `facebook/mask2former-swin-large-coco-panoptic`
architecture from its published config with random weights (`--random-weights`; 215.5 M parameters,
Swin-L, 200 queries), or loads the real checkpoint, or the tiny model under tiny-random, and times on the
bench frame what one new frame costs with ``proposals_model: mask2former`` (`Mask2FormerProposer.encode`,
split into its parts):

- preprocess: detectron2's test-time resize (short side 800, long side <= 1333), normalise, pad to 32;
- model forward: Swin-L backbone + pixel decoder (6 deformable-attention layers) + 9-layer masked-attention
  decoder, at the padded input (800 x 1088 for 640 x 480);
- masks: every query's logits to the image's size and ``sigmoid > 0.35`` (the official geometry).

FLOPs of the model forward come from `torch.utils.flop_counter.FlopCounterMode` (one counted pass, the
warm-up one when there is one): it counts matmuls, convolutions and attention; the deformable-attention
sampling (`grid_sample`) and element-wise work are not in it, so the count is a floor of the work done.
"Share of the limit" relates the stage to the compute limit of this device: ``limit_ms`` = FLOPs /
peak matmul throughput (measured here on a square GEMM in the stage's dtype, or given), and
``share_of_limit`` = limit_ms / measured model time, the fraction of the peak the forward achieves.
The same run's SAM image stage and first expression put the stage in proportion (``over_sam_image``,
``share_of_first_expression``). Random weights: cost only, never accuracy.
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from ..models.loading import dtype_name


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stats(xs: list[float]) -> dict:
    return {"median_ms": 1000 * statistics.median(xs), "min_ms": 1000 * min(xs), "max_ms": 1000 * max(xs),
            "n": len(xs)}


def matmul_peak_flops(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048,
                      reps: int = 3) -> float:
    """FLOP/s of an n x n x n matmul on `device` in `dtype` (best of `reps`): the device's compute limit."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    _sync(device)
    best = float("inf")
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


def count_flops(model, pixel_values: torch.Tensor) -> dict:
    """FLOPs of one forward (FlopCounterMode): total and per top-level part (backbone, pixel decoder, decoder)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(pixel_values=pixel_values)
    per_module = counter.get_flop_counts()
    parts = {}
    for label, prefix in (("backbone (Swin)", "pixel_level_module.encoder"),
                          ("pixel decoder", "pixel_level_module.decoder"),
                          ("transformer decoder", "transformer_module")):
        key = next((k for k in per_module if k.partition(".")[2] == "model." + prefix), None)
        if key is not None:
            parts[label] = int(sum(per_module[key].values()))
    return {"total": int(counter.get_total_flops()), "parts": parts}


def measure_mask2former_stage(frame: np.ndarray, *, tiny: bool, random_weights: bool, device, dtype="auto",
                              reps: int = 3, warmup: int = 1, model_id: str | None = None,
                              sam_image_ms: float | None = None, first_expression_ms: float | None = None,
                              peak_flops: float | None = None) -> dict:
    """Time the Mask2Former proposal stage on `frame` (see the module docstring); returns a JSON-able dict.

    Args:
        frame: (H, W, 3) uint8 RGB, the bench frame.
        tiny: use the tiny random model (the tiny-random profile). random_weights: the full-size published
            architecture with random weights; else the real checkpoint (`model_id`, default the paper's).
        sam_image_ms, first_expression_ms: the same run's SAM image stage and first expression, for ratios.
        peak_flops: the device's matmul peak in FLOP/s; measured here when None.
    """
    from ..grounding.mask2former_proposals import Mask2FormerProposer
    from ..models.mask2former import (
        DEFAULT_MASK2FORMER,
        TINY_MASK2FORMER,
        build_random_mask2former,
        load_mask2former,
    )
    from ..models.mask2former_preprocess import binarise, query_mask_logits, selection_size

    try:
        if tiny:
            m2f = load_mask2former(TINY_MASK2FORMER, device=device, dtype=dtype)
        elif random_weights:
            m2f = build_random_mask2former(device=device, dtype=dtype)
        else:
            m2f = load_mask2former(model_id or DEFAULT_MASK2FORMER, device=device, dtype=dtype)
    except Exception as exc:  # noqa: BLE001 - missing weights or memory: reported, the bench goes on
        return {"status": "not measured", "reason": f"{type(exc).__name__}: {exc}"}
    dev = m2f.device
    prop = Mask2FormerProposer(m2f)
    rows: dict[str, list[float]] = {}
    flops = None
    for rep in range(max(0, warmup) + max(1, reps)):
        _sync(dev)
        t0 = time.perf_counter()
        fr = m2f.input.image_to_pixels(frame)
        pv = fr.pixel_values.to(dev, m2f.dtype)
        _sync(dev)
        t1 = time.perf_counter()
        if flops is None and rep < warmup:  # the warm-up pass is the counted one
            flops = count_flops(m2f.model, pv)
            continue
        with torch.inference_mode():
            out = m2f.model(pixel_values=pv)
        _sync(dev)
        t2 = time.perf_counter()
        logits = out.masks_queries_logits[0].float().cpu()
        grid = selection_size(fr.original_size, prop.max_selection_pixels)
        masks = torch.empty((logits.shape[0], *grid), dtype=torch.bool)
        for i in range(0, logits.shape[0], prop.chunk):
            masks[i:i + prop.chunk] = binarise(query_mask_logits(logits[i:i + prop.chunk], fr, grid))
        t3 = time.perf_counter()
        if rep < warmup:
            continue
        rows.setdefault("mask2former: preprocess (resize, normalise, pad)", []).append(t1 - t0)
        rows.setdefault("mask2former: model forward (backbone + pixel/mask decoders)", []).append(t2 - t1)
        rows.setdefault("mask2former: all query masks to the image size (sigmoid > 0.35)", []).append(t3 - t2)
        rows.setdefault("mask2former: stage total (one new frame)", []).append(t3 - t0)
    if flops is None:
        fr = m2f.input.image_to_pixels(frame)
        flops = count_flops(m2f.model, fr.pixel_values.to(dev, m2f.dtype))
    timings = {k: _stats(v) for k, v in rows.items()}
    model_s = timings["mask2former: model forward (backbone + pixel/mask decoders)"]["median_ms"] / 1000
    stage_ms = timings["mask2former: stage total (one new frame)"]["median_ms"]
    peak = float(peak_flops) if peak_flops else matmul_peak_flops(dev, m2f.dtype)
    limit_ms = 1000 * flops["total"] / peak
    res = {
        "status": "measured", "model": m2f.model_id, "dtype": dtype_name(m2f.dtype),
        "device": str(dev), "queries": m2f.num_queries, "image": [int(frame.shape[1]), int(frame.shape[0])],
        "model_input": [fr.padded_size[1], fr.padded_size[0]], "resized": [fr.resized_size[1], fr.resized_size[0]],
        "parameters_m": sum(p.numel() for p in m2f.model.parameters()) / 1e6,
        "timings": timings,
        "flops": flops["total"], "flops_by_part": flops["parts"],
        "achieved_gflops_per_s": flops["total"] / model_s / 1e9,
        "matmul_peak_gflops_per_s": peak / 1e9, "peak_measured_here": peak_flops is None,
        "limit_ms": limit_ms, "share_of_limit": limit_ms / (1000 * model_s),
    }
    if sam_image_ms:
        res["sam_image_ms"] = sam_image_ms
        res["over_sam_image"] = stage_ms / sam_image_ms
    if first_expression_ms:
        res["share_of_first_expression"] = stage_ms / first_expression_ms
    return res


def format_rows(res: dict) -> list[str]:
    """Table lines for `benchmark.run.format_table`."""
    if res.get("status") != "measured":
        return [f"mask2former: {str(res.get('status', '?')).upper()}: {res.get('reason', '')}"]
    lines = [f"mask2former | {res['model']} {res['dtype']} | {res['parameters_m']:.1f} M parameters, "
             f"{res['queries']} queries | {res['image'][0]}x{res['image'][1]} -> {res['resized'][0]}x"
             f"{res['resized'][1]}, padded {res['model_input'][0]}x{res['model_input'][1]}"]
    for k, v in res["timings"].items():
        lines.append(f"{k:58s} {v['median_ms']:9.1f}ms {v['min_ms']:9.1f}ms {v['max_ms']:9.1f}ms")
    lines.append(f"{'mask2former: model FLOPs (FlopCounterMode)':58s} {res['flops'] / 1e9:9.1f} GFLOP")
    for k, v in res["flops_by_part"].items():
        lines.append(f"{'  ' + k:58s} {v / 1e9:9.1f} GFLOP")
    lines.append(f"{'mask2former: achieved / matmul peak':58s} {res['achieved_gflops_per_s']:9.1f} / "
                 f"{res['matmul_peak_gflops_per_s']:.1f} GFLOP/s")
    lines.append(f"{'mask2former: compute limit (FLOPs / peak)':58s} {res['limit_ms']:9.1f}ms")
    lines.append(f"ratio {'mask2former share_of_limit (limit / model forward)':52s} {res['share_of_limit']:9.3f}")
    if "over_sam_image" in res:
        lines.append(f"ratio {'mask2former stage / SAM image stage (same run)':52s} {res['over_sam_image']:9.3f}")
    if "share_of_first_expression" in res:
        lines.append(f"ratio {'mask2former stage / first expression with SAM':52s} "
                     f"{res['share_of_first_expression']:9.3f}")
    return lines
