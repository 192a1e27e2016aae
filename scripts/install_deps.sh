#!/usr/bin/env bash
# Installs craft's build and test prerequisites from Debian 12's archive.
# Idempotent: packages already present are left alone, and apt is not touched
# at all when everything is installed.
set -euo pipefail

PACKAGES=(
  bazel-bootstrap bazel-rules-java          # Bazel 4.2.3 and the rules_java it needs offline
  g++ protobuf-compiler libprotobuf-dev     # compiler and protobuf
  clang                                     # the thread-safety build (scripts/thread_safety.sh)
  protobuf-compiler-grpc libgrpc++-dev      # gRPC C++ (callback API)
  libabsl-dev                               # Abseil (Status, StatusOr, strings, flags)
  prometheus-cpp-dev libyaml-cpp-dev        # metrics and configuration
  nlohmann-json3-dev                        # JSON for traces and layouts
  python3-grpcio python3-protobuf           # the Python client and the security probes
  openssl                                   # tests make their certificates (scripts/make_certs.sh)
  libgtest-dev libgmock-dev libbenchmark-dev
  prometheus                                # promtool (metric/rule tests) and the e2e server
  etcd-server                               # the high-availability tests (a real etcd cluster)
  python3-torch                             # real SGLang recorder dumps (tools/sglang tests)
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install_deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "install_deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
