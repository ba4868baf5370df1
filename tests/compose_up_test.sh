#!/usr/bin/env bash
# `docker compose up`, for real: the repository's docker-compose.yml, run by
# Debian's docker-compose on a Docker daemon of this test's own
# (tests/compose/dockerd.sh), with locally built stand-ins for the public
# images it names (tests/compose/stand-ins.sh: nothing can be pulled here)
# and its stack as scripts/compose --host-network writes it: the same entries
# with every container on the host's network (traffic only to loopback). Then: every container
# healthy; the README's walk-through through the gateway's published port
# with a signed-webhook receiver, and Prometheus scraping every service
# (tests/compose/stack.py); down and up without -v keeps the data; down -v
# removes it all.
#
# usage: tests/compose_up_test.sh   (as root; .ci/run runs it after scripts/test)
# The daemon's data root (/var/tmp/tern-compose-docker) is kept, so a rerun
# reuses the stand-ins and the image's build cache.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[[ $EUID -eq 0 ]] || { echo "compose_up_test: run as root (it runs a Docker daemon)" >&2; exit 2; }
scripts/bootstrap --compose
source tests/compose/dockerd.sh

passed=0 failed=0
check() {  # check NAME COMMAND...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok    $name"; else failed=$((failed + 1)); echo "FAIL  $name"; fi
}
since() { echo $(( $(date +%s) - $1 )); }

work=$(mktemp -d)
project=terncompose
compose() { docker-compose -p "$project" --project-directory "$root" -f "$work/host-network.yml" "$@"; }
finish() {
  local rc=$?
  if (( failed )) || (( rc )); then
    compose ps 2>/dev/null || true
    compose logs --no-color --tail 30 2>/dev/null | tail -200 || true
  fi
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  dockerd_stop
  rm -rf "$work"
}
trap finish EXIT

t0=$(date +%s)
dockerd_start
tests/compose/stand-ins.sh
echo "compose: daemon and stand-ins ready in $(since "$t0") s"
scripts/compose --host-network "$work/host-network.yml" "$work/prometheus.yml"
compose down -v --remove-orphans >/dev/null 2>&1 || true   # what an interrupted run left

services=$(compose config --services | grep -vx -e rabbitmq -e broker-users -e prometheus -e tern)
count=$(wc -w <<<"$services")
t1=$(date +%s)
compose build --quiet >/dev/null
echo "compose: tern:local built in $(since "$t1") s"

# All healthy: docker's own health state for each tern service (its
# `tern call <svc> _health` check) and RabbitMQ.
all_healthy() {
  local s id state
  for s in rabbitmq $services; do
    id=$(compose ps -q "$s")
    [[ -n $id ]] || return 1
    state=$(docker inspect -f '{{.State.Health.Status}}' "$id" 2>/dev/null) || return 1
    [[ $state == healthy ]] || return 1
  done
}
await_healthy() {
  local end=$(( $(date +%s) + 180 ))
  while (( $(date +%s) < end )); do all_healthy && return 0; sleep 1; done
  return 1
}
up() {
  t2=$(date +%s)
  compose up -d >/dev/null 2>"$work/up.log" || { cat "$work/up.log"; return 1; }
  await_healthy
}
check "docker compose up -d: RabbitMQ and all $count services healthy" up
echo "compose: up and healthy in $(since "$t2") s"

only_tern_user() {   # the services run as uid 10001, not root
  local s id user
  for s in $services; do
    id=$(compose ps -q "$s")
    user=$(docker exec "$id" id -u) || return 1
    [[ $user == 10001 ]] || { echo "  $s runs as uid $user"; return 1; }
  done
}
check "every service's container runs as uid 10001, not root" only_tern_user
no_guest() { ! compose exec -T rabbitmq rabbitmqctl -q list_users | cut -f1 | grep -qx guest; }
check "the broker has no guest" no_guest

export TERN_COMPOSE_SERVICES=$count
check "the README's walk-through through the gateway, and Prometheus scrapes every service" \
  python3 tests/compose/stack.py walkthrough "$work/state.json"

restart() {
  compose down >/dev/null 2>&1 && up
}
check "down and up without -v: healthy again" restart
check "a transaction and the balance from before down are still there" \
  python3 tests/compose/stack.py persisted "$work/state.json"

removed() {
  compose down -v >/dev/null 2>&1
  [[ -z $(docker volume ls -q --filter "label=com.docker.compose.project=$project") ]] &&
    [[ -z $(docker ps -aq --filter "label=com.docker.compose.project=$project") ]]
}
check "down -v removes every container and volume" removed

echo "compose: $passed passed, $failed failed, $(since "$t0") s in all"
(( failed == 0 ))
