"""``ros2_iterprime bench``: time every stage on full-size random-weight models (see `..benchmark.run`)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..benchmark.run import DEFAULT_TRACKER, format_table, run_bench
from .common import subcommand


@subcommand("bench", help="benchmark stages, caching and the official structure (no weights needed)")
def add_bench_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="default, large or tiny-random")
    p.add_argument("--random-weights", action="store_true",
                   help="build the full-size architectures with random weights (no download needed)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="image encoders' dtype: auto = fp16 on CUDA, bf16 on CPUs with AVX512-BF16 / AMX, else fp32; "
                        "fp16 on a CPU without native fp16 is refused")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--proposals", default="cam_points", choices=["cam_points", "automatic"])
    p.add_argument("--size", default="640x480", help="WxH of the synthetic frame")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--early-stop", action="store_true",
                   help="apply IGRS's stop rule (default off: time exactly --iters rounds in both structures)")
    p.add_argument("--tracker", action="append", default=None, metavar="NAME",
                   help=f"tracker to time (repeatable): {DEFAULT_TRACKER} (default), sam2.1-hiera-small, "
                        "sam2.1-hiera-base-plus, sam2.1-hiera-large, EdgeTAM, or none; with real weights also a "
                        "hub id or local directory. --model tiny-random uses the tiny tracker")
    p.add_argument("--track-frames", type=int, default=None, metavar="N",
                   help="frames tracked after start() (default: num_maskmem - 1 + --reps, so --reps frames have "
                        "a full memory bank)")
    p.add_argument("--mask2former", action="store_true",
                   help="also time the paper's proposal network on the same frame: Mask2Former Swin-L COCO panoptic "
                        "(published architecture with --random-weights, else the real checkpoint; tiny under "
                        "--model tiny-random), with its FLOPs and share of the device's compute limit")
    p.add_argument("--track-size", type=int, action="append", default=None, metavar="S",
                   help="tracker input size to time (repeatable; a multiple of 32, e.g. 512, 768, 1024). Default: "
                        "the published size and the smallest documented one (512)")
    p.add_argument("--track-memory", type=int, action="append", default=None, metavar="N",
                   help="tracker memory size (memories attended, 1..7 for SAM 2.1) to time (repeatable; every "
                        "combination with --track-size). Default: the published 7")
    p.add_argument("--no-precision", action="store_true",
                   help="skip the reduced-precision vs fp32 comparison (a second, fp32 set of models)")
    p.add_argument("--no-lossless", action="store_true",
                   help="skip timing each lossless change against the path it replaced")
    p.add_argument("--no-onnx", action="store_true",
                   help="skip timing the ONNX Runtime SAM encoder (exported and cached on first use)")
    p.add_argument("--reference", default=None, metavar="JSON",
                   help="reference run for the end-to-end target (default: docs/bench/cpu-2core-fp32.json, "
                        "the fp32 baseline before issue #15)")
    p.add_argument("--json", default=None, help="also write the results as JSON to this path")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from ..models.loading import UnsupportedDtypeError

    w, h = (int(v) for v in args.size.lower().split("x"))
    try:
        res = run_bench(args.model, args.random_weights, args.device, args.dtype, args.iters, args.proposals,
                        w, h, args.reps, args.warmup, args.threads, args.early_stop,
                        trackers=args.tracker or [DEFAULT_TRACKER], track_frames=args.track_frames,
                        track_sizes=args.track_size, track_memory=args.track_memory,
                        precision=not args.no_precision, lossless=not args.no_lossless, reference=args.reference,
                        onnx=not args.no_onnx, mask2former=args.mask2former)
    except UnsupportedDtypeError as exc:
        print(f"bench: {exc}")
        return 2
    except RuntimeError as exc:  # out of memory in the grounding loop itself: nothing left to report
        if "out of memory" not in str(exc).lower():
            raise
        print(f"bench: out of memory on {args.device} ({' '.join(str(exc).split())[:200]}); try a smaller --size, "
              "--dtype fp16/bf16, or --tracker none")
        return 3
    print(format_table(res))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0
