#!/usr/bin/env bash
# The planner at scale: one craft-planner against craft-loadgen's simulated
# node agents (DeepSeek shape by default: 58 x 256 top-8, 8 GPUs per node, one
# load window per GPU per second). A forced Replan RPC follows 5 s after the
# previous one returned, so applies happen and each RPC's latency is one
# replan's work (the planner's own interval is an hour unless
# --replan_interval_s says otherwise; then the gain gate decides too).
# Re-plans are incremental from the committed layout (--method incremental;
# fresh: a new CRAFT plan each time, stabilised) and move at most
# --max_moved_fraction of the slots (default 0.05: a realistic re-plan moves
# a few percent; 1 lets the frontier move as much as pays).
# Prints windows ingested per second (planner and loadgen), planner CPU
# seconds per wall second and RSS, prepare-to-commit latency p50/p99 (as the
# agents see it and from the planner's log), applies committed/aborted and,
# per stage of the measured re-plans (trace, plan, evaluate, prepare: the
# Replan RPC's stage_times), p50 and max (replan_stage_<stage>_ms_p50/_max).
#
#   tools/loadgen/run_benchmark.sh                      # 512 nodes x 8 GPUs, 60 s
#   tools/loadgen/run_benchmark.sh --nodes 64 --duration_s 30
#   tools/loadgen/run_benchmark.sh --replan_every_s 0 --duration_s 60  # ingest only
#   tools/loadgen/run_benchmark.sh --groups 32 --nodes 512   # 32 placement groups x 128 GPUs
#   tools/loadgen/run_benchmark.sh --no_build --planner_bin P --loadgen_bin L \
#     --launcher_bin C --out DIR ...
#
# With --groups N the nodes split evenly into N placement groups g0..gN-1
# (deploy/planner.yaml, "groups"), each with its own layout, replan loop and
# apply, re-planned concurrently (a forced Replan RPC per group); latencies
# are then over every group's applies and replans, and the planner-log
# columns (whose versions repeat across groups) read n/a.
# The loadgen runs on the same machine and shares its cores with the planner,
# which craft-local-cluster starts alone (--nodes 0). DIR (default: a fresh
# /tmp/craft-bench-XXXXXX) keeps planner.yaml, the logs, loadgen.txt (the
# loadgen's key=value results) and summary.txt (everything, key=value). Exits
# non-zero when the planner or the loadgen fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

NODES=512 GPUS_PER_NODE=8 DURATION_S=60 NUM_GROUPS=1
NUM_LAYERS=58 NUM_EXPERTS=256 TOP_K=8 BYTES_PER_EXPERT=88080384
WINDOW_MS=1000 WINDOW_HORIZON=64 BUDGET=8
REPLAN_INTERVAL_S=3600 REPLAN_EVERY_S=5 GAIN_THRESHOLD=0.001 APPLY_TIMEOUT_MS=60000
METHOD=incremental MAX_MOVED_FRACTION=0.05
STAGE_DELAY_MS=0 CONNECTIONS=0 DRAIN_S=60
BUILD=1 PLANNER_BIN="" LOADGEN_BIN="" LAUNCHER_BIN="" OUT=""

usage() { sed -n '2,34p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }
while (($#)); do
  case "$1" in
    --nodes) NODES="$2"; shift 2 ;;
    --gpus_per_node) GPUS_PER_NODE="$2"; shift 2 ;;
    --groups) NUM_GROUPS="$2"; shift 2 ;;
    --duration_s) DURATION_S="$2"; shift 2 ;;
    --num_layers) NUM_LAYERS="$2"; shift 2 ;;
    --num_experts) NUM_EXPERTS="$2"; shift 2 ;;
    --top_k) TOP_K="$2"; shift 2 ;;
    --bytes_per_expert) BYTES_PER_EXPERT="$2"; shift 2 ;;
    --window_ms) WINDOW_MS="$2"; shift 2 ;;
    --window_horizon) WINDOW_HORIZON="$2"; shift 2 ;;
    --budget) BUDGET="$2"; shift 2 ;;
    --replan_interval_s) REPLAN_INTERVAL_S="$2"; shift 2 ;;
    --replan_every_s) REPLAN_EVERY_S="$2"; shift 2 ;;  # forced Replan RPCs; 0: none
    --gain_threshold) GAIN_THRESHOLD="$2"; shift 2 ;;
    --method) METHOD="$2"; shift 2 ;;
    --max_moved_fraction) MAX_MOVED_FRACTION="$2"; shift 2 ;;
    --apply_timeout_ms) APPLY_TIMEOUT_MS="$2"; shift 2 ;;
    --stage_delay_ms) STAGE_DELAY_MS="$2"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --drain_s) DRAIN_S="$2"; shift 2 ;;
    --no_build) BUILD=0; shift ;;
    --planner_bin) PLANNER_BIN="$2"; shift 2 ;;
    --loadgen_bin) LOADGEN_BIN="$2"; shift 2 ;;
    --launcher_bin) LAUNCHER_BIN="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done

OUT="${OUT:-$(mktemp -d /tmp/craft-bench-XXXXXX)}"
mkdir -p "$OUT"
if ((BUILD)); then
  (cd "$ROOT" && bazel build -c opt //server:craft-planner //tools/loadgen:craft-loadgen \
    //tools/local_cluster:craft-local-cluster)
  BIN="$(cd "$ROOT" && bazel info -c opt bazel-bin 2>/dev/null)"
  # Copies: a concurrent build must not swap the binaries under a running benchmark.
  install -m 755 "$BIN/server/craft-planner" "$BIN/tools/loadgen/craft-loadgen" \
    "$BIN/tools/local_cluster/craft-local-cluster" "$OUT/"
  PLANNER_BIN="$OUT/craft-planner" LOADGEN_BIN="$OUT/craft-loadgen"
  LAUNCHER_BIN="$OUT/craft-local-cluster"
fi
[[ -x "$PLANNER_BIN" && -x "$LOADGEN_BIN" && -x "$LAUNCHER_BIN" ]] ||
  { echo "no binaries (--planner_bin/--loadgen_bin/--launcher_bin)" >&2; exit 2; }

GPUS=$((NODES * GPUS_PER_NODE))
((NUM_GROUPS >= 1 && NODES % NUM_GROUPS == 0)) || { echo "--groups must divide --nodes" >&2; exit 2; }
GROUP_NODES=$((NODES / NUM_GROUPS)) GROUP_GPUS=$((GPUS / NUM_GROUPS))
# The planner's cluster, or its groups (named as craft-loadgen --groups names them).
CLUSTER="cluster: {num_gpus: $GROUP_GPUS, num_nodes: $GROUP_NODES}"
if ((NUM_GROUPS > 1)); then
  CLUSTER="$CLUSTER, groups: ["
  for ((g = 0; g < NUM_GROUPS; g++)); do
    CLUSTER="$CLUSTER{name: g$g, cluster: {num_gpus: $GROUP_GPUS, num_nodes: $GROUP_NODES}}"
    if ((g + 1 < NUM_GROUPS)); then CLUSTER="$CLUSTER, "; fi
  done
  CLUSTER="$CLUSTER]"
fi

LAUNCHER_PID="" LOADGEN_PID=""
cleanup() {
  [[ -n "$LOADGEN_PID" ]] && kill -KILL "$LOADGEN_PID" 2>/dev/null || true
  # The launcher stops the planner (SIGTERM, SIGKILL 10 s later).
  [[ -n "$LAUNCHER_PID" ]] && kill -TERM "$LAUNCHER_PID" 2>/dev/null && wait "$LAUNCHER_PID"
  true
}
trap cleanup EXIT
fail() { echo "run_benchmark: $*" >&2; exit 1; }

# Waits up to $2 seconds for a line matching $1 in file $3 while pid $4 lives.
wait_for_line() {
  local pattern="$1" timeout="$2" file="$3" pid="$4" waited=0
  until grep -q -- "$pattern" "$file" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
    waited=$((waited + 1))
    ((waited < timeout * 20)) || return 1
  done
}

# utime + stime of a process, in clock ticks (fields 14 and 15 of stat; the
# command name may hold spaces, so count after its closing parenthesis).
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
status_kb() { awk -v key="$2:" '$1 == key {print $2}' "/proc/$1/status"; }
now_s() { date +%s.%N; }

# The planner alone (the loadgen plays every node), its config in
# $OUT/planner.yaml. Plaintext on loopback: the benchmark measures the
# planner, not TLS, and one process plays every node.
"$LAUNCHER_BIN" --insecure --dir "$OUT" --planner_bin "$PLANNER_BIN" --nodes 0 \
  --num_layers "$NUM_LAYERS" --num_experts "$NUM_EXPERTS" --top_k "$TOP_K" \
  --expert_bytes "$BYTES_PER_EXPERT" --start_timeout_s 30 --planner_config "{
    $CLUSTER, loads: {window_horizon: $WINDOW_HORIZON},
    replan: {interval_s: $REPLAN_INTERVAL_S, algorithm: craft, method: $METHOD,
             max_moved_fraction: $MAX_MOVED_FRACTION, budget: $BUDGET,
             gain_threshold: $GAIN_THRESHOLD},
    apply: {timeout_ms: $APPLY_TIMEOUT_MS}}" > /dev/null 2> "$OUT/cluster.log" &
LAUNCHER_PID=$!
wait_for_line '^planner_address=' 40 "$OUT/cluster.env" "$LAUNCHER_PID" ||
  { tail -5 "$OUT/cluster.log" >&2; fail "the planner did not start"; }
cluster() { sed -n "s/^$1=//p" "$OUT/cluster.env"; }
PLANNER="$(cluster planner_address)" PLANNER_PID="$(cluster planner_pid)"

"$LOADGEN_BIN" --insecure --planner "$PLANNER" --nodes "$NODES" --gpus_per_node "$GPUS_PER_NODE" \
  --groups "$NUM_GROUPS" \
  --num_layers "$NUM_LAYERS" --num_experts "$NUM_EXPERTS" --top_k "$TOP_K" \
  --bytes_per_expert "$BYTES_PER_EXPERT" --window_ms "$WINDOW_MS" --duration_s "$DURATION_S" \
  --replan_every_s "$REPLAN_EVERY_S" --stage_delay_ms "$STAGE_DELAY_MS" \
  --connections "$CONNECTIONS" --drain_s "$DRAIN_S" \
  > "$OUT/loadgen.txt" 2> "$OUT/loadgen.log" &
LOADGEN_PID=$!

# The planner's CPU time over exactly the loadgen's measured phase.
wait_for_line 'measure: start' 300 "$OUT/loadgen.log" "$LOADGEN_PID" ||
  { tail -5 "$OUT/loadgen.log" >&2; fail "the loadgen did not start measuring"; }
TICKS0="$(cpu_ticks "$PLANNER_PID")" T0="$(now_s)"
wait_for_line 'measure: end' $((${DURATION_S%.*} * 3 + 600)) "$OUT/loadgen.log" "$LOADGEN_PID" ||
  { tail -5 "$OUT/loadgen.log" >&2; fail "the loadgen did not finish measuring"; }
TICKS1="$(cpu_ticks "$PLANNER_PID")" T1="$(now_s)"
RSS_KB="$(status_kb "$PLANNER_PID" VmRSS)" HWM_KB="$(status_kb "$PLANNER_PID" VmHWM)"
THREADS="$(status_kb "$PLANNER_PID" Threads)"

rc=0
wait "$LOADGEN_PID" || rc=$?
LOADGEN_PID=""
((rc == 0)) || { tail -5 "$OUT/loadgen.log" >&2; fail "the loadgen exited with $rc"; }
kill -0 "$PLANNER_PID" 2>/dev/null || fail "the planner died; see $OUT/planner.log"
# The launcher exits 0 only when the planner stopped cleanly on its SIGTERM.
kill -TERM "$LAUNCHER_PID"
wait "$LAUNCHER_PID" || fail "the planner did not stop cleanly; see $OUT/cluster.log"
LAUNCHER_PID=""

# The planner's own view of every apply, from its log (millisecond stamps):
# "preparing V" (Prepares queued) -> "committed V" (commit point) -> "every
# agent answered the commit of V".
awk '
  function secs(stamp,  t, hms) {
    split(stamp, t, "T"); sub("Z", "", t[2]); split(t[2], hms, ":")
    return hms[1] * 3600 + hms[2] * 60 + hms[3]
  }
  function ms(from, to) { d = to - from; if (d < 0) d += 86400; return 1000 * d }
  / preparing [0-9]+\.[0-9]+ on / { for (i = 1; i <= NF; i++) if ($i == "preparing") prep[$(i + 1)] = secs($1) }
  /\] committed [0-9]+\.[0-9]+$/ { commit[$NF] = secs($1) }
  /every agent answered the commit of / { if ($NF in prep) print "answered", ms(prep[$NF], secs($1)) }
  END { for (v in commit) if (v in prep) print "commit_point", ms(prep[v], commit[v]) }
' "$OUT/planner.log" > "$OUT/planner_applies.txt"

# Nearest-rank percentile $2 (0..1) of the numbers of kind $1 in planner_applies.txt.
percentile() {
  ((NUM_GROUPS == 1)) || { echo "n/a"; return; }
  awk -v kind="$1" '$1 == kind {print $2}' "$OUT/planner_applies.txt" | sort -g |
    awk -v q="$2" '{v[NR] = $1} END {if (NR == 0) {print "n/a"; exit}
      r = int(q * NR); if (r < q * NR) r++; if (r < 1) r = 1; printf "%.1f", v[r]}'
}
value() { sed -n "s/^$1=//p" "$OUT/loadgen.txt"; }
kib() { local bytes; bytes="$(value "$1")"; echo $((${bytes:-0} / 1024)); }
# "trace 1.2 / 3.4, plan ..." from the loadgen's replan_stage_<stage>_ms_p50/_max lines.
stages() {
  sed -n 's/^replan_stage_\(.*\)_ms_p50=\(.*\)/\1 \2/p' "$OUT/loadgen.txt" | while read -r stage p50; do
    printf '%s %s / %s, ' "$stage" "$p50" "$(value "replan_stage_${stage}_ms_max")"
  done | sed 's/, $//'
}

CLK_TCK="$(getconf CLK_TCK)"
{
  cat "$OUT/loadgen.txt"
  awk -v t="$((TICKS1 - TICKS0))" -v hz="$CLK_TCK" -v a="$T0" -v b="$T1" \
    'BEGIN {printf "planner_cpu_s_per_s=%.3f\n", t / hz / (b - a)}'
  echo "planner_rss_mb=$((RSS_KB / 1024))"
  echo "planner_peak_rss_mb=$((HWM_KB / 1024))"
  echo "planner_threads=$THREADS"
  echo "planner_prepare_to_commit_point_ms_p50=$(percentile commit_point 0.5)"
  echo "planner_prepare_to_commit_point_ms_p99=$(percentile commit_point 0.99)"
  echo "planner_prepare_to_all_committed_ms_p50=$(percentile answered 0.5)"
  echo "planner_prepare_to_all_committed_ms_p99=$(percentile answered 0.99)"
  echo "planner_applies_aborted=$(grep -c '] aborting ' "$OUT/planner.log" || true)"
  echo "cores=$(nproc)"
} > "$OUT/summary.txt"
sv() { sed -n "s/^$1=//p" "$OUT/summary.txt"; }

cat <<TABLE
craft planner at scale: $NODES nodes x $GPUS_PER_NODE GPUs = $GPUS GPUs in $NUM_GROUPS placement group(s), $NUM_LAYERS x $NUM_EXPERTS top-$TOP_K, $METHOD re-plans moving at most $MAX_MOVED_FRACTION of the slots, window ${WINDOW_MS} ms, $(value measured_s) s measured, $(sv cores) cores shared by planner and loadgen

| metric | value |
| --- | --- |
| GPU windows ingested / s (planner, GetLayout delta) | $(value planner_windows_ingested_per_s) (offered $(value expected_gpu_windows_per_s)) |
| GPU windows sent / s (loadgen) | $(value gpu_windows_sent_per_s), $(value node_loads_dropped) NodeLoads dropped, send lag max $(value window_send_lag_ms_max) ms |
| planner CPU s / wall s | $(sv planner_cpu_s_per_s) |
| planner RSS (end / peak) | $(sv planner_rss_mb) / $(sv planner_peak_rss_mb) MB, $(sv planner_threads) threads |
| applies committed / aborted / unfinished | $(value applies_committed) / $(value applies_aborted) / $(value applies_unfinished) |
| prepare-to-commit p50 / p99, agents (first Prepare -> last Commit) | $(value prepare_to_commit_ms_p50) / $(value prepare_to_commit_ms_p99) ms |
| Prepare fan-out p50 (first -> last agent), largest Prepare | $(value prepare_fanout_ms_p50) ms, $(kib max_prepare_bytes) KiB |
| warm-up apply (from the initial layout, not measured): prepare-to-commit, largest Prepare | $(value warmup_prepare_to_commit_ms) ms, $(kib warmup_max_prepare_bytes) KiB |
| prepare -> commit point p50 / p99, planner log | $(sv planner_prepare_to_commit_point_ms_p50) / $(sv planner_prepare_to_commit_point_ms_p99) ms |
| prepare -> every commit answered p50 / p99, planner log | $(sv planner_prepare_to_all_committed_ms_p50) / $(sv planner_prepare_to_all_committed_ms_p99) ms |
| forced Replan RPCs: calls / applies started, latency p50 / p99 / max (one replan each) | $(value replan_rpcs) / $(value replan_rpcs_applying), $(value replan_rpc_ms_p50) / $(value replan_rpc_ms_p99) / $(value replan_rpc_ms_max) ms |
| replan stages on the planner, p50 / max | $(stages) ms |
| loadgen CPU s / wall s, threads | $(value loadgen_cpu_s_per_s), $(value loadgen_threads) |

logs and key=value results: $OUT
TABLE
