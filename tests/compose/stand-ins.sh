#!/usr/bin/env bash
# Builds, where missing, local stand-ins for the public images
# docker-compose.yml names, tagged with those names: debian:12 and
# debian:12-slim (mmdebstrap, minbase), rabbitmq:3.10-management and
# prom/prometheus:v2.42.0 (Debian's packages, tests/compose/*/Dockerfile).
# For the compose test only: here nothing can be pulled.
# usage: stand-ins.sh   (DOCKER_HOST set, as dockerd.sh's dockerd_start does)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
docker=/usr/bin/docker
have() { $docker image inspect "$1" >/dev/null 2>&1; }
if ! have debian:12; then
    echo "compose: building debian:12 with mmdebstrap" >&2
    tmp=$(mktemp -d)
    mmdebstrap --quiet --variant=minbase bookworm "$tmp/rootfs.tar" \
        "deb http://deb.debian.org/debian bookworm main" \
        "deb http://deb.debian.org/debian bookworm-updates main" \
        "deb http://deb.debian.org/debian-security bookworm-security main"
    $docker import "$tmp/rootfs.tar" debian:12 >/dev/null
    rm -rf "$tmp"
fi
have debian:12-slim || $docker tag debian:12 debian:12-slim
for image in rabbitmq:3.10-management:rabbitmq prom/prometheus:v2.42.0:prometheus; do
    name=${image%:*} dir=${image##*:}
    if ! have "$name"; then
        echo "compose: building the stand-in $name" >&2
        $docker build -q --network host -t "$name" "$here/$dir" >/dev/null
    fi
done
