#!/usr/bin/env bash
# ctest: runs the fault suite's broker or network scenarios against a
# private RabbitMQ node of their own, which they may kill, freeze or cut
# off, and removes it (and the namespaces) however that ends.
#   private_broker.sh broker  FAULT_SUITE SERVICE_BINARY [REPORT_FILE]
#   private_broker.sh network FAULT_SUITE SERVICE_BINARY [REPORT_FILE]
# network: the node in one network namespace, the suite and its instances
# in another, a veth between them (10.231.0.1 and .2, addresses that exist
# only inside those two namespaces): nothing leaves them. Needs root; without
# it the test says SKIP (ctest's SKIP_RETURN_CODE 77), never a silent pass.
# Independent of the node scripts/test provides: it neither uses nor stops it.
set -euo pipefail
mode=$1; shift
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/rabbit.sh"
unset TERN_RABBIT_DIR TERN_RABBIT_NODE TERN_RABBIT_MGMT_URL TERN_CLUSTER_DIR TERN_AMQP_URL \
      TERN_RABBIT_NETNS TERN_RABBIT_HOST

ns_b="" ns_c=""
cleanup() {
    rabbit_stop || true
    local ns pid
    for ns in $ns_b $ns_c; do
        # What still runs in them was started here (the node's epmd, a
        # straggling instance): end it by pid, then the namespace.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

prefix=()
if [[ $mode == network ]]; then
    if [[ $EUID -ne 0 ]]; then
        echo "SKIP: the network faults need root (network namespaces, veth, iptables, tc); NOT RUN" >&2
        exit 77
    fi
    ns_b=tern-b-$$ ns_c=tern-c-$$
    if ! { ip netns add "$ns_b" && ip netns add "$ns_c" &&
           ip link add vb$$ netns "$ns_b" type veth peer name vc$$ netns "$ns_c"; }; then
        echo "SKIP: cannot make network namespaces and a veth here; NOT RUN" >&2
        exit 77
    fi
    ip -n "$ns_b" addr add 10.231.0.1/24 dev vb$$
    ip -n "$ns_c" addr add 10.231.0.2/24 dev vc$$
    for ns in "$ns_b" "$ns_c"; do ip -n "$ns" link set lo up; done
    ip -n "$ns_b" link set vb$$ up
    ip -n "$ns_c" link set vc$$ up
    export TERN_RABBIT_NETNS=$ns_b TERN_RABBIT_HOST=10.231.0.1
    export FAULT_VETH=vc$$ FAULT_NETNS_BROKER=$ns_b FAULT_VETH_BROKER=vb$$
    prefix=(ip netns exec "$ns_c")
fi

started=$SECONDS
rabbit_start
echo "private_broker: $mode: node up in $((SECONDS - started)) s at $TERN_RABBIT_URL" >&2
suite=$1; shift
rc=0
# Bounded well inside ctest's TIMEOUT, so the trap always gets to run.
timeout -k 10 240 "${prefix[@]}" "$suite" "--$mode" "$@" || rc=$?
if [[ $rc != 0 ]]; then   # the node's log goes with it: keep a copy
    logs=$(mktemp -d /tmp/tern-private-broker-logs.XXXXXX)
    cp -r "$TERN_RABBIT_DIR/log" "$logs/" 2>/dev/null || true
    echo "private_broker: failed ($rc); the node's log is in $logs" >&2
fi
exit "$rc"
