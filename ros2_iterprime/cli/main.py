"""Entry point of the `ros2_iterprime` console script (see the package docstring for the design).

    ros2_iterprime segment | download | eval | bench ...
"""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from . import __name__ as PACKAGE
from . import __path__ as PACKAGE_PATH
from .common import SUBCOMMANDS

DESCRIPTION = """Zero-shot referring image segmentation (IteRPrimE) for robots.

    ros2_iterprime segment IMAGE "the red cup behind the laptop" -o out/ [--model tiny-random]
    ros2_iterprime download [--to DIR] [--tracker facebook/sam2.1-hiera-tiny]
    ros2_iterprime eval --dataset refcoco --split val --data-root DATA --out runs/refcoco_val
    ros2_iterprime bench --random-weights
"""

#: modules of this package that are not subcommands
NOT_SUBCOMMANDS = {"common", "main", "__main__"}


def load_subcommands() -> dict:
    """Import every subcommand module of this package (each registers itself); return the registry."""
    for info in pkgutil.iter_modules(PACKAGE_PATH):
        if info.name not in NOT_SUBCOMMANDS:
            importlib.import_module(f"{PACKAGE}.{info.name}")
    return SUBCOMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ros2_iterprime", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, cmd in sorted(load_subcommands().items()):
        cmd.add_arguments(sub.add_parser(name, help=cmd.help, description=cmd.description or cmd.help))
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="[%(levelname)s] %(name)s: %(message)s")
    from ..errors import ModelNotFoundError

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
