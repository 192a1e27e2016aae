#!/usr/bin/env bash
# deploy/prometheus: the rules parse, their unit tests pass, and the local
# scrape configuration is valid (promtool, Debian package `prometheus`).
set -euo pipefail

DIR="$(dirname "$0")"
[[ -f "$DIR/rules.yml" ]] || DIR="${TEST_SRCDIR:-.}/craft/deploy/prometheus"
if ! command -v promtool > /dev/null; then
  echo "SKIPPED: promtool is not installed (apt-get install prometheus)"
  exit 0
fi
promtool check rules "$DIR/rules.yml"
promtool test rules "$DIR/rules_test.yml"
promtool check config "$DIR/prometheus.yml"
echo PASS
