#!/usr/bin/env bash
# Clang's thread-safety analysis over craft's programs. GCC ignores the
# annotations (ABSL_GUARDED_BY, ABSL_EXCLUSIVE_LOCKS_REQUIRED, ...), so only
# this build checks them:
#
#   scripts/thread_safety.sh    # last line: "PASSED ..." or "FAILED ..."
#
# It builds, with --config=thread-safety (Debian's clang, -Werror=thread-safety;
# .bazelrc), every library and program of server/, agent/, gpu_worker/,
# wire/, common/ and planner/ (the planner, the agent, the worker), not their
# tests.
# What nvcc compiles (gpu_worker/cuda) goes to gcc as well: its .cc sources are
# compiled a second time by clang for the diagnostics alone (cuda.bzl's
# *_clang_check targets, where /usr/local/cuda exists); device code (.cu) is
# not checked.
#
# The build has an output base of its own (CRAFT_THREAD_SAFETY_OUTPUT_BASE,
# default ~/.cache/craft-thread-safety-bazel/HASH, HASH from the checkout's
# path): another compiler must not invalidate the usual build's cache. Its
# Bazel server exits after 5 idle minutes.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
if ! command -v clang > /dev/null; then
  echo "FAILED: no clang (scripts/install_deps.sh installs it)"
  exit 1
fi

# One per checkout, as Bazel's own output bases are: checkouts side by side
# would otherwise wait for each other and rebuild each other's work.
OUTPUT_BASE="${CRAFT_THREAD_SAFETY_OUTPUT_BASE:-$HOME/.cache/craft-thread-safety-bazel/$(printf %s "$ROOT" | md5sum | cut -c1-12)}"
BAZEL=(bazel --output_base="$OUTPUT_BASE" --max_idle_secs=300)

# Libraries compiled by nvcc, and the programs that link them, are left out:
# their clang checks stand in for them. ($u is the query language's.)
# shellcheck disable=SC2016
QUERY='let u = //server/... + //agent/... + //gpu_worker/... + //wire/... + //common/... + //planner/... in
  (kind("cc_(library|binary)", $u)
     except attr(testonly, 1, $u)
     except attr(tags, "manual|nvcc", $u)
     except kind(cc_binary, rdeps($u, attr(tags, "nvcc", $u))))
  + attr(tags, "clang_host_check", $u)'
query_log="$(mktemp)"
trap 'rm -f "$query_log"' EXIT
if ! targets="$("${BAZEL[@]}" query "$QUERY" 2> "$query_log")"; then
  cat "$query_log"
  echo "FAILED: bazel query"
  exit 1
fi
count=$(wc -l <<< "$targets")
checks=$(grep -c '_clang_check$' <<< "$targets")

echo "== thread-safety build: $count targets ($checks clang checks of nvcc sources), output base $OUTPUT_BASE"
# --symlink_prefix=/: the bazel-* links keep pointing at the usual build.
# shellcheck disable=SC2086  # one label a line
if ! "${BAZEL[@]}" build --config=thread-safety --symlink_prefix=/ --keep_going $targets; then
  echo "FAILED: the thread-safety build (the errors above; docs/error_policy.md, \"Locks\")"
  exit 1
fi
if ((checks == 0)); then
  echo "PASSED: $count targets; no CUDA toolkit here, so the nvcc sources were not checked"
else
  echo "PASSED: $count targets, of which $checks clang checks of nvcc sources"
fi
