#!/usr/bin/env bash
# A live craft cluster on one GPU machine, from the binaries stage.sh staged in
# .device/: craft-local-cluster starts one craft-planner, one craft-agent (one
# node) and N `craft-worker-cuda --backend=cuda` (one per GPU, DeepSeek-sized
# experts in device memory). Run from the repository root:
#
#   gpu_worker/gpu_machine/cluster.sh [N]     # N GPUs (default: all visible)
#
# Part 1, apply: skewed load reaches the planner, `craftctl replan --force`
# pushes a CRAFT layout with the two-phase apply; the workers move experts
# over NCCL, verify checksums on the device, commit and flip. Fails unless the
# apply commits and every worker flips and verifies.
# Part 2, fault: rank N-1 is killed with SIGKILL and another replan forced; the
# apply must abort within the apply timeout, every process stay responsive and
# the survivors keep serving part 1's version. CLUSTER_FAULT picks when:
#   during (default): while the Prepare is in flight: rank N-1 is frozen
#     (SIGSTOP) before the replan, so the agent hands it the Prepare but it
#     never answers, its peers stage and wait for it in NCCL, and then it is
#     killed (SIGKILL);
#   before: before the replan (the agent refuses the Prepare: WORKER_MISSING).
# Then everything is shut down with SIGTERM (the launcher's); a process that
# does not exit in time counts as hung.
#
# Logs, configs and a summary go to ${OUT:-.device/out}/cluster_N/. Exit status
# 0 when both parts passed, 1 otherwise.
#
# Other knobs (environment):
#   CLUSTER_BACKEND=cpu  test the plumbing without a GPU: the same worker binary
#                        with --backend=cpu and 64 KiB experts (N defaults to 2)
#   CLUSTER_BIN          folder with craft-local-cluster, craft-planner,
#                        craft-agent, craftctl and craft-worker-cuda (default
#                        .device/bin)
#   CLUSTER_TRAFFIC      trace JSON, or skew:X for --skew X (default: the
#                        trace stage.sh made for this shape, else skew:4)
#   CLUSTER_MEMORY_BYTES --memory_bytes per worker (default: serving + one
#                        staged bank of the largest layout + slack)
#   CLUSTER_BUDGET       replan.budget R (default 8 redundant slots per GPU)
#   CLUSTER_APPLIES      forced replans in part 1 (default 2: cold, then warm NCCL connections)
#   CLUSTER_WORKER_FLAGS more flags for every worker (split on spaces, each
#                        --name=value), e.g. --fail_prepare_probability=1 to
#                        see part 1 fail
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 2
STAGE="$ROOT/.device"
BIN="${CLUSTER_BIN:-$STAGE/bin}"
BACKEND="${CLUSTER_BACKEND:-cuda}"
FAULT="${CLUSTER_FAULT:-during}"
# shellcheck source=gpu_worker/gpu_machine/env.sh
source "$ROOT/gpu_worker/gpu_machine/env.sh"
export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"  # NCCL's own errors in the worker logs

if [[ $# -gt 0 ]]; then
  N="$1"
elif [[ "$BACKEND" == cuda ]]; then
  N="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')"
else
  N=2
fi
if ! [[ "$N" =~ ^[0-9]+$ ]] || ((N < 2)); then
  echo "cluster.sh: need at least 2 GPUs (got '$N')" >&2
  exit 2
fi
case "$BACKEND" in cuda | cpu) ;; *) echo "cluster.sh: CLUSTER_BACKEND is cuda or cpu" >&2; exit 2 ;; esac
case "$FAULT" in during | before) ;; *) echo "cluster.sh: CLUSTER_FAULT is during or before" >&2; exit 2 ;; esac
for b in craft-local-cluster craft-planner craft-agent craft-worker-cuda craftctl; do
  [[ -x "$BIN/$b" ]] || { echo "cluster.sh: no $BIN/$b; run gpu_worker/gpu_machine/stage.sh first" >&2; exit 2; }
done
if [[ -n "$CRAFT_MISSING_LIBS" && "$BACKEND" == cuda ]]; then
  echo "cluster.sh: not found on this machine: $CRAFT_MISSING_LIBS" >&2
fi
missing="$(ldd "$BIN"/craft-* "$BIN/craftctl" 2>&1 | grep 'not found' | sort -u)"
if [[ -n "$missing" ]]; then
  echo "cluster.sh: missing libraries:" >&2
  echo "$missing" >&2
  exit 2
fi

D="${OUT:-$STAGE/out}/cluster_$N"
rm -rf "$D"
mkdir -p "$D"
D="$(cd "$D" && pwd)"

# --- The cluster's shape ------------------------------------------------------
LAYERS=8 EXPERTS=32 TOPK=4
BUDGET="${CLUSTER_BUDGET:-8}"
WINDOW_MS=1000
TOKENS=16384                  # tokens of the whole cluster per window
APPLY_TIMEOUT_MS=60000        # planner apply.timeout_ms (the first includes the NCCL join)
TRANSFER_TIMEOUT_MS=20000     # worker: NCCL join / one transfer
if [[ "$BACKEND" == cuda ]]; then
  HIDDEN=7168 INTER=2048
  EXPERT_BYTES=$((6 * HIDDEN * INTER))       # 3 bf16 matrices: 88080384
  START_TIMEOUT=180
else
  EXPERT_BYTES=65536
  START_TIMEOUT=30
fi
# Serving (initial slots plus the budget) and one staged bank of fetched
# experts at worst, plus slack.
SLOTS=$(((LAYERS * EXPERTS + N - 1) / N + BUDGET))
MEMORY_BYTES="${CLUSTER_MEMORY_BYTES:-$(((2 * SLOTS + 8) * EXPERT_BYTES))}"
TRAFFIC="${CLUSTER_TRAFFIC:-}"
if [[ -z "$TRAFFIC" ]]; then
  TRAFFIC="$STAGE/inputs/cluster_L${LAYERS}_E${EXPERTS}_k${TOPK}.json"
  [[ -f "$TRAFFIC" ]] || TRAFFIC=skew:4
fi
if [[ "$TRAFFIC" == skew:* ]]; then
  TRAFFIC_FLAGS=(--skew "${TRAFFIC#skew:}")
else
  TRAFFIC_FLAGS=(--trace "$TRAFFIC")
fi
VICTIM=$((N - 1))
WORKERS=()
for ((r = 0; r < N; r++)); do WORKERS+=("worker$r"); done

# --- Processes ----------------------------------------------------------------
# craft-local-cluster starts and stops them; its report goes to
# $D/cluster.log, their pids and ports to $D/cluster.env.
LAUNCHER_PID=""
declare -A PID_OF=()    # name -> pid
declare -A GONE=()      # names that are meant to have exited
ALL=()                  # names, in start order
now_ms() { local t=${EPOCHREALTIME//[!0-9]/}; echo $((10#$t / 1000)); }
T0=$(now_ms)

say() {
  local ms=$(($(now_ms) - T0))
  printf '[%4d.%ds] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*" | tee -a "$D/summary.txt"
}
out() { echo "$*" | tee -a "$D/summary.txt"; }
strip_prefix() { sed -E 's/^[A-Z][0-9T:.Z-]+ [^ ]+\] //'; }

# A value of the cluster's description (tools/local_cluster/description.h).
cluster() { sed -n "s/^$1=//p" "$D/cluster.env"; }
# Dead once the launcher reaped it (and reported it in cluster.log).
alive() { kill -0 "${PID_OF[$1]}" 2>/dev/null; }

# Fails when a process that should run has exited.
check_alive() {
  local name
  kill -0 "$LAUNCHER_PID" 2>/dev/null || fail "craft-local-cluster exited; its log ends:" cluster
  for name in "${ALL[@]}"; do
    [[ -n "${GONE[$name]:-}" ]] && continue
    if ! alive "$name"; then
      fail "$(grep -m 1 "^$name (pid [0-9]*) exited" "$D/cluster.log" ||
        echo "$name (pid ${PID_OF[$name]}) exited"); its log ends:" "$name"
    fi
  done
}

FAILED=0
fail() {  # fail MESSAGE [LOG NAME...]: report, show log tails, stop
  say "FAIL: $1"
  shift
  local name
  for name in "$@"; do
    out "--- $D/$name.log (last 15 lines)"
    tail -n 15 "$D/$name.log" | tee -a "$D/summary.txt"
  done
  FAILED=1
  exit 1
}

# Stops every process still running: SIGTERM to the launcher, which sends
# SIGTERM (and SIGCONT, for a frozen one) to every process, SIGKILLs what
# has not exited --stop_timeout_s later, and reports in cluster.log ("NAME:
# exit status S after T ms"). HUNG: the processes that did not exit in time.
HUNG=()
stop_cluster() {
  local line
  [[ -n "$LAUNCHER_PID" ]] || return 0
  kill -TERM "$LAUNCHER_PID" 2>/dev/null
  wait "$LAUNCHER_PID" 2>/dev/null
  LAUNCHER_PID=""
  while read -r line; do
    say "$line"
    HUNG+=("${line%% *}")
  done < <(grep -E '^[a-z0-9]+ \(pid [0-9]+\) did not exit' "$D/cluster.log")
}

cleanup() {
  local code=$?
  trap - EXIT INT TERM
  stop_cluster
  if ((FAILED || code)); then out "cluster.sh: FAILED; logs in $D"; fi
  exit "$code"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# wait_until TIMEOUT_S DESCRIPTION COMMAND...: polls COMMAND every 0.2 s while
# checking that the processes live; fails after TIMEOUT_S seconds.
wait_until() {
  local timeout="$1" what="$2" deadline
  shift 2
  deadline=$(($(now_ms) + timeout * 1000))
  until "$@"; do
    check_alive
    if (($(now_ms) > deadline)); then
      fail "timed out after ${timeout}s waiting for $what" planner agent0
    fi
    sleep 0.2
  done
}

ctl() { "$BIN/craftctl" "$@" --planner "127.0.0.1:$PORT" --insecure; }
# Fields of `craftctl layout`: "version V (epoch E)[, applying P]: ...;
# measured balancedness B (W GPU windows ingested)".
layout_line() { ctl layout 2>/dev/null | head -n 1; }
layout_version() { layout_line | awk '{print $2}'; }
measured() { layout_line | sed -nE 's/.*measured balancedness ([0-9.]+).*/\1/p'; }
windows_ingested() { layout_line | sed -nE 's/.*\(([0-9]+) GPU windows ingested\).*/\1/p'; }

# every_log PATTERN NAME...: each named log has a line matching PATTERN.
every_log() {
  local pattern="$1" name
  shift
  for name in "$@"; do grep -qE -- "$pattern" "$D/$name.log" || return 1; done
}
file_has() { [[ -s "$1" ]]; }
log_has() { grep -qE -- "$2" "$D/$1.log"; }
ingested_at_least() { local w; w="$(windows_ingested)"; [[ -n "$w" ]] && ((w >= $1)); }
measured_nonzero() { local m; m="$(measured)"; [[ -n "$m" && "$m" != 0.0000 ]]; }
is_committed() { [[ "$(layout_version)" == "$1" ]]; }

# --- Start ----------------------------------------------------------------------
out "cluster.sh: $N workers, backend $BACKEND, $LAYERS layers x $EXPERTS experts (top-$TOPK), $EXPERT_BYTES bytes per expert"
out "  traffic ${TRAFFIC_FLAGS[*]}, $TOKENS tokens per ${WINDOW_MS} ms window; craft R=$BUDGET; --memory_bytes $MEMORY_BYTES; fault $FAULT"
out "  logs in $D"
[[ "$BACKEND" == cuda ]] && nvidia-smi -L 2>&1 | head -n "$N" | tee -a "$D/summary.txt"
{
  date; uname -r; nvidia-smi; nvidia-smi topo -m; env | grep -E '^(NCCL|CUDA)_'
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; ldd "$BIN/craft-worker-cuda"
} >"$D/env.log" 2>&1

WORKER_FLAGS=(--memory_bytes="$MEMORY_BYTES" --log_windows)
if [[ "$BACKEND" == cuda ]]; then
  WORKER_FLAGS+=(--expert_hidden="$HIDDEN" --expert_inter="$INTER" --transfer_timeout_ms="$TRANSFER_TIMEOUT_MS")
fi
# shellcheck disable=SC2206  # split on purpose
WORKER_FLAGS+=(${CLUSTER_WORKER_FLAGS:-})
# Plaintext on one host's loopback (--insecure): this script measures moves.
# A worker may spend up to the transfer timeout closing its NCCL communicator.
"$BIN/craft-local-cluster" --insecure --dir "$D" --bin_dir "$BIN" --worker_bin "$BIN/craft-worker-cuda" \
  --nodes 1 --gpus_per_node "$N" --num_layers "$LAYERS" --num_experts "$EXPERTS" --top_k "$TOPK" \
  --expert_bytes "$EXPERT_BYTES" --backend "$BACKEND" --window_ms "$WINDOW_MS" \
  --tokens_per_window "$TOKENS" "${TRAFFIC_FLAGS[@]}" --seed 7 --verify_interval_ms 0 \
  --start_timeout_s "$START_TIMEOUT" --stop_timeout_s $((TRANSFER_TIMEOUT_MS / 1000 + 10)) \
  --planner_config "{loads: {window_horizon: 20}, apply: {timeout_ms: $APPLY_TIMEOUT_MS},
    replan: {interval_s: 3600, method: fresh, algorithm: craft, budget: $BUDGET, gain_threshold: 0.02}}" \
  -- "agent:--worker_wait_ms=$((START_TIMEOUT * 1000))" "${WORKER_FLAGS[@]/#/worker:}" \
  >/dev/null 2>"$D/cluster.log" &
LAUNCHER_PID=$!
wait_until $((START_TIMEOUT + 60)) "the cluster (craft-local-cluster)" file_has "$D/cluster.env"
for name in planner agent0 "${WORKERS[@]}"; do
  PID_OF[$name]="$(cluster "${name}_pid")"
  ALL+=("$name")
done
PORT="$(cluster planner_grpc_port)" SOCK="$(cluster agent0_socket)"
say "planner on 127.0.0.1:$PORT, agent on $SOCK, $N workers up"
# Every worker attached and verified its initial weights; rank 0's NCCL id
# reached the planner.
wait_until "$START_TIMEOUT" "every worker's start-up verify" every_log 'verify ok version=0\.0 ' "${WORKERS[@]}"
if [[ "$BACKEND" == cuda ]]; then
  wait_until 60 "rank 0's weight-transfer group id at the planner" \
    log_has planner 'announced a new weight-transfer group id'
fi

# --- Part 1: replan and apply -------------------------------------------------
LOAD_WINDOWS=4
wait_until 60 "$LOAD_WINDOWS windows of load at the planner" ingested_at_least $((LOAD_WINDOWS * N))
wait_until 30 "a measured balancedness of version 0.0" measured_nonzero
ctl agents | tee -a "$D/summary.txt"
BEFORE="$(layout_line)"
out "before: $BEFORE"

# One forced replan, applied and checked; $1 numbers it. The first apply also
# sets up NCCL's connections between the ranks that exchange experts; the
# second shows the steady state on warm connections.
apply_and_check() {
  FROM="$(sed -nE 's/^version ([^ ]+).*/\1/p' <<<"$BEFORE")"
  say "part 1, apply $1: craftctl replan --force"
  t_replan=$(now_ms)
  DECISION="$(ctl replan --force 2>&1)"
  out "  $DECISION"
  V="$(sed -nE 's/.*; applying ([^ ;]+)$/\1/p' <<<"$DECISION")"
  [[ -n "$V" ]] || fail "the replan did not start an apply" planner
  VX="${V//./\\.}"  # for regular expressions
  apply_state() {  # committed, aborted, or nothing yet
    if is_committed "$V"; then echo committed
    elif log_has planner "aborting $VX:"; then echo aborted
    fi
  }
  apply_done() { [[ -n "$(apply_state)" ]]; }
  wait_until $((APPLY_TIMEOUT_MS / 1000 + 30)) "the apply of $V to commit or abort" apply_done
  t_commit=$(now_ms)
  if [[ "$(apply_state)" != committed ]]; then
    out "  planner: $(grep -hE "aborting $VX:" "$D/planner.log" | strip_prefix)"
    grep -hE "status FAILED version=$VX|verify FAILED" "$D"/worker*.log | strip_prefix | sed 's/^/  /' | tee -a "$D/summary.txt"
    fail "the apply of $V aborted" planner agent0 "${WORKERS[@]}"
  fi
  say "committed $V after $((t_commit - t_replan)) ms"
  wait_until 30 "every worker to flip to $V" every_log "status FLIPPED version=$VX( |\$)" "${WORKERS[@]}"
  wait_until 30 "every worker to verify $V" every_log "verify ok version=$VX " "${WORKERS[@]}"
  wait_until 30 "every agent's commit answer" log_has planner "every agent answered the commit of $VX\$"
  t_flipped=$(now_ms)
  say "every worker flipped to $V and verified it $((t_flipped - t_replan)) ms after the replan"
  if grep -qE "status FAILED|verify FAILED" "$D"/worker*.log; then
    grep -hE "status FAILED|verify FAILED" "$D"/worker*.log | strip_prefix | sed 's/^/  /'
    fail "a worker reported FAILED" "${WORKERS[@]}"
  fi
  # The measured balancedness of V needs complete windows under V.
  wait_until 30 "a measured balancedness of $V" measured_nonzero
  sleep $((3 * WINDOW_MS / 1000))
  AFTER="$(layout_line)"

  out ""
  out "== part 1, apply $1: version $V committed"
  out "  $(grep -hE "preparing $VX " "$D/planner.log" | strip_prefix)"
  out "  replan -> committed $((t_commit - t_replan)) ms; -> every worker flipped and verified $((t_flipped - t_replan)) ms"
  out "  modelled:  $(grep -oE 'balancedness [0-9.]+ -> [0-9.]+' <<<"$DECISION")"
  out "  measured:  before $(sed -nE 's/.*measured balancedness ([0-9.]+).*/\1/p' <<<"$BEFORE") ($FROM), after $(sed -nE 's/.*measured balancedness ([0-9.]+).*/\1/p' <<<"$AFTER") ($V)"
  out "  after:     $AFTER"
  for ((r = 0; r < N; r++)); do
    log="$D/worker$r.log"
    out "  rank $r:"
    [[ $1 == 1 ]] && grep -hE "joined the weight-transfer group" "$log" | strip_prefix | sed 's/^/    /' | tee -a "$D/summary.txt"
    grep -hE "(staging $VX:|rank $r staged $VX:|status (READY|FLIPPED) version=$VX( |$)|verify ok version=$VX )" \
      "$log" | strip_prefix | sed 's/^/    /' | tee -a "$D/summary.txt"
    grep -hE "window [0-9]+ gpu $r version $VX " "$log" | tail -n 1 | strip_prefix | sed 's/^/    /' |
      tee -a "$D/summary.txt"
  done
  BEFORE="$AFTER"
}
APPLIES="${CLUSTER_APPLIES:-2}"
for ((apply = 1; apply <= APPLIES; apply++)); do apply_and_check "$apply"; done
say "part 1 passed"

# --- Part 2: a worker dies around an apply ------------------------------------
out ""
say "part 2: SIGKILL of rank $VICTIM ($FAULT the Prepare), then replan --force"
# Part 2's lines of the planner's and the agent's logs start after these.
P2_PLANNER=$(($(wc -l <"$D/planner.log") + 1))
P2_AGENT=$(($(wc -l <"$D/agent0.log") + 1))
kill_victim() {
  t_kill=$(now_ms)
  kill -KILL "${PID_OF[worker$VICTIM]}"
  while alive "worker$VICTIM"; do sleep 0.05; done
  GONE[worker$VICTIM]=1
  say "killed rank $VICTIM (pid ${PID_OF[worker$VICTIM]})"
}
SURVIVORS=()
for ((r = 0; r < N; r++)); do ((r == VICTIM)) || SURVIVORS+=("worker$r"); done
if [[ "$FAULT" == before ]]; then
  kill_victim
  wait_until 10 "the agent to see rank $VICTIM detach" log_has agent0 "worker detached: gpu $VICTIM"
else
  kill -STOP "${PID_OF[worker$VICTIM]}"
  say "froze rank $VICTIM (SIGSTOP)"
fi
t_replan2=$(now_ms)
DECISION2="$(ctl replan --force 2>&1)"
out "  $DECISION2"
V2="$(sed -nE 's/.*; applying ([^ ;]+)$/\1/p' <<<"$DECISION2")"
[[ -n "$V2" ]] || fail "the second replan did not start an apply (expected one that aborts)" planner agent0
V2X="${V2//./\\.}"
if [[ "$FAULT" == during ]]; then
  # The Prepare reached the node; the survivors stage while rank VICTIM is frozen.
  wait_until 10 "the agent to forward the Prepare of $V2" log_has agent0 "preparing $V2X on gpus"
  sleep 1
  log_has planner "aborting $V2X:" && fail "$V2 aborted before rank $VICTIM was killed" planner agent0
  kill_victim
fi
aborted2() { log_has planner "aborting $V2X:" || is_committed "$V2"; }
wait_until $((APPLY_TIMEOUT_MS / 1000 + 10)) "the apply of $V2 to abort" aborted2
t_abort=$(now_ms)
is_committed "$V2" && fail "$V2 committed without rank $VICTIM" planner agent0
abort_ms=$((t_abort - t_replan2))
say "the planner aborted $V2 $abort_ms ms after the replan, $((t_abort - t_kill)) ms after the kill (apply timeout $APPLY_TIMEOUT_MS ms)"
((abort_ms <= APPLY_TIMEOUT_MS + 5000)) || fail "the abort took longer than the apply timeout" planner
# Survivors that got the Prepare answer it and the Abort (READY/FAILED, then
# DROPPED/FAILED, or a cancelled staging) once their staging returns: at the
# latest when the NCCL transfer deadline passes.
answered2() {
  local w
  for w in "${SURVIVORS[@]}"; do
    log_has "$w" "status [A-Z]+ version=$V2X( |:|$)|staging of $V2X cancelled" || return 1
  done
}
if log_has agent0 "preparing $V2X on gpus"; then
  wait_until $((TRANSFER_TIMEOUT_MS / 1000 + 30)) "every survivor to answer $V2" answered2
  say "every survivor answered $V2 $(($(now_ms) - t_replan2)) ms after the replan"
fi
# Survivors keep serving V: the planner's committed version, and their windows.
sleep $((2 * WINDOW_MS / 1000 + 1))
check_alive
[[ "$(layout_version)" == "$V" ]] || fail "the planner's committed version is $(layout_version), not $V" planner
t_check=$(now_ms)
sleep $((2 * WINDOW_MS / 1000))
for w in "${SURVIVORS[@]}"; do
  last="$(grep -hE "window [0-9]+ gpu [0-9]+ version " "$D/$w.log" | tail -n 1)"
  [[ "$last" == *" version $V tokens"* ]] || fail "$w's last window is not under $V: $last" "$w"
  wid="$(sed -nE 's/.*window ([0-9]+) gpu.*/\1/p' <<<"$last")"
  ((wid * WINDOW_MS >= t_check - 2 * WINDOW_MS)) || fail "$w stopped reporting windows (last $wid)" "$w"
  log_has "$w" "status FLIPPED version=$V2X( |$)" && fail "$w flipped to $V2" "$w"
done
out ""
out "== part 2 summary: rank $VICTIM killed $FAULT the Prepare of $V2"
tail -n "+$P2_PLANNER" "$D/planner.log" | grep -vE "replan: " | strip_prefix | head -n 20 |
  sed 's/^/  planner: /' | tee -a "$D/summary.txt"
tail -n "+$P2_AGENT" "$D/agent0.log" | grep -vE "worker_service|planner_link" | strip_prefix |
  head -n 20 | sed 's/^/  agent: /' | tee -a "$D/summary.txt"
for w in "${SURVIVORS[@]}"; do
  out "  $w:"
  grep -hE "version=$V2X( |:|\$)|staging $V2X:|staging of $V2X |rank [0-9]+ staged $V2X:|weight-transfer group|NCCL WARN" \
    "$D/$w.log" | grep -v "joined the weight-transfer group" | strip_prefix | head -n 20 |
    sed 's/^/    /' | tee -a "$D/summary.txt"
  grep -hE "window [0-9]+ gpu [0-9]+ version " "$D/$w.log" | tail -n 1 | strip_prefix |
    sed 's/^/    still serving: /' | tee -a "$D/summary.txt"
done
out "  $(layout_line)"
grep -h "replan: " "$D/planner.log" | strip_prefix | tail -n +3 | sed 's/^/  planner, later replans: /' |
  tee -a "$D/summary.txt"

if grep -q "verify FAILED" "$D"/worker*.log; then
  grep -h "verify FAILED" "$D"/worker*.log | strip_prefix | sed 's/^/  /' | tee -a "$D/summary.txt"
  fail "a worker's checksum self-check failed"
fi

# --- Shutdown -------------------------------------------------------------------
say "SIGTERM to every process"
stop_cluster
for name in "${ALL[@]}"; do
  [[ "$name" == "worker$VICTIM" ]] || out "  $(grep -m 1 "^$name: exit status" "$D/cluster.log")"
done
((${#HUNG[@]} == 0)) || fail "did not shut down in time: ${HUNG[*]}"
say "part 2 passed; every process shut down"
out "cluster.sh: PASSED ($N workers, backend $BACKEND); logs in $D"
