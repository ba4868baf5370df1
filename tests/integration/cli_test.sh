#!/usr/bin/env bash
# The tern CLI against the real greeter binary on the broker at
# TERN_RABBIT_URL: the greeter as broker user service.greeter, the CLI as
# tern-cli (both made by rabbit_add_users, as scripts/up makes them), so
# their permissions are shown to be enough for all of this.
# api.balance (from GREETER_BIN's folder) shows -H metadata reaching a
# handler: it authenticates the caller by the metadata account_id.
# usage: cli_test.sh TERN_BIN GREETER_BIN
set -euo pipefail
greeter=$2
balance_api=$(dirname "$greeter")/balance-api
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${TERN_RABBIT_URL:?run through scripts/test}"
source "$src/scripts/lib/rabbit.sh"
files=$(rabbit_add_users cli:tern-cli service:service.greeter service:api.balance)
{ read -r cli_password; read -r greeter_password; read -r balance_api_password; } <<<"$files"
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
balance_log=$(mktemp)
TERN_AMQP_USER=api.balance TERN_AMQP_PASSWORD_FILE=$balance_api_password "$balance_api" >"$balance_log" 2>&1 &
balance_pid=$!
tmp=$(mktemp -d)
trap 'kill $pid $balance_pid 2>/dev/null || true; rm -rf "$log" "$balance_log" "$tmp"' EXIT

# Wait (bounded) until the greeter answers its health endpoint.
for service in service.greeter api.balance; do
  for _ in $(seq 100); do
    "$tern" call $service _health --timeout 5s >/dev/null 2>&1 && break
    sleep 0.1
  done
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


# The request body: -d JSON, -d @FILE, -d @- (stdin); not both -d and the JSON argument.
greeting() { python3 -c 'import json,sys; print(json.load(sys.stdin)["greeting"])'; }
out=$("$tern" call service.greeter hello -d '{"name":"Dee"}' | greeting) || true
check "-d JSON is the request" test "$out" = "Hello, Dee!"
echo '{"name":"File"}' >"$tmp/req.json"
out=$("$tern" call service.greeter hello -d "@$tmp/req.json" | greeting) || true
check "-d @FILE reads the request from the file" test "$out" = "Hello, File!"
out=$(echo '{"name":"Stdin"}' | "$tern" call service.greeter hello -d @- | greeting) || true
check "-d @- reads the request from stdin" test "$out" = "Hello, Stdin!"
set +e
"$tern" call service.greeter hello '{"name":"A"}' -d '{"name":"B"}' >/dev/null 2>&1; rc=$?
check "the JSON argument and -d together exit 2" test "$rc" = 2
"$tern" call service.greeter hello -d "@$tmp/missing.json" >/dev/null 2>&1; rc=$?
check "-d @FILE of a missing file exits 2" test "$rc" = 2
set -e

# -H metadata reaches the handler: api.balance authenticates by metadata account_id.
set +e
err=$("$tern" call api.balance get 2>&1 >/dev/null); rc=$?
check "without -H api.balance says no credentials" test "$rc:$err" = "1:UNAUTHENTICATED: no credentials: send Authorization: Bearer <token>"
err=$("$tern" call api.balance get -H account_id: 2>&1 >/dev/null); rc=$?
check "-H account_id: (empty) reaches the handler" test "$rc:$err" = "1:UNAUTHENTICATED: an empty account"
err=$("$tern" call api.balance get -H 'Account_ID: acc_cli' -H x-other:1 --timeout 1s 2>&1 >/dev/null); rc=$?
check "-H Account_ID: acc_cli passes its authentication (then service.balance is not there)" \
  test "$rc" = 1 -a "${err%%:*}" != UNAUTHENTICATED -a -n "$err"
err=$("$tern" call -H account_id: api.balance get --timeout 2s 2>&1 >/dev/null); rc=$?
check "-H before the arguments takes one value (not SERVICE ENDPOINT too)" test "$rc:$err" = "1:UNAUTHENTICATED: an empty account"
"$tern" call api.balance get -H novalue >/dev/null 2>&1; rc=$?
check "-H without a colon exits 2" test "$rc" = 2
set -e

# --format-error json and --exit-status per-code, for a typed error.
set +e
err=$("$tern" call service.greeter hello '{}' --format-error json 2>&1 >/dev/null); rc=$?
check "--format-error json prints the error as JSON: code, message, params (exit 1)" test "$rc:$(python3 -c '
import json, sys
e = json.loads(sys.argv[1])
print(e["code"], e["message"], type(e["params"]).__name__, e["retryable"], sep="|")' "$err")" = \
  "1:INVALID_ARGUMENT|name is required|dict|False"
"$tern" call service.greeter hello '{}' --exit-status per-code >/dev/null 2>&1; rc=$?
check "--exit-status per-code: INVALID_ARGUMENT exits 64+3" test "$rc" = 67
"$tern" call service.greeter nope --exit-status per-code >/dev/null 2>&1; rc=$?
check "--exit-status per-code: UNIMPLEMENTED exits 64+12" test "$rc" = 76
err=$("$tern" call service.greeter hello '{"nom":1}' --format-error json 2>&1 >/dev/null); rc=$?
check "--format-error json: a usage error is INVALID_ARGUMENT JSON, exit 2" \
  test "$rc:$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["code"])' "$err")" = "2:INVALID_ARGUMENT"
err=$("$tern" call service.greeter hello --amqp-url amqp://127.0.0.1:1/ --format-error json 2>&1 >/dev/null); rc=$?
check "no broker exits 3, UNAVAILABLE as JSON" \
  test "$rc:$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["code"])' "$err")" = "3:UNAVAILABLE"
err=$("$tern" traces --timeout 1s --format-error json 2>&1 >/dev/null); rc=$?
check "traces --format-error json (no service.trace here: UNAVAILABLE or DEADLINE_EXCEEDED)" \
  test "$rc:$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["code"])' "$err" 2>&1 | sed 's/DEADLINE_EXCEEDED/UNAVAILABLE/')" = "1:UNAVAILABLE"
set -e
out=$("$tern" help exit-codes) || true
check "tern help exit-codes lists every code's status" grep -qE '^  80 +UNAUTHENTICATED$' <<<"$out"

# Flags belong to their commands: any other refuses them with exit 2.
set +e
err=$("$tern" call service.greeter hello '{"name":"A"}' -n 5 2>&1 >/dev/null); rc=$?
check "call -n 5 (a bench flag) exits 2 and names it" test "$rc" = 2 -a -n "$(grep -- '-n' <<<"$err")"
"$tern" describe service.greeter --json >/dev/null 2>&1; rc=$?
check "describe --json exits 2" test "$rc" = 2
"$tern" tail 'x.#' --timeout 1s >/dev/null 2>&1; rc=$?
check "tail --timeout exits 2" test "$rc" = 2
"$tern" new service.x --timeout 1s >/dev/null 2>&1; rc=$?
check "new --timeout exits 2" test "$rc" = 2
"$tern" tail 'x.#' -n 0 >/dev/null 2>&1; rc=$?
check "tail -n 0 exits 2 (-n is a count, not a sentinel)" test "$rc" = 2
"$tern" call service.greeter hello --timeout 0 >/dev/null 2>&1; rc=$?
check "--timeout 0 exits 2" test "$rc" = 2
"$tern" >/dev/null 2>&1; rc=$?
check "no command exits 2" test "$rc" = 2
"$tern" frobnicate >/dev/null 2>&1; rc=$?
check "an unknown command exits 2" test "$rc" = 2
set -e

# --version (the project's, from CMake) and each command's own --help.
version=$(sed -n 's/^project(tern VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
check "--version prints the project version" test "$("$tern" --version)" = "tern $version"
out=$("$tern" call --help) || true
check "call --help lists -H and --timeout, not bench's -n" \
  test -n "$(grep -- '--header' <<<"$out")" -a -n "$(grep -- '--timeout' <<<"$out")" -a -z "$(grep -E -- '^ +-n ' <<<"$out")"
out=$("$tern" bench --help) || true
check "bench --help lists -n and -c" test -n "$(grep -E -- '^ +-n ' <<<"$out")" -a -n "$(grep -E -- '^ +-c ' <<<"$out")"
check "tern help call is call --help" test "$("$tern" help call)" = "$("$tern" call --help)"

# tern list: services on the bus, by their request queues.
out=$("$tern" list 2>/dev/null) || true
check "list shows the greeter consumed, nothing queued, SERVING" grep -qE '^service\.greeter +[1-9][0-9]* +0 +SERVING ' <<<"$out"
check "list shows api.balance consumed, SERVING" grep -qE '^api\.balance +[1-9][0-9]* +0 +SERVING ' <<<"$out"
out=$("$tern" list service.nobody 2>/dev/null) || true
check "list of a name with no queue says so" grep -qE '^service\.nobody +0 +0 +no request queue$' <<<"$out"
set +e
"$tern" list --amqp-url amqp://127.0.0.1:1/ >/dev/null 2>&1; rc=$?
check "list with no broker exits 3" test "$rc" = 3
set -e

# tern describe SERVICE ENDPOINT: routes and the types as .proto source.
out=$("$tern" describe service.greeter hello) || true
check "describe hello shows its route" grep -qx '  http: POST /hello' <<<"$out"
check "describe hello shows the request's fields" grep -qx '  string name = 1;' <<<"$out"
check "describe hello shows the response type" grep -qx '// response: greeter.HelloResponse' <<<"$out"
out=$("$tern" describe api.balance) || true
check "describe api.balance lists GET / for get" grep -qx '  http: GET /' <<<"$out"
set +e
"$tern" describe service.greeter nope >/dev/null 2>&1; rc=$?
check "describe of an unknown endpoint exits 1" test "$rc" = 1
set -e

# Bash completion from the parser's table.
complete_words() {  # complete_words WORD... : COMPREPLY for the last word, one line
  bash -c 'source <("$1" completion bash); shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _tern_complete; echo "${COMPREPLY[*]}"' \
    sh "$tern" "$@"
}
check "completion: tern ca -> call" test "$(complete_words tern ca)" = "call"
check "completion: tern dlq '' -> list replay" test "$(complete_words tern dlq '')" = "list replay"
check "completion: tern call x y --he -> --header --help" test "$(complete_words tern call x y --he)" = "--header --help"
check "completion: tern call x y --format-error '' -> json text" \
  test "$(complete_words tern call x y --format-error '')" = "json text"
check "completion: tern bench -> offers -n, tern call does not" \
  test "$(complete_words tern bench -)" != "$(complete_words tern call -)" -a -z "$(complete_words tern call -n)"

kill -TERM $pid
set +e; wait $pid; rc=$?; set -e
check "SIGTERM stops the greeter cleanly (exit 0)" test "$rc" = 0
check "the greeter logged its drain" grep -q "SIGTERM received, draining" "$log"

echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
