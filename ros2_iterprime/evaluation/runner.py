"""The evaluation loop: samples grouped by image, per-sample JSONL, resume, summary JSON + Markdown.

Output directory layout (``out_dir``)::

    run.json        settings that must not change between a run and its resumption (+ history)
    samples.jsonl   one JSON object per (sample, pwem_mode, iterations), flushed as it is written
    summary.json    metrics per configuration, counts, settings, model ids, versions, wall time
    results.md      the same as a Markdown table

Resume: records already in ``samples.jsonl`` are keyed by (sample_id, pwem_mode, iterations) and
skipped; a line cut short by a kill is dropped. The summary is always recomputed from the JSONL, so a
resumed run reports exactly what a recomputation from the file gives.

The segmenter only needs ``set_image(rgb_uint8)`` and ``segment(sentence, **overrides)`` returning an
object with ``.mask`` ((H, W) bool at the original resolution), ``.found``, ``.score``, ``.rounds``
(see ``ros2_iterprime.grounding.segmenter`` / ``results.SegmentationResult``). ``set_image`` is called once per
image; every sentence and every configuration of that image reuses it.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..errors import InvalidInputError, IterPrimeError
from ..results import mask_to_rle
from .datasets import CorruptDatasetError, DatasetNotFoundError, Sample, group_by_image
from .metrics import PREC_THRESHOLDS, MetricAccumulator, intersection_union, iou_from_counts, prec_key

__all__ = [
    "ABLATION_ITERS",
    "ABLATION_MODES",
    "EvalConfig",
    "EvalOutputError",
    "RUN_FILE",
    "SAMPLES_FILE",
    "SUMMARY_FILE",
    "TABLE_FILE",
    "ablation_grid",
    "environment_versions",
    "is_tiny_random",
    "load_image_rgb",
    "markdown_table",
    "prepare_output",
    "read_records",
    "run_evaluation",
    "summarize",
]

RUN_FILE = "run.json"
SAMPLES_FILE = "samples.jsonl"
SUMMARY_FILE = "summary.json"
TABLE_FILE = "results.md"
LOCK_FILE = ".lock"

#: The paper's ablation grid: PWEM modes 0-4 x IGRS iterations T in {1, 2, 3}.
ABLATION_MODES: tuple[int, ...] = (0, 1, 2, 3, 4)
ABLATION_ITERS: tuple[int, ...] = (1, 2, 3)


class EvalOutputError(IterPrimeError):
    """The output directory cannot be used (settings differ from the run being resumed, a corrupt
    JSONL line, another run writing to it)."""


@dataclass(frozen=True)
class EvalConfig:
    """One point of the grid: PWEM mode and IGRS iterations (None = the segmenter's default)."""

    pwem_mode: int | None = None
    iterations: int | None = None

    def overrides(self) -> dict:
        out = {}
        if self.pwem_mode is not None:
            out["pwem_mode"] = int(self.pwem_mode)
        if self.iterations is not None:
            out["iterations"] = int(self.iterations)
        return out

    def label(self) -> str:
        return f"mode={self.pwem_mode} T={self.iterations}"


def ablation_grid(modes: Iterable[int] = ABLATION_MODES,
                  iters: Iterable[int] = ABLATION_ITERS) -> list[EvalConfig]:
    """Configurations of the ablation, mode-major (mode 0: T=1,2,3; mode 1: ...)."""
    iters = list(iters)
    return [EvalConfig(int(m), int(t)) for m in modes for t in iters]


def _key(sample_id: str, mode: Any, iters: Any) -> tuple[str, Any, Any]:
    return (str(sample_id), mode, iters)


# ------------------------------------------------------------------------------------------ images


def load_image_rgb(path: Path, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB of an image file, checked against the annotated size. No EXIF rotation:
    the annotations are in the stored pixel frame."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise CorruptDatasetError(f"cannot read image {path}: {e}") from e
    if expected_hw is not None and tuple(rgb.shape[:2]) != tuple(expected_hw):
        raise CorruptDatasetError(
            f"image {path} is {rgb.shape[1]}x{rgb.shape[0]} (WxH) but the annotation says "
            f"{expected_hw[1]}x{expected_hw[0]}; wrong --image-dir or resized images?")
    return rgb


# ------------------------------------------------------------------------------------------ output


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_records(path: Path, repair: bool = True) -> list[dict]:
    """Records of a samples JSONL. A last line cut short by a kill is dropped (and, with ``repair``,
    truncated from the file so appending continues cleanly); a bad line elsewhere is an error."""
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    records = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise EvalOutputError(f"{path}: line {no} is not valid JSON ({e}); remove it to resume") from e
    if tail.strip():
        try:
            records.append(json.loads(tail))
            if repair:
                with open(path, "ab") as f:
                    f.write(b"\n")
        except json.JSONDecodeError:
            if repair:
                with open(path, "r+b") as f:
                    f.truncate(len(data) - len(tail))
    return records


def _records_by_key(records: Iterable[dict]) -> tuple[dict, int]:
    out: dict = {}
    dup = 0
    for r in records:
        k = _key(r.get("sample_id"), r.get("pwem_mode"), r.get("iterations"))
        if k in out:
            dup += 1
        out[k] = r  # the last one wins
    return out, dup


def prepare_output(out_dir: str | Path, fingerprint: dict, overwrite: bool = False) -> Path:
    """Create/validate ``out_dir`` for a (resumed) run with these settings.

    ``fingerprint``: the settings whose change would make old and new records incomparable (dataset,
    split, model ids, proposals, dtype, ...). A different fingerprint is an :class:`EvalOutputError`
    unless ``overwrite``, which deletes the previous records.
    """
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    run_path = out / RUN_FILE
    fp = json.loads(json.dumps(fingerprint, default=str))
    if overwrite:
        for name in (SAMPLES_FILE, SUMMARY_FILE, TABLE_FILE, RUN_FILE):
            with contextlib.suppress(FileNotFoundError):
                (out / name).unlink()
    if run_path.is_file():
        try:
            old = json.loads(run_path.read_text(encoding="utf-8")).get("fingerprint", {})
        except (json.JSONDecodeError, AttributeError) as e:
            raise EvalOutputError(f"{run_path} is corrupt ({e}); use --overwrite or another --out") from e
        if old != fp:
            diffs = [f"{k}: {old.get(k)!r} -> {fp.get(k)!r}" for k in sorted(set(old) | set(fp))
                     if old.get(k) != fp.get(k)]
            raise EvalOutputError(
                f"{out} holds a run with different settings ({'; '.join(diffs)}); "
                "use another --out, or --overwrite to discard it")
    elif (out / SAMPLES_FILE).is_file() and (out / SAMPLES_FILE).stat().st_size > 0:
        raise EvalOutputError(f"{out / SAMPLES_FILE} exists without {RUN_FILE}; "
                              "use another --out, or --overwrite to discard it")
    else:
        _atomic_write(run_path, json.dumps({"fingerprint": fp}, indent=2) + "\n")
    return out


@contextlib.contextmanager
def _dir_lock(out: Path):
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    f = open(out / LOCK_FILE, "w")
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            raise EvalOutputError(f"another evaluation is writing to {out}") from e
        yield
    finally:
        f.close()


# ----------------------------------------------------------------------------------------- summary


def environment_versions() -> dict:
    """Versions of Python, the key packages (from metadata; torch is not imported here) and git."""
    from importlib import metadata

    out: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("ros2_iterprime", "torch", "transformers", "huggingface_hub", "numpy", "pillow",
                "pycocotools", "spacy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    if out["ros2_iterprime"] is None:
        from .. import __version__

        out["ros2_iterprime"] = __version__
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch_cuda"] = getattr(torch.version, "cuda", None)
    try:
        repo = Path(__file__).resolve().parents[2]
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        out["git_commit"] = (rev.stdout.strip() or None) if rev.returncode == 0 else None
        if out["git_commit"]:
            st = subprocess.run(["git", "-C", str(repo), "status", "--porcelain",
                                 "--untracked-files=no"], capture_output=True, text=True, timeout=5)
            out["git_dirty"] = bool(st.stdout.strip()) if st.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = None
    return out


def summarize(samples: Sequence[Sample], configs: Sequence[EvalConfig], records: Iterable[dict],
              thresholds: Sequence[float] = PREC_THRESHOLDS) -> dict:
    """Metrics per configuration over ``samples`` (in their order), from per-sample records only.

    Records of other samples/configurations (e.g. beyond a ``--limit``) are ignored; missing ones
    are reported (``missing``) and make ``complete`` False.
    """
    by_key, dup = _records_by_key(records)
    runs = []
    complete = True
    for c in configs:
        acc = MetricAccumulator(thresholds=thresholds)
        missing = not_found = errors = empty_pred = 0
        seg_time = 0.0
        for s in samples:
            r = by_key.get(_key(s.sample_id, c.pwem_mode, c.iterations))
            if r is None:
                missing += 1
                continue
            acc.add(int(r["I"]), int(r["U"]))
            not_found += 0 if r.get("found") else 1
            errors += 1 if r.get("error") else 0
            empty_pred += 1 if int(r.get("pred_area", 0)) == 0 else 0
            seg_time += float(r.get("time_s", 0.0))
        complete = complete and missing == 0
        runs.append({
            "pwem_mode": c.pwem_mode,
            "iterations": c.iterations,
            "metrics": acc.result(),
            "counts": {"samples": len(samples), "evaluated": acc.n, "missing": missing,
                       "not_found": not_found, "empty_prediction": empty_pred, "errors": errors},
            "segment_time_s": seg_time,
            "mean_segment_time_s": seg_time / acc.n if acc.n else None,
        })
    return {"complete": complete, "duplicate_records": dup, "runs": runs}


def is_tiny_random(summary: dict) -> bool:
    """True when the summary comes from the random-weight test model."""
    m = summary.get("models", {}) or {}
    return "tiny-random" in (m.get("model"), m.get("vlm"), m.get("sam")) or str(
        m.get("proposals_model") or "").startswith("tiny-random")


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100.0 * x:.2f}"


def markdown_table(summary: dict) -> str:
    """The summary's runs as one Markdown table (metrics in percent, as in the paper)."""
    s = summary.get("settings", {})
    ths = summary.get("prec_thresholds", list(PREC_THRESHOLDS))
    name = s.get("dataset", "?")
    split = s.get("split", "?")
    if s.get("split_by"):
        split = f"{split} ({s['split_by']})"
    head = ["Dataset", "Split", "PWEM mode", "T", "Proposals", "N", "oIoU", "mIoU",
            *[f"P@{t:g}" for t in ths]]
    lines = [f"# IteRPrimE evaluation: {name} {split}", ""]
    if not summary.get("complete", True):
        lines += ["**Incomplete run** (some samples are missing; resume with the same command).", ""]
    if is_tiny_random(summary):
        lines += ["**tiny-random model: random weights, these numbers are meaningless** "
                  "(plumbing test only; never report them).", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for run in summary.get("runs", []):
        m = run["metrics"]
        row = [name, split, str(run["pwem_mode"]), str(run["iterations"]), str(s.get("proposals")),
               str(m["n"]), _pct(m["oIoU"]), _pct(m["mIoU"]),
               *[_pct(m.get(prec_key(t))) for t in ths]]
        lines.append("| " + " | ".join(row) + " |")
    models = summary.get("models", {})
    proposer = (f"proposals `{models['proposals_model']}`" if models.get("proposals_model")
                else f"SAM `{models.get('sam')}`")
    lines += ["", f"Model: `{models.get('model')}` (VLM `{models.get('vlm')}`, {proposer}), "
              f"device {s.get('device')}, dtype {s.get('dtype')}.",
              f"Command: `{summary.get('command', '')}`",
              f"Finished: {summary.get('finished_at', '')}; wall time of the last invocation "
              f"{summary.get('wall_time_s', 0):.1f} s; git {summary.get('versions', {}).get('git_commit')}.",
              ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- loop


def run_evaluation(samples: Sequence[Sample], segmenter: Any, out_dir: str | Path,
                   configs: Sequence[EvalConfig], *, settings: dict | None = None,
                   models: dict | None = None, command: str = "", progress: bool = True,
                   save_masks: bool = False, thresholds: Sequence[float] = PREC_THRESHOLDS,
                   log: Callable[[str], None] | None = None) -> dict:
    """Evaluate ``segmenter`` on ``samples`` for every configuration; resumable; returns the summary.

    ``out_dir`` must have been prepared with :func:`prepare_output`. Records are appended to
    ``samples.jsonl`` (flushed per line); the summary and the table are written only when the loop
    has finished, so an interrupted run never leaves a summary that looks final.
    """
    out = Path(out_dir)
    if not (out / RUN_FILE).is_file():
        raise EvalOutputError(f"{out} was not prepared (prepare_output)")
    configs = list(configs) or [EvalConfig()]
    settings = dict(settings or {})
    log = log or (lambda msg: print(msg, file=sys.stderr))
    t_start = time.perf_counter()
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    with _dir_lock(out):
        existing = read_records(out / SAMPLES_FILE, repair=True)
        done, dup = _records_by_key(existing)
        if dup:
            log(f"warning: {dup} duplicate records in {out / SAMPLES_FILE}; the last of each is used")
        # Running metrics per configuration, seeded with what the file already holds.
        accs = {c: MetricAccumulator(thresholds=thresholds) for c in configs}
        total = len(samples) * len(configs)
        n_done = 0
        for s in samples:
            for c in configs:
                r = done.get(_key(s.sample_id, c.pwem_mode, c.iterations))
                if r is not None:
                    accs[c].add(int(r["I"]), int(r["U"]))
                    n_done += 1
        if n_done:
            log(f"resuming: {n_done}/{total} already in {out / SAMPLES_FILE}")

        pbar = None
        if progress:
            from tqdm.auto import tqdm

            pbar = tqdm(total=total, initial=n_done, unit="sample", dynamic_ncols=True,
                        desc=f"{settings.get('dataset', 'eval')} {settings.get('split', '')}".strip())

        def show(c: EvalConfig) -> None:
            if pbar is None:
                return
            post = {"oIoU": f"{100 * accs[c].oiou:.2f}", "mIoU": f"{100 * accs[c].miou:.2f}"}
            if len(configs) > 1:
                post = {"cfg": f"m{c.pwem_mode}T{c.iterations}", **post}
            pbar.set_postfix(post, refresh=False)

        if configs:
            show(configs[0])
        with open(out / SAMPLES_FILE, "a", encoding="utf-8") as fout:
            for image_path, group in group_by_image(samples).items():
                todo = [(s, [c for c in configs
                             if _key(s.sample_id, c.pwem_mode, c.iterations) not in done])
                        for s in group]
                todo = [(s, cs) for s, cs in todo if cs]
                if not todo:
                    continue
                hw = group[0].image_size()
                rgb = load_image_rgb(image_path, hw)
                image_error = None
                try:
                    segmenter.set_image(rgb)
                except InvalidInputError as e:  # counted as failures, never dropped
                    image_error = f"set_image: {e}"
                for s, cs in todo:
                    gt = s.gt_mask()
                    if gt.shape != tuple(hw):
                        raise CorruptDatasetError(
                            f"sample {s.sample_id}: GT mask {gt.shape} != image size {hw}")
                    gt_area = int(gt.sum())
                    for c in cs:
                        rec = _evaluate_one(segmenter, s, c, gt, image_error, save_masks)
                        rec["gt_area"] = gt_area
                        fout.write(json.dumps(rec, ensure_ascii=False) + "\n")
                        fout.flush()
                        done[_key(s.sample_id, c.pwem_mode, c.iterations)] = rec
                        accs[c].add(rec["I"], rec["U"])
                        if pbar is not None:
                            show(c)
                            pbar.update(1)
        if pbar is not None:
            pbar.close()

        records = read_records(out / SAMPLES_FILE, repair=False)
        summary = summarize(samples, configs, records, thresholds=thresholds)
        summary.update({
            "settings": settings,
            "models": dict(models or {}),
            "prec_thresholds": list(thresholds),
            "num_samples": len(samples),
            "num_images": len(group_by_image(samples)),
            "command": command,
            "started_at": started,
            "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "wall_time_s": time.perf_counter() - t_start,
            "resumed_records": n_done,
            "versions": environment_versions(),
            "metric_notes": ("fractions in [0, 1]; oIoU = sum I / sum U, mIoU = mean I/U, "
                             "Prec@X = share with IoU >= X; every sample counts (empty prediction: "
                             "IoU 0; empty union: IoU 1); IoU at the original resolution"),
        })
        _atomic_write(out / SUMMARY_FILE, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        _atomic_write(out / TABLE_FILE, markdown_table(summary))
    return summary


def _evaluate_one(segmenter: Any, s: Sample, c: EvalConfig, gt: np.ndarray,
                  image_error: str | None, save_masks: bool) -> dict:
    rec: dict[str, Any] = {**s.meta(), "pwem_mode": c.pwem_mode, "iterations": c.iterations}
    pred = None
    error = image_error
    res = None
    t0 = time.perf_counter()
    if error is None:
        try:
            res = segmenter.segment(s.sentence, **c.overrides())
            pred = np.asarray(res.mask).astype(bool, copy=False)
        except InvalidInputError as e:  # e.g. an empty expression in the dataset: IoU 0, kept
            error = f"segment: {e}"
    dt = time.perf_counter() - t0
    if pred is not None and pred.shape != gt.shape:
        raise ValueError(f"sample {s.sample_id}: predicted mask {pred.shape} != GT {gt.shape}; "
                         "the segmenter must return masks at the original resolution")
    inter, union = intersection_union(pred, gt)
    rec.update({
        "I": inter,
        "U": union,
        "iou": iou_from_counts(inter, union),
        "pred_area": int(pred.sum()) if pred is not None else 0,
        "found": bool(getattr(res, "found", False)) if res is not None else False,
        "score": float(getattr(res, "score", 0.0)) if res is not None else 0.0,
        "rounds": int(getattr(res, "rounds", 0)) if res is not None else 0,
        "primary_word": getattr(res, "primary_word", None) if res is not None else None,
        "time_s": dt,
    })
    if error:
        rec["error"] = error
    if save_masks and pred is not None:
        rec["pred_rle"] = mask_to_rle(pred)
    return rec
