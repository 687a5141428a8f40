"""scripts/gpu_check.sh without a GPU: its dry run executes the whole plan on the CPU (tiny models), the
real run refuses clearly, and the GPU code paths that need no GPU (OOM handling) behave."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def test_dry_run_executes_the_plan_and_writes_one_json(tmp_path):
    out = tmp_path / "gpu-dry.json"
    p = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--out", str(out), "--budget-s", "400"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    res = json.loads(out.read_text())
    env = res["environment"]
    assert env["dry_run"] is True and env["torch"] == torch.__version__ and env["transformers"]
    # the GPU-marked tests exist and are collected (run for real on a GPU)
    t = res["tests"]
    assert t["rc"] == 0 and t["collected"] >= 5 and "-m gpu" in t["cmd"] and "--collect-only" in t["cmd"]
    # one bench per dtype, each in its own process, with its full result
    assert set(res["bench"]) == {"fp32", "bf16"}
    for dt, entry in res["bench"].items():
        assert entry["run"]["rc"] == 0, entry["run"]["tail"]
        r = entry["result"]
        assert r["settings"]["dtype"] == dt and r["settings"]["device"] == "cpu"
        assert r["tracking"]["sam2.1-hiera-tiny"]["status"] == "measured" and r["limits"]["stages"]
    assert res["bench"]["fp32"]["result"]["precision"]["status"].startswith("not applicable")
    assert "grounding" in res["bench"]["bf16"]["result"]["precision"]
    s = res["summary"]
    assert set(s) == {"fp32", "bf16"} and all(v["first_ms"] > 0 and v["track_ms"] > 0 for v in s.values())
    assert not any(tmp_path.glob("*.parts"))  # the per-run parts are merged into the one JSON


def test_without_a_gpu_the_real_run_refuses_clearly(tmp_path):
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi: the real run would start")
    p = subprocess.run(["bash", str(SCRIPT), "--out", str(tmp_path / "x.json")], cwd=ROOT, capture_output=True,
                       text=True, timeout=60, env={**os.environ, "ITERPRIME_GPU_VENV": str(tmp_path / "venv")})
    assert p.returncode == 2 and "no NVIDIA GPU" in p.stderr and "--dry-run" in p.stderr
    assert not (tmp_path / "venv").exists() and not (tmp_path / "x.json").exists()
    h = subprocess.run(["bash", str(SCRIPT), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert h.returncode == 0 and "--wheelhouse" in h.stdout and "--dry-run" in h.stdout
    bad = subprocess.run(["bash", str(SCRIPT), "--frobnicate"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "unknown option" in bad.stderr


def test_python_entry_refuses_without_cuda():
    from ros2_iterprime.benchmark import gpu_check

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(SystemExit, match="sees no CUDA device.*--dry-run"):
        gpu_check.run(None, dry_run=False, budget_s=10)
    assert gpu_check.slug({"gpu": "NVIDIA H100 80GB HBM3", "dry_run": False}) == "nvidia-h100-80gb-hbm3"
    plan = dict(gpu_check.bench_plan(dry_run=False, bf16=True))
    assert set(plan) == {"fp32", "fp16", "bf16"} and "cuda" in plan["fp16"] and "640x480" in plan["fp32"]
    assert set(dict(gpu_check.bench_plan(dry_run=False, bf16=False))) == {"fp32", "fp16"}


def test_out_of_memory_in_an_optional_section_becomes_its_result():
    from ros2_iterprime.benchmark.run import _guarded

    def oom():
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    r = _guarded(torch.device("cpu"), oom)
    assert r["status"] == "out of memory" and "2.00 GiB" in r["reason"]
    with pytest.raises(RuntimeError, match="unrelated"):
        _guarded(torch.device("cpu"), lambda: (_ for _ in ()).throw(RuntimeError("unrelated failure")))


def test_bench_cli_reports_out_of_memory_and_refused_dtypes(monkeypatch, capsys):
    from ros2_iterprime.cli import bench as bench_cli
    from ros2_iterprime.cli import main as cli

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")

    monkeypatch.setattr(bench_cli, "run_bench", oom)
    assert cli.main(["bench", "--model", "tiny-random"]) == 3
    assert "out of memory" in capsys.readouterr().out
    monkeypatch.undo()
    import ros2_iterprime.models.loading as loading

    monkeypatch.setattr(loading, "cpu_native_fp16", lambda flags=None: False)
    assert cli.main(["bench", "--model", "tiny-random", "--device", "cpu", "--dtype", "fp16"]) == 2
    assert "fp16 refused on this CPU" in capsys.readouterr().out
