#!/usr/bin/env bash
# Runs hostile-client probes against a live local craft cluster (mutual TLS,
# one planner, two agents, four CPU workers over loopback) and prints the
# table: probes tried, refused with a clear error, unexpected outcomes,
# crashes, planner memory growth, committed state lost, Plan-flood ratios.
# See tests/security/probes.py for what each group probes.
#
#   tests/security/probe_table.sh [--bin_dir DIR] [probes.py flags...]
#
# Without --bin_dir (or CRAFT_BIN_DIR) it builds craft-planner, craft-agent,
# craft-worker and craftctl with Bazel. DIR may be a flat directory of those
# binaries or a bazel-bin tree. They are copied to a temporary directory first,
# so a concurrent rebuild cannot swap them mid-run. Useful flags: --verbose
# (every probe), --keep (keep logs), --groups malformed,identity,bounds,flood,
# --strict_flood (fail when the flood misses its 20% target).
#
# Exit status: 0 when nothing crashed or hung, no committed state was lost and
# every probe had its expected outcome.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN_DIR="${CRAFT_BIN_DIR:-}"
args=()
while (($#)); do
  case "$1" in
    --bin_dir=* | --bin-dir=*) BIN_DIR="${1#*=}" ;;
    --bin_dir | --bin-dir)
      BIN_DIR="$2"
      shift
      ;;
    *) args+=("$1") ;;
  esac
  shift
done

# Debian's packages for the client: grpcio and protobuf for Python, protoc
# and its gRPC Python plugin (stubs are generated at run time), openssl.
PACKAGES=(python3 python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc openssl)
missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  echo "probe_table: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" > /dev/null
fi

if [[ -z "$BIN_DIR" ]]; then
  (cd "$ROOT" && bazel build //server:craft-planner //agent:craft-agent \
    //gpu_worker:craft-worker //tools/craftctl)
  BIN_DIR="$ROOT/bazel-bin"
fi

bins="$(mktemp -d /tmp/craft-probe-bin-XXXXXX)"
trap 'rm -rf "$bins"' EXIT
for spec in server/craft-planner agent/craft-agent gpu_worker/craft-worker tools/craftctl/craftctl; do
  name="${spec##*/}"
  if [[ -x "$BIN_DIR/$name" ]]; then
    cp "$BIN_DIR/$name" "$bins/$name"
  elif [[ -x "$BIN_DIR/$spec" ]]; then
    cp "$BIN_DIR/$spec" "$bins/$name"
  else
    echo "probe_table: no $name in $BIN_DIR (nor $spec)" >&2
    exit 2
  fi
done

/usr/bin/python3 "$ROOT/tests/security/probes.py" --bin_dir "$bins" --repo "$ROOT" \
  ${args[@]+"${args[@]}"}
