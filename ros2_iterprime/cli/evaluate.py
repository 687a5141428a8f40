"""``ros2_iterprime eval``: benchmark evaluation (RefCOCO / RefCOCO+ / RefCOCOg / PhraseCut).

    ros2_iterprime eval --dataset refcoco --split val --data-root DATA --out runs/refcoco_val
    ros2_iterprime eval --dataset refcoco --split val --data-root DATA --ablation --out runs/abl
    python -m ros2_iterprime.cli.evaluate --dataset ... (same options, without the sub-command)

Exit codes: 0 done, 1 dataset/model/output error (message on stderr), 2 bad arguments,
130 interrupted (resume with the same command).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from typing import Sequence

from ..errors import IterPrimeError
from ..evaluation.datasets import DATASETS, check_images_exist, load_dataset
from ..evaluation.runner import (
    ABLATION_ITERS,
    ABLATION_MODES,
    SAMPLES_FILE,
    SUMMARY_FILE,
    TABLE_FILE,
    EvalConfig,
    ablation_grid,
    prepare_output,
    run_evaluation,
)
from .common import PROPOSAL_CHOICES, add_model_args, proposal_settings, subcommand

__all__ = ["add_eval_arguments", "add_eval_parser", "build_parser", "main", "run_eval_command"]

DESCRIPTION = ("Evaluate on RefCOCO / RefCOCO+ / RefCOCOg (REFER format) or PhraseCut: oIoU, mIoU, "
               "Prec@0.5-0.9. Writes a resumable per-sample JSONL, a summary JSON and a Markdown table.")


def _int_list(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from e
    if not vals:
        raise argparse.ArgumentTypeError("empty list")
    return vals


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from e
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def add_eval_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add every ``eval`` option to ``p``."""
    d = p.add_argument_group("data")
    d.add_argument("--dataset", required=True, choices=DATASETS)
    d.add_argument("--split", required=True,
                   help="refcoco/refcoco+ (unc): val, testA, testB; refcocog: val, test (umd), "
                        "val (google); refcoco (google): val, test; phrasecut: val, test, miniv")
    d.add_argument("--split-by", default=None, choices=("unc", "umd", "google"),
                   help="REFER partition (default: unc for refcoco/refcoco+, umd for refcocog)")
    d.add_argument("--data-root", required=True,
                   help="DATA_ROOT holding <dataset>/refs(<split_by>).p + instances.json (REFER) or "
                        "VGPhraseCut_v0/refer_<split>.json (PhraseCut); see docs/evaluation.md. "
                        "The refs pickle is only ever loaded from here: use data you trust")
    d.add_argument("--image-dir", default=None,
                   help="image directory (default: DATA_ROOT/images/mscoco/images/train2014 for REFER, "
                        "VGPhraseCut_v0/images for PhraseCut)")
    d.add_argument("--sentence-field", default="sent", choices=("sent", "raw"),
                   help="REFER sentence text: the normalised 'sent' (default) or the 'raw' one")
    d.add_argument("--limit", type=_positive, default=None,
                   help="evaluate only the first N sentences (in dataset order)")

    m = p.add_argument_group("method")
    m.add_argument("--mode", type=int, choices=ABLATION_MODES, default=None,
                   help="PWEM mode (0 full PWEM, 1 all tokens, 2 kept tokens + [CLS], 3 = 2 + global, "
                        "4 = 2 + local emphasis); default: the segmenter's default")
    m.add_argument("--iters", type=_positive, default=None,
                   help="IGRS iterations T; default: the segmenter's default")
    m.add_argument("--proposals", choices=PROPOSAL_CHOICES, default=None,
                   help="SAM proposal mode (cam_points, automatic); default: the segmenter's default. "
                        "mask2former = --proposals-model mask2former: the paper's configuration (Mask2Former "
                        "Swin-L COCO panoptic proposals, SAM not loaded)")
    m.add_argument("--ablation", action="store_true",
                   help="run the paper's ablation grid (modes x T, one model load, one set_image per "
                        "image) and write one table")
    m.add_argument("--ablation-modes", type=_int_list, default=list(ABLATION_MODES),
                   help="comma-separated PWEM modes of the ablation grid (default 0,1,2,3,4)")
    m.add_argument("--ablation-iters", type=_int_list, default=list(ABLATION_ITERS),
                   help="comma-separated T values of the ablation grid (default 1,2,3)")

    add_model_args(p)  # --model/--vlm/--sam/--proposals-model/--device/--dtype/--local-files-only/--cache-dir

    o = p.add_argument_group("output")
    o.add_argument("--out", required=True,
                   help=f"output directory ({SAMPLES_FILE}, {SUMMARY_FILE}, {TABLE_FILE}); "
                        "re-running the same command there resumes")
    o.add_argument("--overwrite", action="store_true",
                   help="discard the records already in --out instead of resuming")
    o.add_argument("--save-masks", action="store_true",
                   help="also store each predicted mask (COCO RLE) in the JSONL")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


@subcommand("eval", help="benchmark evaluation (RefCOCO/+/g, PhraseCut)", description=DESCRIPTION)
def add_eval_parser(p: argparse.ArgumentParser) -> None:
    """The ``eval`` sub-command's arguments."""
    add_eval_arguments(p)
    p.set_defaults(func=run_eval_command)


def build_parser() -> argparse.ArgumentParser:
    """Stand-alone parser (``python -m ros2_iterprime.cli.evaluate``)."""
    p = argparse.ArgumentParser(prog="python -m ros2_iterprime.cli.evaluate", description=DESCRIPTION)
    add_eval_arguments(p)
    p.set_defaults(func=run_eval_command)
    return p


def _configs(args) -> list[EvalConfig]:
    if args.ablation:
        if args.mode is not None or args.iters is not None:
            raise ValueError("--ablation runs a grid: use --ablation-modes / --ablation-iters, "
                             "not --mode / --iters")
        bad = [v for v in args.ablation_modes if v not in ABLATION_MODES]
        if bad:
            raise ValueError(f"--ablation-modes: unknown PWEM modes {bad}; valid: {list(ABLATION_MODES)}")
        if any(t < 1 for t in args.ablation_iters):
            raise ValueError("--ablation-iters: T must be >= 1")
        return ablation_grid(args.ablation_modes, args.ablation_iters)
    return [EvalConfig(args.mode, args.iters)]


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def run_eval_command(args: argparse.Namespace) -> int:
    """Run ``eval`` with parsed arguments; returns the exit code."""
    try:
        configs = _configs(args)
        proposal_kw = proposal_settings(args.proposals, getattr(args, "proposals_model", None))
    except ValueError as e:
        _err(str(e))
        return 2
    argv = getattr(args, "_argv", None)
    if argv is not None:  # python -m ros2_iterprime.cli.evaluate ...
        command = " ".join(["python -m ros2_iterprime.cli.evaluate", *map(shlex.quote, argv)])
    else:  # ros2_iterprime eval ...
        command = " ".join(["ros2_iterprime", *map(shlex.quote, sys.argv[1:])])
    try:
        # Fail fast (before the slow model load) on data and output problems.
        samples = load_dataset(args.dataset, args.split, args.data_root, split_by=args.split_by,
                               image_dir=args.image_dir, sentence_field=args.sentence_field,
                               check_images=False)
        if args.limit is not None:
            samples = samples[: args.limit]
        check_images_exist(samples)  # every image this run needs, before the model loads
        if not samples:
            _err(f"{args.dataset} {args.split}: no samples")
            return 1
        split_by = None if args.dataset == "phrasecut" else (
            args.split_by or ("umd" if args.dataset == "refcocog" else "unc"))

        from ..grounding.segmenter import SegmenterConfig, load_segmenter

        cfg_kw = dict(proposal_kw)
        if not args.ablation:
            if args.mode is not None:
                cfg_kw["pwem_mode"] = args.mode
            if args.iters is not None:
                cfg_kw["iterations"] = args.iters
        seg_config = SegmenterConfig(**cfg_kw)
        vlm_id, sam_id = _resolve_ids(args.model, args.vlm, args.sam)
        proposals_model = _proposals_model_id(seg_config.proposals_model, vlm_id)
        if proposals_model != "sam":
            sam_id = None  # SAM v1 is not loaded: the proposals come from another network
        # What must not change between a run and its resumption (defaults resolved, so that
        # `--proposals cam_points` and no --proposals, or --model vs the same explicit ids, match).
        fingerprint = {
            "dataset": args.dataset, "split": args.split, "split_by": split_by,
            "sentence_field": args.sentence_field if args.dataset != "phrasecut" else None,
            "vlm": vlm_id, "sam": sam_id,
            "proposals": getattr(seg_config, "proposals", args.proposals), "dtype": args.dtype,
        }
        if proposals_model != "sam":  # (absent for SAM v1, so that earlier SAM runs still resume)
            fingerprint["proposals_model"] = proposals_model
            if _is_mask2former(seg_config.proposals_model):  # the SAM prompting mode does not apply
                fingerprint["proposals"] = "mask2former"
        out = prepare_output(args.out, fingerprint, overwrite=args.overwrite)

        seg = load_segmenter(args.model, vlm=args.vlm, sam=args.sam, device=args.device,
                             dtype=args.dtype, config=seg_config,
                             local_files_only=True if args.local_files_only else None,
                             cache_dir=args.cache_dir)
        segcfg = getattr(seg, "config", None)
        # Record the values actually used (the segmenter's defaults where none was given).
        configs = [EvalConfig(c.pwem_mode if c.pwem_mode is not None else getattr(segcfg, "pwem_mode", None),
                              c.iterations if c.iterations is not None else getattr(segcfg, "iterations", None))
                   for c in configs]
        settings = {
            **fingerprint,
            "model": args.model,
            "proposals": fingerprint["proposals"] if proposals_model != "sam" else (
                getattr(segcfg, "proposals", None) or fingerprint["proposals"]),
            "limit": args.limit, "data_root": str(args.data_root), "image_dir": args.image_dir,
            "device": str(_seg_attr(seg, "device") or args.device),
            "dtype_resolved": str(_seg_attr(seg, "dtype") or args.dtype),
            "ablation": bool(args.ablation),
            "grid": [[c.pwem_mode, c.iterations] for c in configs],
            "segmenter_config": _config_dict(segcfg),
        }
        models = {"model": args.model, "vlm": _seg_attr(seg, "vlm_id") or vlm_id,
                  "sam": _seg_attr(seg, "sam_id") or sam_id}
        if proposals_model != "sam":
            models["proposals_model"] = proposals_model
        summary = run_evaluation(samples, seg, out, configs, settings=settings, models=models,
                                 command=command, progress=not args.no_progress)
    except KeyboardInterrupt:
        _err(f"interrupted; the records so far are in {args.out}/{SAMPLES_FILE}: "
             "run the same command again to resume")
        return 130
    except (IterPrimeError, ValueError, OSError) as e:
        _err(str(e))
        return 1
    for run in summary["runs"]:
        m = run["metrics"]
        print(f"{args.dataset} {args.split} mode={run['pwem_mode']} T={run['iterations']}: "
              f"N={m['n']} oIoU={100 * m['oIoU']:.2f} mIoU={100 * m['mIoU']:.2f} "
              f"P@0.5={100 * m['Prec@0.5']:.2f}")
    print(f"wrote {out / SUMMARY_FILE} and {out / TABLE_FILE}")
    if args.model == "tiny-random":
        print("note: tiny-random has random weights; these numbers are meaningless", file=sys.stderr)
    return 0


def _resolve_ids(model: str, vlm: str | None, sam: str | None) -> tuple[str | None, str | None]:
    """(vlm id, sam id) of a profile plus overrides (the overrides alone if the registry is absent)."""
    try:
        from ..models.loading import resolve_profile
    except ImportError:
        return vlm or model, sam or model
    return resolve_profile(model, vlm, sam)


def _proposals_model_id(name: str, vlm_id: str | None) -> str:
    """'sam', or the proposal network's resolved id ('mask2former' -> the checkpoint it loads)."""
    try:
        from ..models.loading import TINY
        from ..models.mask2former import mask2former_id
    except ImportError:
        return name
    return mask2former_id(name, tiny=vlm_id == TINY) or name


def _is_mask2former(name: str) -> bool:
    try:
        from ..models.mask2former import is_mask2former
    except ImportError:
        return False
    return is_mask2former(name)


def _seg_attr(seg, name: str):
    for obj in (seg, getattr(seg, "models", None)):
        if obj is not None and getattr(obj, name, None) is not None:
            return getattr(obj, name)
    return None


def _config_dict(cfg) -> dict | None:
    if cfg is None:
        return None
    import dataclasses

    if dataclasses.is_dataclass(cfg):
        return {k: (v if isinstance(v, (int, float, str, bool, type(None), list)) else str(v))
                for k, v in dataclasses.asdict(cfg).items()}
    return {"repr": repr(cfg)}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args._argv = argv
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
