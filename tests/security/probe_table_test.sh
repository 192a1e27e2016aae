#!/usr/bin/env bash
# probe_table.sh on the binaries Bazel built, without the timing group.
set -euo pipefail
RUNFILES="${TEST_SRCDIR:-.}/craft"
if ! /usr/bin/python3 -c 'import grpc, google.protobuf' 2>/dev/null; then
  echo "SKIPPED: /usr/bin/python3 lacks grpcio or protobuf (scripts/install_deps.sh installs them)"
  exit 0
fi
exec "$RUNFILES/tests/security/probe_table.sh" --bin_dir "$RUNFILES" \
  --groups malformed,identity,bounds
