#!/usr/bin/env bash
# The Python client's tests (unittest) with Debian's interpreter, against the
# craft-planner and craft-agent binaries in the runfiles (Bazel) or in
# $CRAFT_BIN_DIR / bazel-bin (by hand: clients/python/run_tests.sh).
set -euo pipefail
if [[ -n "${TEST_SRCDIR:-}" ]]; then
  here="$TEST_SRCDIR/craft/clients/python"
  export CRAFT_PY_STUBS="$here/stubs"
else
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fi
python=/usr/bin/python3
if ! "$python" -c 'import grpc, google.protobuf' 2>/dev/null; then
  echo "$python lacks grpc or protobuf: apt-get install python3-grpcio python3-protobuf" >&2
  exit 1
fi
cd "$here"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" tests/run.py "$@"
