#!/usr/bin/env bash
# The example system end to end without the gateway: service.transaction,
# service.balance and service.webhook binaries on the broker at
# TERN_AMQP_URL, a local HTTP receiver for the webhooks, the tern CLI.
# usage: example_flow_test.sh BIN_DIR
set -euo pipefail
bin=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${TERN_AMQP_URL:?run through scripts/test}"
passed=0 failed=0
check() {  # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok: $name"; else failed=$((failed + 1)); echo "FAILED: $name"; fi
}
# wait_for SECONDS COMMAND...: until COMMAND succeeds, or false after SECONDS.
wait_for() {
  local end=$((SECONDS + $1)); shift
  until "$@"; do (( SECONDS < end )) || return 1; sleep 0.1; done
}
healthy() { "$bin/tern" call "$1" _health >/dev/null 2>&1; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export TERN_DATA_DIR=$work/data TERN_EVENT_RETRY_MS=200 TERN_EVENT_ATTEMPTS=3 TERN_OUTBOX_RELAY_MS=200
python3 "$here/webhook_receiver.py" "$work/received" &
pids+=($!)
for s in transaction balance webhook; do
  "$bin/$s" >"$work/$s.log" 2>&1 &
  pids+=($!)
done
wait_for 20 test -s "$work/received.port"
port=$(cat "$work/received.port")
for s in transaction balance webhook; do
  check "service.$s answers _health" wait_for 20 healthy "service.$s"
done
check "the data directory was created with a database per service" \
  test -f "$work/data/service.transaction.db" -a -f "$work/data/service.balance.db" -a -f "$work/data/service.webhook.db"

account=acc_it_$$
tern() { "$bin/tern" "$@"; }
good=$(tern call service.webhook register "{\"account_id\":\"$account\",\"url\":\"http://127.0.0.1:$port/hook\"}")
secret=$(json '["secret"]' <<<"$good")
tern call service.webhook register "{\"account_id\":\"$account\",\"url\":\"http://127.0.0.1:$port/fail\"}" >/dev/null
tern call service.webhook register "{\"account_id\":\"other_$account\",\"url\":\"http://127.0.0.1:$port/other\"}" >/dev/null
check "list shows the account's two webhooks" \
  test "$(tern call service.webhook list "{\"account_id\":\"$account\"}" | json '["webhooks"].__len__()')" = 2

tx=$(tern call service.transaction create \
  "{\"account_id\":\"$account\",\"amount\":1250,\"currency\":\"GBP\",\"description\":\"coffee\"}")
tx_id=$(json '["id"]' <<<"$tx")
check "create answers the transaction with an id" test -n "$tx_id"

balance() { tern call service.balance get "{\"account_id\":\"$account\"}" | json '["balance"]'; }
balance_is() { [[ $(balance) == "$1" ]]; }
posts() { grep -c "\"path\": \"$1\"" "$work/received" 2>/dev/null || true; }
posts_are() { [[ $(posts "$1") == "$2" ]]; }
check "the balance becomes the transaction's amount" wait_for 20 balance_is 1250
check "the registered URL receives one POST" wait_for 20 posts_are /hook 1
check "the POST is the transaction as JSON, signed with the webhook's secret" python3 - "$work/received" "$secret" "$tx_id" <<'PY'
import hashlib, hmac, json, sys
post = next(json.loads(l) for l in open(sys.argv[1]) if json.loads(l)["path"] == "/hook")
body = json.loads(post["body"])
want = hmac.new(sys.argv[2].encode(), post["body"].encode(), hashlib.sha256).hexdigest()
assert post["headers"]["X-Tern-Signature"] == want, post["headers"]
assert post["headers"]["Content-Type"] == "application/json"
assert (body["id"], body["amount"], body["currency"], body["description"]) == (sys.argv[3], 1250, "GBP", "coffee"), body
PY
check "a failing URL is tried TERN_EVENT_ATTEMPTS times" wait_for 20 posts_are /fail 3
dead_lettered() {
  tern dlq list service.webhook.on.webhook.delivery 2>/dev/null | grep -q "127.0.0.1:$port/fail answered 500"
}
check "then its delivery is dead-lettered with the reason" wait_for 20 dead_lettered
check "the other account's webhook received nothing" posts_are /other 0

# The same transaction announced again (as a republishing outbox would, under a new event id).
tern publish transaction.Created \
  "{\"transaction\":{\"id\":\"$tx_id\",\"account_id\":\"$account\",\"amount\":1250,\"currency\":\"GBP\"}}" >/dev/null
tern call service.transaction create \
  "{\"account_id\":\"$account\",\"amount\":250,\"currency\":\"GBP\",\"description\":\"tea\"}" >/dev/null
check "a second transaction adds up; the repeated one is not applied again" wait_for 20 balance_is 1500
check "the second transaction is POSTed, the repeated one is not" wait_for 20 posts_are /hook 2
sleep 1
check "still exactly two POSTs a second later" posts_are /hook 2

set +e
err=$(tern call service.transaction create "{\"account_id\":\"$account\",\"amount\":5,\"currency\":\"gbp\"}" 2>&1 >/dev/null)
set -e
check "a bad currency is INVALID_ARGUMENT" test "${err%%:*}" = INVALID_ARGUMENT

for i in 1 2 3; do kill -TERM "${pids[$i]}"; done
stopped=0
for i in 1 2 3; do wait "${pids[$i]}" && stopped=$((stopped + 1)); done
check "the three services stop cleanly on SIGTERM" test "$stopped" = 3

echo "$passed passed, $failed failed"
if [[ $failed != 0 ]]; then tail -n 20 "$work"/*.log; fi
[[ $failed == 0 ]]
