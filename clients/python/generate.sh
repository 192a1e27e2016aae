#!/usr/bin/env bash
# Generates the craft.v1 Python stubs (messages and gRPC stubs) from
# proto/craft/v1/*.proto with Debian's protoc and grpc_python_plugin
# (packages protobuf-compiler, protobuf-compiler-grpc). The stubs are not
# committed; the `craft` package finds them in CRAFT_PY_STUBS, or makes them
# itself on first use (craft/_stubs.py).
#
#   clients/python/generate.sh OUT_DIR [PROTO_ROOT]
#
# writes OUT_DIR/craft/v1/{agent,layout,load,placement,worker}_pb2{,_grpc}.py.
# PROTO_ROOT is the directory holding craft/v1/*.proto (default: the
# repository's proto/).
set -euo pipefail

if (($# < 1 || $# > 2)); then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
# One generator: the package's own (craft/_stubs.py), which also makes the
# stubs on first use where this script is not around.
exec /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/craft/_stubs.py" "$@"
