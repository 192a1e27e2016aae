#!/usr/bin/env bash
# The craft-agent binary as a process: ready file, reconnect attempts logged
# while no planner is up, refusing a socket in use, replacing a stale one,
# clear flag errors, and a clean exit 0 on SIGTERM that removes the socket.
set -uo pipefail

AGENT="${TEST_SRCDIR:-.}/craft/agent/craft-agent"
[[ -x "$AGENT" ]] || AGENT=./agent/craft-agent
# Unix socket paths must be short: not under Bazel's TEST_TMPDIR.
DIR="$(mktemp -d /tmp/craft_agent_sh.XXXXXX)"
failures=0
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  rm -rf "$DIR"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
wait_for() {  # wait_for SECONDS CMD...: until CMD succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do ((SECONDS < deadline)) || return 1; sleep 0.05; done
}

# A port nothing listens on: the planner is "away".
PLANNER=127.0.0.1:1

start_agent() {  # start_agent NAME: in the background (sets $pid), logs to $DIR/NAME.log
  "$AGENT" --insecure --node node-a --gpus 0,1 --socket "$DIR/agent.sock" --planner "$PLANNER" \
    --worker_wait_ms 0 --ready_file "$DIR/$1.ready" --state_file "$DIR/state" \
    >/dev/null 2>"$DIR/$1.log" &
  pid=$!
  pids+=("$pid")
}

start_agent first
wait_for 10 test -f "$DIR/first.ready" || fail "no ready file: $(cat "$DIR/first.log")"
[[ "$(cat "$DIR/first.ready")" == "socket=$DIR/agent.sock" ]] || fail "ready file: $(cat "$DIR/first.ready")"
[[ -S "$DIR/agent.sock" ]] || fail "no socket"
wait_for 10 grep -q "connecting to planner $PLANNER (attempt 3)" "$DIR/first.log" \
  || fail "reconnect attempts not logged: $(cat "$DIR/first.log")"

# A second agent on the same socket is refused; the first keeps its socket.
if "$AGENT" --insecure --node node-a --gpus 0 --socket "$DIR/agent.sock" --planner "$PLANNER" \
  --worker_wait_ms 0 2>"$DIR/second.log"; then
  fail "second agent on a live socket started"
fi
grep -q "another process is listening" "$DIR/second.log" || fail "second: $(cat "$DIR/second.log")"
[[ -S "$DIR/agent.sock" ]] || fail "the second agent removed the live socket"

# SIGTERM: exit 0, socket removed.
kill -TERM "$pid"
wait "$pid"; rc=$?
[[ $rc -eq 0 ]] || fail "exit code $rc after SIGTERM: $(tail -5 "$DIR/first.log")"
[[ ! -e "$DIR/agent.sock" ]] || fail "socket left behind after SIGTERM"
grep -q "agent stopped" "$DIR/first.log" || fail "no clean stop logged"

# --metrics_listen and --health_listen: both ports in the ready file; the
# metrics port serves the agent's metrics, the health port accepts gRPC.
"$AGENT" --insecure --node node-a --gpus 0,1 --socket "$DIR/agent.sock" --planner "$PLANNER" \
  --worker_wait_ms 0 --ready_file "$DIR/ports.ready" --metrics_listen 127.0.0.1:0 \
  --health_listen 127.0.0.1:0 >/dev/null 2>"$DIR/ports.log" &
pid=$!
pids+=("$pid")
wait_for 10 test -f "$DIR/ports.ready" || fail "ports: no ready file: $(cat "$DIR/ports.log")"
metrics_port=$(sed -n 's/^metrics_port=//p' "$DIR/ports.ready")
health_port=$(sed -n 's/^health_port=//p' "$DIR/ports.ready")
[[ -n "$metrics_port" && -n "$health_port" ]] || fail "ports: $(cat "$DIR/ports.ready")"
exec 3<> "/dev/tcp/127.0.0.1/$metrics_port"
printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
scrape=$(cat <&3)
exec 3<&-
grep -q '^craft_agent_configured_gpus 2$' <<< "$scrape" || fail "scrape: $scrape"
grep -q '^craft_agent_planner_connected 0$' <<< "$scrape" || fail "scrape: $scrape"
(exec 3<> "/dev/tcp/127.0.0.1/$health_port") || fail "health port does not accept connections"
kill -TERM "$pid"
wait "$pid" || fail "exit code $? after SIGTERM with metrics and health"

# A crashed agent leaves a stale socket; the next one replaces it.
start_agent crashed
wait_for 10 test -f "$DIR/crashed.ready" || fail "crashed: no ready file"
kill -KILL "$pid"; wait "$pid" 2>/dev/null
[[ -S "$DIR/agent.sock" ]] || fail "expected a stale socket after SIGKILL"
start_agent third
wait_for 10 test -f "$DIR/third.ready" || fail "stale socket not replaced: $(cat "$DIR/third.log")"
kill -INT "$pid"
wait "$pid"; rc=$?
[[ $rc -eq 0 ]] || fail "exit code $rc after SIGINT"

# Flag errors are clear and exit non-zero.
expect_flag_error() {  # expect_flag_error NEEDLE ARGS...
  local needle="$1"; shift
  if "$AGENT" --insecure "$@" 2>"$DIR/flags.log"; then fail "accepted: $*"; return; fi
  grep -q -- "$needle" "$DIR/flags.log" || fail "'$needle' not in: $(cat "$DIR/flags.log")"
}
expect_flag_error "--node is required" --gpus 0 --socket "$DIR/x.sock" --planner "$PLANNER"
expect_flag_error "is not a non-negative rank" --node n --gpus 0,x --socket "$DIR/x.sock" --planner "$PLANNER"
expect_flag_error "unique" --node n --gpus 1,1 --socket "$DIR/x.sock" --planner "$PLANNER"
expect_flag_error "--planner is required" --node n --gpus 0 --socket "$DIR/x.sock"
echo "highest_epoch=oops" >"$DIR/bad.state"
expect_flag_error "bad highest_epoch" --node n --gpus 0 --socket "$DIR/x.sock" \
  --planner "$PLANNER" --state_file "$DIR/bad.state"
expect_flag_error "Unknown command line flag 'no_such_flag'" --no_such_flag
# --help lists the agent's flags and exits 0.
"$AGENT" --help >"$DIR/help" 2>&1 || fail "--help exited $?"
grep -q -- "^  --socket_mode=0660$" "$DIR/help" || fail "--help: $(head -c 300 "$DIR/help")"

if ((failures > 0)); then
  echo "$failures failure(s)"
  exit 1
fi
echo "PASS"
