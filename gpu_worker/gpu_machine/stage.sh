#!/usr/bin/env bash
# Builds the CUDA backend's GPU tests and benchmarks and the control plane
# (craft-local-cluster, craft-planner, craft-agent, craft-worker-cuda,
# craftctl) here (bazel -c opt) and stages them for a GPU machine under
# .device/ (ignored by git): the binaries in .device/bin, the shared
# libraries they need that a stock Ubuntu 24.04 with CUDA 13 and NCCL lacks
# (Abseil, gRPC, protobuf, yaml-cpp, prometheus-cpp, OpenSSL, ... from
# Debian) in .device/lib, and inputs
# (layouts planned by craftctl, traces) in .device/inputs. Then, on the GPU
# machine, from the repository root:
#   gpu_worker/gpu_machine/run.sh          # GPU tests and benchmarks
#   gpu_worker/gpu_machine/cluster.sh [N]  # a live planner + agent + N CUDA workers
#
# Usage: gpu_worker/gpu_machine/stage.sh   (CRAFT_TRACES_DIR: where counts235b.json
# lives; default ../shared/traces beside the checkout; skipped when absent.
# CRAFT_BAZEL_STARTUP: bazel startup options, e.g. --output_base=/tmp/mine so
# that a shared checkout's builds do not queue on one server;
# CRAFT_BAZEL_FLAGS: extra build flags, e.g. --symlink_prefix=/ to leave the
# checkout's bazel-* links alone)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
STAGE="$ROOT/.device"
TRACES="${CRAFT_TRACES_DIR:-$ROOT/../shared/traces}"

TESTS=(device_slots_test load_counter_test nccl_transfer_test moe_emulator_test cuda_backend_test
       expert_hash_test routing_test)
BENCHES=(transfer_bench step_bench expert_calibrate)
# The control plane for cluster.sh: bazel target -> path under bazel-bin.
CLUSTER=(tools/local_cluster/craft-local-cluster server/craft-planner agent/craft-agent
         gpu_worker/cuda/craft-worker-cuda tools/craftctl/craftctl)
targets=(//tools/local_cluster:craft-local-cluster //server:craft-planner //agent:craft-agent
         //gpu_worker/cuda:craft-worker-cuda //tools/craftctl)
for t in "${TESTS[@]}"; do targets+=("//gpu_worker/cuda:$t"); done
for b in "${BENCHES[@]}"; do targets+=("//gpu_worker/cuda/bench:$b"); done
# shellcheck disable=SC2086  # startup options are words
bazel ${CRAFT_BAZEL_STARTUP:-} build -c opt ${CRAFT_BAZEL_FLAGS:-} "${targets[@]}"
# shellcheck disable=SC2086
BIN="$(bazel ${CRAFT_BAZEL_STARTUP:-} info -c opt bazel-bin)"

grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
rm -rf "$STAGE"
mkdir -p "$STAGE/bin" "$STAGE/lib" "$STAGE/inputs"
for t in "${TESTS[@]}"; do install -m 755 "$BIN/gpu_worker/cuda/$t" "$STAGE/bin/"; done
for b in "${BENCHES[@]}"; do install -m 755 "$BIN/gpu_worker/cuda/bench/$b" "$STAGE/bin/"; done
for c in "${CLUSTER[@]}"; do install -m 755 "$BIN/$c" "$STAGE/bin/"; done

# Shared libraries to carry: everything the binaries load except glibc and
# the GCC runtime (newer on Ubuntu 24.04) and CUDA, NCCL and cuBLAS (the GPU
# machine's own, matching its driver).
skip='^(linux-vdso|ld-linux|libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|libcuda|libcudart|libnccl|libcublas|libcublasLt)\.so'
for f in "$STAGE"/bin/*; do
  ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  if ! [[ "$name" =~ $skip ]]; then cp -L "$path" "$STAGE/lib/$name"; fi
done
if ldd "$STAGE"/bin/* | grep 'not found'; then
  echo "stage: unresolved libraries (above)" >&2
  exit 1
fi

# Step benchmark inputs.
CRAFTCTL="$BIN/tools/craftctl/craftctl"
IN="$STAGE/inputs"
plan() {  # plan TRACE GPUS NODES BUDGET PREFIX
  for algorithm in none eplb craft; do
    "$CRAFTCTL" plan --loads "$1" --gpus "$2" --nodes "$3" --algorithm "$algorithm" \
      --budget "$4" --format craft --out "$IN/$5_$algorithm.json"
  done
}
# A DeepSeek-shaped synthetic trace (58 x 256, top-8, 100 windows): plan on
# the first 50 windows, measure on the other 50 (the same generator and seed,
# so the 50-window trace is the first half of the 100-window one).
"$CRAFTCTL" synth --out "$IN/synth100.json" --layers 58 --experts 256 --windows 100
"$CRAFTCTL" synth --out "$STAGE/synth50.json" --layers 58 --experts 256 --windows 50
plan "$STAGE/synth50.json" 64 8 8 synth_d64
plan "$STAGE/synth50.json" 16 2 8 synth_d16
mv "$STAGE/synth50.json" "$IN/"  # roofline.sh decode plans on it
if [[ -f "$TRACES/counts235b.json" ]]; then
  cp "$TRACES/counts235b.json" "$IN/"
  plan "$IN/counts235b.json" 4 1 16 q235_d4
  plan "$IN/counts235b.json" 2 1 16 q235_d2
  plan "$IN/counts235b.json" 16 2 16 q235_d16
  plan "$IN/counts235b.json" 64 8 16 q235_d64
else
  echo "stage: no $TRACES/counts235b.json; the real-trace step benchmarks will be skipped" >&2
fi
# cluster.sh's traffic: a synthetic trace of its default shape (8 layers x 32
# experts, top-4), cycled by every worker (cluster.sh falls back to --skew).
"$CRAFTCTL" synth --out "$IN/cluster_L8_E32_k4.json" --layers 8 --experts 32 --top-k 4 \
  --windows 32 --tokens-per-window 16384 --skewed-fraction 1 --min-hot 6 --max-hot 8 --seed 3

size_mib() { echo $(($(du -sb "$STAGE" | cut -f1) >> 20)); }
# The symbol tables (symbolised stack traces) go first when space runs short.
if (($(size_mib) > 48)); then strip "$STAGE"/bin/*; fi
du -sh "$STAGE"/*
size_mib=$(size_mib)
if ((size_mib > 60)); then
  echo "stage: $STAGE is $size_mib MiB, over the 60 MiB a device call carries" >&2
  exit 1
fi
echo "staged in $STAGE ($size_mib MiB); on the GPU machine run gpu_worker/gpu_machine/run.sh or"
echo "gpu_worker/gpu_machine/cluster.sh (carry .device)"
