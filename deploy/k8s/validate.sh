#!/usr/bin/env bash
# Validates deploy/k8s offline: renders the base and every overlay with
# `kubectl kustomize`, then checks the schemas (npm kubernetes-models, pinned
# in validate/package-lock.json and installed here with `npm ci`) and craft's
# own rules (validate/validate.mjs). A manifest broken on purpose must fail.
# Prints "PASS", "FAIL: ..." or "SKIPPED: ..." last; exit 0 unless FAIL.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
for tool in kubectl node npm; do
  if ! command -v "$tool" > /dev/null; then
    echo "SKIPPED: $tool is not installed; Kubernetes manifests not validated"
    exit 0
  fi
done
if [[ ! -d validate/node_modules ]] || [[ validate/package-lock.json -nt validate/node_modules ]]; then
  npm ci --prefix validate --no-audit --no-fund --loglevel=error > /dev/null 2>&1 ||
    { echo "FAIL: npm ci in deploy/k8s/validate"; exit 1; }
fi
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

for dir in base overlays/*/; do
  name="$(basename "$dir")"
  kubectl kustomize "$dir" > "$OUT/$name.yaml" 2> "$OUT/$name.err" ||
    { cat "$OUT/$name.err"; echo "FAIL: kubectl kustomize $dir"; exit 1; }
  echo "== $dir"
  node validate/validate.mjs "$OUT/$name.yaml" || { echo "FAIL: $dir"; exit 1; }
done

# The sidecar overlay's planner config is the base's but for security.nodes.
strip() { grep -v -e '^ *#' -e '^  nodes:' "$1"; }
diff <(strip base/planner-config.yaml) <(strip overlays/sidecar/planner-config.yaml) ||
  { echo "FAIL: overlays/sidecar/planner-config.yaml differs from the base's beyond security.nodes"; exit 1; }

# The checks catch mistakes: a non-integer replica count, a :latest image, a
# plaintext planner and node names out of rank order.
sed -e 's/^  replicas: 1$/  replicas: one/' -e 's#craft-planner:0.1.0#craft-planner:latest#' \
  -e 's#- --tls_ca=/etc/craft-tls/ca.crt#- --insecure#' \
  -e 's/nodes: \[gpu-node-0, gpu-node-1\]/nodes: [gpu-node-1, gpu-node-0]/' \
  "$OUT/base.yaml" > "$OUT/broken.yaml"
out=$(node validate/validate.mjs "$OUT/broken.yaml")
grep -q 'Deployment/craft-planner: .*replicas' <<< "$out" || { echo "$out"; echo "FAIL: bad replicas not caught"; exit 1; }
grep -q 'is not pinned' <<< "$out" || { echo "$out"; echo "FAIL: :latest not caught"; exit 1; }
grep -q 'craft-planner: runs --insecure' <<< "$out" || { echo "$out"; echo "FAIL: --insecure not caught"; exit 1; }
grep -q 'craft-node-ranks names .* security.nodes' <<< "$out" || { echo "$out"; echo "FAIL: node order not caught"; exit 1; }
echo PASS
