#!/usr/bin/env bash
# Validates deploy/k8s offline: renders the base and every overlay with
# `kubectl kustomize`, then checks the schemas (npm kubernetes-models, pinned
# in validate/package-lock.json and installed here with `npm ci`) and craft's
# own rules (validate/validate.mjs). Manifests broken on purpose must fail.
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
# The ha overlay's is the base's with an ha section instead of state_path.
strip_ha() { awk '/^ha:/ { skip = 1; next } skip && /^[^ #]/ { skip = 0 } !skip' "$1" |
  grep -v -e '^ *#' -e '^state_path:'; }
diff <(strip_ha base/planner-config.yaml) <(strip_ha overlays/ha/planner-config.yaml) ||
  { echo "FAIL: overlays/ha/planner-config.yaml differs from the base's beyond ha and state_path"; exit 1; }

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

# ... and in the ha overlay: an agent missing a replica, a headless Service
# hiding not-ready replicas, etcd files outside the mounts, etcd without TLS,
# a disruption budget that allows none, and several replicas on a state file.
sed -e 's/craft-planner-2\.craft-planner-pods\.craft\.svc:50051$/craft-planner-3.craft-planner-pods.craft.svc:50051/' \
  -e 's/publishNotReadyAddresses: true/publishNotReadyAddresses: false/' \
  -e 's#etcd_ca: /etc/craft-etcd-tls/ca.crt#etcd_ca: /etc/ca.crt#' \
  -e 's/^\( *\)etcd_timeout_ms: 2000$/&\n\1etcd_insecure: true/' \
  -e 's/^  minAvailable: 2$/  minAvailable: 3/' \
  "$OUT/ha.yaml" > "$OUT/broken-ha.yaml"
out=$(node validate/validate.mjs "$OUT/broken-ha.yaml")
grep -q 'DaemonSet/craft-agent: its planners are' <<< "$out" || { echo "$out"; echo "FAIL: missing replica not caught"; exit 1; }
grep -q 'not a headless Service with publishNotReadyAddresses' <<< "$out" || { echo "$out"; echo "FAIL: hidden not-ready replicas not caught"; exit 1; }
grep -q "ha.etcd_ca '/etc/ca.crt' is not in a volume" <<< "$out" || { echo "$out"; echo "FAIL: unmounted etcd_ca not caught"; exit 1; }
grep -q 'ha.etcd_insecure' <<< "$out" || { echo "$out"; echo "FAIL: etcd_insecure not caught"; exit 1; }
grep -q 'allows no voluntary disruption' <<< "$out" || { echo "$out"; echo "FAIL: blocking PodDisruptionBudget not caught"; exit 1; }
sed -e 's/^  replicas: 1$/  replicas: 3/' "$OUT/base.yaml" > "$OUT/broken-replicas.yaml"
out=$(node validate/validate.mjs "$OUT/broken-replicas.yaml")
grep -q "Deployment/craft-planner: 3 replicas without the config's ha section" <<< "$out" ||
  { echo "$out"; echo "FAIL: replicas on a state file not caught"; exit 1; }
echo PASS
