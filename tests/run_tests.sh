#!/usr/bin/env bash
# Runs every craft test: installs the prerequisites if needed, builds and
# tests all Bazel targets, validates the Kubernetes manifests
# (deploy/k8s/validate.sh), builds the programs with clang's thread-safety
# analysis (scripts/thread_safety.sh), and ends with one line "N passed, N
# failed, N skipped" counting individual test cases (GoogleTest cases and shell
# test scripts; each of the two scripts is one).
#
# Tests that read the real traces find them through CRAFT_TRACES_DIR (default:
# a sibling checkout's shared/traces when present); without it they skip.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/install_deps.sh" || { echo "0 passed, 1 failed"; exit 1; }

TRACES="${CRAFT_TRACES_DIR:-$ROOT/../shared/traces}"
TEST_ENV=()
if [[ -d "$TRACES" ]]; then
  TEST_ENV=(--test_env=CRAFT_TRACES_DIR="$(cd "$TRACES" && pwd)")
fi

bazel test //... "${TEST_ENV[@]}" "$@"
bazel_rc=$?

# Count cases from the XML report of every test target in the tree.
passed=0 failed=0 skipped=0 missing=0
testlogs="$(bazel info bazel-testlogs 2>/dev/null)"
# Manual targets are not part of //... and leave no report.
for label in $(bazel query 'tests(//...) except attr(tags, "manual", //...)' 2>/dev/null); do
  path="${label#//}"
  xml="$testlogs/${path/://}/test.xml"
  if [[ ! -f "$xml" ]]; then
    missing=$((missing + 1))  # did not build or did not run
    continue
  fi
  cases=$(grep -c '<testcase' "$xml")
  fails=$(grep -c -e '<failure' -e '<error' "$xml")
  skips=$(grep -c 'result="skipped"' "$xml")
  passed=$((passed + cases - fails - skips))
  failed=$((failed + fails))
  skipped=$((skipped + skips))
done
failed=$((failed + missing))

# A target that failed to build or crashed leaves no cases behind: count it.
if ((bazel_rc != 0 && failed == 0)); then failed=1; fi

# One case per script, which ends with one line: SKIPPED... counts as skipped,
# any other line as passed, unless the script fails.
script_case() {
  local script="$1" log rc last start=$SECONDS
  log="$(mktemp)"
  "$ROOT/$script" > "$log" 2>&1
  rc=$?
  last="$(tail -n 1 "$log")"
  echo "$script: $last ($((SECONDS - start)) s)"
  if ((rc != 0)); then
    cat "$log"
    failed=$((failed + 1))
  elif [[ "$last" == SKIPPED* ]]; then
    skipped=$((skipped + 1))
  else
    passed=$((passed + 1))
  fi
  rm -f "$log"
}

# Kubernetes manifests: kubectl kustomize + offline schema checks (npm), outside
# Bazel because they need the npm registry once.
script_case deploy/k8s/validate.sh
# Clang's thread-safety analysis of the programs, in a Bazel output base of
# its own (another compiler).
script_case scripts/thread_safety.sh
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
((failed == 0))
