#!/usr/bin/env bash
# dashlint: the committed dashboards are clean and up to date with their
# generator, and a dashboard with one of each mistake is caught.
set -uo pipefail

ROOT="${TEST_SRCDIR:-.}/craft"
[[ -d "$ROOT/tools/dashlint" ]] || ROOT="."
if ! command -v node > /dev/null; then
  echo "SKIPPED: node is not installed"
  exit 0
fi
fail() { echo "FAIL: $*" >&2; exit 1; }
LINT="$ROOT/tools/dashlint/dashlint.mjs"

node "$LINT" "$ROOT"/deploy/grafana/dashboards/*.json || fail "committed dashboards have findings"
node "$ROOT/deploy/grafana/dashboards.mjs" --check || fail "dashboards differ from their generator"

out=$(node "$LINT" "$ROOT/tools/dashlint/testdata/bad.json" 2>&1)
rc=$?
[[ $rc == 1 ]] || fail "bad dashboard: exit status $rc"
expect() { grep -qF -- "$1" <<< "$out" || fail "missing finding: $1"$'\n'"$out"; }
expect 'uid "Bad_UID" is not [a-z0-9-]{1,40}'
expect 'id must be null'
expect '__inputs is for export only'
expect 'no job query variable'
expect 'hard-coded datasource {"type":"prometheus","uid":"P1809F7CD0C75ACF3"}'
expect 'panel "No description, no unit": no description'
expect 'panel "No description, no unit": no unit'
expect 'craft_planner_tokens_total has no instance=~"$instance" matcher'
expect 'rate() over [5m], not [$__rate_interval]'
expect 'no group query variable'
expect 'A: craft_planner_tokens_total has no group=~"$group" matcher'
expect 'B: sum merges the groups of craft_planner_tokens_total'
expect 'B: legend "tokens/s" does not tell the groups apart'
# The planner's own series have no group.
if grep -qF 'craft_planner_epoch has no group' <<< "$out"; then fail "group asked of craft_planner_epoch"; fi
expect 'panel "Broken": duplicate id 1'
expect 'panel "Broken": bad gridPos'
expect 'panel "Broken": unknown unit furlongs'
if command -v promtool > /dev/null; then
  expect '"Bad_UID/Broken/A"'
fi

# --queries: one JSON line per target, variables substituted.
queries=$(node "$LINT" --queries --rate-interval 20s "$ROOT"/deploy/grafana/dashboards/*.json 2> /dev/null)
[[ $(wc -l <<< "$queries") -ge 40 ]] || fail "too few queries"
grep -q '\[20s\]' <<< "$queries" || fail "rate interval not substituted"
if grep -q '\$job\|\$instance\|\$group\|__rate_interval' <<< "$queries"; then fail "variables left"; fi
echo PASS
