#!/usr/bin/env bash
# Idempotent setup: a venv with torch (CPU wheel), the pinned requirements, ROS 2 from PyPI for ONE
# distribution, this package (editable) and the compiled ROS 2 interfaces (ros2_iterprime_msgs).
#
#   bash scripts/setup.sh                      ROS 2 Jazzy (the default: the LTS, supported until 2029)
#   ROS_DISTRO=kilted bash scripts/setup.sh    ROS 2 Kilted
#   ITERPRIME_VENV=/path/venv ...              another venv than .venv
#
# The venv records the distribution it holds (.iterprime-ros-distro); asking for another one rebuilds it
# from scratch (the two distributions' wheels share their unprefixed names, e.g. ros-rclpy 7 vs 9, and
# the interfaces are compiled against one of them). Re-running is cheap: each step is skipped when its
# inputs have not changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${ITERPRIME_VENV:-$root/.venv}"
py="${PYTHON:-python3}"
distro="${ROS_DISTRO:-jazzy}"
case "$distro" in
  jazzy|kilted) ;;
  *) echo "[setup] ERROR: ROS_DISTRO=$distro: the pip route supports jazzy (default) and kilted, the" \
          "distributions with rclpy wheels on PyPI. For $distro build with colcon on a real ROS 2 install" \
          "(README, 'Install'); or unset ROS_DISTRO." >&2
     exit 2 ;;
esac
export ROS_DISTRO="$distro"
ros_requirements="requirements-ros-$distro.txt"

record="$venv/.iterprime-ros-distro"
if [ -x "$venv/bin/python" ]; then
  held="$(cat "$record" 2>/dev/null || echo "an unrecorded distribution")"
  if [ "$held" != "$distro" ]; then
    echo "[setup] $venv holds ROS 2 $held; rebuilding it for ROS 2 $distro"
    rm -rf "$venv"
  fi
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating venv $venv (ROS 2 $distro)"
  "$py" -m venv "$venv"
  echo "$distro" > "$record"
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"

stamp="$venv/.iterprime-requirements.sha"
want="$(cat requirements.txt "$ros_requirements" requirements-dev.txt setup.py | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing torch==2.13.0 (CPU), the pinned requirements and ROS 2 $distro ($ros_requirements)"
  # torch first and pinned: an unpinned torch pulls several GB of CUDA packages.
  python -m pip install -q "torch==2.13.0"
  python -m pip install -q -r requirements.txt -r "$ros_requirements" -r requirements-dev.txt
  python -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
else
  echo "[setup] python requirements up to date (ROS 2 $distro)"
fi

if [ -x scripts/build_interfaces.sh ]; then
  ITERPRIME_VENV="$venv" bash scripts/build_interfaces.sh
fi
if [ -f scripts/build_tf2_msgs.sh ]; then  # pip route: tf2_msgs/TFMessage for the /tf listener
  ITERPRIME_VENV="$venv" bash scripts/build_tf2_msgs.sh
fi
echo "[setup] done (ROS 2 $distro): . $venv/bin/activate"
