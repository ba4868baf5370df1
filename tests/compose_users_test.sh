#!/usr/bin/env bash
# docker compose's first-run step without Docker: deploy/broker-users.sh, with
# the very arguments docker-compose.yml gives its broker-users container, run
# twice against scripts/test's node (its paths moved to temporary folders, its
# rabbitmqctl the node's own). It deletes guest, makes every service's user
# and tern-cli and tern-admin, gives each service only its own password, and
# a rerun keeps them all.
# usage: compose_users_test.sh REPO_ROOT
set -euo pipefail
root=$1
: "${TERN_RABBIT_DIR:?run through scripts/test}" "${TERN_RABBIT_NODE:?run through scripts/test}"
source "$root/scripts/lib/rabbit.sh"
passed=0 failed=0
check() {  # check NAME COMMAND...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok: $name"; else failed=$((failed + 1)); echo "FAILED: $name"; fi
}
tmp=$(mktemp -d)
trap 'rabbit_ctl delete_user guest >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT

# The container's command, from the generated file.
mapfile -t args < <(/usr/bin/python3 -c '
import sys, yaml
for a in yaml.safe_load(open(sys.argv[1]))["services"]["broker-users"]["command"][1:]:
    print(a)' "$root/docker-compose.yml")
check "docker-compose.yml's broker-users step names every service and tern-cli" \
  test "${#args[@]}" = "$(( $(grep -l '^tern_add_service' "$root"/services/*/CMakeLists.txt | wc -l) + 1 ))"

cat >"$tmp/rabbitmqctl" <<EOF
#!/usr/bin/env bash
source "$root/scripts/lib/rabbit.sh" && rabbit_ctl "\$@"
EOF
chmod +x "$tmp/rabbitmqctl"
# The node's own credentials folder: the passwords stay those of the users
# other tests made, so running this beside them changes nothing for them.
cred=$TERN_RABBIT_DIR/credentials
step() {
  BROKER_USERS_LIB=$root/scripts/lib BROKER_USERS_CREDENTIALS=$cred BROKER_USERS_SECRETS=$tmp/secrets \
    BROKER_USERS_COOKIE="" BROKER_USERS_CTL=$tmp/rabbitmqctl "$root/deploy/broker-users.sh" "$TERN_RABBIT_NODE" "${args[@]}"
}

# A broker as the rabbitmq image starts: with a guest.
printf 'guest\n' | rabbit_ctl add_user guest >/dev/null
step >"$tmp/first.log" 2>&1 || { cat "$tmp/first.log"; exit 1; }
check "the first run deletes guest" grep -qx "broker-users: deleted guest" "$tmp/first.log"
users=$(rabbit_ctl -q -s list_users | cut -f1)
check "guest is gone" bash -c '! grep -qx guest <<<"$1"' _ "$users"
missing=""
for arg in "${args[@]}" x:admin:tern-admin; do grep -qx "${arg##*:}" <<<"$users" || missing+=" ${arg##*:}"; done
check "every service's user, tern-cli and tern-admin exist (missing:$missing)" test -z "$missing"

own() {   # each folder's secret is its user's password, mode 600
  local arg folder user
  for arg in "${args[@]}"; do
    folder=${arg%%:*} user=${arg##*:}
    cmp -s "$tmp/secrets/$folder/password" "$cred/$user.password" || { echo "  $folder: not $user's password"; return 1; }
    [[ $(stat -c %a "$tmp/secrets/$folder/password") == 600 ]] || { echo "  $folder: not mode 600"; return 1; }
    [[ $(ls "$tmp/secrets/$folder") == password ]] || { echo "  $folder: holds more than its password"; return 1; }
  done
}
check "each service's secret volume holds only its own password, mode 600" own
perms=$(rabbit_ctl -q -s list_permissions)
check "service.greeter has the least-privilege permissions broker_users.sh gives it" \
  grep -qxF "service.greeter	$(_tern_permissions service service.greeter | cut -d' ' -f1-3 | tr ' ' '\t')" <<<"$perms"

cp -r "$cred" "$tmp/before"
step >"$tmp/second.log" 2>&1 || { cat "$tmp/second.log"; exit 1; }
check "a rerun keeps every password" diff -r "$tmp/before" "$cred"
check "a rerun has no guest to delete" bash -c '! grep -q "deleted guest" "$1"' _ "$tmp/second.log"
leaked=""
for f in "$cred"/*.password; do grep -qF "$(<"$f")" "$tmp/first.log" "$tmp/second.log" && leaked+=" $f"; done
check "neither run printed a password" test -z "$leaked"

# A service logs in with what its container would read.
folder=greeter
check "service.greeter logs in with the password on its volume" /usr/bin/python3 -c '
import sys, pika
p = pika.URLParameters(sys.argv[1])
p.credentials = pika.PlainCredentials("service.greeter", open(sys.argv[2]).read().strip())
pika.BlockingConnection(p).close()' "$TERN_RABBIT_URL" "$tmp/secrets/$folder/password"

echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
