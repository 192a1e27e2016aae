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
out="$1"
root="${2:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../proto" && pwd)}"
protoc="${PROTOC:-/usr/bin/protoc}"
plugin="${GRPC_PYTHON_PLUGIN:-/usr/bin/grpc_python_plugin}"
for tool in "$protoc" "$plugin"; do
  if [[ ! -x "$tool" ]]; then
    echo "generate.sh: $tool not found (apt-get install protobuf-compiler protobuf-compiler-grpc)" >&2
    exit 1
  fi
done
mkdir -p "$out"
"$protoc" -I"$root" --python_out="$out" --grpc_python_out="$out" \
  --plugin=protoc-gen-grpc_python="$plugin" "$root"/craft/v1/*.proto
