"""The evaluation loop with a fake segmenter (no model): grouping, JSONL, resume, summary, errors."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from synthetic_datasets import FakeResult as _Res
from synthetic_datasets import FakeSegmenter, make_refer_dataset

from ros2_iterprime.evaluation.datasets import load_refer
from ros2_iterprime.evaluation.metrics import compute_metrics
from ros2_iterprime.evaluation.runner import (
    EvalConfig,
    EvalOutputError,
    ablation_grid,
    markdown_table,
    prepare_output,
    read_records,
    run_evaluation,
    summarize,
)

REPO = Path(__file__).resolve().parents[2]
FP = {"dataset": "refcoco", "split": "val", "model": "fake"}


@pytest.fixture()
def data(tmp_path):
    make_refer_dataset(tmp_path / "data", "refcoco", "unc", n_extra_images=2, sentences_per_extra=2)
    return load_refer(tmp_path / "data", "refcoco", "val")  # 6 + 4 samples on 4 images


def _recompute(records, configs):
    out = []
    for c in configs:
        rs = [r for r in records if (r["pwem_mode"], r["iterations"]) == (c.pwem_mode, c.iterations)]
        out.append(compute_metrics([(r["I"], r["U"]) for r in rs]))
    return out


def _assert_summary_matches_jsonl(out: Path, configs, n_samples):
    records = read_records(out / "samples.jsonl", repair=False)
    keys = [(r["sample_id"], r["pwem_mode"], r["iterations"]) for r in records]
    assert len(keys) == len(set(keys)) == n_samples * len(configs), "duplicated or missing records"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True
    for run, exp in zip(summary["runs"], _recompute(records, configs)):
        for k, v in exp.items():
            assert run["metrics"][k] == pytest.approx(v, rel=1e-12, abs=1e-15), k
        assert run["counts"]["evaluated"] == n_samples
    return summary, records


def test_run_writes_files_and_reuses_set_image(tmp_path, data):
    out = prepare_output(tmp_path / "out", FP)
    seg = FakeSegmenter()
    summary = run_evaluation(data, seg, out, [EvalConfig(0, 2)], settings={"dataset": "refcoco",
                             "split": "val", "proposals": "cam_points"}, progress=False)
    assert seg.set_image_calls == 4  # once per image, not per sentence
    assert len(seg.segment_calls) == 10
    assert all(kw == {"pwem_mode": 0, "iterations": 2} for _, kw in seg.segment_calls)
    for name in ("run.json", "samples.jsonl", "summary.json", "results.md"):
        assert (out / name).is_file(), name
    s, records = _assert_summary_matches_jsonl(out, [EvalConfig(0, 2)], 10)
    assert s == json.loads(json.dumps(summary))
    r0 = records[0]
    assert {"sample_id", "sentence", "image_id", "I", "U", "iou", "gt_area", "pred_area", "found",
            "time_s", "pwem_mode", "iterations"} <= set(r0)
    # "bottom right block" gets an empty prediction: scored IoU 0, kept
    empty = [r for r in records if "bottom" in r["sentence"]]
    assert empty and all(r["I"] == 0 and r["iou"] == 0 and r["U"] == r["gt_area"] > 0 for r in empty)
    assert summary["runs"][0]["counts"]["empty_prediction"] == len(empty)
    assert summary["runs"][0]["counts"]["not_found"] == len(empty)
    table = (out / "results.md").read_text()
    assert "| refcoco | val (unc) |" not in table  # no split_by in these settings
    assert "| refcoco | val | 0 | 2 | cam_points | 10 |" in table
    assert summary["versions"]["numpy"] and summary["wall_time_s"] >= 0


def test_ablation_grid_one_set_image_per_image(tmp_path, data):
    grid = ablation_grid()
    assert len(grid) == 15 and grid[0] == EvalConfig(0, 1) and grid[-1] == EvalConfig(4, 3)
    out = prepare_output(tmp_path / "abl", FP)
    seg = FakeSegmenter()
    summary = run_evaluation(data[:4], seg, out, grid, progress=True)
    assert seg.set_image_calls == 2
    assert len(seg.segment_calls) == 4 * 15
    assert len(summary["runs"]) == 15
    _assert_summary_matches_jsonl(out, grid, 4)
    table = (out / "results.md").read_text()
    assert table.count("\n| ") == 16  # header + 15 rows


def test_resume_after_interrupt_no_duplicates(tmp_path, data):
    out = prepare_output(tmp_path / "out", FP)
    configs = [EvalConfig(0, 1), EvalConfig(2, 3)]
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(data, FakeSegmenter(stop_after=7), out, configs, progress=False)
    assert not (out / "summary.json").exists()  # no final-looking summary for a partial run
    assert len(read_records(out / "samples.jsonl")) == 7
    seg = FakeSegmenter()
    run_evaluation(data, seg, prepare_output(out, FP), configs, progress=False)
    assert len(seg.segment_calls) == 20 - 7
    assert seg.set_image_calls == 3  # the first image (3 sentences x 2 configs = 6 records) was done
    _assert_summary_matches_jsonl(out, configs, 10)
    # running again evaluates nothing and rewrites the same metrics
    seg = FakeSegmenter()
    again = run_evaluation(data, seg, prepare_output(out, FP), configs, progress=False)
    assert seg.segment_calls == [] and seg.set_image_calls == 0
    assert again["resumed_records"] == 20


def test_truncated_last_line_is_dropped(tmp_path, data):
    out = prepare_output(tmp_path / "out", FP)
    run_evaluation(data[:3], FakeSegmenter(), out, [EvalConfig(0, 1)], progress=False)
    p = out / "samples.jsonl"
    lines = p.read_bytes().split(b"\n")
    p.write_bytes(b"\n".join(lines[:2]) + b"\n" + lines[2][:15])  # killed mid-write
    assert len(read_records(p)) == 2
    assert p.read_bytes().endswith(b"\n")
    seg = FakeSegmenter()
    run_evaluation(data[:3], seg, out, [EvalConfig(0, 1)], progress=False)
    assert len(seg.segment_calls) == 1
    _assert_summary_matches_jsonl(out, [EvalConfig(0, 1)], 3)


def test_corrupt_middle_line_is_an_error(tmp_path, data):
    out = prepare_output(tmp_path / "out", FP)
    (out / "samples.jsonl").write_text('{"sample_id": "a"}\nnot json\n{"sample_id": "b"}\n')
    with pytest.raises(EvalOutputError, match="line 2"):
        run_evaluation(data[:1], FakeSegmenter(), out, [EvalConfig(0, 1)], progress=False)


def test_settings_mismatch_refuses_resume(tmp_path, data):
    out = prepare_output(tmp_path / "out", FP)
    run_evaluation(data[:2], FakeSegmenter(), out, [EvalConfig(0, 1)], progress=False)
    with pytest.raises(EvalOutputError, match="model: 'fake' -> 'other'"):
        prepare_output(out, {**FP, "model": "other"})
    prepare_output(out, {**FP, "model": "other"}, overwrite=True)
    assert not (out / "samples.jsonl").exists()
    assert json.loads((out / "run.json").read_text())["fingerprint"]["model"] == "other"
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "samples.jsonl").write_text('{"sample_id": "x"}\n')
    with pytest.raises(EvalOutputError, match="run.json"):
        prepare_output(stray, FP)


def test_failures_count_as_zero(tmp_path, data):
    from dataclasses import replace

    samples = [replace(data[0], sample_id="bad", sentence="raise"), *data[1:3]]
    out = prepare_output(tmp_path / "out", FP)
    summary = run_evaluation(samples, FakeSegmenter(), out, [EvalConfig(1, 1)], progress=False)
    rec = read_records(out / "samples.jsonl")[0]
    assert rec["sample_id"] == "bad" and rec["I"] == 0 and rec["U"] == rec["gt_area"] and "error" in rec
    assert summary["runs"][0]["counts"] == {"samples": 3, "evaluated": 3, "missing": 0, "not_found": 2,
                                            "empty_prediction": 2, "errors": 1}


def test_wrong_mask_shape_is_an_error(tmp_path, data):
    class Bad(FakeSegmenter):
        def segment(self, sentence, **kw):
            return _Res(mask=np.zeros((8, 8), bool))

    out = prepare_output(tmp_path / "out", FP)
    with pytest.raises(ValueError, match="original resolution"):
        run_evaluation(data[:1], Bad(), out, [EvalConfig()], progress=False)


def test_summarize_ignores_other_samples_and_reports_missing(data):
    recs = [{"sample_id": data[0].sample_id, "pwem_mode": 0, "iterations": 1, "I": 1, "U": 2},
            {"sample_id": "elsewhere", "pwem_mode": 0, "iterations": 1, "I": 5, "U": 5}]
    s = summarize(data[:2], [EvalConfig(0, 1)], recs)
    assert s["complete"] is False
    assert s["runs"][0]["counts"]["missing"] == 1
    assert s["runs"][0]["metrics"]["oIoU"] == 0.5
    assert "Incomplete" in markdown_table(s)


def test_sigkill_mid_run_then_resume(tmp_path):
    """A real process killed with SIGKILL while writing; the resumed run completes without duplicates."""
    data_root = tmp_path / "data"
    make_refer_dataset(data_root, "refcoco", "unc", n_extra_images=4, sentences_per_extra=5)
    out = tmp_path / "out"
    script = tmp_path / "run_slow.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests')!r}]
        from synthetic_datasets import FakeSegmenter
        from ros2_iterprime.evaluation.datasets import load_refer
        from ros2_iterprime.evaluation.runner import EvalConfig, prepare_output, run_evaluation

        class Slow(FakeSegmenter):
            def segment(self, sentence, **kw):
                time.sleep(0.05)
                return super().segment(sentence, **kw)

        samples = load_refer({str(data_root)!r}, "refcoco", "val")
        run_evaluation(samples, Slow(), prepare_output({str(out)!r}, {FP!r}), [EvalConfig(0, 1)],
                       progress=False)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    jsonl = out / "samples.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline:
        if jsonl.is_file() and jsonl.read_bytes().count(b"\n") >= 5:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    n_before = len(read_records(jsonl, repair=False))
    assert 5 <= n_before < 26
    assert not (out / "summary.json").exists()
    samples = load_refer(data_root, "refcoco", "val")
    seg = FakeSegmenter()
    run_evaluation(samples, seg, prepare_output(out, FP), [EvalConfig(0, 1)], progress=False)
    assert len(seg.segment_calls) == 26 - n_before
    _assert_summary_matches_jsonl(out, [EvalConfig(0, 1)], 26)


def test_save_masks_rle_roundtrip(tmp_path, data):
    from ros2_iterprime.evaluation.datasets import segmentation_to_mask

    out = prepare_output(tmp_path / "out", FP)
    run_evaluation(data[:3], FakeSegmenter(), out, [EvalConfig(0, 1)], progress=False, save_masks=True)
    for r in read_records(out / "samples.jsonl"):
        m = segmentation_to_mask(r["pred_rle"], 48, 64)
        assert m.shape == (48, 64) and int(m.sum()) == r["pred_area"]
        gt = next(s for s in data if s.sample_id == r["sample_id"]).gt_mask()
        assert int((m & gt).sum()) == r["I"] and int((m | gt).sum()) == r["U"]
