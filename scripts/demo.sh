#!/usr/bin/env bash
# The README's "set up and run the main job": set up, start iterprime_node with the tiny model on this
# machine only (LOCALHOST discovery, its own ROS_DOMAIN_ID, the loopback Fast DDS profile), send a
# generated 640x480 image and an expression from a small client, print the result, save the received
# mask/overlay to outputs/demo/, and stop the node cleanly (SIGINT). Exits non-zero on any failure.
#   bash scripts/demo.sh ["an expression"]           (ITERPRIME_DEMO_MODEL=default for the real model)
#   bash scripts/demo.sh --track ["an expression"]   mode track: ground once, then follow a moving object
#                                                    in a generated 640x480 stream (tiny SAM 2 tracker)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
# shellcheck disable=SC1091
. "${ITERPRIME_VENV:-$root/.venv}/bin/activate"

track=0
if [ "${1:-}" = "--track" ]; then track=1; shift; fi
expression="${1:-the red square on the left}"
model="${ITERPRIME_DEMO_MODEL:-tiny-random}"
out="$root/outputs/demo"
mkdir -p "$out"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ITERPRIME_DEMO_DOMAIN_ID:-$(( 150 + RANDOM % 60 ))}"
export FASTDDS_DEFAULT_PROFILES_FILE="$root/config/fastdds_localhost.xml"
export ROS_LOG_DIR="$out/ros_log"
export HOME="${HOME:-$root}"
unset ROS_LOCALHOST_ONLY
[ "$model" = "tiny-random" ] && export HF_HUB_OFFLINE=1

echo "[demo] starting iterprime_node (model:=$model, ROS_DOMAIN_ID=$ROS_DOMAIN_ID, localhost only)"
node_args=(-p "model:=$model")
client_args=()
if [ "$track" = 1 ]; then
  node_args+=(-p mode:=track -p max_rate_hz:=0.0 -p use_depth:=false)
  client_args+=(--track "${ITERPRIME_DEMO_TRACK_SECONDS:-8}" --rate 15)
fi
iterprime_node --ros-args --params-file config/params.yaml "${node_args[@]}" >"$out/node.log" 2>&1 &
node_pid=$!
stop_node() {
  if kill -0 "$node_pid" 2>/dev/null; then
    kill -INT "$node_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$node_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$node_pid" 2>/dev/null && { echo "[demo] node did not stop on SIGINT; SIGTERM" >&2; kill -TERM "$node_pid" || true; }
  fi
  wait "$node_pid" 2>/dev/null
}
trap 'stop_node || true' EXIT

rc=0
python -m ros2_iterprime.ros.demo_client --expression "$expression" --out "$out" --timeout 180 \
  --node-pid "$node_pid" "${client_args[@]}" || rc=$?
node_rc=0
stop_node || node_rc=$?
trap - EXIT
if [ "$rc" -ne 0 ]; then
  echo "[demo] FAILED (client exit $rc); node log: $out/node.log" >&2
  tail -n 20 "$out/node.log" >&2 || true
  exit "$rc"
fi
if [ "$node_rc" -ne 0 ]; then
  echo "[demo] FAILED: the node exited with $node_rc; log: $out/node.log" >&2
  tail -n 20 "$out/node.log" >&2 || true
  exit "$node_rc"
fi
echo "[demo] node stopped cleanly; log: $out/node.log"
