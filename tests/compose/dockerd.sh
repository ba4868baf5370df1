#!/usr/bin/env bash
# A Docker daemon of the compose test's own (Debian's docker.io), beside
# anything else on the machine: its own data root (kept, so a rerun reuses
# the images and build cache), exec root and socket; no iptables rules and
# no bridge, since every container uses host networking.
#   source tests/compose/dockerd.sh; dockerd_start; ...; dockerd_stop
# Sets DOCKER_HOST for docker and docker-compose. Root only.
TERN_DOCKER_ROOT=${TERN_DOCKER_ROOT:-/var/tmp/tern-compose-docker}
TERN_DOCKER_RUN=/run/tern-compose-docker

dockerd_start() {
    mkdir -p "$TERN_DOCKER_ROOT/data" "$TERN_DOCKER_RUN"
    export DOCKER_HOST=unix://$TERN_DOCKER_RUN/docker.sock
    if /usr/bin/docker info >/dev/null 2>&1; then return 0; fi
    /usr/sbin/dockerd --data-root "$TERN_DOCKER_ROOT/data" --exec-root "$TERN_DOCKER_RUN/exec" \
        --pidfile "$TERN_DOCKER_RUN/dockerd.pid" -H "$DOCKER_HOST" \
        --iptables=false --ip6tables=false --bridge=none --ip-forward=false --ip-masq=false \
        >"$TERN_DOCKER_ROOT/dockerd.log" 2>&1 &
    local i
    for i in $(seq 1 300); do
        /usr/bin/docker info >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "dockerd did not start: see $TERN_DOCKER_ROOT/dockerd.log" >&2
    tail -20 "$TERN_DOCKER_ROOT/dockerd.log" >&2
    return 1
}

dockerd_stop() {
    local pid
    pid=$(cat "$TERN_DOCKER_RUN/dockerd.pid" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null || return 0
    local i
    for i in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}
