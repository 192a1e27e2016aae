#!/usr/bin/env bash
# The roofline step-time model on one GPU (issue 13), from binaries and
# inputs that gpu_worker/gpu_machine/stage.sh staged in .device/. Run from the
# repository root; files go to $OUT (default .device/out).
#
#   gpu_worker/gpu_machine/roofline.sh calibrate  # expert_calibrate for DeepSeek-V3- and
#                                                 # Qwen3-235B-sized experts -> $OUT/*.yaml
#   gpu_worker/gpu_machine/roofline.sh validate [CAL_DIR]
#       # measured vs roofline-modelled step for none/EPLB/CRAFT at 256 and 4096
#       # tokens per GPU, D = 16 and 64 (CAL_DIR: the calibrations; default $OUT)
#   gpu_worker/gpu_machine/roofline.sh decode [CAL_DIR]
#       # the decode case: CRAFT planned by the token (step-time) and the
#       # roofline objective at equal memory (R = 8), and by auto-R under each,
#       # measured side by side
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 1
STAGE="$ROOT/.device"
OUT="${OUT:-$STAGE/out}"
mkdir -p "$OUT"
BIN="$STAGE/bin"
IN="$STAGE/inputs"
# shellcheck source=gpu_worker/gpu_machine/env.sh
source "$ROOT/gpu_worker/gpu_machine/env.sh"
status=0

calibrate() {  # calibrate NAME HIDDEN INTER
  timeout 200 "$BIN/expert_calibrate" --hidden "$2" --inter "$3" --out "$OUT/$1.yaml" \
    --command "gpu_worker/gpu_machine/roofline.sh calibrate (expert_calibrate --hidden $2 --inter $3)" \
    >"$OUT/$1.log" 2>&1 || status=1
  cat "$OUT/$1.log"
}
step() {  # step LOG ARGS...
  local log="$1"
  shift
  timeout 300 "$BIN/step_bench" "$@" >>"$OUT/$log" 2>&1 || status=1
}
layouts() { echo "none=$IN/$1_none.json,eplb=$IN/$1_eplb.json,craft=$IN/$1_craft.json"; }

case "${1:-}" in
  calibrate)
    calibrate h200_deepseek_v3 7168 2048
    calibrate h200_qwen3_235b 4096 1536
    ;;
  validate)
    CAL="${2:-$OUT}"
    : >"$OUT/validate.log"
    for d in 16 64; do
      step validate.log --trace "$IN/counts235b.json" --hidden 4096 --inter 1536 \
        --tokens_per_gpu 4096,256 --iters 10 --calibration "$CAL/h200_qwen3_235b.yaml" \
        --layouts "$(layouts "q235_d$d")"
      step validate.log --trace "$IN/synth100.json" --windows 50:100 --hidden 7168 --inter 2048 \
        --tokens_per_gpu 4096,256 --iters 10 --calibration "$CAL/h200_deepseek_v3.yaml" \
        --layouts "$(layouts "synth_d$d")"
    done
    grep -v '^CSV' "$OUT/validate.log"
    ;;
  decode)
    # DeepSeek-shaped synthetic trace, D = 64 on 8 nodes, R = 8 for both
    # objectives (equal memory), planned on windows 0-49, measured on 50-99
    # at 64 tokens per GPU (decode) and 256, on every tenth layer.
    CAL="${2:-$OUT}"
    : >"$OUT/decode.log"
    common=(--gpus 64 --nodes 8 --budget 8 --top-k 8)
    roofline=(--objective roofline --calibration "$CAL/h200_deepseek_v3.yaml" --tokens-per-gpu 64)
    "$BIN/craftctl" plan --loads "$IN/synth50.json" --algorithm craft "${common[@]:0:6}" \
      --objective step-time --format craft --out "$IN/decode_tokens.json" >>"$OUT/decode.log" 2>&1
    "$BIN/craftctl" plan --loads "$IN/synth50.json" --algorithm craft "${common[@]}" \
      "${roofline[@]}" --format craft --out "$IN/decode_roofline.json" >>"$OUT/decode.log" 2>&1
    "$BIN/craftctl" eval --loads "$IN/synth100.json" --holdout 0.5 --algorithms none \
      "${common[@]}" "${roofline[@]}" \
      --layouts "$IN/decode_tokens.json,$IN/decode_roofline.json" >>"$OUT/decode.log" 2>&1
    # Auto-R under each objective: the memory each spends on replicas differs.
    "$BIN/craftctl" plan --loads "$IN/synth50.json" --algorithm craft "${common[@]:0:4}" \
      --budget auto --objective step-time --format craft --out "$IN/auto_tokens.json" \
      >>"$OUT/decode.log" 2>&1
    "$BIN/craftctl" plan --loads "$IN/synth50.json" --algorithm craft "${common[@]:0:4}" \
      --budget auto --top-k 8 "${roofline[@]}" --format craft --out "$IN/auto_roofline.json" \
      >>"$OUT/decode.log" 2>&1
    for layer in 0 10 20 30 40 50; do
      step decode.log --trace "$IN/synth100.json" --windows 50:100 --hidden 7168 --inter 2048 \
        --tokens_per_gpu 64,256 --iters 10 --layer "$layer" --contiguous=false \
        --calibration "$CAL/h200_deepseek_v3.yaml" \
        --layouts "tokens=$IN/decode_tokens.json,roofline=$IN/decode_roofline.json,auto_tokens=$IN/auto_tokens.json,auto_roofline=$IN/auto_roofline.json"
    done
    grep -v '^CSV' "$OUT/decode.log"
    ;;
  *)
    echo "usage: $0 calibrate | validate [CAL_DIR] | decode [CAL_DIR]" >&2
    exit 2
    ;;
esac
grep -h '^CSV' "$OUT"/*.log >"$OUT/roofline.csv" 2>/dev/null
exit $status
