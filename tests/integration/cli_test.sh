#!/usr/bin/env bash
# The tern CLI against the real greeter binary on the broker at
# TERN_RABBIT_URL: the greeter as broker user service.greeter, the CLI as
# tern-cli (both made by rabbit_add_users, as scripts/up makes them), so
# their permissions are shown to be enough for all of this.
# usage: cli_test.sh TERN_BIN GREETER_BIN
set -euo pipefail
greeter=$2
: "${TERN_RABBIT_URL:?run through scripts/test}"
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/rabbit.sh"
files=$(rabbit_add_users cli:tern-cli service:service.greeter)
{ read -r cli_password; read -r greeter_password; } <<<"$files"
export TERN_AMQP_URL=$TERN_RABBIT_URL TERN_AMQP_USER=tern-cli TERN_AMQP_PASSWORD_FILE=$cli_password
tern=$1
passed=0 failed=0
check() {  # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok: $name"; else failed=$((failed + 1)); echo "FAILED: $name"; fi
}

log=$(mktemp)
TERN_AMQP_USER=service.greeter TERN_AMQP_PASSWORD_FILE=$greeter_password "$greeter" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT

# Wait (bounded) until the greeter answers its health endpoint.
for _ in $(seq 100); do
  "$tern" call service.greeter _health >/dev/null 2>&1 && break
  sleep 0.1
done

out=$("$tern" call service.greeter hello '{"name":"Ada"}')
check "hello prints the greeting as JSON" test "$(tr -d ' \n' <<<"$out")" = '{"greeting":"Hello,Ada!"}'

out=$("$tern" call service.greeter relay_hello '{"name":"Bob"}')
check "relay_hello greets through a downstream call" test "$(tr -d ' \n' <<<"$out")" = '{"greeting":"Hello,Bob!"}'

set +e
err=$("$tern" call service.greeter nope '{}' 2>&1 >/dev/null); rc=$?
check "an unknown endpoint exits 1 with UNIMPLEMENTED" test "$rc:${err%%:*}" = "1:UNIMPLEMENTED"
err=$("$tern" call service.greeter slow_hello '{"name":"C","delay_ms":5000}' --timeout 300ms 2>&1 >/dev/null); rc=$?
check "a slow call exits 1 with DEADLINE_EXCEEDED" test "$rc:${err%%:*}" = "1:DEADLINE_EXCEEDED"
err=$("$tern" call service.nobody hello '{}' 2>&1 >/dev/null); rc=$?
check "an unknown service exits 1 with UNAVAILABLE" test "$rc:${err%%:*}" = "1:UNAVAILABLE"
"$tern" call service.greeter hello '{"nom":"x"}' >/dev/null 2>&1; rc=$?
check "JSON that does not fit the request type exits 2" test "$rc" = 2
set -e

out=$("$tern" bench service.greeter hello '{"name":"Ada"}' -n 200 -c 8 --json)
check "bench makes -n calls from -c fibers and reports them as JSON" grep -q '^{"requests":200,"errors":{},' <<<"$out"

# tern publish, seen by tern tail (which says so on stderr once it is bound).
tail_out=$(mktemp) tail_err=$(mktemp)
"$tern" tail 'greeter.#' -n 1 --duration 20s >"$tail_out" 2>"$tail_err" &
tail_pid=$!
for _ in $(seq 100); do grep -q "events matching" "$tail_err" && break; sleep 0.1; done
pub=$("$tern" publish greeter.HelloRequest '{"name":"Ada"}')
check "publish reports the routing key" test "$pub" = "published greeter.HelloRequest with routing key greeter.hello_request"
wait $tail_pid || true
check "tail prints the published event as JSON" grep -q '"type":"greeter.HelloRequest"' "$tail_out"
rm -f "$tail_out" "$tail_err"
set +e
"$tern" publish nope.Type '{}' >/dev/null 2>&1; rc=$?
set -e
check "publishing an unknown type exits 2" test "$rc" = 2

out=$("$tern" describe service.greeter)
check "describe lists hello with its types" grep -q '^hello  greeter.HelloRequest -> greeter.HelloResponse$' <<<"$out"

kill -TERM $pid
set +e; wait $pid; rc=$?; set -e
check "SIGTERM stops the greeter cleanly (exit 0)" test "$rc" = 0
check "the greeter logged its drain" grep -q "SIGTERM received, draining" "$log"

echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
