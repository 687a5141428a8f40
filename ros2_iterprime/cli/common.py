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
    from ..grounding.segmenter import SegmenterConfig

    return SegmenterConfig(iterations=args.iters, pwem_mode=args.mode, alpha=args.alpha,
                           proposals=args.proposals, prompt_template=args.template)


def segmenter_from_args(args, config=None):
    from ..grounding.segmenter import load_segmenter

    return load_segmenter(args.model, vlm=args.vlm, sam=args.sam, config=config, device=args.device,
                          dtype=args.dtype, local_files_only=True if args.local_files_only else None,
                          cache_dir=args.cache_dir)


