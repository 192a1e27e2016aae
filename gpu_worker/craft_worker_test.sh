#!/usr/bin/env bash
# The craft-worker binary: flag errors, the ready file, standalone windows,
# the self-check log line and a clean exit on SIGTERM.
set -uo pipefail

WORKER="$TEST_SRCDIR/$TEST_WORKSPACE/gpu_worker/craft-worker"
TMP="$(mktemp -d "${TEST_TMPDIR:-/tmp}/craft-worker.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
failures=0

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

# expect_error EXIT_CODE MESSAGE FLAGS...: the worker refuses the flags.
expect_error() {
  local want_code="$1" want_message="$2"
  shift 2
  "$WORKER" --insecure "$@" >"$TMP/out" 2>&1
  local code=$?
  [[ $code == "$want_code" ]] || fail "$* exited $code, expected $want_code"
  grep -q -- "$want_message" "$TMP/out" || fail "$*: no '$want_message' in: $(cat "$TMP/out")"
}

expect_error 2 "unknown backend 'cuda'" --backend=cuda
expect_error 1 "Unknown command line flag 'no_such_flag'" --no_such_flag
# --help lists the worker's flags and exits 0.
"$WORKER" --help >"$TMP/out" 2>&1 || fail "--help exited $?"
grep -q -- "^  --metrics_listen$" "$TMP/out" || fail "--help: $(head -c 300 "$TMP/out")"
# Without --insecure the transfer port needs its certificate files.
"$WORKER" >"$TMP/out" 2>&1
[[ $? == 2 ]] && grep -q -- "--tls_cert is not set" "$TMP/out" || fail "no TLS flags: $(cat "$TMP/out")"
echo "not PEM" >"$TMP/bad.pem"
expect_error 2 "not a PEM CERTIFICATE" --insecure=false --tls_cert="$TMP/bad.pem" \
  --tls_key="$TMP/bad.pem" --tls_ca="$TMP/bad.pem"
expect_error 2 "gpu must be in \[0, 1\]" --num_gpus=2 --gpu=2
expect_error 2 "top_k must be in" --num_experts=4 --top_k=5
expect_error 2 "exclusive" --trace=/nonexistent --skew=2
expect_error 1 "cannot open /nonexistent" --trace=/nonexistent
expect_error 2 "unix:PATH" --agent=/tmp/agent.sock
echo '{"num_layers": 2, "num_experts": 16, "counts": [[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16],[16,15,14,13,12,11,10,9,8,7,6,5,4,3,2,1]]}' \
  >"$TMP/trace.json"
expect_error 2 "the worker runs 4 x 16" --trace="$TMP/trace.json"

# A standalone worker on a 2-layer trace: ready file, windows, verify, SIGTERM.
"$WORKER" --insecure --num_layers=2 --trace="$TMP/trace.json" --window_ms=100 --tokens_per_window=32 \
  --verify_interval_ms=100 --log_windows --ready_file="$TMP/ready" >"$TMP/log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  [[ -f "$TMP/ready" ]] && break
  sleep 0.1
done
grep -Eq '^transfer_port=[0-9]+$' "$TMP/ready" || fail "ready file: $(cat "$TMP/ready" 2>&1)"
for _ in $(seq 100); do
  grep -q "tokens per layer \[64,64\]" "$TMP/log" && break
  sleep 0.1
done
kill -TERM "$pid"
wait "$pid"
code=$?
[[ $code == 0 ]] || fail "exit status after SIGTERM: $code"
grep -q "verify ok version=0.0 slots=32" "$TMP/log" || fail "no verify line"
grep -q "tokens per layer \[64,64\]" "$TMP/log" || fail "no window line (1 GPU counts all 32 x 2)"
grep -q "shut down" "$TMP/log" || fail "no shutdown line"

if ((failures > 0)); then
  echo "--- worker log"
  cat "$TMP/log"
  exit 1
fi
echo "PASS"
