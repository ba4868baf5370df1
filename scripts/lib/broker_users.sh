# shellcheck shell=bash
# tern's broker users: one per service with least-privilege permissions, a
# user for people's tern CLI, an administrator for tests and tooling. Source
# me; needs bash, coreutils and flock (Debian's and the rabbitmq image's).
#
# The one place that says what a broker user may do. scripts/lib/rabbit.sh
# (scripts/up, scripts/test and its tests, scripts/cluster) and
# deploy/broker-users.sh (docker compose's first-run step) both call
#
#   tern_broker_definitions DIR ROLE:NAME...
#       Prints RabbitMQ definitions (JSON, for `rabbitmqctl import_definitions`
#       on stdin) that create or update each user NAME with its ROLE's
#       permissions on vhost "/":
#         service  NAME is a service (service.greeter, api.transaction, or a
#                  test's own name): least privilege, below
#         cli      a person's tern CLI (call, describe, bench, publish, tail,
#                  dlq): its own server-named queues, any event, reading
#                  every *.dead-letter queue, no service's request queue
#         admin    tag administrator (the management UI), every permission
#       Each password is in DIR/NAME.password (DIR mode 700, file mode 600):
#       reused when the file exists, else made from /dev/urandom (32 hex
#       digits). Only its salted SHA-256 hash goes into the definitions, so
#       making a user puts its password in no process's argv, environment
#       or output.
#       Concurrent calls on one DIR are serialised (flock on DIR/.lock).
#       The definitions also hold the policy tern-dead-letters, which bounds
#       every *.dead-letter queue: TERN_DEAD_LETTER_MAX_LENGTH messages
#       (default 100000) and TERN_DEAD_LETTER_MAX_BYTES (default 268435456,
#       256 MiB), past which the queue refuses new copies (overflow
#       reject-publish; docs/reliability.md says what tern does then).
#       Priority 0: a policy of your own matching those queues replaces it.
#
#   tern_service_of_dir FOLDER
#       The service a folder under services/ holds, as `tern new` names them:
#       greeter -> service.greeter, transaction-api -> api.transaction.
#
# A service user's permissions, from what tern declares (platform/src/
# transport/amqp/topology.h), with S its name regex-escaped:
#   configure  ^S(\..*)?$ (its request queue, .overflow, .dead-letter, and its
#              subscriptions' .on.*, .retry.N, .dead-letter, .suspects),
#              amq.gen-* (the server-named queue of cancel notices) and the
#              exchanges every process declares: tern.events, tern.traces,
#              tern.cancel
#   write      its own queues and amq.gen-* (queue.bind writes to the queue),
#              amq.default (requests, replies, its own retries and dead
#              letters) and tern.events, tern.traces, tern.cancel (events,
#              spans, cancel notices)
#   read       its own queues, amq.gen-*, and the exchanges it binds from:
#              tern.events, tern.cancel, plus any its folder's broker.conf
#              names in reads=. Direct reply-to needs nothing more: RabbitMQ
#              checks no permission to consume amq.rabbitmq.reply-to, and a
#              reply is a publish to amq.default (tried: cli_test.sh passes
#              without amq.rabbitmq.reply-to in read; without amq.gen-* in
#              write no service can bind its cancel notices and none starts)
#   topic      on tern.events it may publish only routing keys ^P\. where P
#              is its proto package (service.X: X, api.X: X_api, another
#              name: the name itself), or what broker.conf says in events=;
#              it may bind any pattern
# services/<folder>/broker.conf (optional) overrides, one key=value a line:
#   events=<regex>      the routing keys it may publish on tern.events (no spaces)
#   reads=<exchange>... exchanges beyond tern.events and tern.cancel it binds
#                       queues to (service.trace: tern.traces)
# Any user with write on amq.default can put a message into any queue by its
# name: that is what verified callers are for (docs/security.md).

_TERN_USERS_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
_TERN_EXCHANGES='tern\.(events|traces|cancel)'

tern_service_of_dir() {
    case $1 in
        *-api) echo "api.${1%-api}" ;;
        *) echo "service.$1" ;;
    esac
}

# _tern_dir_of_service NAME: the folder under services/ NAME would live in.
_tern_dir_of_service() {
    case $1 in
        service.*) echo "${1#service.}" ;;
        api.*) echo "${1#api.}-api" ;;
        *) echo "" ;;
    esac
}

# _tern_escape TEXT: TEXT as a literal in a regex (names hold [A-Za-z0-9._-]).
_tern_escape() { printf '%s' "${1//./\\.}"; }

# _tern_json TEXT: TEXT as a JSON string.
_tern_json() { local s=${1//\\/\\\\}; printf '"%s"' "${s//\"/\\\"}"; }

# _tern_conf NAME KEY: KEY's value in NAME's services/<folder>/broker.conf.
_tern_conf() {
    local dir file key value
    dir=$(_tern_dir_of_service "$1")
    file=$_TERN_USERS_LIB/../../services/$dir/broker.conf
    [[ -n $dir && -f $file ]] || return 0
    while IFS='=' read -r key value; do
        key=${key//[[:space:]]/}
        [[ $key == "$2" ]] || continue
        value=${value#"${value%%[![:space:]]*}"}
        printf '%s' "${value%"${value##*[![:space:]]}"}"
        return 0
    done < <(grep -v '^[[:space:]]*#' "$file")
}

# _tern_unhex HEX: the bytes HEX spells.
_tern_unhex() {
    local hex=$1 i
    for ((i = 0; i < ${#hex}; i += 2)); do printf '%b' "\\x${hex:i:2}"; done
}

# _tern_password_hash FILE: RabbitMQ's rabbit_password_hashing_sha256 of the
# password in FILE: base64(salt + SHA-256(salt + password)), a 4-byte salt.
_tern_password_hash() {
    local salt digest
    salt=$(od -An -N4 -tx1 /dev/urandom | tr -dc 0-9a-f)
    digest=$({ _tern_unhex "$salt"; printf '%s' "$(<"$1")"; } | sha256sum | cut -c1-64)
    _tern_unhex "$salt$digest" | base64 -w0
}

# _tern_password_file DIR NAME: DIR/NAME.password, made if missing; its path.
_tern_password_file() {
    local file=$1/$2.password
    if [[ ! -s $file ]]; then
        (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -dc 0-9a-f >"$file.new" && echo >>"$file.new" &&
            mv "$file.new" "$file") || return 1
    fi
    printf '%s' "$file"
}

# _tern_permissions ROLE NAME: "CONFIGURE WRITE READ TOPIC_WRITE" (regexes
# without spaces) of NAME in ROLE.
_tern_permissions() {
    local role=$1 name=$2 s x events reads extra="" r pkg
    case $role in
        admin) echo '.* .* .* .*' ;;
        cli)
            x=$_TERN_EXCHANGES
            echo "^(amq\\.gen-.*|$x)\$ ^(amq\\.gen-.*|amq\\.default|$x)\$" \
                "^(amq\\.gen-.*|tern\\.(events|cancel)|.*\\.dead-letter)\$ .*"
            ;;
        service)
            s=$(_tern_escape "$name") x=$_TERN_EXCHANGES
            case $name in
                service.*) pkg=${name#service.} ;;
                api.*) pkg=${name#api.}_api ;;
                *) pkg=$name ;;
            esac
            events=$(_tern_conf "$name" events)
            [[ -n $events ]] || events="^$(_tern_escape "$pkg")\\."
            reads=$(_tern_conf "$name" reads)
            for r in $reads; do extra+="|$(_tern_escape "$r")"; done
            echo "^($s(\\..*)?|amq\\.gen-.*|$x)\$ ^($s(\\..*)?|amq\\.gen-.*|amq\\.default|$x)\$" \
                "^($s(\\..*)?|amq\\.gen-.*|tern\\.(events|cancel)$extra)\$ $events"
            ;;
        *) echo "tern_broker_definitions: unknown role '$role' (service, cli or admin)" >&2; return 1 ;;
    esac
}

tern_broker_definitions() {
    local dir=$1 spec role name file hash users="" perms="" topics="" configure write read topic tags lock policy
    shift
    [[ -n $dir ]] || { echo "tern_broker_definitions: no credentials directory" >&2; return 1; }
    (umask 077 && mkdir -p "$dir") || return 1
    chmod 700 "$dir" || return 1
    exec {lock}>>"$dir/.lock" && flock "$lock" || return 1
    for spec in "$@"; do
        role=${spec%%:*} name=${spec#*:}
        if [[ $spec != *:* || ! $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]]; then
            echo "tern_broker_definitions: '$spec' is not ROLE:NAME (NAME of [A-Za-z0-9._-])" >&2
            exec {lock}>&-; return 1
        fi
        read -r configure write read topic < <(_tern_permissions "$role" "$name")
        if [[ -z $topic ]] || ! file=$(_tern_password_file "$dir" "$name") || ! hash=$(_tern_password_hash "$file"); then
            exec {lock}>&-; return 1
        fi
        tags='[]'
        [[ $role != admin ]] || tags='["administrator"]'
        users+="${users:+,}{\"name\":$(_tern_json "$name"),\"password_hash\":\"$hash\",\"hashing_algorithm\":\"rabbit_password_hashing_sha256\",\"tags\":$tags}"
        perms+="${perms:+,}{\"user\":$(_tern_json "$name"),\"vhost\":\"/\",\"configure\":$(_tern_json "$configure"),\"write\":$(_tern_json "$write"),\"read\":$(_tern_json "$read")}"
        [[ $topic == '.*' ]] ||
            topics+="${topics:+,}{\"user\":$(_tern_json "$name"),\"vhost\":\"/\",\"exchange\":\"tern.events\",\"write\":$(_tern_json "$topic"),\"read\":\".*\"}"
    done
    exec {lock}>&-
    policy=$(_tern_dead_letter_policy) || return 1
    printf '{"users":[%s],"permissions":[%s],"topic_permissions":[%s],"policies":[%s]}\n' \
        "$users" "$perms" "$topics" "$policy"
}

# _tern_dead_letter_policy: the tern-dead-letters policy, as a definition.
_tern_dead_letter_policy() {
    local length=${TERN_DEAD_LETTER_MAX_LENGTH:-100000} bytes=${TERN_DEAD_LETTER_MAX_BYTES:-268435456}
    if [[ ! $length =~ ^[1-9][0-9]{0,9}$ || ! $bytes =~ ^[1-9][0-9]{0,15}$ ]]; then
        echo "tern_broker_definitions: TERN_DEAD_LETTER_MAX_LENGTH and TERN_DEAD_LETTER_MAX_BYTES must be" \
            "positive whole numbers" >&2
        return 1
    fi
    printf '{"vhost":"/","name":"tern-dead-letters","pattern":"\\\\.dead-letter$","apply-to":"queues",'
    printf '"priority":0,"definition":{"max-length":%s,"max-length-bytes":%s,"overflow":"reject-publish"}}' \
        "$length" "$bytes"
}
