#!/usr/bin/env bash
# ctest: starts a private three-node RabbitMQ cluster, runs cluster_test
# against it, and stops the cluster however that ends.
#   cluster_test.sh CLUSTER_TEST SERVICE_BINARY [REPORT_FILE]
# Independent of the node scripts/test provides: it neither uses nor stops it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/rabbit.sh"
# Only our own cluster: drop the variables naming scripts/test's node (or a
# caller's cluster), so nothing below can reach them.
unset TERN_RABBIT_DIR TERN_RABBIT_NODE TERN_RABBIT_MGMT_URL TERN_CLUSTER_DIR TERN_AMQP_URL

trap rabbit_cluster_stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
started=$SECONDS
rabbit_cluster_start 3
echo "cluster_test: 3 nodes up in $((SECONDS - started)) s: $TERN_RABBIT_URL"
# Bounded well inside ctest's TIMEOUT, so the trap always gets to run.
rc=0
timeout -k 10 200 "$@" || rc=$?
if [[ $rc != 0 ]]; then   # the nodes' logs go with the cluster: keep a copy
    logs=$(mktemp -d /tmp/tern-cluster-logs.XXXXXX)
    for d in "$TERN_CLUSTER_DIR"/*/; do cp -r "$d/log" "$logs/node$(basename "$d")" 2>/dev/null || true; done
    echo "cluster_test: failed ($rc); the nodes' logs are in $logs" >&2
fi
exit "$rc"
