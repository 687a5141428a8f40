"""The GPU check (`bash scripts/gpu_check.sh`): the GPU-marked tests and the bench, one JSON under docs/bench/.

Run by scripts/gpu_check.sh after it has made the environment (a CUDA torch, the pinned libraries):

    python -m ros2_iterprime.benchmark.gpu_check [--out docs/bench/gpu-<name>.json] [--budget-s 480]
    python -m ros2_iterprime.benchmark.gpu_check --dry-run --out /tmp/x.json   # the same plan on a CPU

Steps, each with its own share of the time budget (a step that runs out is recorded as timed out, the
JSON is written all the same):

1. environment: torch / CUDA versions, the GPU (name, memory, compute capability), nvidia-smi's line;
2. the GPU-marked tests (``pytest -m gpu`` over the library's test folders; no ROS needed);
3. the bench, full-size random weights (SAM-B grounding with a first and a second expression, SAM 2.1
   hiera-tiny tracking of a 640x480 stream), once per dtype: fp32, then fp16 (what `auto` picks on
   CUDA), then bf16 where the GPU has it; each run in its own process (an out-of-memory or a crash in
   one does not lose the others).

``--dry-run`` runs the same plan on this machine's CPU with the tiny models: every step, command and
file is exercised except what needs CUDA (the pytest step only collects the GPU tests; the dtypes are
fp32 and bf16, since fp16 is refused on a CPU without fp16 arithmetic). tests/benchmark/test_gpu_check.py
runs it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: test folders without ROS (the GPU machine has no ROS 2): the GPU-marked tests live there
GPU_TEST_PATHS = ("tests/benchmark", "tests/models", "tests/grounding", "tests/tracking")
BENCH_TRACKER = "sam2.1-hiera-tiny"


def environment(dry_run: bool) -> dict:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cuda_available": torch.cuda.is_available(), "dry_run": dry_run, "host": platform.node()}
    try:
        import transformers

        env["transformers"] = transformers.__version__
    except ImportError:
        env["transformers"] = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 2**30, 1),
                   compute_capability=f"{p.major}.{p.minor}", bf16=torch.cuda.is_bf16_supported())
        try:
            env["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            env["nvidia_smi"] = None
    return env


def slug(env: dict) -> str:
    """File name part for the GPU (e.g. 'nvidia-h100-80gb-hbm3'); 'cpu-dry-run' in a dry run."""
    if env.get("dry_run") or not env.get("gpu"):
        return "cpu-dry-run"
    return re.sub(r"[^a-z0-9]+", "-", env["gpu"].lower()).strip("-")


def _run(cmd: list[str], timeout: float, env: dict | None = None) -> dict:
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(1.0, timeout),
                           env={**os.environ, **(env or {})})
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as exc:
        rc = None
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
    return {"cmd": " ".join(cmd), "rc": rc, "timed_out": rc is None, "seconds": round(time.perf_counter() - t0, 1),
            "tail": out[-3000:]}


def gpu_tests(dry_run: bool, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *GPU_TEST_PATHS]
    if dry_run:
        cmd.append("--collect-only")
    r = _run(cmd, timeout, {"HF_HUB_OFFLINE": "1"})
    tail = r["tail"]
    m = re.search(r"(\d+) passed", tail)
    r["passed"] = int(m.group(1)) if m else 0
    m = re.search(r"(\d+) failed", tail)
    r["failed"] = int(m.group(1)) if m else 0
    m = re.search(r"(\d+)(?:/\d+)? tests? collected", tail)
    r["collected"] = int(m.group(1)) if m else None
    return r


def bench_plan(dry_run: bool, bf16: bool) -> list[tuple[str, list[str]]]:
    """(dtype, bench arguments) per run."""
    if dry_run:
        common = ["--model", "tiny-random", "--device", "cpu", "--reps", "1", "--warmup", "0",
                  "--tracker", BENCH_TRACKER, "--no-lossless"]
        return [(dt, ["--dtype", dt, *common]) for dt in ("fp32", "bf16")]
    common = ["--random-weights", "--device", "cuda", "--size", "640x480", "--reps", "5", "--warmup", "2",
              "--tracker", BENCH_TRACKER]
    runs = [("fp32", ["--dtype", "fp32", *common]), ("fp16", ["--dtype", "fp16", *common])]
    if bf16:
        runs.append(("bf16", ["--dtype", "bf16", *common]))
    return runs


def run(out: Path | None, dry_run: bool, budget_s: float) -> dict:
    t0 = time.perf_counter()
    env = environment(dry_run)
    if not dry_run and not env["cuda_available"]:
        raise SystemExit("gpu_check: torch sees no CUDA device (torch "
                         f"{env['torch']}, CUDA {env['cuda']}); run with --dry-run to exercise the plan on a CPU")
    out = out or ROOT / "docs" / "bench" / f"gpu-{slug(env)}.json"
    result: dict = {"environment": env, "budget_s": budget_s, "tests": None, "bench": {}}

    def left() -> float:
        return budget_s - (time.perf_counter() - t0)

    result["tests"] = gpu_tests(dry_run, min(150.0, 0.3 * left()))
    plan = bench_plan(dry_run, bool(env.get("bf16")))
    tmp = out.with_suffix(".parts")
    tmp.mkdir(parents=True, exist_ok=True)
    for i, (dt, args) in enumerate(plan):
        share = left() / (len(plan) - i)
        if share < 20:
            result["bench"][dt] = {"status": "skipped: out of time budget"}
            continue
        part = tmp / f"{dt}.json"
        r = _run([sys.executable, "-m", "ros2_iterprime.cli", "bench", *args, "--json", str(part)], share,
                 {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
        entry = {"run": r}
        if part.is_file():
            entry["result"] = json.loads(part.read_text())
            part.unlink()
        result["bench"][dt] = entry
    try:
        tmp.rmdir()
    except OSError:
        pass
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["summary"] = summary(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    result["path"] = str(out)
    return result


def summary(result: dict) -> dict:
    """The headline per dtype: first / second expression, tracked frame, targets met."""
    rows = {}
    for dt, entry in result["bench"].items():
        res = entry.get("result")
        if not res:
            rows[dt] = {"status": entry.get("status") or f"bench failed (rc {entry['run']['rc']})"}
            continue
        t = res["timings"]
        track = res["tracking"].get(BENCH_TRACKER, {})
        rows[dt] = {
            "first_ms": t["e2e: first expression on a new frame"]["median_ms"],
            "second_ms": t["e2e: second expression, same frame"]["median_ms"],
            "track_ms": track.get("per_frame_ms"), "track_fps": track.get("sustained_fps"),
            "targets_met": sorted(k for k, v in res["targets"].items() if v["met"]),
            "targets_not_met": sorted(k for k, v in res["targets"].items() if v["met"] is False),
        }
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=None, help="JSON to write (default docs/bench/gpu-<gpu name>.json)")
    p.add_argument("--budget-s", type=float, default=420.0, help="time for tests + bench runs (default 420 s)")
    p.add_argument("--dry-run", action="store_true", help="the same plan on this CPU with the tiny models")
    a = p.parse_args(argv)
    res = run(a.out, a.dry_run, a.budget_s)
    print(json.dumps({"path": res["path"], "seconds": res["seconds"], "tests": {k: res["tests"][k] for k in
                      ("rc", "passed", "failed", "collected", "timed_out")}, "summary": res["summary"]}, indent=2))
    ok = res["tests"]["rc"] == 0 and all("result" in e for e in res["bench"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
