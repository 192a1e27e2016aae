#!/usr/bin/env bash
# Runs the CUDA backend's GPU tests and benchmarks on a machine with 2-4 (or
# more) GPUs, from binaries that gpu_worker/gpu_machine/stage.sh built and staged
# in .device/. Run from the repository root; logs go to $OUT (default
# .device/out) and a summary to stdout.
#
#   gpu_worker/gpu_machine/run.sh            # everything
#   gpu_worker/gpu_machine/run.sh tests      # or: transfer, step
#
# The machine needs the NVIDIA driver, CUDA 13's runtime, cuBLAS and NCCL 2
# (found under /usr/local/cuda*, the system library path, or a Python
# environment's nvidia-* packages); the binaries bring their other libraries.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 1
STAGE="$ROOT/.device"
OUT="${OUT:-$STAGE/out}"
mkdir -p "$OUT"
WHAT="${1:-all}"
BIN="$STAGE/bin"
IN="$STAGE/inputs"
[[ -x "$BIN/transfer_bench" ]] || { echo "run.sh: no binaries in $BIN; run stage.sh first"; exit 1; }

# NCCL settings and LD_LIBRARY_PATH (the staged libraries, the machine's CUDA).
# shellcheck source=gpu_worker/gpu_machine/env.sh
source "$ROOT/gpu_worker/gpu_machine/env.sh"
for lib in $CRAFT_MISSING_LIBS; do echo "run.sh: $lib not found"; done

GPUS="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')"
{
  date; uname -r; nvidia-smi; nvidia-smi topo -m; echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  ldd "$BIN/transfer_bench" "$BIN/step_bench"
} >"$OUT/env.log" 2>&1
echo "run.sh: $GPUS GPUs; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
if ldd "$BIN/step_bench" "$BIN/transfer_bench" | grep -q 'not found'; then
  echo "run.sh: missing libraries:"; ldd "$BIN/step_bench" "$BIN/transfer_bench" | grep 'not found'
  exit 1
fi
devices() { seq -s, 0 $(($1 - 1)); }

status=0
if [[ "$WHAT" == all || "$WHAT" == tests ]]; then
  : >"$OUT/tests.log"
  runs=()
  for t in expert_hash_test routing_test device_slots_test load_counter_test moe_emulator_test; do
    runs+=("$GPUS $t")
  done
  for t in nccl_transfer_test cuda_backend_test; do
    ((GPUS > 2)) && runs+=("2 $t")
    runs+=("$GPUS $t")
  done
  for run in "${runs[@]}"; do
    read -r n t <<<"$run"
    CUDA_VISIBLE_DEVICES="$(devices "$n")" timeout 300 "$BIN/$t" >"$OUT/one_test.log" 2>&1
    rc=$?
    summary="$(grep -E '^\[  (PASSED|FAILED|SKIPPED)  \] [0-9]+ test' "$OUT/one_test.log" |
               tr '\n' ' ')"
    echo "test $t on $n GPUs: rc=$rc $summary"
    grep -E '^\[  FAILED  \]|Failure$' -A3 "$OUT/one_test.log" | head -30
    { echo "=== $t on $n GPUs: rc=$rc"; cat "$OUT/one_test.log"; } >>"$OUT/tests.log"
    ((rc == 0)) || status=1
  done
  rm -f "$OUT/one_test.log"
fi

if [[ "$WHAT" == all || "$WHAT" == transfer ]]; then
  : >"$OUT/transfer.log"
  sizes=(2)
  ((GPUS > 2)) && sizes+=("$GPUS")
  for n in "${sizes[@]}"; do
    CUDA_VISIBLE_DEVICES="$(devices "$n")" timeout 400 "$BIN/transfer_bench" --moves 12 \
      --resident 16 --reps 5 >>"$OUT/transfer.log" 2>&1 || status=1
  done
  cat "$OUT/transfer.log"
fi

if [[ "$WHAT" == all || "$WHAT" == step ]]; then
  : >"$OUT/step.log"
  step() { timeout 400 "$BIN/step_bench" "$@" >>"$OUT/step.log" 2>&1 || status=1; }
  d=$((GPUS >= 4 ? 4 : 2))
  if [[ -f "$IN/counts235b.json" ]]; then
    # Qwen3-235B's recorded counts on D real GPUs, and D = 16 emulated.
    step --trace "$IN/counts235b.json" --hidden 4096 --inter 1536 --tokens_per_gpu 4096,256 \
      --layouts "none=$IN/q235_d${d}_none.json,eplb=$IN/q235_d${d}_eplb.json,craft=$IN/q235_d${d}_craft.json"
    step --trace "$IN/counts235b.json" --hidden 4096 --inter 1536 --tokens_per_gpu 4096,256 \
      --layouts "none=$IN/q235_d16_none.json,eplb=$IN/q235_d16_eplb.json,craft=$IN/q235_d16_craft.json"
  fi
  # DeepSeek-shaped synthetic trace, D = 64 emulated, measured on held-out windows.
  step --trace "$IN/synth100.json" --windows 50:100 --hidden 7168 --inter 2048 \
    --tokens_per_gpu 4096,256 \
    --layouts "none=$IN/synth_d64_none.json,eplb=$IN/synth_d64_eplb.json,craft=$IN/synth_d64_craft.json"
  grep -v '^CSV' "$OUT/step.log"
fi
grep -h '^CSV' "$OUT"/*.log >"$OUT/results.csv" 2>/dev/null
echo "run.sh: done, status $status; logs in $OUT"
exit $status
