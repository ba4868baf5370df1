#!/usr/bin/env bash
# `tern new` makes a service that builds, passes its unit tests, starts and
# answers: in a copy of the source tree (git's files, committed or not; not
# build/), with a fresh build of only what it needs, against the broker at
# TERN_RABBIT_URL, as its own broker user (rabbit_add_service_user, as
# scripts/up makes them: tern new's naming gives it its permissions).
# usage: tern_new_test.sh REPO_ROOT TERN_BIN
set -euo pipefail
src=$1 tern=$2
: "${TERN_RABBIT_URL:?run through scripts/test}"
source "$src/scripts/lib/rabbit.sh"
passed=0 failed=0
check() {  # check NAME COMMAND...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok: $name"; else failed=$((failed + 1)); echo "FAILED: $name"; fi
}

tmp=$(mktemp -d)
pid=""
trap '[[ -z $pid ]] || kill -KILL "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT

mkdir "$tmp/src"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$src" ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [[ -e $src/$f ]] && printf '%s\0' "$f"; done |
    tar -C "$src" --null -T - -cf - | tar -C "$tmp/src" -xf -
else
  tar -C "$src" --exclude=./build --exclude=./.git -cf - . | tar -C "$tmp/src" -xf -
fi
rm -rf "$tmp/src/services/testping"   # (a leftover of someone's own try)
before=$(grep -c '^  testping:$' "$tmp/src/docker-compose.yml" || true)

"$tern" new service.testping --dir "$tmp/src"
check "tern new writes services/testping/" test -f "$tmp/src/services/testping/CMakeLists.txt"
check "docker-compose.yml gains testping" \
  test "$before:$(grep -c '^  testping:$' "$tmp/src/docker-compose.yml")" = "0:1"

# Only what the test needs, unoptimised and without debug info: the cheapest build.
start=$SECONDS
cmake -S "$tmp/src" -B "$tmp/build" -DTERN_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug \
      -DCMAKE_CXX_FLAGS_DEBUG=-O0 >"$tmp/configure.log" 2>&1 || { cat "$tmp/configure.log"; exit 1; }
if ! cmake --build "$tmp/build" -j2 --target testping testping_test tern >"$tmp/build.log" 2>&1; then
  tail -50 "$tmp/build.log"; exit 1
fi
echo "built testping, testping_test and tern (the platform too) in $((SECONDS - start)) s"
bin=$tmp/build/bin

check "the generated unit tests pass" "$bin/testping_test"

password_file=$(rabbit_add_service_user service.testping)
TERN_AMQP_URL=$TERN_RABBIT_URL TERN_AMQP_USER=service.testping TERN_AMQP_PASSWORD_FILE=$password_file \
  "$bin/testping" >"$tmp/service.log" 2>&1 &
pid=$!
out="" deadline=$((SECONDS + 30))
while ((SECONDS < deadline)); do
  out=$("$bin/tern" call service.testping ping '{"message":"hi"}' 2>/dev/null) && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2
done
check "service.testping answers ping" test "$(tr -d ' \n' <<<"$out")" = '{"message":"hi"}'
set +e
err=$("$bin/tern" call service.testping ping '{}' 2>&1 >/dev/null)
rc=$?
set -e
check "an empty message is INVALID_ARGUMENT" test "$rc:${err%%:*}" = "1:INVALID_ARGUMENT"

kill -TERM "$pid"
set +e; wait "$pid"; rc=$?; set -e
pid=""
check "SIGTERM stops it with status 0" test "$rc" = 0
[[ $failed == 0 ]] || { echo "--- service log"; cat "$tmp/service.log"; }

echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
