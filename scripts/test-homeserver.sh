#!/usr/bin/env bash
# Real-homeserver test harness for mxkeys: runs a throw-away Synapse on
# 127.0.0.1 (SQLite, random free port, rate limits opened wide).
#
#   scripts/test-homeserver.sh start [DIR]
#   scripts/test-homeserver.sh stop [DIR]
#   scripts/test-homeserver.sh register USER PASSWORD [DIR]
#   scripts/test-homeserver.sh run [DIR] -- CMD...
#
# See scripts/README.md for the env-file contract and environment variables.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd -P)"
SYNAPSE_VERSION="${SYNAPSE_VERSION:-1.163.2}"
START_TIMEOUT="${SYNAPSE_START_TIMEOUT:-60}"
STOP_GRACE=10
TIE_TO_PARENT=0

# Used by `run`: set PR_SET_PDEATHSIG=SIGTERM, then exec synapse.
# argv: PARENT_PID CONFIG
PDEATHSIG_PY='
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(1, int(signal.SIGTERM), 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
    sys.exit("prctl(PR_SET_PDEATHSIG) failed: errno %d" % ctypes.get_errno())
if os.getppid() != int(sys.argv[1]):
    sys.exit("parent exited before synapse started")
os.execv(sys.executable, [sys.executable, "-m", "synapse.app.homeserver", "-c", sys.argv[2]])
'

log() { printf 'test-homeserver: %s\n' "$*" >&2; }
die() { printf 'test-homeserver: error: %s\n' "$*" >&2; exit 1; }

usage() {
    cat >&2 <<'EOF'
usage: scripts/test-homeserver.sh start [DIR]
       scripts/test-homeserver.sh stop [DIR]
       scripts/test-homeserver.sh register USER PASSWORD [DIR]
       scripts/test-homeserver.sh run [DIR] -- CMD [ARGS...]

DIR defaults to $MXKEYS_SYNAPSE_DIR, else <repo>/.synapse.
EOF
    exit 2
}

# Absolute, symlink-free path for DIR (created if missing when $2 = create).
resolve_dir() {
    local d="${1:-${MXKEYS_SYNAPSE_DIR:-$REPO_ROOT/.synapse}}"
    if [[ "${2:-}" == create ]]; then
        mkdir -p "$d" || die "cannot create $d"
    fi
    if [[ -d "$d" ]]; then
        (cd "$d" && pwd -P)
    else
        # Not created: return it as an absolute path anyway.
        case "$d" in /*) printf '%s\n' "$d" ;; *) printf '%s/%s\n' "$PWD" "$d" ;; esac
    fi
}

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

# ---------------------------------------------------------------- processes

# True if PID is a live (non-zombie) process.
pid_alive() {
    local pid="$1" state
    [[ -r "/proc/$pid/stat" ]] || return 1
    # Field 3 of /proc/PID/stat is the state; the comm field (2) may contain
    # spaces, so strip through the last ')'.
    state="$(sed -e 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
    [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# True if PID is a live Synapse started by this script for DIR.
pid_is_our_synapse() {
    local pid="$1" dir="$2" cmdline
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    pid_alive "$pid" || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *synapse.app.homeserver* && "$cmdline" == *"$dir/run-"*homeserver.yaml* ]]
}

# SIGTERM, wait up to STOP_GRACE seconds, then SIGKILL. Only ever signals PID.
terminate_pid() {
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < STOP_GRACE * 10; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    log "synapse (pid $pid) still running after ${STOP_GRACE}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    log "warning: pid $pid did not exit after SIGKILL"
    return 1
}

# ---------------------------------------------------------------- install

venv_synapse_version() {
    "$1/bin/python" - <<'EOF' 2>/dev/null
import importlib.metadata as m
print(m.version("matrix-synapse"))
EOF
}

ensure_venv() {
    local venv="$1" have t0
    if [[ -x "$venv/bin/python" ]]; then
        have="$(venv_synapse_version "$venv" || true)"
        if [[ "$have" == "$SYNAPSE_VERSION" ]]; then
            return 0
        fi
    fi
    t0="$(now)"
    if [[ ! -x "$venv/bin/python" ]]; then
        log "creating venv $venv"
        python3 -m venv "$venv" || die "python3 -m venv $venv failed"
    fi
    log "installing matrix-synapse==$SYNAPSE_VERSION into $venv (takes about a minute)"
    if ! "$venv/bin/python" -m pip install --quiet --no-cache-dir --disable-pip-version-check \
        "matrix-synapse==$SYNAPSE_VERSION" >&2; then
        die "pip install matrix-synapse==$SYNAPSE_VERSION failed (see pip output above)"
    fi
    have="$(venv_synapse_version "$venv" || true)"
    [[ "$have" == "$SYNAPSE_VERSION" ]] \
        || die "after install, venv reports matrix-synapse '${have:-<none>}', expected $SYNAPSE_VERSION"
    log "installed matrix-synapse==$SYNAPSE_VERSION in $(elapsed "$t0")s"
}

# Serialise installs into one venv (SYNAPSE_VENV may be shared between DIRs).
ensure_venv_locked() {
    local venv="$1"
    mkdir -p "$(dirname "$venv")"
    if command -v flock >/dev/null 2>&1; then
        (
            flock 8 || die "cannot lock $venv.lock"
            ensure_venv "$venv"
        ) 8>"$venv.lock"
    else
        ensure_venv "$venv"
    fi
}

# ---------------------------------------------------------------- config

free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

random_hex() { python3 -c 'import secrets; print(secrets.token_hex(32))'; }

write_config() {
    local venv="$1" run="$2" port="$3" secret="$4"
    local strict="${SYNAPSE_STRICT_RATELIMITS:-0}"

    "$venv/bin/python" - "$run/signing.key" <<'EOF' || die "cannot generate signing key"
import sys
import signedjson.key
key = signedjson.key.generate_signing_key("a_test")
with open(sys.argv[1], "w") as f:
    signedjson.key.write_signing_keys(f, [key])
EOF

    cat >"$run/log.config" <<EOF
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
filters:
  context:
    (): synapse.logging.context.LoggingContextFilter
    request: ""
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filters: [context]
    filename: "$run/homeserver.log"
    encoding: utf8
loggers:
  synapse.storage.SQL:
    level: INFO
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
EOF

    cat >"$run/homeserver.yaml" <<EOF
# Generated by scripts/test-homeserver.sh -- throw-away test server.
server_name: "localhost"
public_baseurl: "http://127.0.0.1:$port/"
pid_file: "$run/homeserver.pid"
listeners:
  - port: $port
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: "$run/homeserver.db"
log_config: "$run/log.config"
media_store_path: "$run/media_store"
signing_key_path: "$run/signing.key"
registration_shared_secret: "$secret"
macaroon_secret_key: "$(random_hex)"
form_secret: "$(random_hex)"
report_stats: false
enable_metrics: false
trusted_key_servers: []
suppress_key_server_warning: true
enable_registration: false
presence:
  enabled: false
max_upload_size: "50M"
# Dehydrated devices (MSC3814): the /dehydrated_device endpoints, advertised as
# org.matrix.msc3814 in unstable_features.
experimental_features:
  msc3814_enabled: true
EOF

    if [[ "$strict" == 1 ]]; then
        printf '# SYNAPSE_STRICT_RATELIMITS=1: Synapse default rate limits.\n' >>"$run/homeserver.yaml"
        return 0
    fi
    # Every rc_* limiter, opened wide. rc_admin_redaction is off unless set,
    # so it is deliberately left unset (setting it would switch it on).
    local w="{per_second: 100000, burst_count: 1000000}"
    cat >>"$run/homeserver.yaml" <<EOF
# Rate limits opened wide (unset SYNAPSE_STRICT_RATELIMITS for this).
rc_message: $w
rc_registration: $w
rc_registration_token_validity: $w
rc_login:
  address: $w
  account: $w
  failed_attempts: $w
rc_key_requests: $w
rc_joins:
  local: $w
  remote: $w
rc_joins_per_room: $w
rc_invites:
  per_room: $w
  per_user: $w
  per_issuer: $w
rc_3pid_validation: $w
rc_third_party_invite: $w
rc_media_create: $w
rc_presence:
  per_user: $w
rc_delayed_event_mgmt: $w
rc_room_creation: $w
rc_reports: $w
rc_user_directory: $w
rc_profile: $w
EOF
}

# ---------------------------------------------------------------- start/stop

print_log_tail() {
    local logf="$1"
    {
        printf -- '----- last 40 lines of %s -----\n' "$logf"
        tail -n 40 "$logf" 2>/dev/null || printf '(no log)\n'
        printf -- '-----\n'
    } >&2
}

# Starts Synapse for DIR; writes DIR/env and DIR/synapse.pid. Prints the env
# lines on stdout. Exits non-zero on any failure.
start_server() {
    local dir venv pidfile old attempt port run logf secret pid t0 code i deadline
    dir="$(resolve_dir "${1:-}" create)"
    venv="${SYNAPSE_VENV:-$dir/venv}"
    pidfile="$dir/synapse.pid"

    command -v python3 >/dev/null || die "python3 not found"
    command -v curl >/dev/null || die "curl not found"

    if [[ -f "$pidfile" ]]; then
        old="$(cat "$pidfile" 2>/dev/null || true)"
        if pid_is_our_synapse "$old" "$dir"; then
            die "synapse already running for $dir (pid $old); run '$0 stop $dir' first"
        fi
        log "removing stale pid file $pidfile (pid ${old:-?} is not running)"
        rm -f "$pidfile"
    fi
    rm -f "$dir/env"

    ensure_venv_locked "$venv"
    venv="$(cd "$venv" && pwd -P)"

    # Fresh data dir per start; drop the ones left by earlier (stopped) runs.
    find "$dir" -mindepth 1 -maxdepth 1 -type d -name 'run-*' -exec rm -rf {} +

    for attempt in 1 2 3; do
        port="$(free_port)" || die "cannot pick a free port"
        run="$dir/run-$port"
        rm -rf "$run"
        mkdir -p "$run/media_store"
        logf="$run/homeserver.log"
        secret="$(random_hex)"
        write_config "$venv" "$run" "$port" "$secret"

        t0="$(now)"
        (
            cd "$run"
            if [[ "$TIE_TO_PARENT" == 1 ]]; then
                # `run`: if this script dies, even by SIGKILL, the kernel
                # sends synapse SIGTERM (PR_SET_PDEATHSIG survives exec).
                exec "$venv/bin/python" -c "$PDEATHSIG_PY" "$$" "$run/homeserver.yaml"
            fi
            exec "$venv/bin/python" -m synapse.app.homeserver -c "$run/homeserver.yaml"
        ) </dev/null >>"$logf" 2>&1 &
        pid=$!
        printf '%s\n' "$pid" >"$pidfile"

        deadline=$((SECONDS + START_TIMEOUT))
        code=000
        while :; do
            if ! pid_alive "$pid"; then
                if grep -q 'Address already in use' "$logf" 2>/dev/null && ((attempt < 3)); then
                    log "port $port was taken before synapse bound it; retrying"
                    rm -f "$pidfile"
                    continue 2
                fi
                print_log_tail "$logf"
                rm -f "$pidfile"
                die "synapse exited during startup (log: $logf)"
            fi
            code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
                "http://127.0.0.1:$port/_matrix/client/versions" || true)"
            [[ "$code" == 200 ]] && break
            if ((SECONDS >= deadline)); then
                print_log_tail "$logf"
                terminate_pid "$pid" || true
                rm -f "$pidfile"
                die "synapse did not answer 200 on /_matrix/client/versions within ${START_TIMEOUT}s (last HTTP code $code; log: $logf)"
            fi
            sleep 0.2
        done
        break
    done

    log "synapse $SYNAPSE_VERSION ready on http://127.0.0.1:$port (pid $pid) after $(elapsed "$t0")s"
    {
        printf 'MXKEYS_TEST_HOMESERVER=%q\n' "http://127.0.0.1:$port"
        printf 'MXKEYS_TEST_REGISTRATION_SECRET=%q\n' "$secret"
        printf 'MXKEYS_TEST_SYNAPSE_PID=%q\n' "$pid"
        printf 'MXKEYS_TEST_SYNAPSE_LOG=%q\n' "$logf"
    } >"$dir/env.tmp"
    mv "$dir/env.tmp" "$dir/env"
    cat "$dir/env"
}

stop_server() {
    local dir pidfile pid
    dir="$(resolve_dir "${1:-}")"
    pidfile="$dir/synapse.pid"
    # The env file would point at a dead server once we are done.
    rm -f "$dir/env"
    if [[ ! -f "$pidfile" ]]; then
        log "no synapse running for $dir (no pid file)"
        return 0
    fi
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    if ! pid_is_our_synapse "$pid" "$dir"; then
        log "pid ${pid:-?} from $pidfile is not a running synapse for $dir; not signalling it"
        rm -f "$pidfile"
        return 0
    fi
    log "stopping synapse (pid $pid)"
    terminate_pid "$pid" || { rm -f "$pidfile"; die "could not stop pid $pid"; }
    rm -f "$pidfile"
    log "stopped"
}

# ---------------------------------------------------------------- commands

cmd_register() {
    (($# >= 2 && $# <= 3)) || usage
    local user="$1" password="$2" hs secret
    if (($# == 3)) || [[ -z "${MXKEYS_TEST_HOMESERVER:-}" || -z "${MXKEYS_TEST_REGISTRATION_SECRET:-}" ]]; then
        local dir envf
        dir="$(resolve_dir "${3:-}")"
        envf="$dir/env"
        [[ -f "$envf" ]] || die "no $envf: start the server first ('$0 start')"
        # shellcheck disable=SC1090
        hs="$(set +u; . "$envf"; printf '%s' "$MXKEYS_TEST_HOMESERVER")"
        # shellcheck disable=SC1090
        secret="$(set +u; . "$envf"; printf '%s' "$MXKEYS_TEST_REGISTRATION_SECRET")"
    else
        hs="$MXKEYS_TEST_HOMESERVER"
        secret="$MXKEYS_TEST_REGISTRATION_SECRET"
    fi
    MXKEYS_TEST_HOMESERVER="$hs" MXKEYS_TEST_REGISTRATION_SECRET="$secret" \
        python3 "$SCRIPT_DIR/register_user.py" "$user" "$password"
}

cmd_run() {
    local dir=""
    if (($# > 0)) && [[ "$1" != -- ]]; then
        dir="$1"
        shift
    fi
    if (($# == 0)) || [[ "$1" != -- ]]; then usage; fi
    shift
    (($# > 0)) || usage
    dir="$(resolve_dir "$dir" create)"

    RUN_DIR="$dir"
    TIE_TO_PARENT=1
    trap 'rc=$?; trap - EXIT; stop_server "$RUN_DIR" || true; exit $rc' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    start_server "$dir" >&2
    set -a
    # shellcheck disable=SC1091
    . "$dir/env"
    set +a

    local rc=0
    "$@" || rc=$?
    exit "$rc"
}

main() {
    (($# >= 1)) || usage
    local cmd="$1"
    shift
    case "$cmd" in
        start)
            (($# <= 1)) || usage
            start_server "${1:-}"
            ;;
        stop)
            (($# <= 1)) || usage
            stop_server "${1:-}"
            ;;
        register) cmd_register "$@" ;;
        run) cmd_run "$@" ;;
        -h | --help | help) usage ;;
        *) usage ;;
    esac
}

main "$@"
