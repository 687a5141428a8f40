"""`ros2_iterprime bench`: where the time goes, measured as ratios within one run.

Builds the FULL-SIZE default architectures (BLIP ITM base: ViT-B/16 at 384 px + BERT-base text encoder;
SAM ViT-B at 1024 px) with random weights (`--random-weights`) or loads the real weights when present,
and times on one synthetic 640x480 frame, T=3:
- each stage of the pipeline (from the predictor's own timers);
- the first expression on a new frame (set_image + segment) and a second expression on the same frame;
- the model-compute floor: the unavoidable model passes timed in isolation (BLIP vision pass, T text
  passes + backward, SAM image encoder, SAM prompt decoding) and pipeline / floor;
- the official code's structure (vision pass recomputed in every IGRS round, as VoyageWang/IteRPrimE
  `visualize_groundvlp` does) in the same run, and our speed-up for the Grad-CAM stage and end to end;
- peak memory (CPU max RSS, GPU max allocated);
- tracking (issue #10; `--tracker NAME`, default the SAM 2.1 hiera-tiny architecture, `none` to skip):
  `ReferringTracker.start` on frame 0 of a synthetic 640x480 stream with a moving red block, then
  `update` on N frames. Per-frame tracking cost = median `update` time over the frames whose memory
  bank is full (frame index >= num_maskmem: the prompt frame + num_maskmem - 1 past memories), split
  into the tracker's image encoder, memory attention and the rest (forward hooks on the model's
  modules); its ratio to a full grounding (the first expression on a new frame, measured above in the
  same run); and the sustained frame rate of the loop (frames / wall time). With `--random-weights`
  the tracker is the published architecture with random weights (`tracking.build_random_tracker`);
  EdgeTAM needs timm (+ torchvision): where it cannot be built the output says "not measurable here".
  Random-weight groundings rarely pass the selection (`found`), and a not-found grounding would leave
  nothing to track, so then the block's own mask seeds the tracker (said in the output): the cost of
  a tracker step does not depend on what it follows.
- Mask2Former (`--mask2former`, the paper's proposal network, `mask2former_stage`): its stage on the
  same frame in the same run, with FLOPs (FlopCounterMode) and its share of the device's compute limit.
Absolute times depend on the machine; compare the ratios. `--model tiny-random` runs the same code on
the tiny configs (CI smoke run; the tracker is then `tiny-random`).
"""
from __future__ import annotations

import os
import platform
import resource
import statistics
import time

import numpy as np
import torch

EXPRESSIONS = ("the red cup behind the laptop", "the man on the left holding a bike")
TRACK_EXPRESSION = "the red block"
DEFAULT_TRACKER = "sam2.1-hiera-tiny"
#: tracker modules timed per frame (forward hooks); the rest of the model step is reported as 'rest'
TRACK_MODULES = (("vision_encoder", "image encoder"), ("memory_attention", "memory attention"),
                 ("memory_encoder", "memory encoder"), ("mask_decoder", "mask decoder"),
                 ("spatial_perceiver", "memory perceiver (EdgeTAM)"))

TARGETS_CPU = {"pipeline_over_floor": ("<=", 1.15), "gradcam_speedup": (">=", 2.5),
               "second_over_first": ("<=", 0.15)}
TARGETS_GPU = {"e2e_first_ms": ("<=", 60.0), "e2e_second_ms": ("<=", 25.0)}


def synthetic_frame(width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    """A deterministic RGB test frame with a few coloured blocks on a noisy background."""
    rng = np.random.default_rng(seed)
    img = rng.integers(60, 120, (height, width, 3), dtype=np.uint8)
    img[height // 4: height // 2, width // 5: width // 2] = (200, 30, 30)
    img[height // 2:, width // 2: 4 * width // 5] = (40, 60, 190)
    return img


def build_full_size_random(seed: int = 0, device="cpu", dtype=torch.float32):
    """Default architectures (BLIP ITM base, SAM ViT-B) with random weights; no files needed."""
    from transformers import BlipForImageTextRetrieval, BlipImageProcessorPil, SamImageProcessorPil, SamModel

    from ..models.loading import LoadedModels
    from ..models.published import (
        BLIP_ITM_BASE_COCO_PREPROCESSOR,
        SAM_VIT_BASE_PREPROCESSOR,
        blip_itm_base_config,
        sam_vit_base_config,
    )
    from ..models.tiny import build_bert_layout_tokenizer

    torch.manual_seed(seed)
    # the published configs: BLIP ITM base (ViT-B/16 at 384 px, BERT-base text with 12 heads, not
    # BlipConfig()'s 8; vision initializer_range 0.02 gives trained-like activations) and SAM ViT-B
    bcfg = blip_itm_base_config()
    bcfg._attn_implementation = "eager"
    blip = BlipForImageTextRetrieval(bcfg)
    sam = SamModel(sam_vit_base_config())
    # The real 30k WordPiece vocab needs the weights repo; this one has its layout (30522 entries, so
    # [ENC] = 30523 as in the checkpoint) and tokenises the benchmark expressions into whole words, so
    # the text length (and cost) matches the real tokenizer's.
    tok = build_bert_layout_tokenizer()
    for m in (blip, sam):
        m.eval().requires_grad_(False).to(device=device, dtype=dtype)
    blip_proc = BlipImageProcessorPil(**{k: v for k, v in BLIP_ITM_BASE_COCO_PREPROCESSOR.items()
                                         if k not in ("image_processor_type", "processor_class")})
    sam_proc = SamImageProcessorPil(**{k: v for k, v in SAM_VIT_BASE_PREPROCESSOR.items()
                                       if k not in ("image_processor_type", "processor_class")})
    return LoadedModels(blip, blip_proc, tok, sam, sam_proc,
                        "random:blip-itm-base", "random:sam-vit-base", torch.device(device), dtype)


def stream_frame(i: int, width: int = 640, height: int = 480) -> np.ndarray:
    """Frame i of the synthetic tracking stream: noisy background, a red block moving 8 px per frame."""
    rng = np.random.default_rng(1000 + i)
    img = rng.integers(60, 120, (height, width, 3), dtype=np.uint8)
    y0, x0, side = height // 3, (width // 8 + 8 * i) % max(1, width - height // 4), height // 4
    img[y0:y0 + side, x0:x0 + side] = (210, 30, 30)
    return img


def block_mask(rgb: np.ndarray) -> np.ndarray:
    """(H, W) bool: the red block of a `stream_frame`."""
    return (rgb[..., 0] > 180) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)


class _SeedingSegmenter:
    """The benchmark's grounding for the track loop: the real segmenter (its full cost is paid); when its
    result is not ``found`` (random weights), the block's mask is returned as found so the tracker has
    something to follow. Counts how often that happened."""

    def __init__(self, segmenter):
        self.segmenter = segmenter
        self.sam = segmenter.sam
        self.replaced = 0
        self.calls = 0
        self._rgb = None

    def set_image(self, rgb):
        self._rgb = np.asarray(rgb)
        self.segmenter.set_image(rgb)

    def segment(self, expression, **overrides):
        import dataclasses

        res = self.segmenter.segment(expression, **overrides)
        self.calls += 1
        if not (res.found and res.mask.any()):
            self.replaced += 1
            res = dataclasses.replace(res, mask=block_mask(self._rgb), found=True)
        return res


class _ModuleTimers:
    """Seconds spent in named submodules of a model (forward pre/post hooks), accumulated until `reset`."""

    def __init__(self, model, names, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = {}
        self._start: dict[str, float] = {}
        self._handles = []
        for name in names:
            module = getattr(model, name, None)
            if module is None:
                continue
            self.seconds[name] = 0.0
            self._handles.append(module.register_forward_pre_hook(self._pre(name)))
            self._handles.append(module.register_forward_hook(self._post(name)))

    def _pre(self, name):
        def hook(*_):
            _sync(self.device)
            self._start[name] = time.perf_counter()
        return hook

    def _post(self, name):
        def hook(*_):
            _sync(self.device)
            self.seconds[name] += time.perf_counter() - self._start.pop(name)
        return hook

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.seconds, 0.0)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def bench_tracker(name: str, *, tiny: bool, random_weights: bool, device, dtype: str = "auto"):
    """(TrackerModel or None, status) for `--tracker NAME`.

    tiny: the tiny in-process tracker of the same family (CI). random_weights: the published
    architecture with random weights. Otherwise the real checkpoint (a published short name, a hub id or
    a local directory). status: 'measured' or why not ('not measurable here' when the model cannot be
    built on this machine, e.g. EdgeTAM without timm; 'not available' when its weights are missing).
    """
    from ..errors import ModelNotFoundError
    from ..models.trackers import PUBLISHED, build_random_tracker, load_tracker

    key = name.split("/")[-1]
    try:
        if tiny:
            return load_tracker("tiny-random-edgetam" if "edgetam" in key.lower() else "tiny-random",
                                device=device), {"status": "measured"}
        if random_weights:
            if key not in PUBLISHED:
                raise ValueError(f"--random-weights builds published trackers only: {sorted(PUBLISHED)}")
            return build_random_tracker(key, device=device, dtype=dtype), {"status": "measured"}
        return load_tracker(PUBLISHED[key][1] if key in PUBLISHED else name, device=device, dtype=dtype), \
            {"status": "measured"}
    except ImportError as exc:
        return None, {"status": "not measurable here", "reason": " ".join(str(exc).split())}
    except ModelNotFoundError as exc:
        return None, {"status": "not available", "reason": " ".join(str(exc).split())}


def measure_tracking(segmenter, tracker_model, *, grounding_s: float, width: int = 640, height: int = 480,
                     reps: int = 5, frames: int | None = None) -> dict:
    """Time the track loop: `start` on frame 0, then `update` on `frames` frames (see the module docstring).

    Args:
        grounding_s: the run's full-grounding time (first expression on a new frame), for the ratio.
        frames: tracked frames; default num_maskmem - 1 + reps, so `reps` frames have a full memory bank.
    Returns the JSON section of one tracker.
    """
    from ..tracking import ReferringTracker, RegroundPolicy

    tm = tracker_model
    dev = tm.device
    n = int(frames) if frames else tm.num_maskmem - 1 + max(1, reps)
    stream = [stream_frame(i, width, height) for i in range(n + 1)]
    seeding = _SeedingSegmenter(segmenter)
    # no re-grounding inside the loop: the loop measures tracking (lost frames are still tracked)
    policy = RegroundPolicy(lost_threshold=-1e30, lost_frames=10**9, reground_period=0)
    tracker = ReferringTracker(seeding, tm, policy)
    timers = _ModuleTimers(tm.model, [m for m, _ in TRACK_MODULES], dev)
    rows: dict[str, list[float]] = {}
    sources: dict[str, int] = {}
    try:
        _sync(dev)
        t0 = time.perf_counter()
        first = tracker.start(stream[0], TRACK_EXPRESSION)
        _sync(dev)
        start_s = time.perf_counter() - t0
        if not tracker.has_track:
            raise RuntimeError("the track loop's grounding did not seed the tracker")
        walls = []
        for i in range(1, n + 1):
            timers.reset()
            _sync(dev)
            t = time.perf_counter()
            r = tracker.update(stream[i])
            _sync(dev)
            wall = time.perf_counter() - t
            walls.append(wall)
            sources[r.source] = sources.get(r.source, 0) + 1
            if i < tm.num_maskmem and n >= tm.num_maskmem:
                continue  # memory bank still filling: counted in the frame rate, not in the per-frame cost
            sec = timers.seconds
            model = r.timings.get("model", 0.0)
            rows.setdefault("track: update() per frame", []).append(wall)
            rows.setdefault("track: model step (all modules)", []).append(model)
            for module, label in TRACK_MODULES:
                if module in sec:
                    rows.setdefault(f"track: {label}", []).append(sec[module])
            rows.setdefault("track: rest of the model step (prompt/pointer/bookkeeping)", []).append(
                max(0.0, model - sum(sec.values())))
            rows.setdefault("track: preprocess + postprocess + memory pruning", []).append(
                sum(r.timings.get(k, 0.0) for k in ("preprocess", "postprocess", "prune")))
    finally:
        timers.remove()
        tracker.close()
    full = n >= tm.num_maskmem
    per_frame = statistics.median(rows["track: update() per frame"])
    tail = walls[tm.num_maskmem - 1:] if full else walls
    return {
        "status": "measured",
        "model": tm.model_id, "family": tm.family, "dtype": str(tm.dtype).replace("torch.", ""),
        "image_size": int(tm.geometry.size), "num_maskmem": tm.num_maskmem,
        "max_object_pointers": tm.max_object_pointers,
        "params_m": sum(p.numel() for p in tm.model.parameters()) / 1e6,
        "stream": [width, height], "frames": n, "memory_full_frames": len(rows["track: update() per frame"]),
        "memory_full": full, "expression": TRACK_EXPRESSION,
        "seed": "grounding" if seeding.replaced == 0 else "block mask (the grounding was not found)",
        "sources": sources, "start_ms": 1000 * start_s, "start_source": first.source,
        "timings": {k: _stats(v) for k, v in rows.items()},
        "per_frame_ms": 1000 * per_frame,
        "track_over_grounding": per_frame / grounding_s,
        "frames_per_grounding_time": grounding_s / per_frame,
        "sustained_fps": len(tail) / sum(tail),
        "fps_all_frames": len(walls) / sum(walls),
    }


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # not available on this platform
        return None


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stats(xs: list[float]) -> dict:
    return {"median_ms": 1000 * statistics.median(xs), "min_ms": 1000 * min(xs), "max_ms": 1000 * max(xs),
            "n": len(xs)}


def run_bench(model: str = "default", random_weights: bool = False, device: str = "auto", dtype: str = "auto",
              iterations: int = 3, proposals: str = "cam_points", width: int = 640, height: int = 480,
              reps: int = 5, warmup: int = 1, threads: int | None = None, early_stop: bool = False,
              trackers: tuple[str, ...] | list[str] = (DEFAULT_TRACKER,), track_frames: int | None = None,
              mask2former: bool = False) -> dict:
    from ..grounding.gradcam import to_patch_grid
    from ..grounding.pwem import fuse
    from ..grounding.refinement import RoundOutput, normalise, refine
    from ..grounding.segmenter import ReferringSegmenter, SegmenterConfig
    from ..models.loading import TINY, load_models, resolve_device, resolve_dtype, resolve_profile

    if threads:
        torch.set_num_threads(threads)
    load_start = _load_average()
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    vlm, sam_id = resolve_profile(model)
    if random_weights and vlm != TINY:
        models = build_full_size_random(device=dev, dtype=dt)
    else:
        models = load_models(vlm, sam_id, device=dev, dtype=dt)
    # early_stop=False: both structures run exactly T rounds (with random weights the stop rule would
    # end IGRS at an arbitrary round and the comparison would measure luck, not structure).
    cfg = SegmenterConfig(iterations=iterations, early_stop=early_stop, proposals=proposals,
                          pred_iou_thresh=0.0, stability_thresh=0.0)
    seg = ReferringSegmenter(models, cfg)
    frame = synthetic_frame(width, height)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    rows: dict[str, list[float]] = {}

    def add(name, seconds):
        rows.setdefault(name, []).append(seconds)

    gc = seg.gradcam
    for rep in range(warmup + reps):
        keep = rep >= warmup
        # --- pipeline: first expression on a new frame, then a second expression on the same frame
        seg.reset_image()
        _sync(dev)
        t0 = time.perf_counter()
        seg.set_image(frame)
        r1 = seg.segment(EXPRESSIONS[0])
        _sync(dev)
        t1 = time.perf_counter()
        r2 = seg.segment(EXPRESSIONS[1])
        _sync(dev)
        t2 = time.perf_counter()
        # --- the model-compute floor: each unavoidable model pass alone
        state = seg._image
        enc = models.tokenizer(seg.config.prompt_template.format(EXPRESSIONS[0]), return_tensors="pt")
        ids, am = enc["input_ids"].to(dev), enc["attention_mask"].to(dev)
        pv = models.blip_processor(images=frame, return_tensors="pt",
                                   input_data_format="channels_last")["pixel_values"].to(dev, dt)
        _sync(dev)
        f0 = time.perf_counter()
        emb = gc.encode_image(pv)
        _sync(dev)
        f1 = time.perf_counter()
        for _ in range(len(r1.match_probs)):  # as many text passes as the pipeline ran
            gc(emb, ids, am)
        _sync(dev)
        f2 = time.perf_counter()
        sam_pv = models.sam_processor(images=frame, return_tensors="pt",
                                      input_data_format="channels_last")["pixel_values"].to(dev, dt)
        _sync(dev)
        f3 = time.perf_counter()
        with torch.inference_mode():
            models.sam.get_image_embeddings(sam_pv)
        _sync(dev)
        f4 = time.perf_counter()
        seg.sam.from_peaks(state.sam, [(10, 10)] * seg.config.num_points, seg.config.multimask)
        _sync(dev)
        f5 = time.perf_counter()
        # --- the official structure: the vision pass recomputed in every IGRS round
        parsed = seg.parser.parse(EXPRESSIONS[0])
        from ..grounding.primary_word import select_pieces

        offs = [tuple(int(v) for v in o) for o in models.tokenizer(
            seg.config.prompt_template.format(EXPRESSIONS[0]), return_offsets_mapping=True)["offset_mapping"]]
        pieces = select_pieces(parsed, offs, seg.config.prompt_template.index("{}"))

        def official_round(keep_mask):
            e = gc.encode_image(pv)  # recomputed each round (and the image K/V with it)
            out = gc(e, ids, am, keep_mask)
            fused = fuse(out.attn, out.grad, pieces.kept, pieces.primary, pieces.context_words, cfg.pwem_mode,
                         pieces.prompt_pieces)
            return RoundOutput(normalise(to_patch_grid(fused)), out.match_prob)

        grid = int(round((emb.shape[1] - 1) ** 0.5))
        _sync(dev)
        o0 = time.perf_counter()
        refine(official_round, grid, cfg.iterations, cfg.alpha, early_stop=cfg.early_stop)
        _sync(dev)
        o1 = time.perf_counter()
        if not keep:
            continue
        it = seg.image_timings
        add("stage: BLIP preprocess (resize+normalise)", it["blip_preprocess"])
        add("stage: BLIP vision pass", it["vision"])
        add("stage: SAM preprocess + image encoder", it["sam_image"])
        add("stage: text prep (tokenise + parse)", r1.timings["text_prep"])
        add("stage: Grad-CAM rounds (text pass + backward, all rounds)", r1.timings["gradcam"])
        add("stage: text pass + backward, per round", r1.timings["gradcam"] / max(1, len(r1.match_probs)))
        add("stage: SAM prompt decoding", r1.timings["proposals"])
        add("stage: selection", r1.timings["selection"])
        add("stage: post-processing (upsample, bbox, heatmap)", r1.timings["postprocess"])
        add("e2e: first expression on a new frame", t1 - t0)
        add("e2e: second expression, same frame", t2 - t1)
        add("floor: BLIP vision pass", f1 - f0)
        add("floor: text passes + backward (all rounds)", f2 - f1)
        add("floor: SAM image encoder", f4 - f3)
        add("floor: SAM prompt decoding", f5 - f4)
        add("official: Grad-CAM stage (vision recomputed per round)", o1 - o0)
        add("ours: Grad-CAM stage (vision once + rounds)", it["vision"] + r1.timings["gradcam"])
        rows.setdefault("_rounds", []).append(len(r1.match_probs))
        rows.setdefault("_second_rounds", []).append(len(r2.match_probs))

    med = {k: statistics.median(v) for k, v in rows.items()}
    floor = (med["floor: BLIP vision pass"] + med["floor: text passes + backward (all rounds)"]
             + med["floor: SAM image encoder"] + med["floor: SAM prompt decoding"])
    first, second = med["e2e: first expression on a new frame"], med["e2e: second expression, same frame"]
    ours_gc = med["ours: Grad-CAM stage (vision once + rounds)"]
    off_gc = med["official: Grad-CAM stage (vision recomputed per round)"]
    off_e2e = first - ours_gc + off_gc
    ratios = {
        "pipeline_over_floor": first / floor,
        "gradcam_speedup": off_gc / ours_gc,
        "e2e_speedup": off_e2e / first,
        "second_over_first": second / first,
    }
    mem = {"cpu_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if dev.type == "cuda":
        mem["gpu_max_allocated_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    # --- tracking, after the grounding rows (same run, same models)
    tracking: dict[str, dict] = {}
    for name in [t for t in trackers if t and t.lower() != "none"]:
        tm, status = bench_tracker(name, tiny=vlm == TINY, random_weights=random_weights, device=dev, dtype=dtype)
        if tm is None:
            tracking[name] = status
            continue
        tracking[name] = measure_tracking(seg, tm, grounding_s=first, width=width, height=height, reps=reps,
                                          frames=track_frames)
        del tm
    if tracking:  # the grounding figures above stay comparable with runs without a tracker
        mem["cpu_peak_rss_mb_with_tracking"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        if dev.type == "cuda":
            mem["gpu_max_allocated_mb_with_tracking"] = torch.cuda.max_memory_allocated(dev) / 2**20
    targets = TARGETS_GPU if dev.type == "cuda" else TARGETS_CPU
    values = dict(ratios, e2e_first_ms=1000 * first, e2e_second_ms=1000 * second)
    checks = {k: {"value": values[k], "target": f"{op} {v}", "met": (values[k] <= v) if op == "<=" else (values[k] >= v)}
              for k, (op, v) in targets.items()}
    res = {
        "settings": {
            "model": model, "vlm": models.vlm_id, "sam": models.sam_id, "random_weights": bool(random_weights),
            "device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine(),
            "dtype": str(dt).replace("torch.", ""), "iterations": iterations, "proposals": proposals,
            "image": [width, height], "reps": reps, "warmup": warmup, "threads": torch.get_num_threads(),
            "early_stop": early_stop, "rounds_run": rows["_rounds"], "text_tokens": int(ids.shape[1]),
            "torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
            # 1/5/15-min load averages of the machine: other jobs on a shared machine slow every figure
            "load_average_start": load_start, "load_average_end": _load_average(),
        },
        "timings": {k: _stats(v) for k, v in rows.items() if not k.startswith("_")},
        "floor_ms": 1000 * floor,
        "official_e2e_ms": 1000 * off_e2e,
        "ratios": ratios,
        "memory": mem,
        "targets": checks,
        "tracking": tracking,
    }
    if mask2former:  # the paper's proposal network on the same frame, after everything above
        from .mask2former_stage import measure_mask2former_stage

        res["mask2former"] = measure_mask2former_stage(
            frame, tiny=vlm == TINY, random_weights=random_weights, device=dev, dtype=dtype, reps=reps,
            warmup=warmup, sam_image_ms=1000 * med["stage: SAM preprocess + image encoder"],
            first_expression_ms=1000 * first)
    return res


def format_table(res: dict) -> str:
    s = res["settings"]
    lines = [f"ros2_iterprime bench | {s['vlm']} + {s['sam']} | {s['device']} ({s['device_name']}) {s['dtype']} | "
             f"{s['image'][0]}x{s['image'][1]} T={s['iterations']} {s['proposals']} | {s['threads']} threads | "
             f"{s['reps']} reps | IGRS stop rule {'on' if s['early_stop'] else 'off (exactly T rounds)'} | load average "
             f"{s.get('load_average_start')} -> {s.get('load_average_end')} on {s.get('cpu_count')} CPUs",
             f"{'':58s} {'median':>10s} {'min':>10s} {'max':>10s}"]
    for k, v in res["timings"].items():
        lines.append(f"{k:58s} {v['median_ms']:9.1f}ms {v['min_ms']:9.1f}ms {v['max_ms']:9.1f}ms")
    lines.append(f"{'model-compute floor (sum of floor rows)':58s} {res['floor_ms']:9.1f}ms")
    lines.append(f"{'official structure, end to end (derived)':58s} {res['official_e2e_ms']:9.1f}ms")
    for k, v in res["ratios"].items():
        lines.append(f"ratio {k:52s} {v:9.3f}")
    for k, v in res["memory"].items():
        lines.append(f"memory {k:51s} {v:9.1f}")
    for k, c in res["targets"].items():
        lines.append(f"target {k:30s} {c['value']:9.3f} {c['target']:>10s}  {'MET' if c['met'] else 'NOT MET'}")
    for name, t in res.get("tracking", {}).items():
        if t["status"] != "measured":
            lines.append(f"tracker {name}: {t['status'].upper()}: {t.get('reason', '')}")
            continue
        lines.append(f"tracker {name} | {t['model']} {t['dtype']} {t['image_size']} px | {t['stream'][0]}x"
                     f"{t['stream'][1]} stream, {t['frames']} frames after start(), {t['memory_full_frames']} with a "
                     f"full memory bank ({t['num_maskmem']} memories) | seed: {t['seed']}")
        for k, v in t["timings"].items():
            lines.append(f"{k:58s} {v['median_ms']:9.1f}ms {v['min_ms']:9.1f}ms {v['max_ms']:9.1f}ms")
        lines.append(f"{'track: start() (grounding + seed)':58s} {t['start_ms']:9.1f}ms")
        lines.append(f"ratio {'track_over_grounding (per frame / first expression)':52s} {t['track_over_grounding']:9.3f}")
        lines.append(f"{'track loop: sustained frame rate (full memory bank)':58s} {t['sustained_fps']:9.3f} fps")
        lines.append(f"{'track loop: frame rate over all frames':58s} {t['fps_all_frames']:9.3f} fps")
    if "mask2former" in res:
        from .mask2former_stage import format_rows

        lines += format_rows(res["mask2former"])
    return "\n".join(lines)
