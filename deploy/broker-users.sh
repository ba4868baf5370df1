#!/usr/bin/env bash
# docker compose's first-run step (the broker-users container that
# scripts/compose writes into docker-compose.yml), run from the rabbitmq image
# with the repository's scripts/lib, services/ and this file mounted under
# /tern:
#   broker-users.sh NODE FOLDER:ROLE:USER...
# deletes guest on NODE (rabbit@rabbitmq) and creates or updates tern-admin
# and each USER in ROLE (service or cli) with the permissions
# scripts/lib/broker_users.sh gives them (the same function scripts/up,
# scripts/test and scripts/cluster use). Passwords are generated once into
# /credentials (the volume broker-credentials) and reused on every later run;
# each USER's own goes to /secrets/FOLDER/password (its FOLDER-broker volume,
# the only one its container mounts). Nothing prints a password; rabbitmqctl
# gets only salted hashes, on stdin.
#
# The paths and rabbitmqctl can be moved for a test against a private node
# (tests/compose_users_test.sh): BROKER_USERS_LIB, BROKER_USERS_CREDENTIALS,
# BROKER_USERS_SECRETS, BROKER_USERS_COOKIE (empty: use rabbitmqctl's own),
# BROKER_USERS_CTL (a command run as rabbitmqctl). A service's password file
# belongs to the uid tern's image runs as, BROKER_USERS_OWNER (10001).
set -euo pipefail
source "${BROKER_USERS_LIB:-/tern/scripts/lib}/broker_users.sh"
credentials=${BROKER_USERS_CREDENTIALS:-/credentials}
secrets=${BROKER_USERS_SECRETS:-/secrets}
cookie=${BROKER_USERS_COOKIE-/var/lib/rabbitmq/.erlang.cookie}
node=$1; shift

# rabbitmqctl reaches the node with its Erlang cookie, from the node's data
# volume (mounted read-only), in a home of this container's own.
if [[ -n $cookie ]]; then
    export HOME=/tmp/broker-users-home
    mkdir -p "$HOME"
    install -m 400 "$cookie" "$HOME/.erlang.cookie"
fi
ctl() { ${BROKER_USERS_CTL:-rabbitmqctl} -q -n "$node" "$@"; }
ctl await_startup --timeout 120 >/dev/null

if ctl -s list_users | cut -f1 | grep -qx guest; then
    ctl delete_user guest >/dev/null
    echo "broker-users: deleted guest"
fi
specs=(admin:tern-admin)
for arg in "$@"; do specs+=("${arg#*:}"); done
tern_broker_definitions "$credentials" "${specs[@]}" | ctl import_definitions --format json >/dev/null
echo "broker-users: tern-admin (administrator; password on volume broker-credentials)"
for arg in "$@"; do
    folder=${arg%%:*} user=${arg##*:}
    mkdir -p "$secrets/$folder"
    install -m 600 -o "${BROKER_USERS_OWNER:-10001}" "$credentials/$user.password" "$secrets/$folder/password"
    echo "broker-users: $user (${arg#*:}; its password on volume $folder-broker)"
done
