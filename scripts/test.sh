#!/usr/bin/env bash
# The test command (README, .ci/run): set up if needed, then run the whole suite.
# DDS stays on this machine: every ROS test also sets its own ROS_DOMAIN_ID.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
# shellcheck disable=SC1091
. "${ITERPRIME_VENV:-$root/.venv}/bin/activate"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-57}"
export HF_HUB_OFFLINE=1
export HOME="${HOME:-$root}"
exec python -m pytest -q "$@"
