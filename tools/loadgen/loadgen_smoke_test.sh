#!/usr/bin/env bash
# Smoke test of craft-loadgen and run_benchmark.sh: a real craft-planner and
# 4 simulated agents x 2 GPUs of a tiny model for a few seconds; windows must
# be ingested and at least one apply must commit on every agent.
set -euo pipefail

RUNFILES="${TEST_SRCDIR:-.}/craft"
DIR="${TEST_TMPDIR:-$(mktemp -d)}/loadgen_smoke"
rm -rf "$DIR"

"$RUNFILES/tools/loadgen/run_benchmark.sh" --no_build \
  --planner_bin "$RUNFILES/server/craft-planner" \
  --loadgen_bin "$RUNFILES/tools/loadgen/craft-loadgen" \
  --launcher_bin "$RUNFILES/tools/local_cluster/craft-local-cluster" \
  --out "$DIR" --nodes 4 --gpus_per_node 2 --num_layers 4 --num_experts 16 --top_k 2 \
  --bytes_per_expert 4096 --budget 2 --window_ms 200 --duration_s 4 \
  --replan_interval_s 1 --replan_every_s 1 --drain_s 10

fail() { echo "FAIL: $*" >&2; cat "$DIR/summary.txt" >&2; exit 1; }
value() { sed -n "s/^$1=//p" "$DIR/summary.txt"; }

(($(value planner_windows_ingested) > 0)) || fail "the planner ingested no windows"
(($(value planner_windows_ingested) <= $(value gpu_windows_sent))) ||
  fail "the planner ingested more windows than were sent"
! grep -q "load window rejected" "$DIR/planner.log" || fail "the planner rejected windows"
(($(value applies_committed) >= 1)) || fail "no apply committed"
(($(value agents_failed) == 0)) || fail "an agent stream failed"
[[ "$(value planner_prepare_to_commit_point_ms_p50)" != "n/a" ]] ||
  fail "no apply in the planner's log"
[[ -n "$(value replan_stage_plan_ms_p50)" ]] || fail "no replan stage times in the summary"

# Two placement groups of 2 nodes each, re-planned concurrently: both commit.
rm -rf "$DIR"
"$RUNFILES/tools/loadgen/run_benchmark.sh" --no_build \
  --planner_bin "$RUNFILES/server/craft-planner" \
  --loadgen_bin "$RUNFILES/tools/loadgen/craft-loadgen" \
  --launcher_bin "$RUNFILES/tools/local_cluster/craft-local-cluster" \
  --out "$DIR" --groups 2 --nodes 4 --gpus_per_node 2 --num_layers 4 --num_experts 16 --top_k 2 \
  --bytes_per_expert 4096 --budget 2 --window_ms 200 --duration_s 4 \
  --replan_interval_s 1 --replan_every_s 1 --drain_s 10
(($(value groups) == 2)) || fail "the loadgen did not run 2 groups"
(($(value warmup_applies_committed) >= 2)) || fail "not every group committed its warm-up apply"
(($(value agents_failed) == 0)) || fail "an agent stream failed"
echo PASS
