#!/usr/bin/env bash
# The README's "set up and run the main job": set up, choose the model, start iterprime_node on this machine
# only (LOCALHOST discovery, its own ROS_DOMAIN_ID, the loopback Fast DDS profile), send a photo
# (data/coffee.jpg) and an expression from a small client, print the result, save the received
# mask/overlay to outputs/demo/, and stop the node cleanly (SIGINT). Exits non-zero on any failure.
#   bash scripts/demo.sh ["an expression"]           default "the coffee cup"
#   bash scripts/demo.sh --track ["an expression"]   mode track: ground once, then follow a moving object
#                                                    in a generated 640x480 stream
#   ROS_DISTRO=kilted bash scripts/demo.sh           the same on ROS 2 Kilted (default: Jazzy)
# The model: the real default checkpoints (BLIP ITM base + SAM ViT-B) when the model cache holds them or
# they can be fetched (ros2_iterprime/ros/demo_model.py); else tiny-random, with one line saying why and
# that its result is meaningless. ITERPRIME_DEMO_MODEL=default|large|tiny-random forces one.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
# shellcheck disable=SC1091
. "${ITERPRIME_VENV:-$root/.venv}/bin/activate"

track=0
if [ "${1:-}" = "--track" ]; then track=1; shift; fi
if [ "$track" = 1 ]; then expression="${1:-the red square}"; else expression="${1:-the coffee cup}"; fi
model="$(python -m ros2_iterprime.ros.demo_model "${ITERPRIME_DEMO_MODEL:-auto}" $([ "$track" = 1 ] && echo --track))"
out="$root/outputs/demo"
mkdir -p "$out"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ITERPRIME_DEMO_DOMAIN_ID:-$(( 150 + RANDOM % 60 ))}"
# the Fast DDS of this venv's distribution reads one of the two names (ros2_iterprime/ros/distro.py)
export "$(python -c 'from ros2_iterprime.ros.distro import fastdds_profile_variable as v; print(v())')"="$root/config/fastdds_localhost.xml"
export ROS_LOG_DIR="$out/ros_log"
export HOME="${HOME:-$root}"
unset ROS_LOCALHOST_ONLY
# tiny-random needs no hub; an automatically chosen default is complete in the cache (checked above)
if [ "$model" = "tiny-random" ] || [ -z "${ITERPRIME_DEMO_MODEL:-}" ]; then export HF_HUB_OFFLINE=1; fi

distro="$(python -c 'from ros2_iterprime.ros.distro import ros_distro; print(ros_distro())')"
echo "[demo] starting iterprime_node (model:=$model, ROS 2 $distro, ROS_DOMAIN_ID=$ROS_DOMAIN_ID, localhost only)"
node_args=(-p "model:=$model")
client_args=(--model "$model")
if [ "$track" = 1 ]; then
  node_args+=(-p mode:=track -p max_rate_hz:=0.0 -p use_depth:=false)
  client_args+=(--track "${ITERPRIME_DEMO_TRACK_SECONDS:-8}" --rate 15)
else
  client_args+=(--scene "$root/data/coffee.jpg")
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
