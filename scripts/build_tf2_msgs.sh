#!/usr/bin/env bash
# pip/venv route only: build tf2_msgs/TFMessage (interfaces/tf2_msgs) into the venv, so the node's
# plain-Python /tf listener (ros2_iterprime/ros/tf.py) can subscribe to /tf and /tf_static: there is no
# tf2_msgs (nor tf2_ros) wheel on PyPI. Skipped when tf2_msgs is importable already (a real ROS 2
# install, or built before). Needs what scripts/build_interfaces.sh installs and fixes first.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [ "${ITERPRIME_SKIP_INTERFACES:-0}" = "1" ]; then
  echo "[tf2_msgs] skipped (ITERPRIME_SKIP_INTERFACES=1)"; exit 0
fi
venv="${ITERPRIME_VENV:-$root/.venv}"
# shellcheck disable=SC1091
. "$venv/bin/activate"
pkg="$root/interfaces/tf2_msgs"
build="$venv/build/tf2_msgs"  # inside the venv: rebuilt with it when the distribution changes
stamp="$venv/.iterprime-tf2-msgs.sha"
want="$( (cat "$venv/.iterprime-ros-distro" 2>/dev/null; cat scripts/build_tf2_msgs.sh; cd "$pkg" && cat package.xml CMakeLists.txt msg/*.msg; python -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
if python -c 'from tf2_msgs.msg import TFMessage; TFMessage()' >/dev/null 2>&1; then
  if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] || [ ! -f "$stamp" ]; then
    echo "[tf2_msgs] tf2_msgs importable"; exit 0
  fi
fi
export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
pyexe="$(command -v python)"
mkdir -p "$(dirname "$build")"
echo "[tf2_msgs] building tf2_msgs/TFMessage (cmake) into $venv"
cmake -S "$pkg" -B "$build" -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$venv" \
  -DCMAKE_PREFIX_PATH="$venv" -DPython3_EXECUTABLE="$pyexe" -DPYTHON_EXECUTABLE="$pyexe" -DBUILD_TESTING=OFF \
  >"$build.configure.log" 2>&1 || { cat "$build.configure.log" >&2; echo "[tf2_msgs] ERROR: cmake configure failed" >&2; exit 1; }
cmake --build "$build" -j "$(nproc)" >"$build.build.log" 2>&1 \
  || { tail -60 "$build.build.log" >&2; echo "[tf2_msgs] ERROR: build failed (log: $build.build.log)" >&2; exit 1; }
cmake --install "$build" >"$build.install.log" 2>&1 \
  || { tail -30 "$build.install.log" >&2; echo "[tf2_msgs] ERROR: install failed" >&2; exit 1; }
python -c 'from tf2_msgs.msg import TFMessage; TFMessage()' \
  || { echo "[tf2_msgs] ERROR: built, but 'import tf2_msgs' fails" >&2; exit 1; }
echo "$want" > "$stamp"
echo "[tf2_msgs] tf2_msgs built and importable"
