#!/usr/bin/env bash
# The main demo: plan and evaluate a synthetic DeepSeek-shaped workload
# (58 MoE layers x 256 experts, top-8, 64 GPUs on 8 nodes) with every
# algorithm craft has, and print the comparison table.
#
# Plans are made on the first half of the windows and replayed on the
# second half, as a deployment plans on the past and serves the future.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
./scripts/install_deps.sh
bazel build -c opt //tools/craftctl >/dev/null 2>&1 || bazel build -c opt //tools/craftctl
WORK="${CRAFT_DEMO_DIR:-$(mktemp -d)}"
mkdir -p "$WORK"
install -m 755 "$(bazel info -c opt bazel-bin 2>/dev/null)/tools/craftctl/craftctl" "$WORK/craftctl"
CRAFTCTL="$WORK/craftctl"

echo "== synthesising a DeepSeek-shaped trace (200 windows of 4096 tokens) into $WORK"
"$CRAFTCTL" synth --out "$WORK/deepseek.json" --layers 58 --experts 256 --top-k 8 \
  --windows 200 --tokens-per-window 4096 --seed 1

echo
echo "== 64 GPUs (8 nodes): placement only, EPLB (64 redundant/layer), CRAFT R=8, paper heuristic"
"$CRAFTCTL" eval --loads "$WORK/deepseek.json" --gpus 64 --nodes 8 --groups 8 \
  --budget 8 --holdout 0.5

echo
echo "== CRAFT with auto-R (H200: 141 GB HBM, 40 GB non-expert, bf16 experts)"
"$CRAFTCTL" plan --loads "$WORK/deepseek.json" --gpus 64 --nodes 8 --algorithm craft \
  --budget auto --out "$WORK/craft-auto.json"

echo
echo "Layouts and traces are in $WORK. Next steps:"
echo "  $CRAFTCTL plan --loads $WORK/deepseek.json --gpus 64 --nodes 8 --algorithm craft --budget 8 --out layout.json"
echo "  $CRAFTCTL eval --loads $WORK/deepseek.json --gpus 64 --nodes 8 --previous layout.json --holdout 0.5"
