"""The `eval` command: argument handling and exit codes (fake model, in-process), and end to end
with the real pipeline on `tiny-random` in a subprocess that is SIGKILLed mid-run and resumed."""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from synthetic_datasets import FakeSegmenter, make_phrasecut_dataset, make_refer_dataset

from ros2_iterprime.cli import evaluate as eval_cli
from ros2_iterprime.evaluation.metrics import compute_metrics
from ros2_iterprime.evaluation.runner import read_records

REPO = Path(__file__).resolve().parents[2]


class _Cfg:
    def __init__(self, pwem_mode=0, iterations=3, proposals="cam_points"):
        self.pwem_mode, self.iterations, self.proposals = pwem_mode, iterations, proposals


@pytest.fixture()
def fake_model(monkeypatch):
    """Replace the model loader with a fake segmenter; records the load_segmenter calls."""
    import ros2_iterprime.grounding.segmenter as predictor

    calls = []

    def load(model="default", vlm=None, sam=None, config=None, **kw):
        calls.append({"model": model, "vlm": vlm, "sam": sam, "config": config, **kw})
        seg = FakeSegmenter()
        seg.config = _Cfg(config.pwem_mode, config.iterations, config.proposals)
        return seg

    monkeypatch.setattr(predictor, "load_segmenter", load)
    return calls


@pytest.fixture(scope="module")
def refer_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_refer_dataset(root, "refcoco", "unc")
    return root


def _base(root, out, *extra):
    return ["--dataset", "refcoco", "--split", "val", "--data-root", str(root), "--out", str(out),
            "--no-progress", *extra]


def _check_out(out: Path, n_samples: int, n_configs: int = 1) -> dict:
    records = read_records(out / "samples.jsonl", repair=False)
    keys = [(r["sample_id"], r["pwem_mode"], r["iterations"]) for r in records]
    assert len(keys) == len(set(keys)) == n_samples * n_configs
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True and len(summary["runs"]) == n_configs
    for run in summary["runs"]:
        rs = [r for r in records if (r["pwem_mode"], r["iterations"]) == (run["pwem_mode"], run["iterations"])]
        exp = compute_metrics([(r["I"], r["U"]) for r in rs])
        for k, v in exp.items():
            assert run["metrics"][k] == pytest.approx(v, rel=1e-12, abs=1e-15), k
    assert (out / "results.md").read_text().count("\n| refcoco |") == n_configs
    return summary


def test_eval_single_config(fake_model, refer_root, tmp_path, capsys):
    out = tmp_path / "o"
    rc = eval_cli.main(_base(refer_root, out, "--model", "tiny-random", "--mode", "2", "--iters", "1",
                             "--proposals", "automatic", "--limit", "4", "--device", "cpu"))
    assert rc == 0
    cfg = fake_model[0]["config"]
    assert (cfg.pwem_mode, cfg.iterations, cfg.proposals) == (2, 1, "automatic")
    assert fake_model[0]["model"] == "tiny-random" and fake_model[0]["device"] == "cpu"
    s = _check_out(out, 4)
    assert s["settings"]["limit"] == 4 and s["settings"]["proposals"] == "automatic"
    assert s["runs"][0]["pwem_mode"] == 2 and s["runs"][0]["iterations"] == 1
    assert s["models"] == {"model": "tiny-random", "vlm": "tiny-random", "sam": "tiny-random"}
    assert "python -m ros2_iterprime.cli.evaluate --dataset refcoco" in s["command"]
    assert "oIoU=" in capsys.readouterr().out
    # --limit can grow on resume: only the new samples are evaluated
    assert eval_cli.main(_base(refer_root, out, "--model", "tiny-random", "--mode", "2", "--iters", "1",
                               "--proposals", "automatic")) == 0
    _check_out(out, 6)


def test_eval_defaults_recorded_from_segmenter(fake_model, refer_root, tmp_path):
    out = tmp_path / "o"
    assert eval_cli.main(_base(refer_root, out)) == 0
    s = json.loads((out / "summary.json").read_text())
    # no --mode/--iters: the segmenter's defaults are what the records and table say
    assert (s["runs"][0]["pwem_mode"], s["runs"][0]["iterations"]) == (0, 3)
    assert s["settings"]["proposals"] == "cam_points"


def test_eval_ablation_grid(fake_model, refer_root, tmp_path):
    out = tmp_path / "abl"
    assert eval_cli.main(_base(refer_root, out, "--ablation", "--limit", "2")) == 0
    assert len(fake_model) == 1  # one model for the whole grid
    s = _check_out(out, 2, 15)
    assert [(r["pwem_mode"], r["iterations"]) for r in s["runs"]] == [(m, t) for m in range(5) for t in (1, 2, 3)]
    out2 = tmp_path / "abl2"
    assert eval_cli.main(_base(refer_root, out2, "--ablation", "--ablation-modes", "0,3",
                               "--ablation-iters", "1,3", "--limit", "1")) == 0
    _check_out(out2, 1, 4)


def test_eval_phrasecut(fake_model, tmp_path):
    make_phrasecut_dataset(tmp_path / "pc")
    out = tmp_path / "o"
    assert eval_cli.main(["--dataset", "phrasecut", "--split", "val", "--data-root", str(tmp_path / "pc"),
                          "--out", str(out), "--no-progress"]) == 0
    records = read_records(out / "samples.jsonl")
    assert [r["sample_id"] for r in records] == ["11__0", "11__1", "12__0"]
    assert json.loads((out / "summary.json").read_text())["settings"]["split_by"] is None


def test_eval_errors(fake_model, refer_root, tmp_path, capsys):
    out = tmp_path / "o"
    assert eval_cli.main(_base(tmp_path / "missing", out)) == 1
    assert "data root not found" in capsys.readouterr().err
    assert eval_cli.main(["--dataset", "refcoco", "--split", "test", "--data-root", str(refer_root),
                          "--out", str(out)]) == 1
    assert "valid: val, testA, testB" in capsys.readouterr().err
    assert eval_cli.main(_base(refer_root, out, "--ablation", "--mode", "1")) == 2
    assert eval_cli.main(_base(refer_root, out, "--ablation", "--ablation-modes", "7")) == 2
    with pytest.raises(SystemExit) as e:
        eval_cli.main(_base(refer_root, out, "--mode", "9"))
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        eval_cli.main(_base(refer_root, out, "--limit", "0"))
    assert fake_model == []  # nothing loaded a model for bad input
    # resuming into a directory of a run with other settings is refused
    assert eval_cli.main(_base(refer_root, out, "--limit", "1")) == 0
    assert eval_cli.main(_base(refer_root, out, "--limit", "1", "--proposals", "automatic")) == 1
    assert "different settings" in capsys.readouterr().err
    assert eval_cli.main(_base(refer_root, out, "--limit", "1", "--proposals", "automatic",
                               "--overwrite")) == 0


def test_eval_model_not_found(monkeypatch, refer_root, tmp_path, capsys):
    import ros2_iterprime.grounding.segmenter as predictor
    from ros2_iterprime.errors import ModelNotFoundError

    def load(*a, **k):
        raise ModelNotFoundError("BLIP weights not found; run `ros2_iterprime download`")

    monkeypatch.setattr(predictor, "load_segmenter", load)
    assert eval_cli.main(_base(refer_root, tmp_path / "o")) == 1
    assert "ros2_iterprime download" in capsys.readouterr().err


def test_eval_registers_itself(fake_model, refer_root, tmp_path):
    from ros2_iterprime.cli.common import SUBCOMMANDS

    cmd = SUBCOMMANDS["eval"]  # registered by importing ros2_iterprime.cli.evaluate, no entry module needed
    assert cmd.add_arguments is eval_cli.add_eval_parser
    parser = argparse.ArgumentParser(prog="x")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd.add_arguments(sub.add_parser("eval"))
    args = parser.parse_args(["eval", *_base(refer_root, tmp_path / "o", "--limit", "1")])
    assert args.func is eval_cli.run_eval_command
    assert args.func(args) == 0


def test_main_cli_has_eval(fake_model, refer_root, tmp_path):
    from ros2_iterprime.cli import main as main_cli
    assert main_cli.main(["eval", *_base(refer_root, tmp_path / "o", "--limit", "2")]) == 0
    _check_out(tmp_path / "o", 2)


# ------------------------------------------------------------------------- real pipeline, tiny-random


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["HF_HUB_OFFLINE"] = "1"
    return env


@pytest.mark.slow
def test_tiny_random_end_to_end_kill_and_resume(tmp_path):
    pytest.importorskip("ros2_iterprime.grounding.segmenter")
    root = tmp_path / "data"
    make_refer_dataset(root, "refcoco", "unc")
    out = tmp_path / "out"
    n = 5  # image 1: 3 sentences, image 2: 2
    cmd = [sys.executable, "-m", "ros2_iterprime.cli.evaluate", *_base(root, out), "--model", "tiny-random",
           "--device", "cpu", "--limit", str(n), "--iters", "2"]
    jsonl = out / "samples.jsonl"
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline:
        if jsonl.is_file() and jsonl.read_bytes().count(b"\n") >= 1:
            break
        if proc.poll() is not None:
            pytest.fail(f"eval ended before it could be killed: {proc.communicate()}")
        time.sleep(0.005)
    else:
        proc.kill()
        pytest.fail("no record written in time")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed = read_records(jsonl, repair=False)
    assert 1 <= len(killed) < n
    assert not (out / "summary.json").exists()

    res = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stderr
    s = _check_out(out, n)
    records = read_records(jsonl)
    assert [r["sample_id"] for r in records[: len(killed)]] == [r["sample_id"] for r in killed]
    assert s["resumed_records"] == len(killed)
    assert s["runs"][0]["iterations"] == 2 and s["runs"][0]["pwem_mode"] == 0
    assert s["models"]["vlm"] == "tiny-random" and s["settings"]["device"] == "cpu"
    assert s["versions"]["torch"] and s["versions"]["transformers"] and s["wall_time_s"] > 0
    for r in records:
        assert r["U"] >= r["gt_area"] > 0 and 0 <= r["I"] <= r["U"]


def test_report_table_only_from_full_real_runs(fake_model, refer_root, tmp_path, capsys):
    from ros2_iterprime.evaluation import report

    full, part, tiny = tmp_path / "full", tmp_path / "part", tmp_path / "tiny"
    assert eval_cli.main(_base(refer_root, full, "--model", "default")) == 0
    assert eval_cli.main(_base(refer_root, part, "--model", "default", "--limit", "2")) == 0
    assert eval_cli.main(_base(refer_root, tiny, "--model", "tiny-random")) == 0
    capsys.readouterr()
    assert report.main([str(full / "summary.json")]) == 0
    table = capsys.readouterr().out
    s = json.loads((full / "summary.json").read_text())
    row = [line for line in table.splitlines() if line.startswith("| refcoco |")]
    assert len(row) == 1
    assert f"| {100 * s['runs'][0]['metrics']['oIoU']:.2f} | {100 * s['runs'][0]['metrics']['mIoU']:.2f} |" in row[0]
    assert report.main([str(part / "summary.json")]) == 1
    assert "--limit" in capsys.readouterr().err
    assert report.main([str(tiny / "summary.json")]) == 1
    assert "meaningless" in capsys.readouterr().err
    assert "meaningless" in (tiny / "results.md").read_text()
    assert report.main([str(tiny / "summary.json"), "--allow-tiny-random"]) == 0
    assert "TINY-RANDOM" in capsys.readouterr().out


def test_eval_missing_image_checked_before_model_load(fake_model, tmp_path, capsys):
    root = tmp_path / "data"
    make_refer_dataset(root, "refcoco", "unc")
    (root / "images" / "mscoco" / "images" / "train2014" / "COCO_train2014_000000000002.png").unlink()
    assert eval_cli.main(_base(root, tmp_path / "o1")) == 1
    assert "COCO_train2014_000000000002.png" in capsys.readouterr().err
    assert fake_model == []
    # a --limit that only needs the first image runs
    assert eval_cli.main(_base(root, tmp_path / "o2", "--limit", "3")) == 0


def test_eval_fingerprint_resolves_defaults(fake_model, refer_root, tmp_path, capsys):
    out = tmp_path / "o"
    assert eval_cli.main(_base(refer_root, out, "--limit", "1")) == 0
    # the same settings spelled out explicitly resume the same run
    assert eval_cli.main(_base(refer_root, out, "--limit", "2", "--proposals", "cam_points",
                               "--vlm", "Salesforce/blip-itm-base-coco")) == 0
    assert len(read_records(out / "samples.jsonl")) == 2
    assert eval_cli.main(_base(refer_root, tmp_path / "o2", "--model", "nosuch")) == 1
    assert "unknown model profile" in capsys.readouterr().err
