#!/usr/bin/env bash
# The leader-failover benchmark of the high-availability mode: a real
# 3-member etcd (Debian's etcd-server) on loopback, three craft-planner
# replicas (lease TTL 2 s), two agents and four CPU workers on mutual TLS.
# The leader is SIGKILLed KILLS times, in turn idle, right after its Prepares
# went out (the apply dies before its commit point) and right after the
# commit point was persisted in etcd; the killed replica is restarted each
# time. Prints each trial's failover (SIGKILL to the first commit of a version
# minted by the new leader) and the p50 / max, persisted commits lost,
# versions minted twice; the test fails on a lost commit, a duplicate
# version, a worker that ever served an uncommitted version, or a failover of
# 10 s or more.
#
# Usage (from anywhere in the repository):
#   tests/integration/ha_failover.sh [KILLS]     (default 20)
#   BAZEL="bazel --output_base=DIR" tests/integration/ha_failover.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
KILLS="${1:-20}"
BAZEL="${BAZEL:-bazel}"
command -v etcd > /dev/null || { echo "needs etcd (Debian's etcd-server)"; exit 1; }
log="$(mktemp)"
status=0
$BAZEL test //tests/integration:ha_test --test_filter='*RepeatedLeaderKills*' \
  --test_env=CRAFT_HA_KILLS="$KILLS" --test_output=all --test_timeout=1800 --cache_test_results=no \
  > "$log" 2>&1 || status=$?
grep -E "^trial [0-9]+|^failover over|Failure|Expected|OK \]|FAILED \]" "$log" || cat "$log"
rm -f "$log"
exit "$status"
