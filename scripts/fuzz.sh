#!/usr/bin/env bash
# Runs one of craft's fuzz targets (tests/fuzz) under libFuzzer and
# AddressSanitizer, with Debian's clang, starting from a scratch copy of its
# checked-in seeds:
#
#   scripts/fuzz.sh TARGET [SECONDS] [-- LIBFUZZER_FLAGS...]   # default 60 s
#   scripts/fuzz.sh --list
#
# TARGET is a directory under tests/fuzz/corpus (trace_json, planner_config,
# planner_agent_stream, ...). The build uses --config=libfuzzer in an output
# base of its own (CRAFT_FUZZ_OUTPUT_BASE, default ~/.cache/craft-fuzz-bazel):
# another compiler must not invalidate the usual build. The scratch directory
# (printed; CRAFT_FUZZ_WORKDIR picks it) keeps the corpus libFuzzer grew,
# fuzz.log and any crash-*/oom-*/timeout-* input. Replay one with
#   bazel run //tests/fuzz:TARGET_test -- FILE
# and turn it into a readable seed in tests/fuzz/corpus/TARGET/ once fixed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CORPORA="$ROOT/tests/fuzz/corpus"

usage() {
  sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 2
}

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then usage; fi
if [[ "$1" == "--list" ]]; then
  ls "$CORPORA"
  exit 0
fi
TARGET="$1"
shift
SECONDS_TO_RUN=60
if [[ $# -gt 0 && "$1" != "--" ]]; then
  SECONDS_TO_RUN="$1"
  shift
fi
if [[ $# -gt 0 && "$1" == "--" ]]; then shift; fi
EXTRA_FLAGS=("$@")

if [[ ! -d "$CORPORA/$TARGET" ]]; then
  echo "fuzz.sh: no target '$TARGET'; targets: $(ls "$CORPORA" | tr '\n' ' ')" >&2
  exit 2
fi
if ! [[ "$SECONDS_TO_RUN" =~ ^[0-9]+$ ]]; then
  echo "fuzz.sh: SECONDS must be a whole number, got '$SECONDS_TO_RUN'" >&2
  exit 2
fi
if ! command -v clang > /dev/null ||
  [[ ! -f "$(clang -print-runtime-dir)/libclang_rt.fuzzer-x86_64.a" ]]; then
  echo "fuzz.sh: needs clang and libFuzzer: apt-get install clang libclang-rt-14-dev" >&2
  exit 2
fi

OUTPUT_BASE="${CRAFT_FUZZ_OUTPUT_BASE:-$HOME/.cache/craft-fuzz-bazel}"
echo "== building //tests/fuzz:$TARGET (libFuzzer + ASan, output base $OUTPUT_BASE)"
cd "$ROOT"
# gold warns once per ASan helper it cannot export; harmless.
bazel --output_base="$OUTPUT_BASE" build --config=libfuzzer --symlink_prefix=/ \
  "//tests/fuzz:$TARGET" 2>&1 | grep -v "Cannot export local symbol '__asan" || true
BIN="$(bazel --output_base="$OUTPUT_BASE" info --config=libfuzzer bazel-bin 2> /dev/null)/tests/fuzz/$TARGET"
if [[ ! -x "$BIN" ]]; then
  echo "fuzz.sh: the build did not produce $BIN" >&2
  exit 1
fi

WORK="${CRAFT_FUZZ_WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/craft-fuzz-$TARGET.XXXXXX")}"
mkdir -p "$WORK/corpus"
# The seeds are text (YAML, JSON, text-format protobuf); the binary converts
# them to the inputs it reads.
CRAFT_FUZZ_EXPORT_SEEDS="$CORPORA/$TARGET:$WORK/corpus" "$BIN"
echo "== fuzzing $TARGET for ${SECONDS_TO_RUN} s in $WORK"
set +e
(cd "$WORK" && "$BIN" -max_total_time="$SECONDS_TO_RUN" -close_fd_mask=2 -print_final_stats=1 \
  -artifact_prefix="$WORK/" "${EXTRA_FLAGS[@]}" corpus) 2>&1 | tee "$WORK/fuzz.log"
status=${PIPESTATUS[0]}
set -e
found=$(find "$WORK" -maxdepth 1 -name 'crash-*' -o -maxdepth 1 -name 'oom-*' -o -maxdepth 1 -name 'timeout-*' -o -maxdepth 1 -name 'leak-*')
if [[ $status -ne 0 || -n "$found" ]]; then
  echo "== $TARGET: libFuzzer found a failing input (exit $status): ${found:-see $WORK/fuzz.log}"
  echo "   replay: bazel run //tests/fuzz:${TARGET}_test -- FILE"
  exit 1
fi
echo "== $TARGET: no failure in ${SECONDS_TO_RUN} s; corpus and log in $WORK"
