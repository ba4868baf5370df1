#!/usr/bin/env bash
# ctest: money through the gateway under kill -9. Starts a private
# one-node RabbitMQ of its own (it kills and restarts that node, never
# scripts/test's), runs money_test.py against it, and stops it however
# that ends.
#   money_test.sh BIN_DIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../../scripts/lib/rabbit.sh"
# Only our own node: drop the variables naming scripts/test's node.
unset TERN_RABBIT_DIR TERN_RABBIT_NODE TERN_RABBIT_MGMT_URL TERN_CLUSTER_DIR TERN_AMQP_URL
trap rabbit_cluster_stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
started=$SECONDS
rabbit_cluster_start 1
echo "money_test: broker up in $((SECONDS - started)) s: $TERN_RABBIT_URL"
export TERN_RABBIT_LIB="$here/../../scripts/lib/rabbit.sh"
rc=0
timeout -k 10 150 /usr/bin/python3 "$here/money_test.py" "$1" || rc=$?
exit "$rc"
