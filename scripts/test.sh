#!/usr/bin/env bash
# The test command (README; .ci/run calls exactly this). Sets up what is missing, then:
#
#   bash scripts/test.sh                 1. the whole suite on ROS 2 $ROS_DISTRO (default jazzy) in .venv;
#                                        2. the ROS 2 adapter, node and DDS tests (tests/ros/, every test
#                                           marked `ros`) on the OTHER distribution, in its own venv
#                                           .venv-<other> (kilted, or jazzy when ROS_DISTRO=kilted).
#                                        Both passes always run; the exit status is non-zero if either fails.
#   bash scripts/test.sh [pytest args]   only pass 1, with these arguments (targeted runs), e.g.
#                                        bash scripts/test.sh tests/ros/test_distro.py -k gid
#   ROS_DISTRO=kilted ITERPRIME_VENV=.venv-kilted bash scripts/test.sh tests/ros/...
#                                        a targeted run on Kilted without rebuilding .venv
#
# DDS stays on this machine: LOCALHOST discovery, and every ROS test sets its own ROS_DOMAIN_ID.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
distro="${ROS_DISTRO:-jazzy}"
case "$distro" in
  jazzy) other=kilted ;;
  kilted) other=jazzy ;;
  *) bash scripts/setup.sh; exit $? ;;  # setup.sh explains which distributions the pip route supports
esac
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-57}"
export HF_HUB_OFFLINE=1
export HOME="${HOME:-$root}"
unset ROS_LOCALHOST_ONLY

# run_pass NAME DISTRO VENV PYTEST_ARGS...: set up VENV for DISTRO, run pytest there; records the counts.
summary=()
declare -A total=([passed]=0 [failed]=0 [skipped]=0)
run_pass() {
  local name="$1" pass_distro="$2" pass_venv="$3"
  shift 3
  echo "[test] $name: ROS 2 $pass_distro in $(basename "$pass_venv")"
  ROS_DISTRO="$pass_distro" ITERPRIME_VENV="$pass_venv" bash scripts/setup.sh || { summary+=("$name ($pass_distro): setup failed"); return 1; }
  local log
  log="$(mktemp)"
  # a subshell: the venv and the distribution reach pytest and every process it spawns (demo.sh included)
  ( export ROS_DISTRO="$pass_distro" ITERPRIME_VENV="$pass_venv"
    # shellcheck disable=SC1091
    . "$pass_venv/bin/activate"
    python -m pytest -q "$@" ) 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local line n kind
  line="$(grep -E '^=*\s*[0-9]+ (passed|failed|errors?|skipped|deselected)' "$log" | tail -1 | sed -E 's/^=+ //; s/ =+$//')"
  summary+=("$name ($pass_distro): ${line:-no pytest summary} [exit $rc]")
  while read -r n kind; do
    case "$kind" in
      passed) total[passed]=$(( total[passed] + n )) ;;
      failed|error|errors) total[failed]=$(( total[failed] + n )) ;;
      skipped) total[skipped]=$(( total[skipped] + n )) ;;
    esac
  done < <(grep -oE '[0-9]+ (passed|failed|errors?|skipped)' <<<"$line")
  rm -f "$log"
  return "$rc"
}

if [ "$#" -gt 0 ]; then
  run_pass "targeted" "$distro" "${ITERPRIME_VENV:-$root/.venv}" "$@"
  exit $?
fi

rc=0
# --durations: the slowest tests in the log, to keep the run well under CI's limit
run_pass "pass 1/2, whole suite" "$distro" "${ITERPRIME_VENV:-$root/.venv}" --durations=15 || rc=1
run_pass "pass 2/2, ROS adapter + node/DDS tests" "$other" "$root/.venv-$other" \
  -m "ros or ros_adapter" --durations=15 tests || rc=1
echo "[test] summary:"
printf '[test]   %s\n' "${summary[@]}"
[ "$rc" -ne 0 ] && [ "${total[failed]}" -eq 0 ] && total[failed]=1  # a pass that failed without a count
echo "total: ${total[passed]} passed, ${total[failed]} failed, ${total[skipped]} skipped"
exit "$rc"
