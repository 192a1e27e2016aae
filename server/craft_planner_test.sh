#!/usr/bin/env bash
# The craft-planner binary: --ready_file with a port-0 listener, a clean exit
# 0 on SIGTERM, the epoch bumped across restarts, and start-up errors that
# name file, line and reason.
set -euo pipefail

BIN="${TEST_SRCDIR:-.}/craft/server/craft-planner"
[[ -x "$BIN" ]] || BIN="server/craft-planner"
DIR="${TEST_TMPDIR:-$(mktemp -d)}/craft_planner_test"
rm -rf "$DIR" && mkdir -p "$DIR"

fail() { echo "FAIL: $*" >&2; exit 1; }

cat > "$DIR/planner.yaml" <<'YAML'
listen_address: "127.0.0.1:0"
model: {num_layers: 2, num_experts: 4, top_k: 2, bytes_per_expert: 1000}
cluster: {num_gpus: 4, num_nodes: 2}
YAML

# Starts the planner, waits for its ready file, stops it with SIGTERM.
run_once() {
  local log="$1"
  rm -f "$DIR/ready"
  "$BIN" --insecure --config "$DIR/planner.yaml" --state_path "$DIR/state" --ready_file "$DIR/ready" \
    2> "$log" &
  local pid=$!
  for _ in $(seq 100); do
    [[ -f "$DIR/ready" ]] && break
    sleep 0.05
  done
  [[ -f "$DIR/ready" ]] || { kill -9 "$pid"; cat "$log" >&2; fail "no ready file"; }
  grep -Eq '^grpc_port=[1-9][0-9]*$' "$DIR/ready" || fail "ready file: $(cat "$DIR/ready")"
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  [[ "$rc" == 0 ]] || { cat "$log" >&2; fail "exit status $rc after SIGTERM"; }
  grep -q "stopped" "$log" || fail "no graceful stop in the log"
}

run_once "$DIR/first.log"
grep -q "planner epoch 1," "$DIR/first.log" || fail "first start is not epoch 1"
run_once "$DIR/second.log"
grep -q "planner epoch 2," "$DIR/second.log" || fail "restart did not bump the epoch"

# --metrics_listen: the ready file names the metrics port, which serves the
# planner's metrics in Prometheus's text format.
rm -f "$DIR/ready"
"$BIN" --insecure --config "$DIR/planner.yaml" --state_path "$DIR/state" --ready_file "$DIR/ready" \
  --metrics_listen 127.0.0.1:0 2> "$DIR/metrics.log" &
pid=$!
for _ in $(seq 100); do [[ -f "$DIR/ready" ]] && break; sleep 0.05; done
port=$(sed -n 's/^metrics_port=//p' "$DIR/ready" 2> /dev/null || true)
[[ -n "$port" ]] || { kill -9 "$pid"; cat "$DIR/metrics.log" >&2; fail "no metrics_port"; }
exec 3<> "/dev/tcp/127.0.0.1/$port"
printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
scrape=$(cat <&3)
exec 3<&-
kill -TERM "$pid"
wait "$pid" || fail "exit status $? after SIGTERM with metrics"
grep -q '^craft_planner_epoch 3$' <<< "$scrape" || fail "scrape: $scrape"
grep -q '^craft_planner_configured_gpus{group="default"} 4$' <<< "$scrape" || fail "scrape: $scrape"
# A metrics address that cannot be used fails the start.
rc=0
"$BIN" --insecure --config "$DIR/planner.yaml" --state_path "$DIR/state" --metrics_listen 256.0.0.1:1 \
  2> "$DIR/badmetrics.log" || rc=$?
[[ "$rc" == 1 ]] || fail "bad --metrics_listen exit status $rc"
grep -q "cannot serve metrics" "$DIR/badmetrics.log" || fail "bad --metrics_listen message"

# A bad key fails the start with file:line:column and the reason.
printf 'model: {num_layers: 2, num_experts: 4, top_k: 2, bytes_per_expert: 1}\ncluster: {num_gpus: 4}\nreplan: {intervals: 3}\n' \
  > "$DIR/bad.yaml"
rc=0
"$BIN" --insecure --config "$DIR/bad.yaml" --state_path "$DIR/state" 2> "$DIR/bad.log" || rc=$?
[[ "$rc" == 2 ]] || fail "bad config exit status $rc"
grep -q "bad.yaml:3:10: unknown key 'replan.intervals'" "$DIR/bad.log" ||
  { cat "$DIR/bad.log" >&2; fail "bad config message"; }

# No state path anywhere.
rc=0
"$BIN" --insecure --config "$DIR/planner.yaml" 2> "$DIR/nostate.log" || rc=$?
[[ "$rc" == 2 ]] || fail "missing state_path exit status $rc"
grep -q "no state_path" "$DIR/nostate.log" || fail "missing state_path message"

# Neither certificates nor --insecure: refused at start, saying what to give.
rc=0
"$BIN" --config "$DIR/planner.yaml" --state_path "$DIR/state" 2> "$DIR/notls.log" || rc=$?
[[ "$rc" == 2 ]] || fail "no TLS flags exit status $rc"
grep -q -- "--tls_cert is not set" "$DIR/notls.log" || { cat "$DIR/notls.log" >&2; fail "no TLS message"; }
# --help lists the planner's flags, the shared TLS ones included, and exits 0.
"$BIN" --help > "$DIR/help" || fail "--help exit status $?"
grep -q -- "^  --metrics_listen$" "$DIR/help" && grep -q -- "^  --tls_reload_s=60$" "$DIR/help" \
  || fail "--help: $(head -c 300 "$DIR/help")"
rc=0
"$BIN" --no_such_flag 2> "$DIR/bad_flag.log" || rc=$?
[[ "$rc" != 0 ]] && grep -q "no_such_flag" "$DIR/bad_flag.log" || fail "unknown flag: exit $rc"
echo PASS
