"""Build the documentation's results table from ``summary.json`` files written by ``eval``.

    python -m ros2_iterprime.evaluation.report runs/*/summary.json > table.md

Every number in the table comes from a summary, i.e. from a run of the command. Summaries of
incomplete runs, of ``--limit`` runs (not the full split) and of the ``tiny-random`` test model are
refused unless explicitly allowed (``--allow-partial`` / ``--allow-tiny-random``), and such rows are
then marked.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from .metrics import PREC_THRESHOLDS, prec_key
from .runner import is_tiny_random

HEADER = ["Dataset", "Split", "PWEM mode", "T", "Proposals", "Model", "N", "oIoU", "mIoU",
          *[f"P@{t:g}" for t in PREC_THRESHOLDS], "Date", "Commit"]


class ReportError(ValueError):
    """A summary that must not go into the results table."""


def rows_from_summary(summary: dict, allow_partial: bool = False,
                      allow_tiny_random: bool = False, source: str = "") -> list[list[str]]:
    s = summary.get("settings", {})
    notes = []
    if not summary.get("complete"):
        if not allow_partial:
            raise ReportError(f"{source}: incomplete run (resume it first)")
        notes.append("INCOMPLETE")
    if s.get("limit") is not None:
        if not allow_partial:
            raise ReportError(f"{source}: a --limit {s['limit']} run, not the full split")
        notes.append(f"limit {s['limit']}")
    if is_tiny_random(summary):
        if not allow_tiny_random:
            raise ReportError(f"{source}: tiny-random (random weights) numbers are meaningless")
        notes.append("TINY-RANDOM, MEANINGLESS")
    split = s.get("split", "?")
    if s.get("split_by"):
        split = f"{split} ({s['split_by']})"
    if notes:
        split += " [" + ", ".join(notes) + "]"
    models = summary.get("models", {})
    model = f"{models.get('vlm')} + {models.get('proposals_model') or models.get('sam')}"
    commit = (summary.get("versions", {}).get("git_commit") or "")[:10]
    rows = []
    for run in summary.get("runs", []):
        m = run["metrics"]
        rows.append([str(s.get("dataset")), split, str(run["pwem_mode"]), str(run["iterations"]),
                     str(s.get("proposals")), model, str(m["n"]),
                     f"{100 * m['oIoU']:.2f}", f"{100 * m['mIoU']:.2f}",
                     *[f"{100 * m[prec_key(t)]:.2f}" for t in PREC_THRESHOLDS],
                     str(summary.get("finished_at", ""))[:10], commit])
    return rows


def build_table(paths: Sequence[str | Path], allow_partial: bool = False,
                allow_tiny_random: bool = False) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join(["---"] * len(HEADER)) + "|"]
    for p in paths:
        try:
            summary = json.loads(Path(p).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ReportError(f"{p}: cannot read summary ({e})") from e
        for row in rows_from_summary(summary, allow_partial, allow_tiny_random, source=str(p)):
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ros2_iterprime.evaluation.report",
                                 description="Markdown results table from eval summary.json files")
    ap.add_argument("summaries", nargs="+", help="summary.json files written by `ros2_iterprime eval`")
    ap.add_argument("--allow-partial", action="store_true", help="include incomplete / --limit runs (marked)")
    ap.add_argument("--allow-tiny-random", action="store_true", help="include tiny-random runs (marked)")
    args = ap.parse_args(argv)
    try:
        sys.stdout.write(build_table(args.summaries, args.allow_partial, args.allow_tiny_random))
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
