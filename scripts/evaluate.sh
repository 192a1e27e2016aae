#!/usr/bin/env bash
# Regenerates the published evaluation: docs/evaluation/ (craft-evaluate's
# CSVs and tables, gnuplot's PNGs) and docs/EVALUATION.md, rendered from
# tools/evaluate/EVALUATION.md.in. A few minutes on 2 cores.
#
#   ./scripts/evaluate.sh                      # the published run
#   ./scripts/evaluate.sh --scale small --out /tmp/eval   # tiny shapes, elsewhere
#
# Recorded traces are read from CRAFT_TRACES_DIR (default: a sibling
# checkout's shared/traces); without them their rows are skipped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SCALE=full
DOCS=docs
while (($# > 0)); do
  case "$1" in
    --scale) SCALE="${2:?--scale needs full or small}"; shift 2 ;;
    --out) DOCS="${2:?--out needs a directory}"; shift 2 ;;
    *) echo "evaluate.sh: unknown argument '$1' (expected --scale full|small, --out DIR)" >&2
       exit 2 ;;
  esac
done
DATA="$DOCS/evaluation"
TRACES="${CRAFT_TRACES_DIR:-$ROOT/../shared/traces}"

./scripts/install_deps.sh
# gnuplot without X (its pngcairo terminal) and the font the plots name.
missing=()
for p in gnuplot-nox fonts-dejavu-core; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} > 0)); then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  echo "evaluate: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

bazel build -c opt //tools/evaluate:craft-evaluate >/dev/null 2>&1 ||
  bazel build -c opt //tools/evaluate:craft-evaluate
EVALUATE="$(bazel info -c opt bazel-bin 2>/dev/null)/tools/evaluate/craft-evaluate"

# Start from an empty data directory so nothing stale is published.
mkdir -p "$DATA"
rm -f "$DATA"/*.csv "$DATA"/*.md "$DATA"/*.png "$DATA"/values.tsv
"$EVALUATE" --scale "$SCALE" --out "$DATA" --traces "$TRACES"

for script in tools/evaluate/plots/*.gp; do
  [[ "$(basename "$script")" == common.gp ]] && continue
  gnuplot -e "data='$DATA'; out='$DATA'; plots='tools/evaluate/plots'" "$script"
done

awk -v data="$DATA" -v script_seconds="$SECONDS" -f tools/evaluate/render_doc.awk \
  tools/evaluate/EVALUATION.md.in >"$DOCS/EVALUATION.md.tmp"
mv "$DOCS/EVALUATION.md.tmp" "$DOCS/EVALUATION.md"
echo "evaluate: wrote $DOCS/EVALUATION.md and $(ls "$DATA"/*.png | wc -l) plots in $DATA" \
  "(${SECONDS} s)"
