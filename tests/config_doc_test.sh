#!/usr/bin/env bash
# docs/configuration.md against the code: (a) every TERN_* variable the C++
# sources of platform/ and services/ read has a row in it; (b) every TERN_*
# it names is read somewhere (platform/, services/, scripts/); (c) its
# platform section is exactly the kFields table `greeter --help` prints:
# the same variables, flags and order; (d) gateway, trace, webhook and
# greeter --help list the variables of their own the doc gives them.
# Usage: config_doc_test.sh REPO_ROOT BIN_DIR
set -euo pipefail
root=$1
bin=$2
doc=$root/docs/configuration.md
failed=0
fail() {
  echo "FAIL: $*"
  failed=1
}

[[ -f $doc ]] || { echo "FAIL: no $doc"; exit 1; }

# The gateway builds TERN_GATEWAY_RATE_PER_<SCOPE> and _BURST_PER_<SCOPE>
# from a prefix; its scopes are the rate_limit("SCOPE", ...) calls.
scopes=$(grep -rhoE 'rate_limit\("[A-Z]+"' "$root/services/gateway" --include=*.cc | sed -E 's/.*"([A-Z]+)"/\1/' | sort -u)
[[ -n $scopes ]] || fail "found no rate_limit(\"SCOPE\", ...) in services/gateway: cannot expand TERN_GATEWAY_*_PER_"

# "file name" pairs for every "TERN_... string literal in the C++ sources.
read_pairs=$(cd "$root" && grep -rnoE '"TERN_[A-Z0-9_]+' platform services --include=*.cc --include=*.h |
  awk -F: '{ sub(/^"/, "", $3); print $1, $3 }' | while read -r file name; do
    case $name in
      TERN_GATEWAY_RATE_PER_ | TERN_GATEWAY_BURST_PER_)
        for s in $scopes; do echo "$file $name$s"; done ;;
      *_) echo "$file $name" ;;  # an unknown prefix: reported below
      *) echo "$file $name" ;;
    esac
  done | sort -u)
read_cxx=$(awk '{ print $2 }' <<<"$read_pairs" | sort -u)
[[ -n $read_cxx ]] || fail "found no \"TERN_ literal in platform/ or services/"
for name in $read_cxx; do
  [[ $name == *_ ]] && fail "$name (in $(awk -v n="$name" '$2 == n { print $1 }' <<<"$read_pairs" | paste -sd' ')) is a prefix this test cannot expand: teach it the names it makes"
done
read_scripts=$(grep -rhoE 'TERN_[A-Z0-9_]*[A-Z0-9]' "$root/scripts" | sort -u)

# Rows: table lines whose first cell is `TERN_X`. Named: any TERN_X anywhere.
doc_rows=$(sed -nE 's/^\| `(TERN_[A-Z0-9_]+)`.*/\1/p' "$doc" | sort -u)
doc_names=$(grep -oE 'TERN_[A-Z0-9_]+' "$doc" | sort -u)

# (a) read by the code, but no row.
for name in $read_cxx; do
  [[ $name == *_ ]] && continue
  if ! grep -qxF "$name" <<<"$doc_rows"; then
    fail "$name is read in $(awk -v n="$name" '$2 == n { print $1 }' <<<"$read_pairs" | paste -sd' ') but docs/configuration.md has no row for it"
  fi
done

# (b) named by the doc, but read nowhere.
for name in $doc_names; do
  if ! grep -qxF "$name" <<<"$read_cxx" && ! grep -qxF "$name" <<<"$read_scripts"; then
    fail "docs/configuration.md names $name, which nothing in platform/, services/ or scripts/ reads"
  fi
done

# (c) the platform section against --help. Service::run prints the usage and
# exits (its status is not the point); the broker is never contacted.
help=$(timeout 20 "$bin/greeter" --help 2>&1 || true)
help_rows=$(sed -nE 's/^ +--([a-z0-9-]+) .*\(env (TERN_[A-Z0-9_]+)\)$/\2 --\1/p' <<<"$help")
if [[ -z $help_rows ]]; then
  fail "$bin/greeter --help printed no '--flag ... (env TERN_X)' lines; it printed:"$'\n'"$help"
else
  section=$(awk '/^## /{ p = ($0 ~ /^## Every process/) } p' "$doc")
  [[ -n $section ]] || fail "docs/configuration.md has no '## Every process' section"
  doc_platform=$(sed -nE 's/^\| `(TERN_[A-Z0-9_]+)` \| ([^|]*)\|.*/\1 \2/p' <<<"$section" | sed -E 's/`//g; s/ +$//')
  help_vars=$(awk '{ print $1 }' <<<"$help_rows" | sort)
  doc_vars=$(awk '{ print $1 }' <<<"$doc_platform" | sort)
  for name in $(comm -23 <(printf '%s\n' "$help_vars") <(printf '%s\n' "$doc_vars")); do
    fail "greeter --help prints (env $name), which the doc's '## Every process' table lacks"
  done
  for name in $(comm -13 <(printf '%s\n' "$help_vars") <(printf '%s\n' "$doc_vars")); do
    fail "the doc's '## Every process' table has $name, which greeter --help does not print (not in kFields)"
  done
  if [[ $help_rows != "$doc_platform" ]]; then
    fail "the doc's '## Every process' table is not kFields as --help prints it (variable, flag, order):"$'\n'"$(diff <(printf '%s\n' "$help_rows") <(printf '%s\n' "$doc_platform") | sed 's/^</  --help:/; s/^>/  doc:   /' | grep -E '^  (--help|doc)' || true)"
  fi
fi

# (d) a service's --help lists what it reads of its own: each variable of
# its section of the doc that its main reads at start-up.
own_help() {   # BINARY PATTERN: the doc's variables matching PATTERN must be in BINARY --help
  local out name
  out=$(timeout 20 "$bin/$1" --help 2>&1 || true)
  for name in $(grep -oE '`TERN_[A-Z0-9_]+`' "$doc" | tr -d '`' | grep -E "$2" | sort -u); do
    grep -q "^  $name " <<<"$out" || fail "$1 --help does not list $name (its own variables come after the platform's)"
  done
}
own_help gateway '^TERN_GATEWAY_'
own_help trace '^TERN_TRACE_(RETENTION_S|MAX_SPANS|HTTP_|EXPORT_)'
own_help webhook '^TERN_WEBHOOK_|^TERN_OUTBOX_RELAY_MS$|^TERN_DATA_DIR$'
own_help greeter '^TERN_LOG_'
# With nothing set: --help prints before any check (no TERN_AUTH_ACCOUNTS).
# Read by the auth client library the api services link: listed by each.
for api in balance-api transaction-api webhook-api; do own_help "$api" '^TERN_AUTH_GATEWAY_USER$'; done
own_help auth '^TERN_AUTH_(DEV|ACCOUNTS|SECRET|SECRET_FILE|CREATE_SECRET_FILE|TOKEN_TTL_S|MAX_FAILURES|FAILURE_WINDOW_S)$'

if ((failed)); then
  echo "0 passed, 1 failed"
  exit 1
fi
echo "ok: docs/configuration.md has the $(wc -l <<<"$read_cxx") TERN_* variables platform/ and services/ read, names nothing unread, its platform table is the $(wc -l <<<"$help_rows") of --help, and the services' --help list their own"
echo "1 passed, 0 failed"
