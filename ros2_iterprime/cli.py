"""Command line: `ros2_iterprime segment | download | eval | bench`.

    ros2_iterprime segment IMAGE "the red cup behind the laptop" -o out/ [--model tiny-random]
    ros2_iterprime segment --image-dir imgs/ --expressions exprs.txt -o out/
    ros2_iterprime download                      # BLIP ITM base + SAM ViT-B into the model cache, verified
    ros2_iterprime download --to DIR             # + self-contained safetensors folders for --vlm/--sam DIR/...
    ros2_iterprime download --tracker facebook/sam2.1-hiera-tiny   # + the tracking model (mode track)
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

LOG = logging.getLogger("ros2_iterprime")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Model options shared by every sub-command that loads models."""
    g = p.add_argument_group("models")
    g.add_argument("--model", default="default",
                   help="profile: default (BLIP ITM base COCO + SAM ViT-B), large, or tiny-random "
                        "(random tiny models, meaningless output, for smoke tests)")
    g.add_argument("--vlm", default=None, help="BLIP ITM model id or local directory (overrides --model)")
    g.add_argument("--sam", default=None, help="SAM model id or local directory (overrides --model)")
    g.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    g.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="auto = fp32 on CPU, fp16 on CUDA")
    g.add_argument("--local-files-only", action="store_true",
                   help="never contact the hub (also implied by HF_HUB_OFFLINE=1)")
    g.add_argument("--cache-dir", default=None, help="model cache directory (default: the HF cache)")


def add_method_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("method (IteRPrimE)")
    g.add_argument("--iters", type=int, default=3, help="IGRS rounds T (default 3)")
    g.add_argument("--mode", type=int, default=0, choices=range(5),
                   help="PWEM mode: 0 full, 1 all tokens, 2 kept+[CLS], 3 +global, 4 +local")
    g.add_argument("--alpha", type=float, default=0.2, help="IGRS blend weight (default 0.2)")
    g.add_argument("--proposals", default="cam_points", choices=["cam_points", "automatic"])
    g.add_argument("--template", default="there is a {}", help="prompt template with one {}")


def config_from_args(args):
    from .predictor import SegmenterConfig

    return SegmenterConfig(iterations=args.iters, pwem_mode=args.mode, alpha=args.alpha,
                           proposals=args.proposals, prompt_template=args.template)


def segmenter_from_args(args, config=None):
    from .predictor import load_segmenter

    return load_segmenter(args.model, vlm=args.vlm, sam=args.sam, config=config, device=args.device,
                          dtype=args.dtype, local_files_only=True if args.local_files_only else None,
                          cache_dir=args.cache_dir)


def slug(text: str, n: int = 40) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:n].strip("-") or "expr"


def write_outputs(out_dir: Path, stem: str, rgb, result) -> list[Path]:
    """Write <stem>_mask.png (0/255), <stem>_overlay.png and <stem>.json; return the paths."""
    import numpy as np
    from PIL import Image

    from .results import mask_to_rle
    from .visualize import render_overlay

    out_dir.mkdir(parents=True, exist_ok=True)
    mask_p, over_p, json_p = out_dir / f"{stem}_mask.png", out_dir / f"{stem}_overlay.png", out_dir / f"{stem}.json"
    Image.fromarray(result.mask.astype(np.uint8) * 255).save(mask_p)
    Image.fromarray(render_overlay(rgb, result)).save(over_p)
    doc = result.summary()
    doc["rle"] = mask_to_rle(result.mask)
    json_p.write_text(json.dumps(doc, indent=2))
    return [mask_p, over_p, json_p]


def read_expressions(path: Path, images: list[Path]) -> list[tuple[Path, str]]:
    """Expressions file: `image<TAB>expression` per line, or a bare expression applied to every image.

    Blank lines and lines starting with '#' are skipped; image paths are relative to the image folder.
    """
    by_name = {p.name: p for p in images}
    jobs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if "\t" in line:
            name, expr = line.split("\t", 1)
            name = name.strip()
            img = by_name.get(name) or by_name.get(Path(name).name)
            if img is None:
                raise SystemExit(f"{path}:{n}: image {name!r} not found in the image folder")
            jobs.append((img, expr.strip()))
        else:
            jobs.extend((img, line.strip()) for img in images)
    return jobs


def cmd_segment(args) -> int:
    from tqdm import tqdm

    from .errors import IterPrimeError
    from .image_io import load_image

    if args.image_dir:
        folder = Path(args.image_dir)
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            print(f"error: no images in {folder}", file=sys.stderr)
            return 1
        if not args.expressions:
            print("error: --image-dir needs --expressions FILE", file=sys.stderr)
            return 1
        jobs = read_expressions(Path(args.expressions), images)
    else:
        if not args.image or args.expression is None:
            print("error: give IMAGE and EXPRESSION, or --image-dir and --expressions", file=sys.stderr)
            return 1
        jobs = [(Path(args.image), args.expression)]
    seg = segmenter_from_args(args, config_from_args(args))
    out_dir = Path(args.output)
    failures = 0
    current = None
    rgb = None
    bar = tqdm(jobs, unit="expr", disable=len(jobs) < 2)
    for img_path, expr in bar:
        try:
            if img_path != current:  # set_image once per image: further expressions reuse it
                rgb = load_image(img_path)
                seg.set_image(rgb)
                current = img_path
            res = seg.segment(expr)
            stem = f"{img_path.stem}__{slug(expr)}"
            paths = write_outputs(out_dir, stem, rgb, res)
            if len(jobs) == 1:
                s = res.summary()
                print(json.dumps({k: s[k] for k in ("expression", "primary_word", "score", "found", "bbox",
                                                    "centroid", "rounds")}))
                for p in paths:
                    print(p)
        except IterPrimeError as exc:
            failures += 1
            current = None if "image" in str(exc) else current
            LOG.error("%s | %r: %s", img_path, expr, exc)
    if failures:
        LOG.error("%d of %d jobs failed", failures, len(jobs))
    return 1 if failures else 0


def cmd_download(args) -> int:
    """Fetch (unless HF_HUB_OFFLINE=1), verify in the cache, optionally export; 1 when anything is missing."""
    import os

    from .checkpoints import KINDS, KNOWN_REPOS, hub_cache_dir
    from .models import default_repos, download, hub_offline, resolve_profile

    if args.repo:
        unknown = [r for r in args.repo if r not in KNOWN_REPOS]
        if unknown:
            print(f"error: unknown repository {', '.join(unknown)}; known: {', '.join(KNOWN_REPOS)} "
                  "(other BLIP ITM / SAM / tracker ids: --vlm ID / --sam ID / --tracker ID)", file=sys.stderr)
            return 2
        repos = [(r, KNOWN_REPOS[r]) for r in args.repo]
    else:
        repos = default_repos(*resolve_profile(args.model, args.vlm, args.sam))
    for tracker in args.tracker or []:  # added to either set
        repos += [r for r in default_repos(None, None, tracker) if r not in repos]
    if not repos:
        print("tiny-random is built in-process: nothing to download")
        return 0
    if hub_offline():
        print("HF_HUB_OFFLINE=1: nothing is fetched; checking what the model cache holds")
    result = download(repos, cache_dir=args.cache_dir, to=args.to)
    for rep in result.reports:
        print(rep.describe())
    if not result.ok:
        bad = "; ".join(f"{r.model_id}: {', '.join(r.missing)}" for r in result.reports if not r.ok)
        print(f"error: incomplete checkpoint(s): {bad}", file=sys.stderr)
        return 1
    if result.exported:
        dirs = {rep.kind: os.path.abspath(result.exported[rep.model_id]) for rep in result.reports}
        print("self-contained safetensors copies written; copy them to the robot and use:")
        seg = {k: d for k, d in dirs.items() if k in ("vlm", "sam")}
        if seg:
            print("  ros2_iterprime segment IMAGE EXPR " + " ".join(f"--{k} {d}" for k, d in seg.items()))
        if "tracker" in dirs:
            print(f"  ros2_iterprime.tracking.load_tracker({dirs['tracker']!r})")
        print("  iterprime_node --ros-args " + " ".join(f"-p {KINDS[k].node_param}:={d}" for k, d in dirs.items()))
    else:
        print(f"all files present in the model cache {hub_cache_dir(args.cache_dir)}; copy it to the robot "
              "(same path, or set HF_HOME) and run with HF_HUB_OFFLINE=1, or export with --to DIR")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ros2_iterprime", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("segment", help="segment the object an expression refers to")
    p.add_argument("image", nargs="?", help="image file")
    p.add_argument("expression", nargs="?", help="referring expression, e.g. 'the red cup behind the laptop'")
    p.add_argument("--image-dir", help="batch mode: folder of images")
    p.add_argument("--expressions", help="batch mode: file of `image<TAB>expression` or bare expressions")
    p.add_argument("-o", "--output", default="outputs", help="output folder (default: outputs)")
    add_model_args(p)
    add_method_args(p)
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("download", help="fetch the model files into the model cache (needs internet) and verify them",
                       description="Fetch the weights each repository publishes (model.safetensors, else "
                                   "pytorch_model.bin) with its config, tokenizer and processor files, then verify "
                                   "that all are in the cache; exit 1 naming what is missing. With HF_HUB_OFFLINE=1 "
                                   "only the verification runs.")
    p.add_argument("--model", default="default", help="profile: default or large")
    p.add_argument("--vlm", default=None, help="BLIP ITM repository id (overrides --model)")
    p.add_argument("--sam", default=None, help="SAM repository id (overrides --model)")
    p.add_argument("--repo", action="append", default=None, metavar="ID",
                   help="a known repository id (repeatable; replaces --model/--vlm/--sam)")
    p.add_argument("--tracker", action="append", default=None, metavar="ID",
                   help="also fetch a tracking model (mode track): a SAM 2.1 / EdgeTAM repository id, e.g. "
                        "facebook/sam2.1-hiera-tiny (repeatable; added to --model/--vlm/--sam or --repo)")
    p.add_argument("--cache-dir", default=None, help="model cache directory (default: the HF cache)")
    p.add_argument("--to", default=None, metavar="DIR",
                   help="also write a self-contained safetensors folder per model, DIR/<repo name>, "
                        "for --vlm/--sam, load_tracker(DIR/...) or the node's vlm/sam/tracker_model parameters")
    p.set_defaults(func=cmd_download)

    try:
        from .evaluation.cli import add_eval_parser
    except ImportError:  # evaluation package not importable: keep the other commands working
        add_eval_parser = None
    if add_eval_parser is not None:
        add_eval_parser(sub)
    try:
        from .bench import add_bench_parser
    except ImportError:
        add_bench_parser = None
    if add_bench_parser is not None:
        add_bench_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="[%(levelname)s] %(name)s: %(message)s")
    from .errors import ModelNotFoundError

    try:
        return int(args.func(args) or 0)
    except ModelNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
