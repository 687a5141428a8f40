"""``ros2_iterprime download``: fetch the model files into the model cache, verify them, export them.

    ros2_iterprime download                      # BLIP ITM base + SAM ViT-B into the model cache, verified
    ros2_iterprime download --to DIR             # + self-contained safetensors folders for --vlm/--sam DIR/...
    ros2_iterprime download --tracker facebook/sam2.1-hiera-tiny   # + the tracking model (mode track)
    ros2_iterprime download --repo Salesforce/blip-itm-base-coco --mask2former   # the paper's setup: BLIP + Mask2Former
"""
from __future__ import annotations

import argparse
import sys

from .common import subcommand

DESCRIPTION = ("Fetch the weights each repository publishes (model.safetensors, else pytorch_model.bin) with its "
               "config, tokenizer and processor files, then verify that all are in the cache; exit 1 naming what "
               "is missing. With HF_HUB_OFFLINE=1 only the verification runs.")


@subcommand("download", help="fetch the model files into the model cache (needs internet) and verify them",
            description=DESCRIPTION)
def add_download_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="profile: default or large")
    p.add_argument("--vlm", default=None, help="BLIP ITM repository id (overrides --model)")
    p.add_argument("--sam", default=None, help="SAM repository id (overrides --model)")
    p.add_argument("--repo", action="append", default=None, metavar="ID",
                   help="a known repository id (repeatable; replaces --model/--vlm/--sam)")
    p.add_argument("--tracker", action="append", default=None, metavar="ID",
                   help="also fetch a tracking model (mode track): a SAM 2.1 / EdgeTAM repository id, e.g. "
                        "facebook/sam2.1-hiera-tiny (repeatable; added to --model/--vlm/--sam or --repo)")
    p.add_argument("--mask2former", nargs="?", const="mask2former", default=None, metavar="ID",
                   help="also fetch a Mask2Former proposal model (proposals_model mask2former, the paper's setup): "
                        "without ID facebook/mask2former-swin-large-coco-panoptic (added to --model/--vlm/--sam or "
                        "--repo; BLIP + Mask2Former is all the paper's setup needs: --repo "
                        "Salesforce/blip-itm-base-coco --mask2former)")
    p.add_argument("--cache-dir", default=None, help="model cache directory (default: the HF cache)")
    p.add_argument("--to", default=None, metavar="DIR",
                   help="also write a self-contained safetensors folder per model, DIR/<repo name>, "
                        "for --vlm/--sam/--proposals-model, load_tracker(DIR/...) or the node's "
                        "vlm/sam/tracker_model/proposals_model parameters")
    p.set_defaults(func=cmd_download)


def cmd_download(args) -> int:
    """Fetch (unless HF_HUB_OFFLINE=1), verify in the cache, optionally export; 1 when anything is missing."""
    import os

    from ..models.checkpoints import KINDS, KNOWN_REPOS, hub_cache_dir
    from ..models.download import default_repos, download
    from ..models.loading import hub_offline, resolve_profile

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
    if args.mask2former:
        from ..models.mask2former import mask2former_id

        m2f = mask2former_id(args.mask2former) or args.mask2former  # 'mask2former' -> the paper's checkpoint
        if not m2f.startswith("tiny-random") and (m2f, "mask2former") not in repos:
            repos.append((m2f, "mask2former"))
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
        flags = {k: KINDS[k].use_flag or f"--{k}" for k in ("vlm", "sam", "mask2former")}
        seg = {flags[k]: d for k, d in dirs.items() if k in flags}
        if seg:
            print("  ros2_iterprime segment IMAGE EXPR " + " ".join(f"{f} {d}" for f, d in seg.items()))
        if "tracker" in dirs:
            print(f"  ros2_iterprime.tracking.load_tracker({dirs['tracker']!r})")
        print("  iterprime_node --ros-args " + " ".join(f"-p {KINDS[k].node_param}:={d}" for k, d in dirs.items()))
    else:
        print(f"all files present in the model cache {hub_cache_dir(args.cache_dir)}; copy it to the robot "
              "(same path, or set HF_HOME) and run with HF_HUB_OFFLINE=1, or export with --to DIR")
    return 0
