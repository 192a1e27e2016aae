#!/usr/bin/env bash
# End-to-end checks of the craftctl binary: synth -> plan -> eval, the SGLang
# export, re-planning against a previous layout, and clear errors on bad input.
set -euo pipefail

CRAFTCTL="${TEST_SRCDIR:-.}/craft/tools/craftctl/craftctl"
[[ -x "$CRAFTCTL" ]] || CRAFTCTL=./tools/craftctl/craftctl
TMP="${TEST_TMPDIR:-$(mktemp -d)}"
failures=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# expect_error NEEDLE CMD...: the command must exit non-zero and say NEEDLE.
expect_error() {
  local needle="$1"; shift
  if "$@" >"$TMP/out" 2>"$TMP/err"; then fail "expected failure: $*"; return; fi
  grep -q -- "$needle" "$TMP/err" || fail "'$needle' not in error of $*: $(cat "$TMP/err")"
}

"$CRAFTCTL" synth --out "$TMP/trace.json" --layers 8 --experts 32 --top-k 2 --windows 12 \
  --max-hot 12 --min-hot 6 --tokens-per-window 512 --seed 3
for algorithm in none eplb craft craft-paper; do
  "$CRAFTCTL" plan --loads "$TMP/trace.json" --gpus 8 --nodes 2 --algorithm "$algorithm" \
    --budget 2 --out "$TMP/$algorithm.json" 2>"$TMP/err" || fail "plan $algorithm: $(cat "$TMP/err")"
  grep -q '"phy2log"' "$TMP/$algorithm.json" || fail "no phy2log in $algorithm layout"
done

"$CRAFTCTL" eval --loads "$TMP/trace.json" --gpus 8 --nodes 2 --budget 2 --holdout 0.5 \
  --previous "$TMP/none.json" >"$TMP/table" || fail "eval"
for row in none eplb "craft R=2" craft-paper; do
  grep -q "^$row " "$TMP/table" || fail "eval table lacks $row: $(cat "$TMP/table")"
done
"$CRAFTCTL" eval --loads "$TMP/trace.json" --gpus 8 --format csv --layouts "$TMP/craft.json" \
  | grep -q "^algorithm,replicas_per_gpu" || fail "csv header"

# Re-planning against the current layout moves nothing when loads are unchanged.
"$CRAFTCTL" plan --loads "$TMP/trace.json" --gpus 8 --nodes 2 --algorithm craft --budget 2 \
  --previous "$TMP/craft.json" --out "$TMP/again.json" 2>"$TMP/err"
grep -q "with (0 remote loads" "$TMP/err" || fail "re-plan moved weights: $(cat "$TMP/err")"

# Incremental re-plans: a zero limit keeps the previous layout; eval prints the
# frontier as a table and as CSV.
"$CRAFTCTL" synth --out "$TMP/drifted.json" --layers 8 --experts 32 --top-k 2 --windows 12 \
  --max-hot 12 --min-hot 6 --tokens-per-window 512 --seed 4
"$CRAFTCTL" plan --loads "$TMP/drifted.json" --gpus 8 --nodes 2 --budget 2 \
  --previous "$TMP/craft.json" --max-moved-fraction 0 --out "$TMP/same.json" 2>"$TMP/err" \
  || fail "plan --max-moved-fraction 0: $(cat "$TMP/err")"
grep -q "vs previous: 0 of" "$TMP/err" || fail "zero limit moved weights: $(cat "$TMP/err")"
"$CRAFTCTL" plan --loads "$TMP/drifted.json" --gpus 8 --nodes 2 --budget 2 \
  --previous "$TMP/craft.json" --max-moved-fraction 0.1 --max-moved-gb 0.5 \
  --out "$TMP/incremental.json" 2>"$TMP/err" || fail "plan incremental: $(cat "$TMP/err")"
grep -q '"phy2log"' "$TMP/incremental.json" || fail "no incremental layout"
"$CRAFTCTL" eval --loads "$TMP/drifted.json" --gpus 8 --nodes 2 --budget 2 --holdout 0.5 \
  --algorithms craft --previous "$TMP/craft.json" --max-moved-fraction 0.2 >"$TMP/frontier" \
  || fail "eval frontier"
grep -q "^incremental R=2 " "$TMP/frontier" || fail "no incremental row: $(cat "$TMP/frontier")"
grep -q "^ *point  *moves  *moved" "$TMP/frontier" || fail "no frontier table: $(cat "$TMP/frontier")"
"$CRAFTCTL" eval --loads "$TMP/drifted.json" --gpus 8 --nodes 2 --budget 2 --algorithms craft \
  --previous "$TMP/craft.json" --format csv | grep -q "^point,moves,moved_replicas,moved_fraction" \
  || fail "frontier csv header"

# SGLang export: fine for uniform layouts, refused with a reason otherwise.
"$CRAFTCTL" plan --loads "$TMP/trace.json" --gpus 8 --algorithm eplb --format sglang \
  --out "$TMP/sglang.json" 2>/dev/null
grep -q physical_to_logical_map "$TMP/sglang.json" || fail "sglang export"

# SGLang rows are decoder layers: DeepSeek-V3's 61 layers, 0-2 dense, 3-60 MoE.
"$CRAFTCTL" synth --out "$TMP/moe58.json" --layers 58 --experts 16 --top-k 2 --windows 4 \
  --max-hot 4 --min-hot 2 --tokens-per-window 256 --seed 5
"$CRAFTCTL" plan --loads "$TMP/moe58.json" --gpus 8 --algorithm eplb --out "$TMP/moe58.layout.json" \
  2>/dev/null || fail "plan moe58"
"$CRAFTCTL" plan --loads "$TMP/moe58.json" --gpus 8 --algorithm eplb --format sglang \
  --num-hidden-layers 61 --moe-layers 3-60 --out "$TMP/dsv3.json" 2>"$TMP/err" \
  || fail "sglang export 3-60: $(cat "$TMP/err")"
grep -q -- "start SGLang with --ep-num-redundant-experts 8 --ep-size 8 (map width 24 = 16 experts" \
  "$TMP/err" || fail "no redundant-experts line: $(cat "$TMP/err")"
if [[ -x /usr/bin/python3 ]]; then
  /usr/bin/python3 - "$TMP/dsv3.json" "$TMP/moe58.layout.json" <<'PY' || fail "sglang rows"
import json, sys
sglang, layout = (json.load(open(path)) for path in sys.argv[1:3])
assert list(sglang) == ["physical_to_logical_map"], list(sglang)
rows = sglang["physical_to_logical_map"]
assert len(rows) == 61, len(rows)
for row in rows[:3]:
    assert row == [p % 16 for p in range(24)], row
for i, layer in enumerate(layout["layers"]):
    assert rows[3 + i] == layer["phy2log"], i
PY
fi
expect_error "the trace has 8 layers but --num_hidden_layers 61 --moe_layers names 58 MoE layers" \
  "$CRAFTCTL" plan --loads "$TMP/trace.json" --gpus 8 --algorithm eplb --format sglang \
  --num-hidden-layers 61 --moe-layers 3-60
expect_error "names 61 MoE layers" "$CRAFTCTL" plan --loads "$TMP/moe58.json" --gpus 8 \
  --algorithm eplb --format sglang --num-hidden-layers 61
expect_error "needs --num_hidden_layers" "$CRAFTCTL" plan --loads "$TMP/moe58.json" --gpus 8 \
  --algorithm eplb --format sglang --moe-layers 3-60
expect_error "need --format sglang" "$CRAFTCTL" plan --loads "$TMP/moe58.json" --gpus 8 \
  --algorithm eplb --num-hidden-layers 61 --moe-layers 3-60
expect_error "layer 61 is out of range" "$CRAFTCTL" plan --loads "$TMP/moe58.json" --gpus 8 \
  --algorithm eplb --format sglang --num-hidden-layers 61 --moe-layers 4-61
expect_error "same number of slots" "$CRAFTCTL" plan --loads "$TMP/moe58.json" --gpus 8 \
  --algorithm craft --budget 1 --format sglang --num-hidden-layers 61 --moe-layers 3-60
# Uniform craft plans load in stock SGLang, incremental re-plans of them too.
"$CRAFTCTL" plan --loads "$TMP/moe58.json" --gpus 8 --algorithm craft --uniform --format sglang \
  --num-hidden-layers 61 --moe-layers 3-60 --out "$TMP/uniform.sglang.json" 2>"$TMP/err" \
  || fail "uniform sglang export: $(cat "$TMP/err")"
grep -q -- "--ep-num-redundant-experts 8 --ep-size 8" "$TMP/err" || fail "uniform: $(cat "$TMP/err")"
"$CRAFTCTL" plan --loads "$TMP/moe58.json" --gpus 8 --algorithm craft --uniform \
  --redundant-per-layer 16 --out "$TMP/uniform.json" 2>/dev/null || fail "uniform plan"
"$CRAFTCTL" synth --out "$TMP/moe58b.json" --layers 58 --experts 16 --top-k 2 --windows 4 \
  --max-hot 4 --min-hot 2 --tokens-per-window 256 --seed 6
"$CRAFTCTL" plan --loads "$TMP/moe58b.json" --gpus 8 --uniform --redundant-per-layer 16 \
  --previous "$TMP/uniform.json" --max-moved-fraction 0.05 --format sglang \
  --num-hidden-layers 61 --moe-layers 3-60 --out "$TMP/uniform2.sglang.json" 2>"$TMP/err" \
  || fail "uniform incremental sglang export: $(cat "$TMP/err")"
"$CRAFTCTL" eval --loads "$TMP/moe58.json" --gpus 8 --algorithms eplb,craft --uniform \
  >"$TMP/uniform.eval" || fail "uniform eval"
grep -q "^craft uniform r=8 " "$TMP/uniform.eval" || fail "no uniform row: $(cat "$TMP/uniform.eval")"
expect_error "do not divide over 8 GPUs" "$CRAFTCTL" plan --loads "$TMP/moe58.json" --gpus 8 \
  --algorithm craft --uniform --redundant-per-layer 3
expect_error "planned by craft" "$CRAFTCTL" plan --loads "$TMP/moe58.json" --gpus 8 \
  --algorithm craft-paper --uniform
# --help after a command prints its usage and flags; craftctl --help the commands.
"$CRAFTCTL" plan --help >"$TMP/help" 2>&1 || fail "plan --help exited non-zero"
grep -q "^usage: craftctl plan" "$TMP/help" || fail "plan --help: $(head -c 200 "$TMP/help")"
grep -q "^  --max_moved_fraction$" "$TMP/help" || fail "plan --help lacks its flags"
grep -q "^  --count" "$TMP/help" && fail "plan --help lists watch's --count"
for command in plan eval synth layout agents explain replan watch health; do
  "$CRAFTCTL" "$command" --help >"$TMP/help" 2>&1 || fail "$command --help exited non-zero"
  grep -q "^usage: craftctl $command" "$TMP/help" || fail "$command --help: $(head -c 200 "$TMP/help")"
done
"$CRAFTCTL" help eval | grep -q "^  --frontier_step=0.01$" || fail "help eval"
"$CRAFTCTL" --help | grep -q "^  health " || fail "craftctl --help lacks health"

# One flag convention: the declared names have underscores, and the dashed
# spellings craftctl always documented mean the same flags.
"$CRAFTCTL" plan --loads "$TMP/drifted.json" --gpus 8 --nodes 2 --budget 2 \
  --previous "$TMP/craft.json" --max_moved_fraction=0.1 --max_moved_gb 0.5 \
  --out "$TMP/underscores.json" 2>/dev/null || fail "plan with underscores"
cmp -s "$TMP/incremental.json" "$TMP/underscores.json" || fail "dashes and underscores differ"
expect_error "unknown flag --gpus" "$CRAFTCTL" synth --out "$TMP/x.json" --gpus 8
expect_error "unknown flag --count" "$CRAFTCTL" layout --count 1
expect_error "given twice" "$CRAFTCTL" plan --loads "$TMP/trace.json" --gpus 8 --gpus=4 \
  --algorithm none
expect_error "Illegal value 'x' specified for flag 'gpus'" "$CRAFTCTL" plan \
  --loads "$TMP/trace.json" --gpus x --algorithm none
expect_error "needs comma-separated integers" "$CRAFTCTL" plan --loads "$TMP/trace.json" \
  --gpus 8 --algorithm craft --candidates 1,a
expect_error "--hbm_gb needs a number" "$CRAFTCTL" plan --loads "$TMP/trace.json" --gpus 8 \
  --algorithm craft --hbm-gb nan
expect_error "need --objective roofline" "$CRAFTCTL" plan --loads "$TMP/trace.json" --gpus 8 \
  --algorithm craft --top-k 4
expect_error "unexpected argument 'extra'" "$CRAFTCTL" plan --loads "$TMP/trace.json" extra

# --threads: the same plan on any count; a negative count is refused.
"$CRAFTCTL" plan --loads "$TMP/moe58.json" --gpus 8 --algorithm craft --threads 1 \
  --out "$TMP/one_thread.json" 2>/dev/null || fail "plan on one thread"
"$CRAFTCTL" plan --loads "$TMP/moe58.json" --gpus 8 --algorithm craft --threads 3 \
  --out "$TMP/three_threads.json" 2>/dev/null || fail "plan on three threads"
cmp -s "$TMP/one_thread.json" "$TMP/three_threads.json" || fail "plans differ by thread count"
expect_error "--threads must be >= 0" "$CRAFTCTL" plan --loads "$TMP/moe58.json" --gpus 8 \
  --algorithm craft --threads -1
printf 'PK\003\004not really a zip' >"$TMP/dump.pt"
expect_error "is a torch file" "$CRAFTCTL" plan --loads "$TMP/dump.pt" --gpus 8 --algorithm eplb

# Bad input: clear errors, non-zero exit.
echo '{"num_layers": 2, "num_experts": 4, "counts": [[1,2,3,4],[1,2,-3,4]]}' >"$TMP/neg.json"
echo '{"num_layers": 2, "num_experts": 4, "counts": [[1,2,3,4],[1,2,3]]}' >"$TMP/shape.json"
echo '{"num_layers": 2, ' >"$TMP/broken.json"
expect_error "negative" "$CRAFTCTL" plan --loads "$TMP/neg.json" --gpus 2 --algorithm craft
expect_error "expected 4" "$CRAFTCTL" plan --loads "$TMP/shape.json" --gpus 2 --algorithm craft
expect_error "broken.json" "$CRAFTCTL" plan --loads "$TMP/broken.json" --gpus 2 --algorithm craft
expect_error "cannot open" "$CRAFTCTL" plan --loads "$TMP/missing.json" --gpus 2 --algorithm none
expect_error "unknown algorithm" "$CRAFTCTL" plan --loads "$TMP/trace.json" --gpus 8 --algorithm x
expect_error "unknown flag --gpu " "$CRAFTCTL" plan --loads "$TMP/trace.json" --gpu 8 --algorithm none
expect_error "gpus is required" "$CRAFTCTL" plan --loads "$TMP/trace.json" --algorithm none
expect_error "unknown flag --frob" "$CRAFTCTL" plan --loads "$TMP/trace.json" --gpus 8 --algorithm none --frob 1
expect_error "multiple of" "$CRAFTCTL" plan --loads "$TMP/trace.json" --gpus 6 --nodes 4 --algorithm none
expect_error "budget" "$CRAFTCTL" plan --loads "$TMP/trace.json" --gpus 8 --algorithm craft --budget -1
expect_error "same number of slots" "$CRAFTCTL" plan --loads "$TMP/trace.json" --gpus 8 --algorithm craft --budget 1 --format sglang
echo '{"num_layers": 2, "num_experts": 4, "counts": [[1,2,3,4],[4,3,2,1]]}' >"$TMP/small.json"
expect_error "layers" "$CRAFTCTL" eval --loads "$TMP/small.json" --gpus 2 --layouts "$TMP/craft.json"
expect_error "unknown command" "$CRAFTCTL" frobnicate
expect_error "must be in \[0, 1\]" "$CRAFTCTL" plan --loads "$TMP/trace.json" --gpus 8 --nodes 2 \
  --budget 2 --previous "$TMP/craft.json" --max-moved-fraction 1.5
expect_error "non-negative" "$CRAFTCTL" plan --loads "$TMP/trace.json" --gpus 8 --nodes 2 \
  --budget 2 --previous "$TMP/craft.json" --max-moved-gb -1
expect_error "need --previous" "$CRAFTCTL" plan --loads "$TMP/trace.json" --gpus 8 \
  --max-moved-fraction 0.1
expect_error "layers" "$CRAFTCTL" plan --loads "$TMP/small.json" --gpus 8 --nodes 2 \
  --previous "$TMP/craft.json" --max-moved-fraction 0.1

if ((failures > 0)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "craftctl end-to-end: all checks passed"
