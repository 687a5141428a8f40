#!/usr/bin/env bash
# The GPU check (issue #15): on a machine with an NVIDIA GPU and no internet, in under 8 minutes:
#   1. a venv (.venv-gpu) that sees a CUDA build of torch: the machine's own when its python3 already has
#      one (seen through --system-site-packages), else `torch==$TORCH_VERSION` as the pip configuration
#      offers it (PIP_INDEX_URL / PIP_FIND_LINKS / pip.conf, or --wheelhouse DIR);
#   2. the library's pinned requirements (requirements.txt + pytest) from the same source;
#   3. `python -m ros2_iterprime.benchmark.gpu_check`: the GPU-marked tests, then the bench (fp32, fp16 and,
#      where the GPU has it, bf16; SAM-B grounding with a second expression, SAM 2.1 hiera-tiny tracking of
#      a 640x480 stream), written as ONE JSON: docs/bench/gpu-<gpu name>.json (or --out FILE).
#
# Usage:
#   bash scripts/gpu_check.sh [--wheelhouse DIR] [--out FILE] [--budget-s SECONDS]
#   bash scripts/gpu_check.sh --prepare-wheelhouse DIR [--python-version 3.12]   # on a machine WITH PyPI:
#        downloads the wheels step 2 needs (not torch) for an offline GPU machine; carry DIR there
#   bash scripts/gpu_check.sh --dry-run [--out FILE]   # the same plan on this CPU with the tiny models
#        (no install, the GPU tests only collected; tests/benchmark/test_gpu_check.py runs it)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
wheelhouse="" out="" budget="420" dry_run=0 prepare="" pyver="3.12"
while [ $# -gt 0 ]; do
  case "$1" in
    --wheelhouse) wheelhouse="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --budget-s) budget="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --prepare-wheelhouse) prepare="$2"; shift 2 ;;
    --python-version) pyver="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
start=$(date +%s)
say() { echo "[gpu_check +$(( $(date +%s) - start ))s] $*"; }

if [ -n "$prepare" ]; then
  # wheels for the offline GPU machine: the pinned requirements and pytest, for its Python, not torch
  # (the CUDA build is the machine's own or its pip configuration's)
  mkdir -p "$prepare"
  grep -v -E '^\s*(#|$)' requirements.txt > "$prepare/requirements-gpu.txt"
  echo "pytest>=8" >> "$prepare/requirements-gpu.txt"
  echo "pytest-timeout>=2.3" >> "$prepare/requirements-gpu.txt"
  python3 -m pip download -q -d "$prepare" --only-binary=:all: --python-version "$pyver" \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -r "$prepare/requirements-gpu.txt"
  say "wheels for Python $pyver in $prepare ($(ls "$prepare" | wc -l) files); run: bash scripts/gpu_check.sh --wheelhouse $prepare"
  exit 0
fi

args=(--budget-s "$budget")
[ -n "$out" ] && args+=(--out "$out")

if [ "$dry_run" = 1 ]; then
  # no install: the project's own venv (scripts/setup.sh) and its CPU torch
  py="${ITERPRIME_VENV:-$root/.venv}/bin/python"
  [ -x "$py" ] || py="$(command -v python3)"
  say "dry run on the CPU with $py"
  export HF_HUB_OFFLINE=1
  exec "$py" -m ros2_iterprime.benchmark.gpu_check --dry-run "${args[@]}"
fi

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi missing or failing); --dry-run exercises the plan on a CPU" >&2
  exit 2
fi
say "GPU: $(nvidia-smi -L | head -1)"

venv="${ITERPRIME_GPU_VENV:-$root/.venv-gpu}"
base_py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv (sees $base_py's packages: a CUDA torch already there is used as is)"
  "$base_py" -m venv --system-site-packages "$venv"
fi
py="$venv/bin/python"
pipsrc=()
[ -n "$wheelhouse" ] && pipsrc=(--no-index --find-links "$wheelhouse")

if ! "$py" -c 'import sys, torch; sys.exit(0 if torch.version.cuda and torch.cuda.is_available() else 1)' 2>/dev/null; then
  say "installing torch==$TORCH_VERSION as the pip configuration offers it (a CUDA build on Linux x86_64 PyPI)"
  "$py" -m pip install -q ${pipsrc[@]+"${pipsrc[@]}"} "torch==$TORCH_VERSION"
fi
"$py" -c 'import sys, torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "available", torch.cuda.is_available()); sys.exit(0 if torch.cuda.is_available() else 1)' \
  || { echo "gpu_check: the installed torch sees no CUDA device" >&2; exit 2; }

stamp="$venv/.iterprime-gpu-requirements.sha"
want="$(cat requirements.txt setup.py | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing the pinned requirements (torch stays as it is)"
  grep -v -E '^\s*(#|$)' requirements.txt > "$venv/requirements-gpu.txt"
  "$py" -m pip install -q ${pipsrc[@]+"${pipsrc[@]}"} -r "$venv/requirements-gpu.txt" "pytest>=8" "pytest-timeout>=2.3"
  "$py" -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null || "$py" -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi

export HF_HUB_OFFLINE=1
say "tests + bench (budget ${budget} s)"
rc=0
"$py" -m ros2_iterprime.benchmark.gpu_check "${args[@]}" || rc=$?
say "done (exit $rc)"
exit $rc
