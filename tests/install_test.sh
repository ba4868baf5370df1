#!/usr/bin/env bash
# An installed tern is a package a service outside the tree builds against:
# installs this build tree to a temporary prefix (`cmake --install`: the files
# of the real build, no second build of tern), then, in a temporary folder,
# builds a service with find_package(tern) and tern_add_service, runs its
# Catch2 tests through its own ctest, runs it against the broker at
# TERN_RABBIT_URL as its own broker user (rabbit_add_service_user), calls it
# with the installed CLI and stops it with SIGTERM;
# and builds a program with nothing but `pkg-config tern`.
# usage: install_test.sh BUILD_DIR LIBDIR PLATFORM_ARCHIVE
#   LIBDIR: CMAKE_INSTALL_LIBDIR; PLATFORM_ARCHIVE: the built libtern_platform.a
set -euo pipefail
build=$1 libdir=$2 archive=$3
: "${TERN_RABBIT_URL:?run through scripts/test}"
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/rabbit.sh"
passed=0 failed=0
check() {  # check NAME COMMAND...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok: $name"; else failed=$((failed + 1)); echo "FAILED: $name"; fi
}
# Logs to show when a step fails, then stop.
die() { local log; for log in "$@"; do echo "--- $log"; tail -40 "$log"; done; exit 1; }

tmp=$(mktemp -d)
pid=""
trap '[[ -z $pid ]] || kill -KILL "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
start=$SECONDS

cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 || die "$tmp/install.log"
check "the prefix has the headers, the wire protos and their headers, the CLI and the config" \
  test -f "$prefix/include/tern/service.h" -a -f "$prefix/include/tern/testing.h" \
       -a -f "$prefix/include/tern/envelope.proto" -a -f "$prefix/include/tern/trace.pb.h" \
       -a -x "$prefix/bin/tern" -a -f "$prefix/$libdir/cmake/tern/ternConfig.cmake" \
       -a -f "$prefix/$libdir/cmake/tern/tern.cmake"
check "the installed libtern_platform.a is the one built" cmp -s "$archive" "$prefix/$libdir/libtern_platform.a"

# A service of its own: its logic in echo.cc with a Catch2 test, a proto that
# imports tern's, and the CMake a user would write. It does not ask for C++20:
# tern::platform's interface does.
src=$tmp/outside
mkdir "$src"
cat >"$src/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.21)
project(outside LANGUAGES CXX)
include(CTest)
find_package(tern 0.1 REQUIRED)
tern_add_service(echo SOURCES main.cc echo.cc PROTOS echo.proto TESTS echo_test.cc)
# echo.proto imports tern/envelope.proto.
target_link_libraries(echo_protos PUBLIC tern::wire)
EOF
cat >"$src/echo.proto" <<'EOF'
syntax = "proto3";
package outside;
import "tern/envelope.proto";
message EchoRequest { string text = 1; tern.v1.Code code = 2; }
message EchoReply { string text = 1; tern.v1.Code code = 2; }
EOF
cat >"$src/echo.h" <<'EOF'
#pragma once
#include <tern/tern.h>

#include "echo.pb.h"

tern::Result<outside::EchoReply> Echo(tern::Context& ctx, const outside::EchoRequest& req);
EOF
cat >"$src/echo.cc" <<'EOF'
#include "echo.h"

tern::Result<outside::EchoReply> Echo(tern::Context&, const outside::EchoRequest& req) {
  if (req.text().empty()) return tern::Error{tern::Code::kInvalidArgument, "text is required"};
  outside::EchoReply rsp;
  rsp.set_text("outside: " + req.text());
  rsp.set_code(req.code());
  return rsp;
}
EOF
cat >"$src/main.cc" <<'EOF'
#include <tern/tern.h>

#include "echo.h"

int main(int argc, char** argv) {
  tern::Service svc{"service.installcheck"};
  svc.handle("echo", Echo);
  return svc.run(argc, argv);
}
EOF
cat >"$src/echo_test.cc" <<'EOF'
#include <catch2/catch.hpp>
#include <tern/testing.h>

#include "echo.h"

TEST_CASE("echo prefixes the text and keeps the code") {
  tern::testing::FakeTransport fake;
  auto ctx = fake.context(std::chrono::seconds(1));
  outside::EchoRequest req;
  req.set_text("hi");
  req.set_code(tern::v1::NOT_FOUND);
  auto rsp = Echo(ctx, req);
  REQUIRE(rsp.ok());
  CHECK(rsp->text() == "outside: hi");
  CHECK(rsp->code() == tern::v1::NOT_FOUND);
}
EOF

# Unoptimised and without debug info: the cheapest build.
cmake -S "$src" -B "$tmp/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Debug \
      -DCMAKE_CXX_FLAGS_DEBUG=-O0 >"$tmp/configure.log" 2>&1 || die "$tmp/configure.log"
check "find_package(tern) took the temporary prefix" \
  grep -qx "tern_DIR:PATH=$prefix/$libdir/cmake/tern" "$tmp/build/CMakeCache.txt"
cmake --build "$tmp/build" -j2 >"$tmp/build.log" 2>&1 || die "$tmp/build.log"
echo "installed and built echo and echo_test outside the tree in $((SECONDS - start)) s"
check "echo's Catch2 test runs under the service's own ctest" \
  ctest --test-dir "$tmp/build" -R "^echo:" --no-tests=error -Q

password_file=$(rabbit_add_service_user service.installcheck)
TERN_AMQP_URL=$TERN_RABBIT_URL TERN_AMQP_USER=service.installcheck TERN_AMQP_PASSWORD_FILE=$password_file \
  "$tmp/build/echo" >"$tmp/service.log" 2>&1 &
pid=$!
out="" deadline=$((SECONDS + 30))
while ((SECONDS < deadline)); do
  out=$("$prefix/bin/tern" call service.installcheck echo '{"text":"hi","code":"NOT_FOUND"}' 2>/dev/null) && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.2
done
check "the installed CLI calls the service: its reply as JSON" \
  test "$(tr -d ' \n' <<<"$out")" = '{"text":"outside:hi","code":"NOT_FOUND"}'
set +e
err=$("$prefix/bin/tern" call service.installcheck echo '{}' 2>&1 >/dev/null)
rc=$?
set -e
check "an empty text is INVALID_ARGUMENT, exit 1" test "$rc:${err%%:*}" = "1:INVALID_ARGUMENT"
kill -TERM "$pid"
set +e; wait "$pid"; rc=$?; set -e
pid=""
check "SIGTERM stops it with status 0" test "$rc" = 0

# Without Catch2 the service still configures; its TESTS are skipped, saying so.
cmake -S "$src" -B "$tmp/nocatch" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_DISABLE_FIND_PACKAGE_Catch2=TRUE \
      >"$tmp/nocatch.log" 2>&1 || die "$tmp/nocatch.log"
check "without Catch2, TESTS are skipped with a message" \
  test "$(grep -c 'tern_add_service(echo): no Catch2 2 found' "$tmp/nocatch.log"):$(ls -d "$tmp"/nocatch/CMakeFiles/echo_test.dir 2>/dev/null | wc -l)" = "1:0"

# pkg-config: the flags resolve (every Requires is there) and link a program.
export PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig
flags=$(pkg-config --cflags --libs tern) || flags=""
check "pkg-config --cflags --libs tern resolves to the prefix" \
  grep -q -- "-I$prefix/include .*-L$prefix/$libdir -ltern_platform -ltern_wire" <<<"$flags"
cat >"$tmp/probe.cc" <<'EOF'
#include <tern/tern.h>
int main(int argc, char** argv) { return tern::Service{"service.probe"}.run(argc, argv); }
EOF
# shellcheck disable=SC2086  # (the flags are words)
if g++ -std=c++20 -O0 "$tmp/probe.cc" -o "$tmp/probe" $flags >"$tmp/probe.log" 2>&1; then
  check "a program built with pkg-config's flags alone runs (--help)" \
    grep -q "^usage: " <<<"$("$tmp/probe" --help)"
else
  check "a program builds with pkg-config's flags alone" false
  tail -5 "$tmp/probe.log"
fi

[[ $failed == 0 ]] || { echo "--- service log"; cat "$tmp/service.log"; }
echo "in $((SECONDS - start)) s"
echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
