"""Which model `scripts/demo.sh` runs: the real default checkpoints wherever they can be had.

    python -m ros2_iterprime.ros.demo_model [auto|default|large|tiny-random] [--track]

Prints the chosen profile on stdout (one word) and one line on stderr saying why. ``auto`` (the demo's
default) chooses, in order:

1. ``default`` when BLIP ITM base and SAM ViT-B (with ``--track`` also SAM 2.1 hiera-tiny, the default
   profile's tracker) are complete in the model cache (``HF_HOME``; checked offline, the same check as
   ``ros2_iterprime download``);
2. else, unless ``HF_HUB_OFFLINE=1``, when the hub answers within a few seconds: fetch them
   (``ros2_iterprime download``, about 1.4 GB once) and choose ``default``;
3. else ``tiny-random``, with the one line saying why no weights could be had and that its result
   (random weights) is meaningless.

An explicit profile is passed through unchanged (a missing checkpoint then fails at the node with the
usual ModelNotFoundError and its download route). No ROS import.
"""
from __future__ import annotations

import os
import socket
import sys
import urllib.parse

from ..models.checkpoints import check_location, hub_cache_dir
from ..models.download import default_repos, download
from ..models.loading import PROFILES, hub_offline
from ..models.trackers import DEFAULT_TRACKER

__all__ = ["choose_demo_model", "hub_reachable"]

MEANINGLESS = ("tiny-random has RANDOM weights: its mask, score and 'found' are meaningless and only show that "
               "the pipeline runs end to end; `ros2_iterprime download` on a machine with internet access gives "
               "real results")


def hub_reachable(timeout_s: float = 5.0) -> tuple[bool, str]:
    """(True, '') when a TCP connection to the hub endpoint (HF_ENDPOINT or huggingface.co:443) opens in time."""
    url = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True, ""
    except OSError as exc:
        return False, f"{host}:{port} unreachable ({exc.strerror or exc})"


def _missing_summary(reports) -> str:
    return "; ".join(f"{r.model_id} {'not in the cache' if r.location is None else 'incomplete: ' + ', '.join(r.missing)}"
                     for r in reports if not r.ok)


def choose_demo_model(requested: str = "auto", track: bool = False, reachable=hub_reachable,
                      fetch=download) -> tuple[str, str]:
    """(profile, one-line reason). See the module docstring for the order."""
    if requested != "auto":
        if requested not in PROFILES:
            raise ValueError(f"unknown model {requested!r}: auto or one of {', '.join(PROFILES)}")
        return requested, f"model {requested} (asked for with ITERPRIME_DEMO_MODEL)"
    repos = default_repos(tracker=DEFAULT_TRACKER if track else None)
    reports = [check_location(repo, kind) for repo, kind in repos]
    where = hub_cache_dir()
    if all(r.ok for r in reports):
        return "default", (f"model default: {', '.join(r.model_id for r in reports)} found in the model cache "
                           f"({where})")
    missing = _missing_summary(reports)
    if hub_offline():
        why = "HF_HUB_OFFLINE=1 forbids fetching them"
    else:
        ok, why = reachable()
        if ok:
            print(f"[demo] fetching the default checkpoints ({missing}) into {where}: about 1.5 GB, once ...",
                  file=sys.stderr, flush=True)
            result = fetch(repos)
            if result.ok:
                return "default", f"model default: fetched {', '.join(r.model_id for r in result.reports)} into {where}"
            why = f"the download failed: {_missing_summary(result.reports)}"
        else:
            why = f"the hub is {why}"
    return "tiny-random", (f"no weights for the default model ({missing} under {where}) and {why}: running "
                           f"tiny-random instead. {MEANINGLESS}")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    track = "--track" in argv
    argv = [a for a in argv if a != "--track"]
    try:
        model, reason = choose_demo_model(argv[0] if argv else "auto", track=track)
    except ValueError as exc:
        print(f"[demo] ERROR: {exc}", file=sys.stderr)
        return 2
    print(f"[demo] {reason}", file=sys.stderr)
    print(model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
