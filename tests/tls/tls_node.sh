#!/usr/bin/env bash
# ctest: runs the amqps:// tests against a TLS-only private RabbitMQ node
# with certificates made for this run, and removes both however that ends.
#   tls_node.sh TEST_BINARY [ARGS...]
# Independent of the node scripts/test provides: it neither uses nor stops it.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
source "$here/../../scripts/lib/rabbit.sh"
unset TERN_RABBIT_DIR TERN_RABBIT_NODE TERN_RABBIT_MGMT_URL TERN_CLUSTER_DIR TERN_AMQP_URL \
      TERN_RABBIT_NETNS TERN_RABBIT_HOST
certs=$(mktemp -d /tmp/tern-certs.XXXXXX)
cleanup() { rabbit_stop || true; rm -rf "$certs"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
"$here/make_certs.sh" "$certs" tls.client
chmod a+rx "$certs"     # the node runs as user rabbitmq
export TERN_RABBIT_TLS_DIR=$certs TERN_TLS_CERTS=$certs
rabbit_start
"$@"
