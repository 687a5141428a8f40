"""What the subcommands share: the registry they add themselves to, and the model / method options.

    @subcommand("segment", help="segment the object an expression refers to")
    def add_segment_parser(p: argparse.ArgumentParser) -> None:
        p.add_argument(...)
        p.set_defaults(func=cmd_segment)

`main.build_parser` imports every module of this package, then calls each registered function with
its freshly created sub-parser.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    description: str | None
    add_arguments: Callable[[argparse.ArgumentParser], None]


#: name -> Subcommand, filled by the @subcommand decorator when a module of this package is imported
SUBCOMMANDS: dict[str, Subcommand] = {}


def subcommand(name: str, help: str, description: str | None = None):
    """Register ``add_arguments(parser)`` as the subcommand ``name`` (a decorator)."""

    def register(add_arguments: Callable[[argparse.ArgumentParser], None]):
        if name in SUBCOMMANDS and SUBCOMMANDS[name].add_arguments is not add_arguments:
            raise ValueError(f"subcommand {name!r} registered twice")
        SUBCOMMANDS[name] = Subcommand(name, help, description, add_arguments)
        return add_arguments

    return register


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Model options shared by every sub-command that loads models."""
    g = p.add_argument_group("models")
    g.add_argument("--model", default="default",
                   help="profile: default (BLIP ITM base COCO + SAM ViT-B), large, or tiny-random "
                        "(random tiny models, meaningless output, for smoke tests)")
    g.add_argument("--vlm", default=None, help="BLIP ITM model id or local directory (overrides --model)")
    g.add_argument("--sam", default=None, help="SAM model id or local directory (overrides --model)")
    g.add_argument("--proposals-model", default=None, metavar="NAME",
                   help="the proposal network: sam (SAM v1, the default), mask2former (the paper's: Mask2Former "
                        "Swin-L COCO panoptic, all 200 query masks; the tiny random one under --model "
                        "tiny-random), a SAM 2.1 / EdgeTAM id, or any Mask2Former id or directory. "
                        "`--proposals mask2former` is the same as `--proposals-model mask2former`")
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
    g.add_argument("--proposals", default="cam_points", choices=PROPOSAL_CHOICES,
                   help="how SAM proposes: cam_points (prompted at the Grad-CAM peaks) or automatic (point "
                        "grid); mask2former = --proposals-model mask2former (the paper's proposal network)")
    g.add_argument("--template", default="there is a {}", help="prompt template with one {}")


#: `--proposals` values: the SAM prompting modes, and 'mask2former' as a shorthand for the proposal network
PROPOSAL_CHOICES = ("cam_points", "automatic", "mask2former")


def proposal_settings(proposals: str | None, proposals_model: str | None) -> dict:
    """`SegmenterConfig` fields for ``--proposals`` / ``--proposals-model`` (only those given).

    ``--proposals`` is the SAM prompting mode (cam_points | automatic); ``--proposals mask2former`` names
    the proposal network instead and equals ``--proposals-model mask2former``.
    Raises:
        ValueError: ``--proposals mask2former`` together with a different ``--proposals-model``.
    """
    out: dict = {}
    if proposals == "mask2former":
        if proposals_model not in (None, "", "mask2former"):
            raise ValueError(f"--proposals mask2former and --proposals-model {proposals_model} contradict each "
                             "other: --proposals mask2former means --proposals-model mask2former")
        proposals_model = "mask2former"
    elif proposals is not None:
        out["proposals"] = proposals
    if proposals_model:
        out["proposals_model"] = proposals_model
    return out


def config_from_args(args):
    from ..grounding.segmenter import SegmenterConfig

    return SegmenterConfig(iterations=args.iters, pwem_mode=args.mode, alpha=args.alpha,
                           prompt_template=args.template,
                           **proposal_settings(args.proposals, getattr(args, "proposals_model", None)))


def segmenter_from_args(args, config=None):
    from ..grounding.segmenter import load_segmenter

    return load_segmenter(args.model, vlm=args.vlm, sam=args.sam, config=config, device=args.device,
                          dtype=args.dtype, local_files_only=True if args.local_files_only else None,
                          cache_dir=args.cache_dir)


