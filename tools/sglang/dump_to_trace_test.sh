#!/usr/bin/env bash
# SGLang recorder dumps -> craft traces -> plans, on files written by a real
# torch.save in the recorder's layout: {"rank", "logical_count",
# "average_utilization_rate_over_window"}.
set -euo pipefail

RUNFILES="${TEST_SRCDIR:-.}/craft"
[[ -d "$RUNFILES/tools" ]] || RUNFILES=.
CRAFTCTL="$RUNFILES/tools/craftctl/craftctl"
CONVERT="$RUNFILES/tools/sglang/dump_to_trace.py"
PYTHON=/usr/bin/python3
TMP="${TEST_TMPDIR:-$(mktemp -d)}"
export HOME="$TMP"  # torch may want a writable cache directory
failures=0

if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
  echo "SKIPPED: $PYTHON cannot import torch (apt-get install python3-torch)"
  exit 0
fi

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
expect_error() {
  local needle="$1"; shift
  if "$@" >"$TMP/out" 2>"$TMP/err"; then fail "expected failure: $*"; return; fi
  grep -q -- "$needle" "$TMP/err" || fail "'$needle' not in error of $*: $(cat "$TMP/err")"
}
convert() { "$PYTHON" "$CONVERT" "$@"; }

# A 9-layer model (0-2 dense, 3-8 MoE) with 16 experts and top-8 routing, as
# the stat recorder dumps it: 5 buffered passes of which the last 2 were never
# filled, then the same summed to [L, E]. Also a float dump, a per-token dump
# and malformed ones. The dumps holding a float (average_utilization_rate_over_window)
# exercise the converter's own loader where torch's weights_only one cannot read them.
"$PYTHON" - "$TMP" <<'PY'
import sys
import torch

out = sys.argv[1]
torch.manual_seed(0)
layers, experts, passes, filled, top_k = 9, 16, 5, 3, 8
count = torch.zeros(passes, layers, experts, dtype=torch.int32)
for b in range(filled):
    for layer in range(3, layers):
        skew = torch.linspace(4.0, 1.0, experts)[torch.randperm(experts)]
        tokens = 64 * (b + 1)
        picks = torch.multinomial(skew.repeat(tokens, 1), top_k)
        count[b, layer] = torch.bincount(picks.flatten(), minlength=experts).int()
torch.save({"rank": 0, "logical_count": count,
            "average_utilization_rate_over_window": None}, f"{out}/windows.pt")
torch.save({"rank": 0, "logical_count": count.sum(dim=0),
            "average_utilization_rate_over_window": 0.75}, f"{out}/aggregate.pt")
torch.save({"rank": 0, "logical_count": count[:, 3:].double() / 2,
            "average_utilization_rate_over_window": None}, f"{out}/float.pt")
torch.save({"records": [], "last_physical_to_logical_map": torch.zeros(2, 4)},
           f"{out}/per_token.pt")
torch.save({"rank": 0, "logical_count": torch.zeros(experts)}, f"{out}/flat.pt")
torch.save({"rank": 0, "logical_count": -count}, f"{out}/negative.pt")
torch.save([1, 2, 3], f"{out}/list.pt")
# A pickle that would create a file when loaded: refused, nothing created.
class Hostile:
    def __reduce__(self):
        return (open, (f"{out}/created", "w"))
torch.save({"rank": 0, "logical_count": count, "extra": Hostile(), "rate": 0.5},
           f"{out}/hostile.pt")
# The expected traces, for the checks below.
import json
json.dump({"windows": count[:filled, 3:].tolist(), "aggregate": count.sum(0)[3:].tolist()},
          open(f"{out}/expected.json", "w"))
PY

# [B, L, E] -> craft.trace.v1 with the filled windows of the MoE layers.
convert "$TMP/windows.pt" --layers 3-8 --out "$TMP/windows.json" 2>"$TMP/err" \
  || fail "convert windows: $(cat "$TMP/err")"
grep -q "dropped 2 of 5 windows with no counts" "$TMP/err" || fail "no dropped note: $(cat "$TMP/err")"
# [L, E] -> the aggregate format; without --layers the dense layers are kept, with a hint.
convert "$TMP/aggregate.pt" --out "$TMP/all_layers.json" 2>"$TMP/err" || fail "convert aggregate"
grep -q "layers \[0, 1, 2\] have no counts" "$TMP/err" || fail "no dense hint: $(cat "$TMP/err")"
convert "$TMP/aggregate.pt" --layers 3-8 --out "$TMP/aggregate.json" 2>/dev/null \
  || fail "convert aggregate --layers"
convert "$TMP/float.pt" --out "$TMP/float.json" 2>/dev/null || fail "convert float"
"$PYTHON" - "$TMP" <<'PY' || fail "converted traces differ from the dumps"
import json, sys
out = sys.argv[1]
expected = json.load(open(f"{out}/expected.json"))
windows = json.load(open(f"{out}/windows.json"))
assert windows["format"] == "craft.trace.v1", windows
assert (windows["num_layers"], windows["num_experts"]) == (6, 16)
assert windows["windows"] == expected["windows"]
assert windows["sglang_layers"] == [3, 4, 5, 6, 7, 8]
aggregate = json.load(open(f"{out}/aggregate.json"))
assert "format" not in aggregate and "windows" not in aggregate
assert aggregate["counts"] == expected["aggregate"]
assert json.load(open(f"{out}/all_layers.json"))["num_layers"] == 9
floats = json.load(open(f"{out}/float.json"))
assert floats["num_layers"] == 6 and len(floats["windows"]) == 3
assert all(isinstance(c, int) for w in floats["windows"] for row in w for c in row)
PY

# Plan from both and export for SGLang with the model's 9 layers.
for trace in windows aggregate float; do
  "$CRAFTCTL" plan --loads "$TMP/$trace.json" --gpus 4 --algorithm eplb --format sglang \
    --num-hidden-layers 9 --moe-layers 3-8 --out "$TMP/$trace.sglang.json" 2>"$TMP/err" \
    || fail "plan from $trace: $(cat "$TMP/err")"
  grep -q -- "--ep-num-redundant-experts 4 --ep-size 4" "$TMP/err" \
    || fail "no redundant-experts line for $trace: $(cat "$TMP/err")"
done
"$CRAFTCTL" plan --loads "$TMP/windows.json" --gpus 4 --algorithm craft --budget 2 \
  --out "$TMP/craft.json" 2>"$TMP/err" || fail "plan craft from windows: $(cat "$TMP/err")"
"$CRAFTCTL" eval --loads "$TMP/windows.json" --gpus 4 --budget 2 --holdout 0.34 >"$TMP/table" \
  || fail "eval windows"
"$PYTHON" - "$TMP/windows.sglang.json" <<'PY' || fail "sglang rows"
import json, sys
rows = json.load(open(sys.argv[1]))["physical_to_logical_map"]
assert len(rows) == 9 and all(len(r) == 20 for r in rows), [len(r) for r in rows]
for row in rows[:3]:
    assert row == [p % 16 for p in range(20)], row
for row in rows[3:]:
    assert sorted(set(row)) == list(range(16)), row
PY
# The trace must hold exactly the MoE layers.
expect_error "the trace has 9 layers but --num_hidden_layers 9 --moe_layers names 6" \
  "$CRAFTCTL" plan --loads "$TMP/all_layers.json" --gpus 4 --algorithm eplb --format sglang \
  --num-hidden-layers 9 --moe-layers 3-8
expect_error "is a torch file" "$CRAFTCTL" plan --loads "$TMP/windows.pt" --gpus 4 --algorithm eplb

# Dumps craft cannot use: clear errors, non-zero exit.
expect_error "per-pass/per-token dump" convert "$TMP/per_token.pt"
expect_error "expected \[B, L, E\] or \[L, E\]" convert "$TMP/flat.pt"
expect_error "negative counts" convert "$TMP/negative.pt"
expect_error "not the recorder's dict" convert "$TMP/list.pt"
expect_error "cannot load" convert "$TMP/expected.json"
expect_error "open is not part of a recorder dump" convert "$TMP/hostile.pt"
[[ ! -e "$TMP/created" ]] || fail "loading hostile.pt ran its code"
expect_error "outside the dump's 9 layers" convert "$TMP/windows.pt" --layers 3-9
expect_error "comes after" convert "$TMP/windows.pt" --layers 5,3
expect_error "not a layer id" convert "$TMP/windows.pt" --layers 3-

if ((failures > 0)); then
  echo "$failures check(s) failed"
  exit 1
fi
echo "dump_to_trace: all checks passed"
