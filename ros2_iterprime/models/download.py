"""Fetch checkpoints into the model cache, verify them there, and export self-contained copies.

`download` is what `ros2_iterprime download` runs: per repository, the weights it publishes
(safetensors, else the tensors-only `.bin`) with its config, tokenizer and processor files
(`checkpoints.fetch`), then `checkpoints.check_location`; with ``to=DIR`` each verified checkpoint is
also re-saved as one safetensors folder (`export_checkpoint`) for robots without hub access.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import ModelNotFoundError
from . import checkpoints
from .loading import DEFAULT_SAM, DEFAULT_VLM, TINY, _first_line, hub_offline, load_pretrained


def default_repos(vlm: str | None = DEFAULT_VLM, sam: str | None = DEFAULT_SAM,
                  tracker: str | None = None) -> list[tuple[str, str]]:
    """[(repo id, kind)] for a (vlm, sam[, tracker]) set, without 'tiny-random*' names and None."""
    return [(r, k) for r, k in ((vlm, "vlm"), (sam, "sam"), (tracker, "tracker"))
            if r is not None and not r.startswith(TINY)]


@dataclass
class DownloadResult:
    """Outcome of `download`: one check per repository, the exported folders, whether anything was fetched."""

    reports: list[checkpoints.CheckReport]
    exported: dict[str, str]
    fetched: bool

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports)


def export_checkpoint(model_id: str, kind: str, out_dir: str | os.PathLike, cache_dir: str | None = None) -> str:
    """Write a self-contained safetensors directory of one checkpoint (model + processors, save_pretrained).

    The result loads with --vlm/--sam DIR (or the node's vlm/sam/tracker_model parameters, or
    `tracking.load_tracker(DIR)`) on a machine with no hub access. The model class follows the
    checkpoint's config.json (`ModelKind.class_for`: Sam2VideoModel or EdgeTamVideoModel for a tracker);
    processor files the kind lists in ``copy_files`` are copied as they are.
    """
    import shutil

    import transformers

    spec = checkpoints.KINDS[kind]
    out = os.path.join(os.fspath(out_dir), checkpoints.export_name(model_id))
    os.makedirs(out, exist_ok=True)
    src = checkpoints.locate(model_id, cache_dir)
    for name in (spec.class_for(src), *spec.processor_classes):
        obj = load_pretrained(getattr(transformers, name), kind, model_id, local_files_only=True, cache_dir=cache_dir)
        obj.save_pretrained(out)
    for name in spec.copy_files:
        if src is not None and (src / name).is_file():
            shutil.copyfile(src / name, os.path.join(out, name))  # follows the cache's links
    rep = checkpoints.check_location(out, kind)
    if not rep.ok or rep.weights is None or rep.weights.format != checkpoints.SAFETENSORS:
        raise ModelNotFoundError(f"export of {model_id!r} to {out} is incomplete: {rep.describe()}")
    return out


def download(repos: list[tuple[str, str]] | None = None, *, cache_dir: str | None = None,
             to: str | os.PathLike | None = None) -> DownloadResult:
    """Fetch each (repo id, kind) into the model cache, verify it there, optionally export it.

    Fetching (`checkpoints.fetch`: the weights the repository publishes, safetensors else .bin, plus its
    config / tokenizer / processor files) is skipped with HF_HUB_OFFLINE=1: then this only verifies and
    reports what the cache holds. With `to`, every verified checkpoint is also written as a
    self-contained safetensors directory `to/<repo name>` (`export_checkpoint`).
    """
    repos = default_repos() if repos is None else repos
    offline = hub_offline()
    reports, exported = [], {}
    for repo, kind in repos:
        error = None
        if not offline and not os.path.isdir(repo):
            try:
                checkpoints.fetch(repo, cache_dir)
            except Exception as exc:  # network, unknown or gated repo: reported with the check below
                error = f"download failed ({_first_line(exc)})"
        rep = checkpoints.check_location(repo, kind, cache_dir)
        if error and not rep.ok:
            rep.missing.insert(0, error)
        reports.append(rep)
    result = DownloadResult(reports, exported, fetched=not offline)
    if to is not None and result.ok:
        for rep in reports:
            exported[rep.model_id] = export_checkpoint(rep.model_id, rep.kind, to, cache_dir)
    return result
