#!/usr/bin/env bash
# Build the ROS 2 interface package ros2_iterprime_msgs (msg/srv) with plain cmake into the venv
# prefix, so that `import ros2_iterprime_msgs.msg` works next to rclpy from the PyPI ros-jazzy-* or
# ros-kilted-* wheels (the venv's distribution: ROS_DISTRO, else what scripts/setup.sh recorded).
# Idempotent and fast when already built (a stamp over the inputs; ~0.1 s). On a real ROS 2 install use
# `colcon build` instead (docs/ros.md); this script is only for the pip/venv route.
#
# What it does (measured facts: shared notes "ros2-from-pypi"):
#   1. installs the generator/ament wheels pinned in requirements-ros-build-<distro>.txt;
#   2. rewrites the build container's Python/numpy include dirs that the wheels' exported CMake files
#      name (/opt/python/cp3XX-cp3XX/...; the same two patterns in the Jazzy and the Kilted wheels) to
#      this venv's own, and fails naming the file if any other build-container path is left in a
#      CMake file (scripts/rewrite_cmake_paths.py);
#   3. cmake configure/build/install with CMAKE_PREFIX_PATH = CMAKE_INSTALL_PREFIX = AMENT_PREFIX_PATH
#      = the venv (the ament index is read from AMENT_PREFIX_PATH).
# Set ITERPRIME_SKIP_INTERFACES=1 to skip (the node then runs with standard messages only).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [ "${ITERPRIME_SKIP_INTERFACES:-0}" = "1" ]; then
  echo "[interfaces] skipped (ITERPRIME_SKIP_INTERFACES=1)"; exit 0
fi
venv="${ITERPRIME_VENV:-$root/.venv}"
# shellcheck disable=SC1091
. "$venv/bin/activate"
distro="${ROS_DISTRO:-$(cat "$venv/.iterprime-ros-distro" 2>/dev/null || echo jazzy)}"
build_requirements="requirements-ros-build-$distro.txt"
[ -f "$build_requirements" ] || { echo "[interfaces] ERROR: no $build_requirements (ROS_DISTRO=$distro)" >&2; exit 2; }
pkg="$root/ros2_iterprime_msgs"
build="$venv/build/ros2_iterprime_msgs"  # inside the venv: rebuilt with it when the distribution changes
stamp="$venv/.iterprime-interfaces.sha"
want="$( (echo "$distro"; cat "$build_requirements" scripts/build_interfaces.sh scripts/rewrite_cmake_paths.py; cd "$pkg" && cat package.xml CMakeLists.txt msg/*.msg srv/*.srv; python -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"

if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] \
   && python -c 'import ros2_iterprime_msgs.msg, ros2_iterprime_msgs.srv' >/dev/null 2>&1; then
  echo "[interfaces] ros2_iterprime_msgs up to date"
  exit 0
fi

for tool in cmake make; do
  command -v "$tool" >/dev/null || { echo "[interfaces] ERROR: '$tool' not found (apt-get install cmake build-essential)" >&2; exit 1; }
done

echo "[interfaces] installing the interface generators ($build_requirements)"
python -m pip install -q -r "$build_requirements"

echo "[interfaces] pointing the wheels' CMake exports at this venv's Python/numpy headers"
python scripts/rewrite_cmake_paths.py "$venv"

export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
pyexe="$(command -v python)"
mkdir -p "$(dirname "$build")"
echo "[interfaces] building ros2_iterprime_msgs (cmake) into $venv"
cmake -S "$pkg" -B "$build" -G "Unix Makefiles" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$venv" \
  -DCMAKE_PREFIX_PATH="$venv" \
  -DPython3_EXECUTABLE="$pyexe" -DPYTHON_EXECUTABLE="$pyexe" \
  -DBUILD_TESTING=OFF >"$build.configure.log" 2>&1 \
  || { cat "$build.configure.log" >&2; echo "[interfaces] ERROR: cmake configure failed" >&2; exit 1; }
cmake --build "$build" -j "$(nproc)" >"$build.build.log" 2>&1 \
  || { tail -60 "$build.build.log" >&2; echo "[interfaces] ERROR: build failed (full log: $build.build.log)" >&2; exit 1; }
cmake --install "$build" >"$build.install.log" 2>&1 \
  || { tail -30 "$build.install.log" >&2; echo "[interfaces] ERROR: install failed" >&2; exit 1; }

python -c 'from ros2_iterprime_msgs.msg import SegmentationResult; from ros2_iterprime_msgs.srv import Segment; SegmentationResult(); Segment.Request()' \
  || { echo "[interfaces] ERROR: built, but 'import ros2_iterprime_msgs' fails" >&2; exit 1; }
echo "$want" > "$stamp"
echo "[interfaces] ros2_iterprime_msgs built and importable"
