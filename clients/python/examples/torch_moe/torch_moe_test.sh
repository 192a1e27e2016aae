#!/usr/bin/env bash
# The torch MoE engine's test, through the Python client's runner (clients/python/run_tests.sh:
# Debian's /usr/bin/python3, the stubs and craft binaries from Bazel's runfiles or, by hand,
# from $CRAFT_BIN_DIR / bazel-bin).
set -euo pipefail
if ! /usr/bin/python3 -c 'import torch, numpy' 2>/dev/null; then
  echo "/usr/bin/python3 lacks torch or numpy: apt-get install python3-torch" >&2
  exit 1
fi
if [[ -n "${TEST_SRCDIR:-}" ]]; then
  runner="$TEST_SRCDIR/craft/clients/python/run_tests.sh"
else
  runner="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/run_tests.sh"
fi
exec "$runner" examples.torch_moe.torch_moe_test "$@"
