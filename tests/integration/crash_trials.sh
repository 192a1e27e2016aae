#!/usr/bin/env bash
# Runs many crash-consistency trials (//tests/integration:crash_test) and
# prints their table and summary.
#
# Each trial arms one crash point (common/crash_point.h) of the planner, an
# agent or a worker of one long-lived local cluster, forces a replan, restarts
# the process after it SIGKILLed itself, then checks that every worker
# converges to the planner's committed version within 10 s (no replan from
# the test) and that a further forced replan commits a new version that every
# worker serves. Trial i uses seed SEED + i; roles rotate planner, agent,
# worker, and the first trial of each role takes its nastiest point
# (planner.commit_persisted, agent.commit_forwarded, worker.commit_received).
#
# Usage (from anywhere in the repository):
#   tests/integration/crash_trials.sh [TRIALS [SEED]]
#     TRIALS  number of trials (default 60; a passing trial takes about 1 s,
#             a failing one about 40 s: waits, then the cluster is rebuilt)
#     SEED    base seed (default: the current time, printed for replay)
#   BAZEL="bazel --output_base=DIR" tests/integration/crash_trials.sh 30 7
#     runs with another bazel command line (e.g. its own output base).
#   KEEP=1 ...  keeps each cluster's directory (/tmp/craft-it-*: every
#               process's log, state and crash-control file) for debugging.
#
# Exit status: the test's (0 when no trial split or wedged).
# Columns: seed, process, point, delay (ms before the kill), died (the point
# was reached), conv (converged), conv_s (seconds from the restart), next (the
# next forced replan committed), serv (every worker serves it), trial_s, notes
# (what each party served when a check failed, and the planner's reason).
set -euo pipefail

TRIALS="${1:-60}"
SEED="${2:-$(date +%s)}"
BAZEL="${BAZEL:-bazel}"

cd "$(dirname "$0")/../.."
echo "crash trials: ${TRIALS} trials, seed ${SEED}"

env_flags=(--test_env="CRAFT_CRASH_TRIALS=${TRIALS}" --test_env="CRAFT_CRASH_SEED=${SEED}")
if [[ -n "${KEEP:-}" ]]; then env_flags+=(--test_env=CRAFT_KEEP_CLUSTER_DIR=1); fi

status=0
# Rows stream into the log as trials finish; a run takes minutes, so the
# test's own timeout is lifted.
${BAZEL} test //tests/integration:crash_test "${env_flags[@]}" --nocache_test_results \
  --test_timeout=7200 --test_output=errors --symlink_prefix=/ >/dev/null 2>&1 || status=$?

log="$(${BAZEL} info bazel-testlogs 2>/dev/null)/tests/integration/crash_test/test.log"
if [[ ! -f "${log}" ]]; then
  echo "no test log (${log}); did the build fail? rerun: ${BAZEL} test //tests/integration:crash_test" >&2
  exit "$((status == 0 ? 1 : status))"
fi
# The table and summary, printed once more in one piece at the end of a run.
if grep -q '^=== crash trials: table' "${log}"; then
  sed -n '/^=== crash trials: table/,/^=== crash trials: summary/p' "${log}"
else
  echo "the test ended before its table; its log:" >&2
  cat "${log}"
fi
exit "${status}"
