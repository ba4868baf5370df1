#!/usr/bin/env bash
# scripts/check-layers passes on this tree, and fails on a copy of it with a
# lower layer including a higher one, and with a file over 400 lines.
set -euo pipefail
root=$1
"$root/scripts/check-layers" "$root"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/platform" "$tmp/scripts"
cp -r "$root/platform/src" "$root/platform/include" "$tmp/platform/"
cp "$root/scripts/check-layers" "$tmp/scripts/"
echo '#include "service/thread_runtime.h"' >> "$tmp/platform/src/core/error.cc"
if out=$("$tmp/scripts/check-layers" "$tmp"); then echo "FAIL: core including service/ passed"; exit 1; fi
grep -q 'platform/src/core/error.cc:.*core includes service/thread_runtime.h (service): a higher layer' <<<"$out" ||
  { echo "FAIL: the report does not name the include: $out"; exit 1; }
cp "$root/platform/src/core/error.cc" "$tmp/platform/src/core/error.cc"
"$tmp/scripts/check-layers" "$tmp" >/dev/null
echo '#include "http/http_io.h"' >> "$tmp/platform/src/events/events.cc"
if "$tmp/scripts/check-layers" "$tmp" >/dev/null; then echo "FAIL: events including http/ (a sibling) passed"; exit 1; fi
cp "$root/platform/src/events/events.cc" "$tmp/platform/src/events/events.cc"
for i in $(seq 401); do echo "// $i"; done >> "$tmp/platform/src/core/json.cc"
if out=$("$tmp/scripts/check-layers" "$tmp"); then echo "FAIL: a file over 400 lines passed"; exit 1; fi
grep -q 'json.cc: .* lines, over 400' <<<"$out" || { echo "FAIL: $out"; exit 1; }
echo "ok: the layer check passes here and catches an upward include, a sibling include and a long file"
