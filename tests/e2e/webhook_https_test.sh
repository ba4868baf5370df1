#!/usr/bin/env bash
# Webhooks to an https:// receiver: service.transaction and service.webhook
# binaries on the broker at TERN_AMQP_URL, scripts/webhook-receiver serving
# HTTPS with a certificate from tests/tls/make_certs.sh (made now), the tern
# CLI. Trusting the test CA (TERN_WEBHOOK_CA_FILE) the signed delivery
# arrives; trusting another CA every attempt's handshake fails (the receiver
# sees each one), and the delivery is dead-lettered with a coarse reason.
# usage: webhook_https_test.sh BIN_DIR REPO_ROOT
set -euo pipefail
bin=$1 root=$2
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
json() { /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
tern() { "$bin/tern" "$@"; }
# Each service as its own broker user, as the scripts run them: webhook
# takes transaction.Created only from service.transaction, and
# service.transaction's create only from api.transaction.
source "$root/scripts/lib/rabbit.sh"
files=$(rabbit_add_users service:service.transaction service:service.webhook service:api.transaction)
cred=$(dirname "$(head -n 1 <<<"$files")")
# login USER: the variables that log a process in as USER, for env, which
# execs the program (a service started with & keeps its own pid: kill works).
login() { echo "TERN_AMQP_URL=$TERN_RABBIT_URL TERN_AMQP_USER=$1 TERN_AMQP_PASSWORD_FILE=$cred/$1.password"; }
# shellcheck disable=SC2046  # (login's words hold no spaces)
as() { env $(login "$1") "${@:2}"; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$root/tests/tls/make_certs.sh" "$work/certs"
export TERN_DATA_DIR=$work/data TERN_EVENT_RETRY_MS=200 TERN_EVENT_ATTEMPTS=3 TERN_OUTBOX_RELAY_MS=200
export TERN_WEBHOOK_ALLOW=127.0.0.1/32,::1/128 TERN_LOG_FORMAT=text
# shellcheck disable=SC2046
env $(login service.transaction) "$bin/transaction" >"$work/transaction.log" 2>&1 &
pids+=($!)
# shellcheck disable=SC2046
env $(login service.webhook) TERN_WEBHOOK_CA_FILE="$work/certs/ca.pem" "$bin/webhook" >"$work/webhook.log" 2>&1 &
pids+=($!)
webhook_pid_index=1
for s in transaction webhook; do
  check "service.$s answers _health" wait_for 20 healthy "service.$s"
done

account=acc_https_$$
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
hook=$(tern call service.webhook register "{\"account_id\":\"$account\",\"url\":\"https://127.0.0.1:$port/hook\"}")
secret=$(json '["secret"]' <<<"$hook")
check "an https:// webhook registers" test -n "$secret"

# The receiver checks signatures with this webhook's secret (400 otherwise).
"$root/scripts/webhook-receiver" "$port" --secret "$secret" \
  --tls-cert "$work/certs/server.pem" --tls-key "$work/certs/server.key" >"$work/received" 2>&1 &
pids+=($!)
listening() { grep -q "webhook receiver on https://127.0.0.1:$port/" "$work/received"; }
check "the receiver serves HTTPS" wait_for 20 listening

tx=$(as api.transaction "$bin/tern" call service.transaction create \
  "{\"account_id\":\"$account\",\"amount\":1250,\"currency\":\"GBP\",\"description\":\"coffee\"}")
tx_id=$(json '["id"]' <<<"$tx")
received() { grep -q "^POST /hook " "$work/received"; }
check "trusting the test CA, the delivery arrives over HTTPS" wait_for 20 received
check "the receiver's documented check finds it validly signed" \
  grep -qx "  signature valid" "$work/received"
check "it is the transaction" grep -q "\"id\":\"$tx_id\"" "$work/received"
handshake_failures() { grep -c "^TLS handshake failed" "$work/received" || true; }
check "no handshake failed" test "$(handshake_failures)" = 0

# service.webhook restarted trusting another CA: the same receiver is refused.
kill -TERM "${pids[$webhook_pid_index]}"
wait "${pids[$webhook_pid_index]}" || true
# shellcheck disable=SC2046
env $(login service.webhook) TERN_WEBHOOK_CA_FILE="$work/certs/other-ca.pem" "$bin/webhook" >>"$work/webhook.log" 2>&1 &
pids[$webhook_pid_index]=$!
check "service.webhook restarts with TERN_WEBHOOK_CA_FILE=other-ca.pem" wait_for 20 healthy service.webhook
wrong=$(tern call service.webhook register \
  "{\"account_id\":\"other_$account\",\"url\":\"https://127.0.0.1:$port/wrong\"}")
wrong_id=$(json '["id"]' <<<"$wrong")
as api.transaction "$bin/tern" call service.transaction create "{\"account_id\":\"other_$account\",\"amount\":1,\"currency\":\"GBP\"}" >/dev/null
dead_lettered() {
  tern dlq list service.webhook.on.webhook.delivery 2>/dev/null | grep -q "webhook $wrong_id: TLS certificate not accepted"
}
check "trusting another CA, the delivery is dead-lettered as 'TLS certificate not accepted'" wait_for 30 dead_lettered
handshake_failures_are() { [[ $(handshake_failures) == "$1" ]]; }
check "after TERN_EVENT_ATTEMPTS (3) attempts, each a handshake the receiver saw fail" \
  wait_for 10 handshake_failures_are 3
check "the receiver saw the service refuse its certificate (unknown CA)" \
  grep -q "^TLS handshake failed: .*UNKNOWN_CA" "$work/received"
check "and no request: nothing reached /wrong" test "$(grep -c '^POST /wrong' "$work/received" || true)" = 0
tells_nothing() {
  ! tern dlq list service.webhook.on.webhook.delivery | grep -iE "127\.0\.0\.1|:$port|verify|issuer|other-ca|SSL"
}
check "the dead letter names no address, port, CA or OpenSSL reason" tells_nothing
check "a malformed CA file stops service.webhook at start-up with exit 2 naming it" bash -c \
  "TERN_WEBHOOK_CA_FILE='$work/certs/server.key' '$bin/webhook' >'$work/bad.log' 2>&1; test \$? = 2 &&
   grep -q \"TERN_WEBHOOK_CA_FILE='$work/certs/server.key'\" '$work/bad.log'"

echo "$passed passed, $failed failed"
if [[ $failed != 0 ]]; then tail -n 20 "$work"/*.log "$work/received"; fi
[[ $failed == 0 ]]
