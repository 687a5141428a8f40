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

from .limits import flop_counter, module_flops
from .targets import REFERENCE, comparable, evaluate, load_reference

EXPRESSIONS = ("the red cup behind the laptop", "the man on the left holding a bike")
TRACK_EXPRESSION = "the red block"
DEFAULT_TRACKER = "sam2.1-hiera-tiny"
#: tracker modules timed per frame (forward hooks); the rest of the model step is reported as 'rest'
TRACK_MODULES = (("vision_encoder", "image encoder"), ("memory_attention", "memory attention"),
                 ("memory_encoder", "memory encoder"), ("mask_decoder", "mask decoder"),
                 ("spatial_perceiver", "memory perceiver (EdgeTAM)"))

#: targets: `targets.CPU_TARGETS` / `targets.GPU_TARGETS`


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

    from ..models.loading import LoadedModels, apply_precision
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
    # the same precision rule as `load_models`: only the two image encoders in `dtype`
    apply_precision(blip, sam, dtype, torch.device(device))
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


def bench_tracker(name: str, *, tiny: bool, random_weights: bool, device, dtype: str = "auto",
                  image_size: int | None = None, memory_frames: int | None = None):
    """(TrackerModel or None, status) for `--tracker NAME` at the given cost knobs (None = as published).

    tiny: the tiny in-process tracker of the same family (CI). random_weights: the published
    architecture with random weights. Otherwise the real checkpoint (a published short name, a hub id or
    a local directory). status: 'measured' or why not ('not measurable here' when the model cannot be
    built on this machine, e.g. EdgeTAM without timm; 'not available' when its weights are missing).
    """
    from ..errors import ModelNotFoundError
    from ..models.trackers import PUBLISHED, build_random_tracker, load_tracker

    key = name.split("/")[-1]
    knobs = {"image_size": image_size, "memory_frames": memory_frames}
    try:
        if tiny:
            return load_tracker("tiny-random-edgetam" if "edgetam" in key.lower() else "tiny-random",
                                device=device, dtype=dtype, **knobs), {"status": "measured"}
        if random_weights:
            if key not in PUBLISHED:
                raise ValueError(f"--random-weights builds published trackers only: {sorted(PUBLISHED)}")
            return build_random_tracker(key, device=device, dtype=dtype, **knobs), {"status": "measured"}
        return load_tracker(PUBLISHED[key][1] if key in PUBLISHED else name, device=device, dtype=dtype,
                            **knobs), {"status": "measured"}
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
    from ..models.loading import dtype_name
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
        # FLOPs of one more full-memory frame, per module (counted, not timed)
        with flop_counter() as fc:
            tracker.update(stream[-1])
        flops = module_flops(fc)
    finally:
        timers.remove()
        tracker.close()
    root = type(tm.model).__name__
    frame_flops = {"model step (all modules)": flops.get(root, 0)}
    for module, label in TRACK_MODULES:
        if f"{root}.{module}" in flops:
            frame_flops[label] = flops[f"{root}.{module}"]
    full = n >= tm.num_maskmem
    per_frame = statistics.median(rows["track: update() per frame"])
    tail = walls[tm.num_maskmem - 1:] if full else walls
    return {
        "status": "measured",
        "model": tm.model_id, "family": tm.family, "dtype": dtype_name(tm.dtype),
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
        "flops_per_frame": frame_flops,
        "attention": str(tm.model.config._attn_implementation),
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
              track_sizes: list[int] | None = None, track_memory: list[int] | None = None,
              precision: bool = True, lossless: bool = True, reference: str | None = None,
              onnx: bool = True, mask2former: bool = False) -> dict:
    """One bench run (see the module docstring); returns the JSON-ready result.

    Sections, in order: the machine's limits (matmul peaks), the grounding stages and ratios, the
    per-stage FLOPs against the peaks, tracking (each tracker at each knob configuration), the lossless
    changes against the paths they replaced, reduced precision against fp32, and the targets. A new
    stage (another proposal network, say) adds its timing rows in the grounding loop, its FLOPs in
    `_stage_limits`, and, if it has one, its target in `targets`.

    track_sizes / track_memory: tracker input sizes and memory sizes to time (every combination);
    default: the published configuration and the smallest documented input size.
    onnx: also time the ONNX Runtime SAM encoder (exported and cached on first use; needs onnxruntime).
    mask2former: also time the paper's proposal network (Mask2Former) on the same frame, with its row in
    the limits table (`mask2former_stage`).
    """
    from ..grounding.gradcam import to_patch_grid
    from ..grounding.pwem import fuse
    from ..grounding.refinement import RoundOutput, normalise, refine
    from ..grounding.segmenter import ReferringSegmenter, SegmenterConfig
    from ..models.fast_attention import attention_report
    from ..models.loading import (
        TINY,
        dtype_choice,
        dtype_name,
        load_models,
        resolve_device,
        resolve_profile,
        to_device,
    )
    from .limits import cpu_description, machine_limits, shared_machine_note

    if threads:
        torch.set_num_threads(threads)
    load_start = _load_average()
    dev = resolve_device(device)
    dt, dt_reason = dtype_choice(dtype, dev)
    auto_dt = dtype_choice("auto", dev)[0]
    vlm, sam_id = resolve_profile(model)
    limits = machine_limits(dev)  # first, while nothing else is allocated
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
        pv = to_device(models.blip_processor(images=frame, return_tensors="pt",
                                             input_data_format="channels_last")["pixel_values"], dev, dt)
        _sync(dev)
        f0 = time.perf_counter()
        emb = gc.encode_image(pv)
        _sync(dev)
        f1 = time.perf_counter()
        for _ in range(len(r1.match_probs)):  # as many text passes as the pipeline ran
            gc(emb, ids, am)
        _sync(dev)
        f2 = time.perf_counter()
        sam_pv = to_device(models.sam_processor(images=frame, return_tensors="pt",
                                                input_data_format="channels_last")["pixel_values"], dev, dt)
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
        add("stage: SAM preprocess alone (resize+normalise+pad)", f3 - f2)
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
    # --- FLOPs per stage against the peaks (counted after the timing, untimed)
    limits["stages"] = _stage_limits(seg, models, frame, ids, am, pv, sam_pv, med, rows["_rounds"], dt, limits)
    # --- tracking, after the grounding rows (same run, same models)
    tracking: dict[str, dict] = {}
    tiny = vlm == TINY
    configs = track_configs(track_sizes, track_memory, tiny)
    for name in [t for t in trackers if t and t.lower() != "none"]:
        pub_size, pub_mem = _published_knobs(name, tiny)
        for size, memf in configs:
            default = size in (None, pub_size) and memf in (None, pub_mem)
            key = name if default else f"{name}@{size or 'published'}px/{memf or 'published'}mem"
            tm, status = bench_tracker(name, tiny=tiny, random_weights=random_weights, device=dev, dtype=dtype,
                                       image_size=size, memory_frames=memf)
            if tm is None:
                tracking[key] = status
                if "not measurable" in status["status"] or "not available" in status["status"]:
                    break
                continue
            tracking[key] = _guarded(dev, lambda tm=tm: measure_tracking(
                seg, tm, grounding_s=first, width=width, height=height, reps=reps, frames=track_frames))
            tracking[key].update(default_config=default,
                                 smallest_documented_size=size == configs_smallest(tiny))
            for row in _tracker_limit_rows(key, tracking[key], limits):
                limits["stages"].append(row)
            del tm
    if tracking:  # the grounding figures above stay comparable with runs without a tracker
        mem["cpu_peak_rss_mb_with_tracking"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        if dev.type == "cuda":
            mem["gpu_max_allocated_mb_with_tracking"] = torch.cuda.max_memory_allocated(dev) / 2**20
    # --- lossless changes, each against the path it replaced (same run, same inputs)
    changes: dict[str, dict] = {}
    if lossless:
        from . import lossless as ll

        changes["blip_vision_sdpa"] = _guarded(dev, lambda: ll.blip_vision_sdpa(models.blip, pv, reps=3))
        if models.sam is not None:
            changes["sam_encoder_sdpa"] = _guarded(dev, lambda: ll.sam_encoder_sdpa(models.sam, sam_pv))
            changes["sam_rel_pos_workspace"] = _guarded(dev, lambda: ll.sam_rel_pos_workspace(models.sam, sam_pv))
        changes["image_kv_at_set_image"] = _guarded(dev, lambda: ll.image_kv_at_set_image(gc, pv, ids, am))
        if models.sam is not None and onnx:
            changes["onnxruntime_sam_encoder"] = _guarded(
                dev, lambda: ll.onnxruntime_sam_encoder(models.sam, models.sam_id, sam_pv))
        first_tracker = next((t for t in trackers if t and t.lower() != "none"), None)
        if first_tracker:
            tm, _ = bench_tracker(first_tracker, tiny=tiny, random_weights=random_weights, device=dev, dtype=dtype)
            if tm is not None:
                changes["tracker_memory_attention_sdpa"] = _guarded(
                    dev, lambda: ll.tracker_memory_attention_sdpa(tm.model, tm.num_maskmem))
                if onnx:
                    changes["onnxruntime_tracker_encoder"] = _guarded(dev, lambda: ll.onnxruntime_tracker_encoder(tm))
                del tm
    # --- reduced precision against fp32 through the full pipeline
    prec: dict = {"status": "not applicable: this run is fp32"} if dt == torch.float32 else {}
    if not precision:
        prec = {"status": "skipped (--no-precision)"}
    elif dt != torch.float32:
        prec = _guarded(dev, lambda: _precision_section(models, seg, cfg, frame, vlm, sam_id, random_weights, dev,
                                                        trackers, tiny, dtype))
    settings = {
        "model": model, "vlm": models.vlm_id, "sam": models.sam_id, "random_weights": bool(random_weights),
        "device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else
        (cpu_description()["model"] or platform.processor() or platform.machine()),
        "dtype": dtype_name(dt), "dtype_requested": str(dtype), "dtype_reason": dt_reason,
        "auto_dtype": dtype_name(auto_dt), "iterations": iterations, "proposals": proposals,
        "image": [width, height], "reps": reps, "warmup": warmup, "threads": torch.get_num_threads(),
        "early_stop": early_stop, "rounds_run": rows["_rounds"], "text_tokens": int(ids.shape[1]),
        "torch": torch.__version__, "transformers": _version("transformers"), "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "cpu": cpu_description() if dev.type == "cpu" else None,
        "attention": attention_report(models.blip, models.sam),
        # 1/5/15-min load averages of the machine: other jobs on a shared machine slow every figure
        "load_average_start": load_start, "load_average_end": _load_average(),
    }
    limits["shared_machine"] = shared_machine_note(limits, load_start, os.cpu_count()) if dev.type == "cpu" else None
    res = {
        "settings": settings,
        "limits": limits,
        "timings": {k: _stats(v) for k, v in rows.items() if not k.startswith("_")},
        "floor_ms": 1000 * floor,
        "official_e2e_ms": 1000 * off_e2e,
        "ratios": ratios,
        "memory": mem,
        "tracking": tracking,
        "lossless": changes,
        "precision": prec,
    }
    ref = load_reference(reference)
    res["reference"] = {"path": str(reference or REFERENCE), "comparable": comparable(res, ref) is None,
                        "why_not": comparable(res, ref),
                        "first_ms": ref["timings"]["e2e: first expression on a new frame"]["median_ms"] if ref else None}
    res["targets"] = evaluate(res, ref, dtype_name(auto_dt))
    if mask2former:  # the paper's proposal network on the same frame, after everything above
        from .mask2former_stage import measure_mask2former_stage

        res["mask2former"] = _guarded(dev, lambda: measure_mask2former_stage(
            frame, tiny=vlm == TINY, random_weights=random_weights, device=dev, dtype=dtype, reps=reps,
            warmup=warmup, sam_image_ms=1000 * med["stage: SAM preprocess + image encoder"],
            first_expression_ms=1000 * first))
        m = res["mask2former"]
        if m.get("status") == "measured":  # its row in the same limits table, against this run's peak
            fwd = m["timings"]["mask2former: model forward (backbone + pixel/mask decoders)"]["median_ms"]
            limits["stages"].append(_limit_row("Mask2Former forward (the paper's proposals)", m["flops"],
                                             fwd / 1000, m["dtype"], limits))
    return res


def _version(dist: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # noqa: BLE001
        return None


def _is_oom(exc: BaseException) -> bool:
    oom = getattr(torch.cuda, "OutOfMemoryError", ())
    return (bool(oom) and isinstance(exc, oom)) or "out of memory" in str(exc).lower()


def _guarded(dev: torch.device, fn) -> dict:
    """Run one optional bench section; an out-of-memory error becomes its result instead of ending the run
    (the CUDA cache is emptied so the next section starts clean)."""
    try:
        return fn()
    except (RuntimeError, MemoryError) as exc:
        if not _is_oom(exc) and not isinstance(exc, MemoryError):
            raise
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        return {"status": "out of memory", "reason": " ".join(str(exc).split())[:300]}


#: the smallest documented tracker input size (docs/tracking.md); the tiny test models' own
SMALLEST_SIZE, TINY_SMALLEST_SIZE = 512, 32


def _published_knobs(name: str, tiny: bool) -> tuple[int, int]:
    """(input size, memories) of a tracker as published (the tiny test model: 64 px, 3 memories)."""
    from ..models.trackers import PUBLISHED, TINY_IMAGE_SIZE, published_config, tiny_tracker_config

    if tiny:
        return TINY_IMAGE_SIZE, int(tiny_tracker_config().num_maskmem)
    key = name.split("/")[-1]
    if key in PUBLISHED:
        cfg = published_config(key)
        return int(cfg.image_size), int(cfg.num_maskmem)
    return 1024, 7


def configs_smallest(tiny: bool) -> int:
    return TINY_SMALLEST_SIZE if tiny else SMALLEST_SIZE


def track_configs(sizes: list[int] | None, memory: list[int] | None, tiny: bool) -> list[tuple]:
    """(input size, memory frames) pairs to time; None = published. Default: the published configuration
    and the smallest documented input size."""
    if not sizes and not memory:
        return [(None, None), (configs_smallest(tiny), None)]
    return [(s or None, m or None) for s in (sizes or [0]) for m in (memory or [0])]


def _stage_limits(seg, models, frame, ids, am, pv, sam_pv, med, rounds, dt, limits) -> list[dict]:
    """Counted FLOPs of each model stage, its median time in this run and its fraction of the peak."""
    from ..models.loading import dtype_name
    from .limits import count_flops

    gc = seg.gradcam
    n_rounds = statistics.median(rounds)
    f_vis, emb = count_flops(gc.encode_image, pv)  # with the image K/V projections (per-image work)
    f_txt, _ = count_flops(gc, emb, ids, am)
    out = [("BLIP vision pass", f_vis, med["floor: BLIP vision pass"], dtype_name(dt)),
           ("text pass + backward (one round)", f_txt, med["floor: text passes + backward (all rounds)"] / n_rounds,
            "fp32")]
    if models.sam is not None:
        with torch.inference_mode():
            f_sam, _ = count_flops(models.sam.get_image_embeddings, sam_pv)
        state = seg._image
        f_dec, _ = count_flops(seg.sam.from_peaks, state.sam, [(10, 10)] * seg.config.num_points, seg.config.multimask)
        out += [("SAM image encoder", f_sam, med["floor: SAM image encoder"], dtype_name(dt)),
                ("SAM prompt decoding", f_dec, med["floor: SAM prompt decoding"], "fp32")]
    return [_limit_row(name, flops, seconds, dtype, limits) for name, flops, seconds, dtype in out]


def _limit_row(stage: str, flops: int, seconds: float, dtype: str, limits: dict) -> dict:
    from .limits import fraction_of_peak

    peak = limits["matmul_peak"].get(dtype, {}).get("gflops", 0.0)
    return {"stage": stage, "dtype": dtype, "gflops": flops / 1e9, "median_ms": 1000 * seconds,
            "achieved_gflops": flops / seconds / 1e9 if seconds > 0 else None, "peak_gflops": peak,
            "fraction_of_peak": fraction_of_peak(flops, seconds, peak)}


def _tracker_limit_rows(key: str, t: dict, limits: dict) -> list[dict]:
    if t.get("status") != "measured":
        return []
    tt = {k: v["median_ms"] / 1000 for k, v in t["timings"].items()}
    fl = t["flops_per_frame"]
    rows = []
    for label, row in (("image encoder", "track: image encoder"), ("memory attention", "track: memory attention"),
                       ("model step (all modules)", "track: model step (all modules)")):
        if label in fl and row in tt:
            rows.append(_limit_row(f"tracker {key}: {label}", fl[label], tt[row], t["dtype"], limits))
    return rows


def _precision_section(models, seg, cfg, frame, vlm, sam_id, random_weights, dev, trackers, tiny, dtype) -> dict:
    """fp32 models with the same weights, run on the same frame and stream (`precision`)."""
    from ..grounding.segmenter import ReferringSegmenter
    from ..models.loading import dtype_name, load_models
    from . import precision as pr

    if random_weights and not tiny:
        ref_models = build_full_size_random(device=dev, dtype=torch.float32)
    else:
        ref_models = load_models(vlm, sam_id, device=dev, dtype=torch.float32)
    ref = ReferringSegmenter(ref_models, cfg)
    out = {"grounding": pr.compare_grounding(ref, seg, frame, EXPRESSIONS)}
    del ref, ref_models
    name = next((t for t in trackers if t and t.lower() != "none"), None)
    if name:
        low, _ = bench_tracker(name, tiny=tiny, random_weights=random_weights, device=dev, dtype=dtype)
        if low is not None and low.dtype != torch.float32:
            ref_t, _ = bench_tracker(name, tiny=tiny, random_weights=random_weights, device=dev, dtype="fp32")
            stream = [stream_frame(i) for i in range(4)]
            out["tracking"] = pr.compare_tracking(ref_t, low, stream, block_mask(stream[0]))
            out["tracking"]["dtype"] = dtype_name(low.dtype)
        elif low is not None:
            out["tracking"] = {"status": "not applicable: the tracker runs in fp32"}
    return out


def format_table(res: dict) -> str:
    """The printed report: settings, limits, stage timings, ratios, tracking, lossless, precision, targets."""
    s = res["settings"]
    lines = [f"ros2_iterprime bench | {s['vlm']} + {s['sam']} | {s['device']} ({s['device_name']}) {s['dtype']} "
             f"({s.get('dtype_reason', '')}) | {s['image'][0]}x{s['image'][1]} T={s['iterations']} {s['proposals']} | "
             f"{s['threads']} threads | {s['reps']} reps | IGRS stop rule "
             f"{'on' if s['early_stop'] else 'off (exactly T rounds)'} | load average "
             f"{s.get('load_average_start')} -> {s.get('load_average_end')} on {s.get('cpu_count')} CPUs"]
    lim = res.get("limits", {})
    if lim:
        peaks = ", ".join(f"{k} {v['gflops']:.1f}" for k, v in lim["matmul_peak"].items())
        lines.append(f"LIMITS: matmul peak GFLOP/s ({lim['matmul_peak']['fp32']['size']}^2, {s['threads']} threads): "
                     f"{peaks}" + (f" | fp32 at 1 thread {lim['fp32_one_thread_gflops']:.1f}, parallel efficiency "
                                   f"{lim['parallel_efficiency']:.2f}" if "parallel_efficiency" in lim else ""))
        if lim.get("shared_machine"):
            lines.append(f"LIMITS: shared machine: {lim['shared_machine']} -> figures are below this machine's limit")
        lines.append(f"{'stage (FLOPs counted, FlopCounterMode)':58s} {'dtype':>5s} {'GFLOP':>9s} {'median':>10s} "
                     f"{'GFLOP/s':>9s} {'peak':>8s} {'of peak':>8s}")
        for r in lim.get("stages", []):
            frac = r["fraction_of_peak"]
            lines.append(f"{r['stage'][:58]:58s} {r['dtype']:>5s} {r['gflops']:9.1f} {r['median_ms']:8.1f}ms "
                         f"{(r['achieved_gflops'] or 0):9.1f} {r['peak_gflops']:8.1f} "
                         f"{'' if frac is None else f'{100 * frac:7.1f}%'}")
    lines.append(f"{'':58s} {'median':>10s} {'min':>10s} {'max':>10s}")
    for k, v in res["timings"].items():
        lines.append(f"{k:58s} {v['median_ms']:9.1f}ms {v['min_ms']:9.1f}ms {v['max_ms']:9.1f}ms")
    lines.append(f"{'model-compute floor (sum of floor rows)':58s} {res['floor_ms']:9.1f}ms")
    lines.append(f"{'official structure, end to end (derived)':58s} {res['official_e2e_ms']:9.1f}ms")
    for k, v in res["ratios"].items():
        lines.append(f"ratio {k:52s} {v:9.3f}")
    for k, v in res["memory"].items():
        lines.append(f"memory {k:51s} {v:9.1f}")
    for name, t in res.get("tracking", {}).items():
        if t.get("status") != "measured":
            lines.append(f"tracker {name}: {t['status'].upper()}: {t.get('reason', '')}")
            continue
        lines.append(f"tracker {name} | {t['model']} {t['dtype']} {t['image_size']} px | {t['stream'][0]}x"
                     f"{t['stream'][1]} stream, {t['frames']} frames after start(), {t['memory_full_frames']} with a "
                     f"full memory bank ({t['num_maskmem']} memories) | attention {t.get('attention')} | seed: {t['seed']}")
        for k, v in t["timings"].items():
            lines.append(f"{k:58s} {v['median_ms']:9.1f}ms {v['min_ms']:9.1f}ms {v['max_ms']:9.1f}ms")
        lines.append(f"{'track: start() (grounding + seed)':58s} {t['start_ms']:9.1f}ms")
        lines.append(f"ratio {'track_over_grounding (per frame / first expression)':52s} {t['track_over_grounding']:9.3f}")
        lines.append(f"{'track loop: sustained frame rate (full memory bank)':58s} {t['sustained_fps']:9.3f} fps")
        lines.append(f"{'track loop: frame rate over all frames':58s} {t['fps_all_frames']:9.3f} fps")
    if "mask2former" in res:
        from .mask2former_stage import format_rows

        lines += format_rows(res["mask2former"])
    for name, c in res.get("lossless", {}).items():
        if "before_ms" not in c:
            lines.append(f"lossless {name}: {c.get('status', '')} {c.get('reason', '')}")
            continue
        lines.append(f"lossless {name:40s} before {c['before_ms']:9.1f}ms after {c['after_ms']:9.1f}ms "
                     f"x{c['speedup'] or 0:.2f}  max |diff| {c['max_abs_diff']:.3g}")
    prec = res.get("precision", {})
    if "grounding" in prec:
        g = prec["grounding"]
        lines.append(f"precision {s['dtype']} vs fp32 (full pipeline, same weights): heatmap max |diff| "
                     f"{g['heatmap_max_abs_diff']:.4f}, prompts agree {g['prompt_agreement']:.0%}, min mask IoU where "
                     f"prompts agree {g['min_mask_iou_where_prompts_agree']}, min SAM mask IoU at the same prompts "
                     f"{g['min_sam_mask_iou_same_prompts']:.4f}")
        tr = prec.get("tracking", {})
        if "min_mask_iou" in tr:
            lines.append(f"precision tracker {tr['dtype']} vs fp32: min mask IoU {tr['min_mask_iou']:.4f}, max object-score "
                         f"|diff| {tr['max_object_score_abs_diff']:.3f} over {len(tr['frames'])} frames")
    elif prec:
        lines.append(f"precision: {prec.get('status', '')} {prec.get('reason', '')}")
    ref = res.get("reference")
    if ref:
        lines.append(f"reference {ref['path']}: " + ("comparable" if ref["comparable"] else f"not comparable ({ref['why_not']})"))
    for k, c in res["targets"].items():
        verdict = {True: "MET", False: "NOT MET", None: "NOT MEASURED"}[c["met"]]
        value = "-" if c["value"] is None else f"{c['value']:.3f}"
        lines.append(f"target {k:30s} {value:>9s} {c['target']:>10s}  {verdict}" + (f"  ({c['reason']})" if c["reason"] else ""))
    return "\n".join(lines)
