#!/usr/bin/env bash
# Idempotent setup: a venv in .venv with torch (CPU wheel), the pinned requirements, this package
# (editable) and the compiled ROS 2 interfaces (ros2_iterprime_msgs). Re-running is cheap: each step
# is skipped when its inputs have not changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${ITERPRIME_VENV:-$root/.venv}"
py="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating venv $venv"
  "$py" -m venv "$venv"
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"

stamp="$venv/.iterprime-requirements.sha"
want="$(cat requirements.txt requirements-ros-pypi.txt requirements-dev.txt setup.py | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing torch==2.13.0 (CPU) and the pinned requirements"
  # torch first and pinned: an unpinned torch pulls several GB of CUDA packages.
  python -m pip install -q "torch==2.13.0"
  python -m pip install -q -r requirements.txt -r requirements-ros-pypi.txt -r requirements-dev.txt
  python -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
else
  echo "[setup] python requirements up to date"
fi

if [ -x scripts/build_interfaces.sh ]; then
  bash scripts/build_interfaces.sh
fi
if [ -f scripts/build_tf2_msgs.sh ]; then  # pip route: tf2_msgs/TFMessage for the /tf listener
  bash scripts/build_tf2_msgs.sh
fi
echo "[setup] done: . $venv/bin/activate"
