"""``ros2_iterprime segment``: one image and expression, or a batch, to mask / overlay / JSON files.

    ros2_iterprime segment IMAGE "the red cup behind the laptop" -o out/ [--model tiny-random]
    ros2_iterprime segment --image-dir imgs/ --expressions exprs.txt -o out/
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

from .common import add_method_args, add_model_args, config_from_args, segmenter_from_args, subcommand

LOG = logging.getLogger("ros2_iterprime")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@subcommand("segment", help="segment the object an expression refers to")
def add_segment_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", nargs="?", help="image file")
    p.add_argument("expression", nargs="?", help="referring expression, e.g. 'the red cup behind the laptop'")
    p.add_argument("--image-dir", help="batch mode: folder of images")
    p.add_argument("--expressions", help="batch mode: file of `image<TAB>expression` or bare expressions")
    p.add_argument("-o", "--output", default="outputs", help="output folder (default: outputs)")
    add_model_args(p)
    add_method_args(p)
    p.set_defaults(func=cmd_segment)


def slug(text: str, n: int = 40) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:n].strip("-") or "expr"


def write_outputs(out_dir: Path, stem: str, rgb, result) -> list[Path]:
    """Write <stem>_mask.png (0/255), <stem>_overlay.png and <stem>.json; return the paths."""
    import numpy as np
    from PIL import Image

    from ..results import mask_to_rle
    from ..visualize import render_overlay

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

    from ..errors import IterPrimeError
    from ..image_io import load_image

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
