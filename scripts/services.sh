#!/usr/bin/env bash
# Private Redis, PostgreSQL and mock-Kafka instances for development and tests.
# Everything listens on 127.0.0.1 only; all state lives in the run directory.
#
# Usage: scripts/services.sh start|stop|status|env [redis] [postgres] [kafka]
#   (no names = all three)
#
#   start   start what is not running yet (idempotent)
#   stop    stop what is running (idempotent)
#   status  one line per service; exit 0 if all named services run, else 3
#   env     print export lines for the running services:
#             eval "$(scripts/services.sh env)"
#
# Environment:
#   HEARTBEAT_RUN_DIR  run directory (default: $PWD/.run)
#   REDIS_PORT         default 6390
#   PG_PORT            default 5440
#   PG_BINDIR          PostgreSQL server binaries (default: pg_config --bindir,
#                      then /usr/lib/postgresql/15/bin)
#   KAFKA_MOCK_ARGS    extra arguments for kafka-mock, e.g. "--brokers 3 --partitions 8"
#   PG_SHARED_BUFFERS  PostgreSQL's shared_buffers (default 128MB, PostgreSQL's own; for
#                      benchmarks of large fleets, docs/scaling.md)
#   REDIS_APPENDONLY   yes: Redis keeps an append-only file in the run directory, so its data
#                      survives `stop redis` / `start redis` (default: no, memory only)
set -euo pipefail

usage() {
    echo "usage: $0 start|stop|status|env [redis] [postgres] [kafka]" >&2
    exit 2
}

die() {
    echo "services.sh: error: $*" >&2
    exit 1
}

say() { echo "services.sh: $*"; }

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)

RUN=${HEARTBEAT_RUN_DIR:-$PWD/.run}
case $RUN in
    /*) ;;
    *) RUN=$PWD/$RUN ;;
esac
case $RUN in
    *[[:space:]\'\"\\]*) die "run directory must not contain spaces, quotes or backslashes: $RUN" ;;
esac

REDIS_PORT=${REDIS_PORT:-6390}
PG_PORT=${PG_PORT:-5440}
PG_SHARED_BUFFERS=${PG_SHARED_BUFFERS:-128MB}
REDIS_APPENDONLY=${REDIS_APPENDONLY:-no}
case $REDIS_APPENDONLY in
    yes | no) ;;
    *) die "REDIS_APPENDONLY must be yes or no: $REDIS_APPENDONLY" ;;
esac
for p in "$REDIS_PORT" "$PG_PORT"; do
    if ! [[ $p =~ ^[0-9]+$ ]] || ((10#$p < 1 || 10#$p > 65535)); then die "invalid port: $p"; fi
done

REDIS_DIR=$RUN/redis
REDIS_PIDFILE=$REDIS_DIR/redis.pid
PG_DIR=$RUN/pg
PG_DATA=$PG_DIR/data
PG_SOCK=$PG_DIR/sock
PG_LOG=$PG_DIR/pg.log
KAFKA_DIR=$RUN/kafka
KAFKA_SRC=$REPO_DIR/tools/kafka-mock/kafka_mock.c
KAFKA_BIN=$KAFKA_DIR/kafka-mock
KAFKA_PIDFILE=$KAFKA_DIR/kafka.pid
KAFKA_OUT=$KAFKA_DIR/kafka.out
KAFKA_LOG=$KAFKA_DIR/kafka.log
KAFKA_BOOTSTRAP=$KAFKA_DIR/bootstrap

# ---------------------------------------------------------------- helpers

# wait_for SECONDS COMMAND...: poll COMMAND every 0.1 s until it succeeds.
wait_for() {
    local tries=$(($1 * 10))
    shift
    while ((tries-- > 0)); do
        if "$@"; then return 0; fi
        sleep 0.1
    done
    "$@"
}

# pid_alive PID: the process exists and is not a zombie. (Daemons here are
# reparented to PID 1, which on this machine reaps exited children only every
# second or two, so `kill -0` alone reports them alive for up to ~2 s.)
pid_alive() {
    local stat
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

pid_gone() { ! pid_alive "$1"; }

# pid_is PID NAME: PID is alive and its command name is NAME.
pid_is() {
    local pid=$1 name=$2 comm
    pid_alive "$pid" || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "$name" ]]
}

read_pid() {
    if [[ -f $1 ]]; then head -n1 "$1" 2>/dev/null | tr -dc '0-9' || true; fi
}

need() { # need BINARY PACKAGE
    command -v "$1" >/dev/null 2>&1 ||
        die "'$1' not found: install the Debian package '$2' (scripts/install-deps.sh or apt-get install $2)"
}

log_tail() {
    if [[ -f $1 ]]; then
        echo "---- last lines of $1:" >&2
        tail -n 20 "$1" >&2 || true
    fi
}

# ---------------------------------------------------------------- redis

redis_pid() {
    local pid
    pid=$(read_pid "$REDIS_PIDFILE")
    if [[ -n $pid ]] && pid_is "$pid" redis-server; then echo "$pid"; fi
}

redis_ping() { [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

redis_start() {
    need redis-server redis-server
    need redis-cli redis-server
    local pid
    pid=$(redis_pid)
    if [[ -n $pid ]] && redis_ping; then
        say "redis already running (pid $pid, 127.0.0.1:$REDIS_PORT)"
        return 0
    fi
    if redis_ping; then
        die "another Redis (not ours: no live $REDIS_PIDFILE) answers on 127.0.0.1:$REDIS_PORT; set REDIS_PORT"
    fi
    mkdir -p "$REDIS_DIR"
    rm -f "$REDIS_PIDFILE"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$REDIS_DIR" \
        --save "" --appendonly "$REDIS_APPENDONLY" --daemonize yes \
        --hash-max-listpack-value 1024 \
        --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_DIR/redis.log" >/dev/null
    if ! wait_for 10 redis_ping; then
        log_tail "$REDIS_DIR/redis.log"
        die "redis did not answer PING on 127.0.0.1:$REDIS_PORT within 10 s"
    fi
    wait_for 2 test -s "$REDIS_PIDFILE" || true
    say "redis started (pid $(read_pid "$REDIS_PIDFILE"), 127.0.0.1:$REDIS_PORT)"
}

redis_stop() {
    local pid
    pid=$(redis_pid)
    if [[ -z $pid ]]; then
        rm -f "$REDIS_PIDFILE"
        say "redis not running"
        return 0
    fi
    if command -v redis-cli >/dev/null 2>&1; then
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    fi
    if ! wait_for 5 pid_gone "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_for 5 pid_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$REDIS_PIDFILE"
    say "redis stopped"
}

redis_status() {
    local pid
    pid=$(redis_pid)
    if [[ -n $pid ]] && redis_ping; then
        echo "redis: running (pid $pid, 127.0.0.1:$REDIS_PORT)"
    else
        echo "redis: not running"
        return 1
    fi
}

redis_env() {
    if redis_status >/dev/null; then
        echo "export REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
    else
        echo "# redis not running"
    fi
}

# ---------------------------------------------------------------- postgres

PG_BIN=
pg_find_bin() {
    [[ -n $PG_BIN ]] && return 0
    local cand d
    cand=("${PG_BINDIR:-}")
    if command -v pg_config >/dev/null 2>&1; then
        cand+=("$(pg_config --bindir 2>/dev/null || true)")
    fi
    cand+=(/usr/lib/postgresql/15/bin)
    # Any other installed major version, newest first.
    local -a vers=()
    for d in /usr/lib/postgresql/*/bin; do [[ -d $d ]] && vers+=("$d"); done
    if ((${#vers[@]} > 0)); then
        while IFS= read -r d; do cand+=("$d"); done < <(printf '%s\n' "${vers[@]}" | sort -t/ -k5,5nr)
    fi
    for d in "${cand[@]}"; do
        if [[ -n $d && -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]]; then
            PG_BIN=$d
            return 0
        fi
    done
    return 1
}

pg_need_bin() {
    pg_find_bin || die "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: install the Debian package 'postgresql' (or set PG_BINDIR)"
}

# Run a server command as the postgres user when we are root (initdb and
# postgres refuse to run as root), from / so the working directory is readable.
as_pg() {
    if ((EUID == 0)); then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

pg_psql() {
    local psql=psql
    [[ -x $PG_BIN/psql ]] && psql=$PG_BIN/psql
    PGCONNECT_TIMEOUT=5 "$psql" -X -q -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"
}

# The postgres user must be able to reach $PG_DIR: make every directory from /
# down to $RUN searchable by it (o+x), top-down, only where it is missing.
pg_ensure_traversable() {
    ((EUID == 0)) || return 0
    local path=/ part
    local IFS=/
    for part in $RUN; do
        [[ -z $part ]] && continue
        path=${path%/}/$part
        if ! as_pg test -x "$path"; then
            chmod o+x "$path"
            say "chmod o+x $path (so the postgres user can reach $PG_DIR)"
        fi
    done
}

pg_running() {
    [[ -f $PG_DATA/PG_VERSION ]] || return 1
    pg_find_bin || return 1
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_pid() { read_pid "$PG_DATA/postmaster.pid"; }

pg_start() {
    pg_need_bin
    command -v psql >/dev/null 2>&1 || [[ -x $PG_BIN/psql ]] ||
        die "'psql' not found: install the Debian package 'postgresql-client' (pulled in by 'postgresql')"
    if ((EUID == 0)); then
        id -u postgres >/dev/null 2>&1 || die "no 'postgres' user: install the Debian package 'postgresql'"
    fi
    local sock_path=$PG_SOCK/.s.PGSQL.$PG_PORT
    ((${#sock_path} < 100)) || die "socket path too long for a Unix socket (${#sock_path} chars): $sock_path; use a shorter HEARTBEAT_RUN_DIR"

    mkdir -p "$RUN"
    pg_ensure_traversable
    mkdir -p "$PG_DATA" "$PG_SOCK"
    chmod 700 "$PG_DATA"
    if ((EUID == 0)); then chown -R postgres:postgres "$PG_DIR"; fi

    if [[ ! -f $PG_DATA/PG_VERSION ]]; then
        say "initdb $PG_DATA"
        if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres --no-sync \
            -E UTF8 --locale=C >"$PG_DIR/initdb.log" 2>&1; then
            log_tail "$PG_DIR/initdb.log"
            die "initdb failed"
        fi
    fi

    if pg_running; then
        say "postgres already running (pid $(pg_pid), 127.0.0.1:$PG_PORT)"
    else
        if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 30 \
            -o "-p $PG_PORT -k $PG_SOCK -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=$PG_SHARED_BUFFERS" \
            start >/dev/null; then
            log_tail "$PG_LOG"
            die "postgres did not start on 127.0.0.1:$PG_PORT"
        fi
        say "postgres started (pid $(pg_pid), 127.0.0.1:$PG_PORT)"
    fi

    # Role and databases, idempotent.
    pg_psql -d postgres <<'SQL' >/dev/null
SELECT 'CREATE ROLE heartbeat LOGIN SUPERUSER'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'heartbeat')\gexec
SELECT 'CREATE DATABASE heartbeat OWNER heartbeat'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'heartbeat')\gexec
SELECT 'CREATE DATABASE heartbeat_test OWNER heartbeat'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'heartbeat_test')\gexec
SQL
}

pg_stop() {
    if ! pg_running; then
        say "postgres not running"
        return 0
    fi
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null
    say "postgres stopped"
}

pg_status() {
    if pg_running; then
        echo "postgres: running (pid $(pg_pid), 127.0.0.1:$PG_PORT)"
    else
        echo "postgres: not running"
        return 1
    fi
}

pg_env() {
    if pg_running; then
        echo "export POSTGRES_URL=postgres://heartbeat@127.0.0.1:$PG_PORT/heartbeat"
        echo "export TEST_POSTGRES_URL=postgres://heartbeat@127.0.0.1:$PG_PORT/heartbeat_test"
    else
        echo "# postgres not running"
    fi
}

# ---------------------------------------------------------------- kafka (mock)

kafka_pid() {
    local pid
    pid=$(read_pid "$KAFKA_PIDFILE")
    if [[ -n $pid ]] && pid_is "$pid" kafka-mock; then echo "$pid"; fi
}

kafka_build() {
    [[ -f $KAFKA_SRC ]] || die "kafka-mock source missing: $KAFKA_SRC"
    if [[ -x $KAFKA_BIN && ! $KAFKA_SRC -nt $KAFKA_BIN ]]; then return 0; fi
    command -v cc >/dev/null 2>&1 || die "'cc' not found: install a C compiler (Debian package 'gcc' or 'build-essential')"
    # (rdkafka_mock.h #errors unless rdkafka.h comes first)
    if ! printf '#include <librdkafka/rdkafka.h>\n#include <librdkafka/rdkafka_mock.h>\n' |
        cc -E -x c - >/dev/null 2>&1; then
        die "librdkafka headers (librdkafka/rdkafka_mock.h) not found: install the Debian package 'librdkafka-dev'"
    fi
    say "building $KAFKA_BIN"
    cc -O2 -Wall -o "$KAFKA_BIN.tmp" "$KAFKA_SRC" -lrdkafka
    mv -f "$KAFKA_BIN.tmp" "$KAFKA_BIN"
}

kafka_bootstrap_ready() { [[ -s $KAFKA_OUT ]] && head -n1 "$KAFKA_OUT" | grep -q ':[0-9][0-9]*$'; }

kafka_start() {
    mkdir -p "$KAFKA_DIR"
    local pid
    pid=$(kafka_pid)
    if [[ -n $pid ]]; then
        say "kafka mock already running (pid $pid, $(cat "$KAFKA_BOOTSTRAP" 2>/dev/null))"
        return 0
    fi
    kafka_build
    rm -f "$KAFKA_PIDFILE" "$KAFKA_BOOTSTRAP" "$KAFKA_OUT"
    local -a extra=()
    if [[ -n ${KAFKA_MOCK_ARGS:-} ]]; then read -r -a extra <<<"$KAFKA_MOCK_ARGS"; fi
    # setsid: own session, so a Ctrl-C or a killed process group of the caller
    # does not take the mock down. (Not a group leader here, so setsid execs in place
    # and $! is the mock's PID.)
    setsid "$KAFKA_BIN" "${extra[@]}" </dev/null >"$KAFKA_OUT" 2>"$KAFKA_LOG" &
    pid=$!
    echo "$pid" >"$KAFKA_PIDFILE"
    if ! wait_for 10 kafka_bootstrap_ready; then
        kill -TERM "$pid" 2>/dev/null || true
        log_tail "$KAFKA_LOG"
        rm -f "$KAFKA_PIDFILE"
        die "kafka mock did not print its bootstrap address within 10 s"
    fi
    pid_is "$pid" kafka-mock || die "kafka mock PID $pid is not the kafka-mock process"
    head -n1 "$KAFKA_OUT" >"$KAFKA_BOOTSTRAP"
    say "kafka mock started (pid $pid, $(cat "$KAFKA_BOOTSTRAP"))"
}

kafka_stop() {
    local pid
    pid=$(kafka_pid)
    if [[ -z $pid ]]; then
        rm -f "$KAFKA_PIDFILE" "$KAFKA_BOOTSTRAP"
        say "kafka mock not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    # A clean exit can take ~1 s (rd_kafka_mock_cluster_destroy).
    if ! wait_for 10 pid_gone "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        wait_for 2 pid_gone "$pid" || true
    fi
    rm -f "$KAFKA_PIDFILE" "$KAFKA_BOOTSTRAP"
    say "kafka mock stopped"
}

kafka_status() {
    local pid
    pid=$(kafka_pid)
    if [[ -n $pid ]]; then
        echo "kafka: running (pid $pid, $(cat "$KAFKA_BOOTSTRAP" 2>/dev/null))"
    else
        echo "kafka: not running"
        return 1
    fi
}

kafka_env() {
    if [[ -n $(kafka_pid) && -s $KAFKA_BOOTSTRAP ]]; then
        echo "export KAFKA_BROKERS=$(cat "$KAFKA_BOOTSTRAP")"
    else
        echo "# kafka not running"
    fi
}

# ---------------------------------------------------------------- main

(($# >= 1)) || usage
action=$1
shift
case $action in
    start | stop | status | env) ;;
    -h | --help | help) usage ;;
    *) echo "services.sh: unknown action: $action" >&2; usage ;;
esac

services=()
for name in "$@"; do
    case $name in
        redis | postgres | kafka) services+=("$name") ;;
        pg | postgresql) services+=(postgres) ;;
        *) echo "services.sh: unknown service: $name (redis, postgres, kafka)" >&2; usage ;;
    esac
done
((${#services[@]} > 0)) || services=(redis postgres kafka)

fn_prefix() {
    case $1 in
        redis) echo redis ;;
        postgres) echo pg ;;
        kafka) echo kafka ;;
    esac
}

case $action in
    start)
        mkdir -p "$RUN"
        for s in "${services[@]}"; do "$(fn_prefix "$s")_start"; done
        ;;
    stop)
        for s in "${services[@]}"; do "$(fn_prefix "$s")_stop"; done
        ;;
    status)
        rc=0
        for s in "${services[@]}"; do "$(fn_prefix "$s")_status" || rc=3; done
        exit "$rc"
        ;;
    env)
        for s in "${services[@]}"; do "$(fn_prefix "$s")_env"; done
        ;;
esac
