#!/usr/bin/env bash
# Malformed configuration stops a process at start-up: exit code 2 and a
# message naming the variable and its value. Needs no broker (the processes
# never get as far as connecting; the bounded run catches one that does).
# usage: config_test.sh GATEWAY_BIN GREETER_BIN
set -uo pipefail
gateway=$1 greeter=$2
export TERN_AMQP_URL=${TERN_AMQP_URL:-amqp://127.0.0.1:1/}
passed=0 failed=0
# rejects NAME VAR=VALUE BIN MESSAGE: BIN, run with VAR=VALUE (10 s at most),
# exits 2 and its stderr holds MESSAGE.
rejects() {
  local name=$1 assignment=$2 bin=$3 message=$4 err rc
  err=$(env "$assignment" TERN_LOG_FORMAT=text timeout 10 "$bin" 2>&1 >/dev/null)
  rc=$?
  if [[ $rc == 2 && $err == *"$message"* ]]; then
    passed=$((passed + 1)); echo "ok: $name"
  else
    failed=$((failed + 1)); echo "FAILED: $name (exit $rc, expected 2 and \"$message\" in:)"
    sed 's/^/  | /' <<<"$err"
  fi
}

rejects "the gateway refuses TERN_GATEWAY_PORT=abc, naming it" \
  TERN_GATEWAY_PORT=abc "$gateway" "TERN_GATEWAY_PORT='abc' is not a number"
rejects "the gateway refuses TERN_GATEWAY_PORT=70000, giving the range" \
  TERN_GATEWAY_PORT=70000 "$gateway" "TERN_GATEWAY_PORT='70000' is out of range 1..65535"
rejects "the gateway refuses TERN_GATEWAY_TIMEOUT_MS=10s" \
  TERN_GATEWAY_TIMEOUT_MS=10s "$gateway" "TERN_GATEWAY_TIMEOUT_MS='10s' is not a number"
# The platform's own options, read by Service::run, fail the same way.
rejects "a service refuses TERN_THREADS=many, naming it" \
  TERN_THREADS=many "$greeter" "TERN_THREADS='many' is not a number"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
