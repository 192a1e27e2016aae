#!/usr/bin/env bash
# The main demo, on this machine:
#   1. offline: plan a DeepSeek-shaped workload (58 MoE layers x 256 experts,
#      top-8, 64 GPUs on 8 nodes) with every algorithm and compare them;
#   2. live: start a local craft cluster (one planner, two node agents, eight
#      CPU workers with skewed traffic), let the planner re-plan and apply a
#      new layout with the two-phase protocol, and query it with craftctl;
#      then the traffic drifts (the workers restart with other hot experts:
#      their agents bring each back to the committed layout first) and the
#      planner re-plans incrementally, moving a few experts.
#
#   ./scripts/demo.sh           # both parts, then stop the cluster
#   ./scripts/demo.sh --keep    # leave the cluster running to query it
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
KEEP=0
[[ "${1:-}" == "--keep" ]] && KEEP=1

./scripts/install_deps.sh
echo "== building (bazel -c opt)"
TARGETS=(//tools/craftctl //tools/local_cluster:craft-local-cluster //server:craft-planner
         //agent:craft-agent //gpu_worker:craft-worker)
bazel build -c opt "${TARGETS[@]}" >/dev/null 2>&1 || bazel build -c opt "${TARGETS[@]}"
BIN="$(bazel info -c opt bazel-bin 2>/dev/null)"
WORK="${CRAFT_DEMO_DIR:-$(mktemp -d /tmp/craft-demo-XXXXXX)}"
mkdir -p "$WORK"
for b in tools/craftctl/craftctl tools/local_cluster/craft-local-cluster server/craft-planner \
  agent/craft-agent gpu_worker/craft-worker; do
  install -m 755 "$BIN/$b" "$WORK/"
done
CRAFTCTL="$WORK/craftctl"

echo
echo "== part 1: offline planning, DeepSeek shape on 64 GPUs (8 nodes)"
"$CRAFTCTL" synth --out "$WORK/deepseek.json" --layers 58 --experts 256 --top-k 8 \
  --windows 200 --tokens-per-window 4096 --seed 1
echo "   planned on the first 100 windows, replayed on the last 100:"
"$CRAFTCTL" eval --loads "$WORK/deepseek.json" --gpus 64 --nodes 8 --groups 8 \
  --budget 8 --holdout 0.5
echo "   (eplb: one redundant slot per GPU per layer; craft R=8: 8 redundant slots per GPU in all)"

echo
echo "== part 2: a live local cluster: 1 planner, 2 agents, 8 CPU workers"
PORT="${CRAFT_DEMO_PORT:-7070}"
GPUS=8
# craft-local-cluster starts and stops the processes (logs, configs and state
# in $WORK). With --commands it takes "restart worker GPU FLAGS" on its stdin
# and answers each command with a line: a coprocess.
# --insecure: plaintext on loopback for this one-machine demo (each binary
# says so loudly). Deployments run mutual TLS: --tls_cert/--tls_key/--tls_ca,
# README "Security".
coproc CLUSTER {
  exec "$WORK/craft-local-cluster" --insecure --commands --dir "$WORK" --bin_dir "$WORK" \
    --planner_port "$PORT" --nodes 2 --gpus_per_node 4 --agent_model_flags=false \
    --num_layers 12 --num_experts 64 --top_k 4 --expert_bytes 65536 \
    --window_ms 500 --tokens_per_window 8192 --skew 12 --seed 7 --verify_interval_ms 1000 \
    --planner_config "{loads: {window_horizon: 20}, apply: {timeout_ms: 20000},
      replan: {interval_s: 3600, method: incremental, budget: 4, gain_threshold: 0.02,
               max_moved_fraction: 0.15}}" 2>"$WORK/cluster.log"
}
# Copies: bash forgets a coprocess's variables once it has ended.
# shellcheck disable=SC2153  # coproc CLUSTER sets CLUSTER_PID
LAUNCHER_PID="$CLUSTER_PID" CLUSTER_IN="${CLUSTER[1]}" CLUSTER_OUT="${CLUSTER[0]}"
cleanup() {
  if ((KEEP == 0)); then
    kill "$LAUNCHER_PID" 2>/dev/null || true
    wait "$LAUNCHER_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT
# The launcher prints its description's path once every process is ready.
read -r _ <&"$CLUSTER_OUT" || { tail -n 5 "$WORK/cluster.log"; exit 1; }
# restart_worker GPU SEED: the worker restarts with traffic (hot experts) of SEED.
restart_worker() {
  local reply
  echo "restart worker $1 --seed=$2" >&"$CLUSTER_IN"
  read -r reply <&"$CLUSTER_OUT" || reply="the launcher ended; see $WORK/cluster.log"
  [[ "$reply" == ok ]] || { echo "restarting worker $1: $reply"; exit 1; }
}
# worker_lines PATTERN N: the first N lines of the workers' logs that match
# PATTERN, indented. A worker logs a flip or a return a moment after the
# planner reports the commit: on a busy machine, seconds.
worker_lines() {
  for _ in $(seq 30); do grep -q "$1" "$WORK"/worker*.log && break; sleep 0.5; done
  grep -q "$1" "$WORK"/worker*.log || { echo "no worker logged '$1'; see $WORK"; exit 1; }
  grep -h "$1" "$WORK"/worker*.log | head -n "$2" | sed 's/^/   /'
}
Q=(--planner "127.0.0.1:$PORT" --insecure)
echo "   started; workers send a load window every 500 ms"
sleep 4
"$CRAFTCTL" agents "${Q[@]}"
echo
echo "-- the initial layout (version 0.0: one replica per expert, no load awareness):"
"$CRAFTCTL" layout "${Q[@]}"
echo
echo "-- asking the planner to re-plan (incremental from 0.0, R = 4, at most 15% of the slots move):"
"$CRAFTCTL" replan "${Q[@]}"
for _ in $(seq 60); do
  v=$("$CRAFTCTL" layout "${Q[@]}" | awk '{print $2}')
  [[ -n "$v" && "$v" != "0.0" ]] && break
  sleep 0.5
done
echo "-- prepared on every worker (experts fetched from peers, checksums verified), committed:"
worker_lines "verify ok version=$v " 3
sleep 4
"$CRAFTCTL" layout "${Q[@]}"
echo
echo "-- why (the frontier of moves from the initial layout, and the point chosen):"
"$CRAFTCTL" explain "${Q[@]}" | sed -n '3,6p;/chosen/p' 
echo
echo "-- the traffic drifts: the workers restart with other hot experts (--seed 8)."
echo "   Each comes back on the initial layout; its agent brings it to $v (kept and"
echo "   copied experts, the rest from the checkpoint, verified) before it serves:"
for gpu in $(seq 0 $((GPUS - 1))); do restart_worker "$gpu" 8; done
sleep 2
worker_lines "serving again, on" 2
echo "   waiting 12 s for the load horizon to fill with drifted windows..."
sleep 12
"$CRAFTCTL" layout "${Q[@]}"
echo
echo "-- re-planning incrementally (at most 15% of the slots move; replan.max_moved_fraction):"
"$CRAFTCTL" replan "${Q[@]}" | tee "$WORK/replan2.txt"
for _ in $(seq 60); do
  v2=$("$CRAFTCTL" layout "${Q[@]}" | awk '{print $2}')
  [[ -n "$v2" && "$v2" != "$v" ]] && break
  sleep 0.5
done
sleep 4
"$CRAFTCTL" layout "${Q[@]}"
echo
echo "Logs and state are in $WORK."
if ((KEEP == 1)); then
  echo "The cluster keeps running (planner on 127.0.0.1:$PORT). Try:"
  echo "  $CRAFTCTL layout --planner 127.0.0.1:$PORT --insecure"
  echo "  $CRAFTCTL agents --planner 127.0.0.1:$PORT --insecure"
  echo "  $CRAFTCTL explain --planner 127.0.0.1:$PORT --insecure"
  echo "  $CRAFTCTL watch --planner 127.0.0.1:$PORT --insecure"
  echo "  $CRAFTCTL replan --planner 127.0.0.1:$PORT --insecure --force"
  echo "Stop it with: kill $LAUNCHER_PID"
else
  echo "Stopping the cluster (run with --keep to leave it up and query it with craftctl)."
fi
