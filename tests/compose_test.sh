#!/usr/bin/env bash
# docker-compose.yml is what scripts/compose writes from services/ today, and
# Debian's docker-compose accepts it (`config` needs no Docker engine).
# usage: compose_test.sh REPO_ROOT
set -euo pipefail
cd "$1"
passed=0 failed=0
check() {  # check NAME COMMAND...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok: $name"; else failed=$((failed + 1)); echo "FAILED: $name"; fi
}
check "docker-compose.yml is current (else run scripts/compose)" scripts/compose --check
check "docker-compose config accepts it" docker-compose -f docker-compose.yml config -q
echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
