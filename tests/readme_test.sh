#!/usr/bin/env bash
# The README quotes services/greeter/main.cc; this keeps the quote true.
set -euo pipefail
root=$1
quoted=$(sed -n '/<!-- greeter:begin -->/,/<!-- greeter:end -->/p' "$root/README.md" | sed '1,2d;$d' | sed '$d')
if diff <(printf '%s\n' "$quoted") "$root/services/greeter/main.cc"; then
  echo "1 passed, 0 failed"
else
  echo "README's greeter differs from services/greeter/main.cc (diff above)"
  echo "0 passed, 1 failed"
  exit 1
fi
