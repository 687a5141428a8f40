"""Lossless changes, each timed against the path it replaced in the same run, with its numerical difference.

| change | before | after |
| --- | --- | --- |
| `blip_vision_sdpa` | BLIP ViT attention eager (transformers' only path) | SDPA (`models.fast_attention`) |
| `sam_encoder_sdpa` | SAM ViT attention eager (materialised scores + rel-pos bias) | transformers' SDPA class |
| `sam_rel_pos_workspace` | transformers' SDPA class: a new rel-pos bias tensor per layer | the bias written into one buffer per encoder pass (`models.fast_attention`) |
| `tracker_memory_attention_sdpa` | SAM 2.1 memory attention eager | SDPA (transformers' default) |
| `image_kv_at_set_image` | cross-attention K/V of the image tokens computed in the first IGRS round | computed once in `set_image` (`gradcam.BlipGradCAM.encode_image`) |
| `onnxruntime_sam_encoder` | SAM's encoder in torch (the run's dtype) | the cached ONNX export in ONNX Runtime (fp32; opt-in, `models.onnx_encoder`) |
| `onnxruntime_tracker_encoder` | SAM 2.1's image features in torch (the tracker's dtype) | the same through ONNX Runtime (fp32; opt-in) |

Each entry: both timings (median of `reps`), speed-up, and the largest absolute difference of the
outputs (same inputs, same weights). The tests check the same differences on the tiny models
(tests/benchmark/test_lossless.py).
"""
from __future__ import annotations

import statistics
import time

import torch


def _time(fn, reps: int, device: torch.device) -> tuple[float, object]:
    out = None
    ts = []
    for _ in range(max(1, reps)):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), out


def _entry(before_s: float, after_s: float, diff: float, **extra) -> dict:
    return dict(before_ms=1000 * before_s, after_ms=1000 * after_s,
                speedup=before_s / after_s if after_s > 0 else None, max_abs_diff=float(diff), **extra)


def blip_vision_sdpa(blip, pixel_values: torch.Tensor, reps: int = 3) -> dict:
    from ..models.fast_attention import restore_eager, use_sdpa_for_blip_vision

    vis = blip.vision_model
    dev = pixel_values.device
    pv = pixel_values.to(next(vis.parameters()).dtype)
    with torch.inference_mode():
        restore_eager(blip)
        try:
            before, a = _time(lambda: vis(pixel_values=pv).last_hidden_state, reps, dev)
        finally:
            use_sdpa_for_blip_vision(blip)
        after, b = _time(lambda: vis(pixel_values=pv).last_hidden_state, reps, dev)
    return _entry(before, after, (a.float() - b.float()).abs().max(), output_max_abs=float(a.float().abs().max()))


def sam_encoder_sdpa(sam, pixel_values: torch.Tensor, reps: int = 1) -> dict:
    """SAM's encoder with its attention modules' class switched to eager and back (same parameters)."""
    from transformers.models.sam.modeling_sam import SamVisionAttention, SamVisionSdpaAttention

    from ..models.fast_attention import restore_sam_rel_pos, sam_uses_rel_pos_workspace, use_sam_rel_pos_workspace

    layers = sam.vision_encoder.layers
    if not all(type(layer.attn) is SamVisionSdpaAttention for layer in layers):
        return {"status": "not applicable: the encoder does not run transformers' SDPA class"}
    dev = pixel_values.device
    pv = pixel_values.to(next(sam.vision_encoder.parameters()).dtype)
    swapped = sam_uses_rel_pos_workspace(sam)
    restore_sam_rel_pos(sam)  # transformers' eager class against transformers' SDPA class
    try:
        with torch.inference_mode():
            for layer in layers:
                layer.attn.__class__ = SamVisionAttention
            try:
                before, a = _time(lambda: sam.get_image_embeddings(pv), reps, dev)
            finally:
                for layer in layers:
                    layer.attn.__class__ = SamVisionSdpaAttention
            after, b = _time(lambda: sam.get_image_embeddings(pv), reps, dev)
    finally:
        if swapped:
            use_sam_rel_pos_workspace(sam)
    return _entry(before, after, (a.float() - b.float()).abs().max(), output_max_abs=float(a.float().abs().max()))


def sam_rel_pos_workspace(sam, pixel_values: torch.Tensor, reps: int = 1) -> dict:
    """SAM's encoder with transformers' SDPA forward (a new bias tensor per layer) against the workspace
    forward (`models.fast_attention.use_sam_rel_pos_workspace`): same parameters, same input."""
    from ..models.fast_attention import restore_sam_rel_pos, sam_uses_rel_pos_workspace, use_sam_rel_pos_workspace

    swapped = sam_uses_rel_pos_workspace(sam)
    dev = pixel_values.device
    pv = pixel_values.to(next(sam.vision_encoder.parameters()).dtype)
    restore_sam_rel_pos(sam)
    try:
        with torch.inference_mode():
            before, a = _time(lambda: sam.get_image_embeddings(pv), reps, dev)
            if not use_sam_rel_pos_workspace(sam):
                return {"status": "not applicable: the encoder does not run transformers' SDPA class"}
            after, b = _time(lambda: sam.get_image_embeddings(pv), reps, dev)
    finally:
        if not swapped:
            restore_sam_rel_pos(sam)
        elif not sam_uses_rel_pos_workspace(sam):
            use_sam_rel_pos_workspace(sam)
    return _entry(before, after, (a.float() - b.float()).abs().max(), output_max_abs=float(a.float().abs().max()),
                  identical=bool(torch.equal(a, b)))


def tracker_memory_attention_sdpa(model, memories: int, reps: int = 1) -> dict:
    """One memory-attention call at the model's published shapes (S/16 x S/16 image tokens, `memories`
    spatial memories + 4 x `max_object_pointers` pointer tokens), eager against SDPA."""
    cfg = model.config
    h, w = cfg.memory_attention_rope_feat_sizes
    n = h * w
    mem_dim = model.mem_dim
    hidden = cfg.memory_attention_hidden_size
    ptr = cfg.max_object_pointers_in_encoder * (hidden // mem_dim)
    dev = next(model.parameters()).device
    dt = next(model.memory_attention.parameters()).dtype
    g = torch.Generator(device="cpu").manual_seed(0)
    cur = torch.randn(n, 1, hidden, generator=g).to(dev, dt)
    pos = torch.randn(n, 1, hidden, generator=g).to(dev, dt)
    mem = torch.randn(memories * n + ptr, 1, mem_dim, generator=g).to(dev, dt)
    mpos = torch.randn(memories * n + ptr, 1, mem_dim, generator=g).to(dev, dt)
    impl = cfg._attn_implementation

    def call():
        return model.memory_attention(cur, mem, pos, mpos, num_object_pointer_tokens=ptr)

    with torch.inference_mode():
        cfg._attn_implementation = "eager"
        try:
            before, a = _time(call, reps, dev)
        finally:
            cfg._attn_implementation = impl
        after, b = _time(call, reps, dev)
    return _entry(before, after, (a.float() - b.float()).abs().max(), implementation=impl,
                  shapes={"image_tokens": n, "memories": memories, "pointer_tokens": ptr})


def image_kv_at_set_image(gradcam, pixel_values, input_ids, attention_mask) -> dict:
    """Grad-CAM of the first round with the image K/V precomputed (now) against computed lazily in the
    round (before): identical numbers; the first round's time drops by the projection's cost."""
    dev = pixel_values.device
    emb = gradcam.encode_image(pixel_values)  # precomputes the K/V
    after, a = _time(lambda: gradcam(emb, input_ids, attention_mask), 1, dev)

    def lazy():
        gradcam.reset_image_cache()
        return gradcam(emb, input_ids, attention_mask)

    before, b = _time(lazy, 1, dev)
    gradcam.reset_image_cache()
    diff = max(float((a.attn - b.attn).abs().max()), float((a.grad - b.grad).abs().max()))
    return _entry(before, after, diff, note="first IGRS round only; the projection moved to set_image")


def onnxruntime_sam_encoder(sam, model_id: str, pixel_values: torch.Tensor, reps: int = 1) -> dict:
    """SAM's image encoder in torch (the run's dtype) against the cached ONNX Runtime export (fp32):
    both timed, max |diff| against the torch path (absolute and relative to max |torch|), and whether the
    export is within `onnx_encoder.TOLERANCE` of a fp32 torch run (the "same outputs" rule)."""
    from ..models import onnx_encoder as ox

    if not ox.available():
        return {"status": "not measurable here: onnxruntime is not installed (pip install onnxruntime onnx)"}
    if pixel_values.device.type != "cpu":
        return {"status": "not measured: the ONNX Runtime path is for CPUs here (TensorRT route: docs/performance.md)"}
    t0 = time.perf_counter()
    enc = ox.ort_sam_encoder(sam, model_id)
    prepare = time.perf_counter() - t0
    dev = pixel_values.device
    pv = pixel_values.to(next(sam.vision_encoder.parameters()).dtype)
    with torch.inference_mode():
        before, a = _time(lambda: type(sam).get_image_embeddings(sam, pv), reps, dev)
    after, b = _time(lambda: enc(pixel_values.float()), reps, dev)
    if next(sam.vision_encoder.parameters()).dtype == torch.float32:
        same = ox.check_same_outputs(sam, enc, pixel_values)
    else:  # the rule is against fp32 torch: a fp32 copy of the encoder (the export is fp32 too)
        import copy

        same = ox.check_same_outputs(copy.deepcopy(sam).float(), enc, pixel_values)
    scale = float(a.float().abs().max()) or 1.0
    diff = float((a.float() - b.float()).abs().max())
    return _entry(before, after, diff, relative_diff=diff / scale, export_or_load_s=prepare, onnx=str(enc.path),
                  torch_dtype=str(pv.dtype).replace("torch.", ""), fp32_check=same, tolerance=ox.TOLERANCE)


def onnxruntime_tracker_encoder(tracker, reps: int = 1) -> dict:
    """The tracker's per-frame image features in torch (its dtype) against the cached ONNX Runtime export
    (fp32), on one random frame: both timed, the largest relative difference of the feature maps."""
    import copy

    from ..models import onnx_encoder as ox

    if not ox.available():
        return {"status": "not measurable here: onnxruntime is not installed (pip install onnxruntime onnx)"}
    if tracker.device.type != "cpu":
        return {"status": "not measured: the ONNX Runtime path is for CPUs here (TensorRT route: docs/performance.md)"}
    t0 = time.perf_counter()
    enc = ox.ort_sam2_features(tracker)
    prepare = time.perf_counter() - t0
    m = tracker.model
    s = int(tracker.geometry.size)
    pv = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        before, a = _time(lambda: type(m).get_image_features(m, pv.to(tracker.dtype), return_dict=True), reps,
                          tracker.device)
    after, b = _time(lambda: enc(pv), reps, tracker.device)
    diff = max(float((x.float() - y.float()).abs().max()) for x, y in zip(a.fpn_hidden_states, b.fpn_hidden_states))
    scale = max(float(x.float().abs().max()) for x in a.fpn_hidden_states) or 1.0
    ref = m if tracker.dtype == torch.float32 else copy.deepcopy(m).float()
    same = ox.check_same_features(ref, enc, pv)
    return _entry(before, after, diff, relative_diff=diff / scale, export_or_load_s=prepare, onnx=str(enc.path),
                  torch_dtype=str(tracker.dtype).replace("torch.", ""), fp32_check=same, tolerance=ox.TOLERANCE)
