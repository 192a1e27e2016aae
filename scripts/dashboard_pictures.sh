#!/usr/bin/env bash
# Regenerates docs/dashboards/*.png, the README's dashboard pictures: the
# end-to-end Prometheus run (tests/e2e/prometheus_e2e.mjs) with a longer
# settle time, rendered with gnuplot from real query_range results.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/install_deps.sh"
if ! command -v gnuplot > /dev/null; then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends gnuplot-nox
fi
bazel build //tools/local_cluster:craft-local-cluster //tools/craftctl
BIN="$(bazel info bazel-bin 2> /dev/null)"
node tests/e2e/prometheus_e2e.mjs --bin "$BIN" --root "$ROOT" --out docs/dashboards --settle "${SETTLE:-45}"
echo "docs/dashboards: $(ls docs/dashboards)"
