#!/usr/bin/env bash
# docker-compose.yml is what scripts/compose writes from services/ today, and
# Debian's docker-compose accepts it (`config` needs no Docker engine).
# usage: compose_test.sh REPO_ROOT
set -euo pipefail
cd "$1"
passed=0 failed=0
check() {  # check NAME COMMAND...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok: $name"; else failed=$((failed + 1)); echo "FAILED: $name"; fi
}
check "docker-compose.yml is current (else run scripts/compose)" scripts/compose --check
check "docker-compose config accepts it" docker-compose -f docker-compose.yml config -q
# What the file promises about broker users and ports, read from the file.
users_ok() {
  /usr/bin/python3 - <<'PY'
import yaml
services = yaml.safe_load(open("docker-compose.yml"))["services"]
steps = services["broker-users"]["command"][1:]     # FOLDER:ROLE:USER
tern = {n: s for n, s in services.items() if s.get("image") == "tern:local" and n != "tern"}
users = set()
for name, s in tern.items():
    env = s["environment"]
    assert "@" not in env["TERN_AMQP_URL"] and "guest" not in str(s), name
    assert env["TERN_AMQP_PASSWORD_FILE"] == "/run/tern-broker/password", name
    assert f"{name}-broker:/run/tern-broker:ro" in s["volumes"], name
    assert f"{name}:service:{env['TERN_AMQP_USER']}" in steps, name
    users.add(env["TERN_AMQP_USER"])
assert len(users) == len(tern), "two containers share a broker user"
PY
}
check "no guest: each service logs in as its own user, its password on its own volume" users_ok
loopback_ok() {
  /usr/bin/python3 - <<'PY'
import yaml
services = yaml.safe_load(open("docker-compose.yml"))["services"]
for name in ["rabbitmq", "prometheus", "trace"]:
    for p in services[name]["ports"]:
        assert p.startswith("127.0.0.1:"), (name, p)
PY
}
check "RabbitMQ's ports, Prometheus and the trace pages are published on 127.0.0.1 only" loopback_ok
shape_ok() {
  /usr/bin/python3 - <<'PY'
import yaml
services = yaml.safe_load(open("docker-compose.yml"))["services"]
for name, s in services.items():
    image = s["image"]
    assert image == "tern:local" or (":" in image and not image.endswith(":latest")), (name, image)
tern = {n: s for n, s in services.items() if s["image"] == "tern:local" and n != "tern"}
builders = [n for n, s in tern.items() if "build" in s]
assert len(builders) == 1, builders          # one build, every service runs it
for name, s in tern.items():
    test = s["healthcheck"]["test"]
    assert test[:3] == ["CMD", "tern", "call"] and test[3] == s["environment"]["TERN_AMQP_USER"] \
        and test[4] == "_health", (name, test)
others = {n for n in tern if n != "gateway"}
assert {n for n, c in services["gateway"]["depends_on"].items()
        if c["condition"] == "service_healthy"} == others
PY
}
check "pinned images, one build, a _health check per service, the gateway after all are healthy" shape_ok
echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
