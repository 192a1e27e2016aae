#!/usr/bin/env bash
# Bazel wrapper of prometheus_e2e.mjs: a local cluster scraped by a real
# Prometheus; every dashboard query must return data. Skips (passing) when
# node or Debian's prometheus is not installed. Pictures and the query list
# go to the test's undeclared outputs (bazel-testlogs/.../test.outputs/).
set -euo pipefail

RUNFILES="${TEST_SRCDIR:-.}/craft"
for tool in node prometheus promtool; do
  if ! command -v "$tool" > /dev/null; then
    echo "SKIPPED: $tool is not installed (scripts/install_deps.sh installs prometheus)"
    exit 0
  fi
done
exec node "$RUNFILES/tests/e2e/prometheus_e2e.mjs" --bin "$RUNFILES" --root "$RUNFILES" \
  --out "${TEST_UNDECLARED_OUTPUTS_DIR:-${TEST_TMPDIR:-/tmp}/e2e-out}"
