# shellcheck shell=bash
# Private, throw-away RabbitMQ nodes for tests and local runs.  Source me.
#
#   rabbit_start [--management]
#       Starts a node of our own: own node name, own free ports, own Erlang
#       cookie, all state in a fresh temp dir.  Never touches the system node
#       (rabbit@HOST, 5672/25672) nor other private nodes; only epmd (4369) is
#       shared.  The node has no guest user: it is deleted at start, and
#       tern-admin (tag administrator, every permission on /) made with a
#       generated password (scripts/lib/broker_users.sh).  Returns once the
#       node accepts AMQP, then exports:
#         TERN_AMQP_URL         amqp://tern-admin:PASSWORD@127.0.0.1:PORT/ (for
#                               tests and tooling; never print it)
#         TERN_RABBIT_URL       amqp://127.0.0.1:PORT/, no login: for processes
#                               given their own TERN_AMQP_USER and
#                               TERN_AMQP_PASSWORD_FILE (rabbit_add_users)
#         TERN_RABBIT_NODE      node name, e.g. tern-1234-5678@localhost
#         TERN_RABBIT_DIR       temp dir (node log: $TERN_RABBIT_DIR/log/)
#         TERN_RABBIT_MGMT_URL  http://127.0.0.1:MPORT/  (only with --management)
#       Passwords go to the credentials dir: TERN_RABBIT_CREDENTIALS if the
#       caller set it (scripts/up: .tern/credentials), else
#       $TERN_RABBIT_DIR/credentials, removed with the node.
#       On failure prints the node's log tail, cleans up, returns non-zero.
#   rabbit_stop
#       Stops the node named by TERN_RABBIT_DIR (graceful, then kill) and
#       removes the dir.  Safe to call twice, or after a failed start.
#   rabbit_ctl ARGS...
#       rabbitmqctl against the private node, e.g. rabbit_ctl list_queues -q name consumers
#       (-q drops the "Timeout: ..." / "Listing ..." header lines).  Needs only
#       TERN_RABBIT_DIR and TERN_RABBIT_NODE, so it also works in child processes.
#   rabbit_vm_pid
#       The pid of the private node's Erlang VM (beam.smp), e.g. for kill -STOP.
#   rabbit_kill9
#       kill -9 of the private node's Erlang VM: a crash.  Its data dir stays.
#   rabbit_restart
#       Starts the private node again after rabbit_kill9 (or a stop): same
#       name, ports and data dir, so what it had on disk (durable queues,
#       persistent messages) is back.  Returns once it accepts AMQP again.
#   rabbit_add_users ROLE:NAME...
#       Creates (or updates) broker users on the private node, or else on the
#       cluster of TERN_CLUSTER_DIR, with one rabbitmqctl import_definitions:
#       ROLE service (least privilege for service NAME), cli (a person's tern
#       CLI) or admin; see scripts/lib/broker_users.sh for what each may do.
#       Each password is generated into CREDENTIALS/NAME.password (mode 600;
#       reused if there), never printed, never on a command line.  Prints
#       the password files' paths, one a line, in order.
#   rabbit_add_service_user NAME [DIR]
#       One service user NAME (service.greeter, api.transaction); its
#       password file in DIR (default: the credentials dir), whose path it
#       prints.  A service runs as it with
#         TERN_AMQP_URL=$TERN_RABBIT_URL TERN_AMQP_USER=NAME TERN_AMQP_PASSWORD_FILE=<that path>
#
#   TLS only: with TERN_RABBIT_TLS_DIR=DIR (certificates tests/tls/make_certs.sh
#   made) set before rabbit_start, the node listens for amqps:// only, on
#   its port, and accepts the EXTERNAL mechanism (client certificate's CN);
#   TERN_AMQP_URL (and TERN_RABBIT_URL) are then amqps://...?cacertfile=DIR/ca.pem.
#   With TERN_RABBIT_TLS_PLAIN=1 too, it keeps its plain listener
#   (TERN_AMQP_URL) and adds TLS on another port (TERN_AMQPS_URL, and
#   TERN_RABBIT_TLS_URL without a login), e.g. to compare the two.
#
#   In a network namespace: with TERN_RABBIT_NETNS=NAME (a namespace the
#   caller made, loopback up) and TERN_RABBIT_HOST=ADDRESS (one of its
#   addresses) set before rabbit_start, the node runs inside NAME listening on
#   ADDRESS, TERN_AMQP_URL names ADDRESS, and rabbit_ctl and the rest run
#   inside NAME too (keep both variables exported for child processes).
#
# One node per shell (the TERN_* variables are the handle).  Works as root
# (the node runs as user rabbitmq, as Debian's wrappers would do) or as a
# normal user.  A fresh node takes ~5 s to start.
#
#   rabbit_cluster_start [N]
#       Starts a cluster of N (default 3) private nodes, each made like
#       rabbit_start's (own name, free ports, temp dir) with one Erlang cookie
#       shared by all; nodes 2..N join node 1; no guest, a tern-admin as
#       rabbit_start makes (credentials: TERN_RABBIT_CREDENTIALS, else
#       $TERN_CLUSTER_DIR/credentials).  Returns once all N run in one
#       cluster, then exports:
#         TERN_AMQP_URL         the nodes' URLs as tern-admin, comma-separated,
#                               node 1 first
#         TERN_RABBIT_URL       the same with no login
#         TERN_CLUSTER_DIR      temp dir; node I lives in $TERN_CLUSTER_DIR/I,
#                               its name in .../I/node and URL (no login) in .../I/url
#       Uses no TERN_RABBIT_* variable: a single node and a cluster can live
#       in one shell.  ~20 s on 2 cores.
#   rabbit_cluster_ctl I ARGS...
#       rabbitmqctl against node I (needs only TERN_CLUSTER_DIR).
#   rabbit_cluster_kill I
#       kill -9 of node I's Erlang VM: a crash, no goodbye to peers or clients.
#   rabbit_cluster_restart I
#       Starts node I again (after rabbit_cluster_kill) with its name, AMQP
#       port and data: durable queues and persistent messages survive.
#   rabbit_cluster_stop
#       Stops every node of TERN_CLUSTER_DIR and removes the dir.  Safe to
#       call twice, or after a failed start.

_RABBIT_BIN=/usr/lib/rabbitmq/bin   # the real scripts, not Debian's su wrappers
# shellcheck source=scripts/lib/broker_users.sh
source "$(dirname "${BASH_SOURCE[0]}")/broker_users.sh"

# _rabbit_prefix DIR: sets array _rabbit_cmd to a command prefix that runs
# with the node's private environment (HOME holds the node's own
# .erlang.cookie), as user rabbitmq when we are root.
_rabbit_prefix() {
    _rabbit_cmd=(env HOME="$1/home" ERL_CRASH_DUMP="$1/erl_crash.dump"
                 RABBITMQ_CONF_ENV_FILE="$1/rabbitmq-env.conf")
    [[ $EUID -ne 0 ]] || _rabbit_cmd=(setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "${_rabbit_cmd[@]}")
    [[ -z ${TERN_RABBIT_NETNS:-} ]] || _rabbit_cmd=(ip netns exec "$TERN_RABBIT_NETNS" "${_rabbit_cmd[@]}")
}
# _rabbit_as DIR CMD...: runs CMD that way, in DIR (Erlang wants to read its
# cwd, which user rabbitmq may not be allowed to, e.g. under /root).
_rabbit_as() { local _rabbit_cmd; _rabbit_prefix "$1"; (cd "$1" && shift && exec "${_rabbit_cmd[@]}" "$@"); }
# _rabbit_in_ns CMD...: runs CMD in TERN_RABBIT_NETNS, if set.
_rabbit_in_ns() {
    if [[ -n ${TERN_RABBIT_NETNS:-} ]]; then ip netns exec "$TERN_RABBIT_NETNS" "$@"; else "$@"; fi
}

# _rabbit_free_port: prints a random TCP port in 20000..31999 that nobody
# listens on (below the ephemeral range, so outgoing connections don't take it).
_rabbit_free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 12000))
        [[ $port == 25672 || " ${_rabbit_taken:-} " == *" $port "* ]] && continue
        (: <>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
        echo "$port"; return
    done
}

# _rabbit_port_open PORT: true if something accepts connections on it (at
# the node's address, in its namespace).
_rabbit_port_open() { _rabbit_in_ns bash -c ': <>"/dev/tcp/$1/$2"' sh "${TERN_RABBIT_HOST:-127.0.0.1}" "$1" 2>/dev/null; }

rabbit_ctl() {
    [[ -n ${TERN_RABBIT_DIR:-} && -n ${TERN_RABBIT_NODE:-} ]] || { echo "rabbit_ctl: no private node (call rabbit_start)" >&2; return 1; }
    _rabbit_as "$TERN_RABBIT_DIR" "$_RABBIT_BIN/rabbitmqctl" -n "$TERN_RABBIT_NODE" "$@"
}

# _rabbit_launch MGMT [NAME]: one attempt to start a node (TERN_RABBIT_DIR
# exists), named NAME-RANDOM@localhost (default NAME: tern-PID).
# Returns 0 when ready, 2 when a port was taken meanwhile (retry), 1 otherwise.
_rabbit_launch() {
    local mgmt=$1 _rabbit_taken=""
    local node="${2:-tern-$$}-$RANDOM@localhost" port dport
    port=$(_rabbit_free_port); _rabbit_taken+=" $port"
    dport=$(_rabbit_free_port); _rabbit_taken+=" $dport"
    rm -rf "$TERN_RABBIT_DIR/mnesia" "$TERN_RABBIT_DIR/log"
    _rabbit_boot "$mgmt" "$node" "$port" "$dport"
}

# _rabbit_boot MGMT NODE PORT DPORT: starts NODE in TERN_RABBIT_DIR on those
# ports, keeping whatever mnesia/ holds; returns as _rabbit_launch does.
_rabbit_boot() {
    local mgmt=$1 dir=$TERN_RABBIT_DIR node=$2 port=$3 dport=$4 mport=""
    mkdir -p "$dir/mnesia" "$dir/log"

    # Plugins: none, or the management UI on its own port (localhost only).
    : >"$dir/rabbitmq-env.conf"            # instead of /etc/rabbitmq/rabbitmq-env.conf
    : >"$dir/rabbitmq.conf"
    echo "[]." >"$dir/enabled_plugins"
    if [[ $mgmt == 1 ]]; then
        mport=$(_rabbit_free_port)
        echo "[rabbitmq_management]." >"$dir/enabled_plugins"
        printf 'management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = %s\n' "$mport" >"$dir/rabbitmq.conf"
    fi
    # TLS only (TERN_RABBIT_TLS_DIR: what tests/tls/make_certs.sh made): no
    # plain TCP listener; client certificates verified when offered, and
    # the EXTERNAL mechanism logs them in as their CN.
    if [[ -n ${TERN_RABBIT_TLS_DIR:-} ]]; then
        local tls=$TERN_RABBIT_TLS_DIR tport=$port
        if [[ ${TERN_RABBIT_TLS_PLAIN:-} == 1 ]]; then
            tport=$(_rabbit_free_port)
        else
            echo "listeners.tcp = none" >>"$dir/rabbitmq.conf"
        fi
        echo "$tport" >"$dir/tls_port"
        cat >>"$dir/rabbitmq.conf" <<EOF2
listeners.ssl.default = ${TERN_RABBIT_HOST:-127.0.0.1}:$tport
ssl_options.cacertfile = $tls/ca.pem
ssl_options.certfile = $tls/server.pem
ssl_options.keyfile = $tls/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
auth_mechanisms.1 = PLAIN
auth_mechanisms.2 = EXTERNAL
ssl_cert_login_from = common_name
EOF2
        if [[ $mgmt == 1 ]]; then
            echo "[rabbitmq_management,rabbitmq_auth_mechanism_ssl]." >"$dir/enabled_plugins"
        else
            echo "[rabbitmq_auth_mechanism_ssl]." >"$dir/enabled_plugins"
        fi
    fi
    [[ $EUID -ne 0 ]] || chown -R rabbitmq:rabbitmq "$dir"
    echo "$node $port $dport $mport" >"$dir/launch"   # for rabbit_restart
    _rabbit_run "$node" "$port" "$dport" "$mport"
}

# _rabbit_startups LOG: how many times the node logged that it was up.
_rabbit_startups() { local n; n=$(grep -cs 'Server startup complete' "$1") || true; echo "${n:-0}"; }

# _rabbit_run NODE PORT DPORT MPORT: starts the node of TERN_RABBIT_DIR as
# configured there and waits until it is up (see _rabbit_launch's returns).
_rabbit_run() {
    local node=$1 port=$2 dport=$3 mport=$4 dir=$TERN_RABBIT_DIR started
    started=$(_rabbit_startups "$dir/log/$node.log")   # a restart's log has the last one's
    # Own session (setsid), so Ctrl-C on the terminal doesn't reach the node
    # and rabbit_stop can kill the whole process group; its pid = the pgid.
    (
        cd "$dir" || exit
        export RABBITMQ_NODENAME=$node RABBITMQ_DIST_PORT=$dport \
            RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" \
            RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
            RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config" \
            RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
        # The plain listener, unless TLS only (rabbitmq.conf has the TLS one).
        [[ -n ${TERN_RABBIT_TLS_DIR:-} && ${TERN_RABBIT_TLS_PLAIN:-} != 1 ]] ||
            export RABBITMQ_NODE_IP_ADDRESS=${TERN_RABBIT_HOST:-127.0.0.1} RABBITMQ_NODE_PORT=$port
        local _rabbit_cmd; _rabbit_prefix "$dir"
        exec setsid sh -c 'echo $$ >server.pid; exec "$@"' sh \
            "${_rabbit_cmd[@]}" "$_RABBIT_BIN/rabbitmq-server"
    ) </dev/null >>"$dir/server.log" 2>&1 &
    export TERN_RABBIT_NODE=$node

    # Wait (max 60 s) for the node to log that it is up (all listeners and
    # plugins started); bail out if it died.  (Not just "port open": someone
    # else may have grabbed the port since we picked it.)
    local deadline=$((SECONDS + 60)) pid=""
    until (( $(_rabbit_startups "$dir/log/$node.log") > started )); do
        [[ -n $pid ]] || pid=$(cat "$dir/server.pid" 2>/dev/null || true)
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            grep -qs eaddrinuse "$dir/server.log" "$dir/log/"*.log && return 2
            echo "rabbit_start: node $node exited during startup" >&2; return 1
        fi
        (( SECONDS < deadline )) || { echo "rabbit_start: node $node not ready after 60 s" >&2; return 1; }
        sleep 0.2
    done
    rabbit_ctl await_startup --timeout 30 >/dev/null || return 1   # CLI + cookie work
    _rabbit_port_open "$port" || { echo "rabbit_start: AMQP port $port not open" >&2; return 1; }

    export TERN_RABBIT_URL="amqp://${TERN_RABBIT_HOST:-127.0.0.1}:$port/"
    if [[ -n ${TERN_RABBIT_TLS_DIR:-} ]]; then
        export TERN_RABBIT_TLS_URL="amqps://${TERN_RABBIT_HOST:-127.0.0.1}:$(cat "$dir/tls_port")/?cacertfile=$TERN_RABBIT_TLS_DIR/ca.pem"
        [[ ${TERN_RABBIT_TLS_PLAIN:-} == 1 ]] || TERN_RABBIT_URL=$TERN_RABBIT_TLS_URL
    fi
    [[ -z $mport ]] || export TERN_RABBIT_MGMT_URL="http://127.0.0.1:$mport/"
}

# _rabbit_users_ctl ARGS...: rabbitmqctl against the private node, or else
# node 1 of TERN_CLUSTER_DIR's cluster (users are cluster-wide).
_rabbit_users_ctl() {
    if [[ -n ${TERN_RABBIT_DIR:-} && -n ${TERN_RABBIT_NODE:-} ]]; then rabbit_ctl "$@"
    elif [[ -n ${TERN_CLUSTER_DIR:-} ]]; then rabbit_cluster_ctl 1 "$@"
    else echo "rabbit_add_users: no private node or cluster (call rabbit_start)" >&2; return 1
    fi
}

# _rabbit_credentials: the credentials dir of the node or cluster.
_rabbit_credentials() {
    if [[ -n ${TERN_RABBIT_CREDENTIALS:-} ]]; then echo "$TERN_RABBIT_CREDENTIALS"
    elif [[ -n ${TERN_RABBIT_DIR:-} && -n ${TERN_RABBIT_NODE:-} ]]; then echo "$TERN_RABBIT_DIR/credentials"
    else echo "${TERN_CLUSTER_DIR:?rabbit_add_users: no private node or cluster}/credentials"
    fi
}

rabbit_add_users() {
    local dir defs out spec
    dir=$(_rabbit_credentials) || return 1
    # The definitions hold salted hashes only; rabbitmqctl reads them on stdin.
    defs=$(tern_broker_definitions "$dir" "$@") || return 1
    out=$(_rabbit_users_ctl import_definitions --format json <<<"$defs" 2>&1) ||
        { echo "rabbit_add_users: import_definitions failed: $out" >&2; return 1; }
    for spec in "$@"; do echo "$dir/${spec#*:}.password"; done
}

rabbit_add_service_user() {
    [[ -n ${1:-} ]] || { echo "usage: rabbit_add_service_user NAME [DIR]" >&2; return 1; }
    if [[ -n ${2:-} ]]; then TERN_RABBIT_CREDENTIALS=$2 rabbit_add_users "service:$1"
    else rabbit_add_users "service:$1"
    fi
}

# _rabbit_on_cluster CMD...: CMD with the cluster's users and credentials,
# even if this shell also has a private node.
_rabbit_on_cluster() { local TERN_RABBIT_DIR="" TERN_RABBIT_NODE=""; "$@"; }

# _rabbit_secure URL...: no guest, a tern-admin; exports TERN_AMQP_URL,
# the URLs (no login) logged in as tern-admin.
_rabbit_secure() {
    local file url urls=""
    _rabbit_users_ctl delete_user guest >/dev/null || { echo "rabbit_start: cannot delete user guest" >&2; return 1; }
    file=$(rabbit_add_users admin:tern-admin) || return 1
    for url in "$@"; do urls+="${urls:+,}${url/:\/\//://tern-admin:$(<"$file")@}"; done
    export TERN_AMQP_URL=$urls
    # A node with a TLS listener beside its plain one: that URL too.
    [[ -z ${TERN_RABBIT_TLS_URL:-} ]] || export TERN_AMQPS_URL=${TERN_RABBIT_TLS_URL/:\/\//://tern-admin:$(<"$file")@}
}

rabbit_vm_pid() {
    local pid
    pid=$(cat "${TERN_RABBIT_DIR:-?}/server.pid" 2>/dev/null) || { echo "rabbit_vm_pid: no private node" >&2; return 1; }
    # The VM is in the node's own process group (_rabbit_run's setsid).
    pgrep -g "$pid" -x beam.smp || { echo "rabbit_vm_pid: the node's VM is not running" >&2; return 1; }
}

rabbit_kill9() {
    local vm i
    vm=$(rabbit_vm_pid) || return 1
    kill -KILL "$vm"
    for ((i = 0; i < 100; i++)); do kill -0 "$vm" 2>/dev/null || break; sleep 0.1; done
    ! kill -0 "$vm" 2>/dev/null || { echo "rabbit_kill9: VM $vm still there after 10 s" >&2; return 1; }
    # What else ran in its group ends with it (the start script waits on it).
    local pid; pid=$(cat "$TERN_RABBIT_DIR/server.pid" 2>/dev/null || true)
    for ((i = 0; i < 100; i++)); do [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
}

rabbit_restart() {
    local node port dport mport
    read -r node port dport mport <"${TERN_RABBIT_DIR:-?}/launch" 2>/dev/null || { echo "rabbit_restart: no private node" >&2; return 1; }
    rm -f "$TERN_RABBIT_DIR/server.pid"
    _rabbit_run "$node" "$port" "$dport" "$mport"
}

rabbit_start() {
    local mgmt=0 rc=0
    [[ ${1:-} != --management ]] || mgmt=1
    if [[ -n ${TERN_RABBIT_DIR:-} && -d ${TERN_RABBIT_DIR:-} ]]; then
        echo "rabbit_start: a node is already running ($TERN_RABBIT_DIR)" >&2; return 1
    fi
    export TERN_RABBIT_DIR
    TERN_RABBIT_DIR=$(mktemp -d /tmp/tern-rabbit.XXXXXX) || return 1
    mkdir -p "$TERN_RABBIT_DIR/home"
    # A cookie of our own: CLI tools reach only this node, with no dependence
    # on /var/lib/rabbitmq/.erlang.cookie.
    od -An -N20 -tx1 /dev/urandom | tr -dc 0-9a-f >"$TERN_RABBIT_DIR/home/.erlang.cookie"
    chmod 400 "$TERN_RABBIT_DIR/home/.erlang.cookie"

    for _ in 1 2 3; do     # retry only if another process grabbed a port
        rc=0; _rabbit_launch "$mgmt" || rc=$?
        [[ $rc == 2 ]] || break
        _rabbit_kill
    done
    [[ $rc != 0 ]] || _rabbit_secure "$TERN_RABBIT_URL" || rc=$?
    if [[ $rc != 0 ]]; then
        echo "----- $TERN_RABBIT_DIR/server.log (tail) -----" >&2
        tail -n 20 "$TERN_RABBIT_DIR/server.log" >&2 2>/dev/null || true
        echo "----- node log (tail) -----" >&2
        tail -n 40 "$TERN_RABBIT_DIR/log/"*.log >&2 2>/dev/null || true
        rabbit_stop
        return 1
    fi
}

# _rabbit_kill: stops the node process group, gracefully if possible.
_rabbit_kill() {
    local dir=$TERN_RABBIT_DIR pid i
    # Launched a moment ago (server.log exists)? Its pid file may be on its way.
    for ((i = 0; i < 20; i++)); do
        [[ -e $dir/server.log && ! -s $dir/server.pid ]] || break; sleep 0.1
    done
    pid=$(cat "$dir/server.pid" 2>/dev/null || true)
    [[ -n $pid ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        if ! _rabbit_as "$dir" timeout 20 "$_RABBIT_BIN/rabbitmqctl" -n "${TERN_RABBIT_NODE:-?}" stop >/dev/null 2>&1; then
            kill -TERM "$pid" 2>/dev/null || true    # the wrapper script stops the VM
        fi
        for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        # Still there after 10 s: kill its whole process group.
        ! kill -0 "$pid" 2>/dev/null || kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$dir/server.pid"
}

rabbit_stop() {
    if [[ -n ${TERN_RABBIT_DIR:-} && -d ${TERN_RABBIT_DIR:-} ]]; then
        _rabbit_kill
        rm -rf "$TERN_RABBIT_DIR"
    fi
    unset TERN_AMQP_URL TERN_AMQPS_URL TERN_RABBIT_URL TERN_RABBIT_TLS_URL TERN_RABBIT_NODE TERN_RABBIT_DIR TERN_RABBIT_MGMT_URL
    return 0
}

# _rabbit_cluster_node I: starts node I of the cluster in $TERN_CLUSTER_DIR/I
# (cookie in place) and writes its name and URL there.  The TERN_RABBIT_*
# variables _rabbit_launch sets are local to this function.
_rabbit_cluster_node() {
    local TERN_RABBIT_DIR=$TERN_CLUSTER_DIR/$1 TERN_RABBIT_NODE="" TERN_RABBIT_URL="" rc=0
    for _ in 1 2 3; do     # retry only if another process grabbed a port
        rc=0; _rabbit_launch 0 "tern-$$-n$1" || rc=$?
        [[ $rc == 2 ]] || break
        _rabbit_kill
    done
    [[ $rc == 0 ]] || { echo "rabbit_cluster_start: node $1 did not start" >&2; return 1; }
    echo "$TERN_RABBIT_NODE" >"$TERN_RABBIT_DIR/node"
    echo "$TERN_RABBIT_URL" >"$TERN_RABBIT_DIR/url"
}

rabbit_cluster_ctl() {
    [[ -n ${TERN_CLUSTER_DIR:-} && -s ${TERN_CLUSTER_DIR:-}/${1:-x}/node ]] || { echo "rabbit_cluster_ctl: no node '${1:-}' (call rabbit_cluster_start)" >&2; return 1; }
    local dir=$TERN_CLUSTER_DIR/$1; shift
    _rabbit_as "$dir" "$_RABBIT_BIN/rabbitmqctl" -n "$(cat "$dir/node")" "$@"
}

rabbit_cluster_start() {
    local n=${1:-3} i cookie urls="" pids=() failed=0
    if [[ -n ${TERN_CLUSTER_DIR:-} && -d ${TERN_CLUSTER_DIR:-} ]]; then
        echo "rabbit_cluster_start: a cluster is already running ($TERN_CLUSTER_DIR)" >&2; return 1
    fi
    export TERN_CLUSTER_DIR
    TERN_CLUSTER_DIR=$(mktemp -d /tmp/tern-cluster.XXXXXX) || return 1
    [[ $EUID -ne 0 ]] || chown rabbitmq:rabbitmq "$TERN_CLUSTER_DIR"   # the nodes look inside
    cookie=$(od -An -N20 -tx1 /dev/urandom | tr -dc 0-9a-f)
    for ((i = 1; i <= n; i++)); do
        mkdir -p "$TERN_CLUSTER_DIR/$i/home"
        printf '%s' "$cookie" >"$TERN_CLUSTER_DIR/$i/home/.erlang.cookie"
        chmod 400 "$TERN_CLUSTER_DIR/$i/home/.erlang.cookie"
    done
    # All nodes boot at once (each waits for its own start-up), then 2..N
    # join node 1 one after the other.
    for ((i = 1; i <= n; i++)); do _rabbit_cluster_node "$i" & pids+=($!); done
    for i in "${pids[@]}"; do wait "$i" || failed=1; done
    local first; first=$(cat "$TERN_CLUSTER_DIR/1/node" 2>/dev/null) || true
    for ((i = 2; i <= n && failed == 0; i++)); do
        { rabbit_cluster_ctl "$i" stop_app && rabbit_cluster_ctl "$i" join_cluster "$first" &&
          rabbit_cluster_ctl "$i" start_app; } >"$TERN_CLUSTER_DIR/$i/join.log" 2>&1 ||
            { echo "rabbit_cluster_start: node $i could not join $first:" >&2; cat "$TERN_CLUSTER_DIR/$i/join.log" >&2; failed=1; }
    done
    if ((failed == 0)) && ! rabbit_cluster_ctl 1 await_online_nodes "$n" --timeout 60 >/dev/null 2>&1; then
        echo "rabbit_cluster_start: the cluster did not reach $n running nodes" >&2; failed=1
    fi
    for ((i = 1; i <= n && failed == 0; i++)); do urls+="${urls:+,}$(cat "$TERN_CLUSTER_DIR/$i/url")"; done
    # shellcheck disable=SC2086  # (the URLs hold no spaces)
    ((failed)) || _rabbit_on_cluster _rabbit_secure ${urls//,/ } || failed=1
    if ((failed)); then
        for ((i = 1; i <= n; i++)); do
            echo "----- node $i log (tail) -----" >&2
            tail -n 20 "$TERN_CLUSTER_DIR/$i/log/"*.log >&2 2>/dev/null || tail -n 20 "$TERN_CLUSTER_DIR/$i/server.log" >&2 2>/dev/null || true
        done
        rabbit_cluster_stop
        return 1
    fi
    export TERN_RABBIT_URL=$urls
}

rabbit_cluster_kill() {
    local dir=${TERN_CLUSTER_DIR:-}/${1:-x} pid vm i
    pid=$(cat "$dir/server.pid" 2>/dev/null) || { echo "rabbit_cluster_kill: no node '${1:-}'" >&2; return 1; }
    # The VM is in the node's own process group (rabbit_start's setsid).
    vm=$(pgrep -g "$pid" -x beam.smp) || { echo "rabbit_cluster_kill: node $1 is not running" >&2; return 1; }
    kill -KILL "$vm"
    for ((i = 0; i < 100; i++)); do kill -0 "$vm" 2>/dev/null || return 0; sleep 0.1; done
    echo "rabbit_cluster_kill: node $1 (pid $vm) still there after 10 s" >&2; return 1
}

# rabbit_cluster_restart I: starts node I again after rabbit_cluster_kill,
# with its name, AMQP port and data directory (durable queues and
# persistent messages survive); returns once it is up.
rabbit_cluster_restart() {
    local TERN_RABBIT_DIR=${TERN_CLUSTER_DIR:-}/${1:-x} TERN_RABBIT_NODE="" TERN_RABBIT_URL="" node url port _rabbit_taken=""
    node=$(cat "$TERN_RABBIT_DIR/node" 2>/dev/null) || { echo "rabbit_cluster_restart: no node '${1:-}'" >&2; return 1; }
    url=$(cat "$TERN_RABBIT_DIR/url"); port=${url##*:}; port=${port%/}
    # The old log holds the first start's "startup complete": set it aside.
    # And the dead VM's pid, which the start-up wait would find first.
    rm -f "$TERN_RABBIT_DIR/server.pid"
    [[ ! -e $TERN_RABBIT_DIR/log/$node.log ]] || mv "$TERN_RABBIT_DIR/log/$node.log" "$TERN_RABBIT_DIR/log/$node.log.$(date +%s%N)"
    _rabbit_boot 0 "$node" "$port" "$(_rabbit_free_port)" ||
        { echo "rabbit_cluster_restart: node $1 did not start again" >&2; tail -n 20 "$TERN_RABBIT_DIR/server.log" >&2; return 1; }
}

rabbit_cluster_stop() {
    local d pids=()
    if [[ -n ${TERN_CLUSTER_DIR:-} && -d ${TERN_CLUSTER_DIR:-} ]]; then
        for d in "$TERN_CLUSTER_DIR"/*/; do   # all at once: each stop takes seconds
            [[ -e $d/server.log ]] || continue
            ( TERN_RABBIT_DIR=${d%/} TERN_RABBIT_NODE=$(cat "$d/node" 2>/dev/null || echo '?'); _rabbit_kill ) &
            pids+=($!)
        done
        for d in "${pids[@]}"; do wait "$d" || true; done
        rm -rf "$TERN_CLUSTER_DIR"
    fi
    unset TERN_CLUSTER_DIR TERN_AMQP_URL TERN_RABBIT_URL
    return 0
}
