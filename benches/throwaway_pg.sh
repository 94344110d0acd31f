# throwaway_pg.sh - sourced by the bench scripts: a temporary Postgres and cleanup.
#
# After `. benches/throwaway_pg.sh name`: log/die, PGBIN, as_pg, free_port, a work
# folder $WORK (removed on exit, with the Postgres at $PG_PID and any pgmoat at
# $MOAT_PID stopped), and start_pg [postgresql.conf lines...], which runs initdb (SCRAM,
# as the `postgres` user when root), starts the server on a free port ($PG_PORT) and
# waits for it. Superuser `postgres` has password $SUPER_PW; $APP_PW is for the
# script's own role.

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

PGBIN=$(pg_config --bindir 2>/dev/null || true)
if [ ! -x "$PGBIN/postgres" ]; then
    for d in /usr/lib/postgresql/*/bin; do [ -x "$d/postgres" ] && PGBIN=$d; done
fi
[ -x "$PGBIN/postgres" ] || die "no Postgres server binaries"
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
    else
        exec "$@"
    fi
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

WORK=$(mktemp -d "/tmp/${1:-bench}.XXXXXX")
chmod 755 "$WORK"
PG_PID=""
MOAT_PID=""
cleanup() {
    if [ -n "$MOAT_PID" ]; then kill "$MOAT_PID" 2>/dev/null; wait "$MOAT_PID" 2>/dev/null; fi
    if [ -n "$PG_PID" ]; then kill -INT "$PG_PID" 2>/dev/null; wait "$PG_PID" 2>/dev/null; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

SUPER_PW=s$RANDOM$RANDOM
APP_PW=a$RANDOM$RANDOM

start_pg() {
    PG_PORT=$(free_port)
    mkdir -p "$WORK/pgdata"
    chmod 700 "$WORK/pgdata"
    echo "$SUPER_PW" >"$WORK/pw"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$WORK/pgdata" "$WORK/pw"; fi
    (as_pg "$PGBIN/initdb" -D "$WORK/pgdata" -U postgres --auth=scram-sha-256 --pwfile="$WORK/pw" -E UTF8 --no-locale) \
        >"$WORK/initdb.log" 2>&1 || die "initdb failed"
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $PG_PORT"
        echo "unix_socket_directories = ''"
        echo "fsync = off"
        echo "synchronous_commit = off"
        printf '%s\n' "$@"
    } >>"$WORK/pgdata/postgresql.conf"
    as_pg "$PGBIN/postgres" -D "$WORK/pgdata" >"$WORK/pg.log" 2>&1 &
    PG_PID=$!
    for _ in $(seq 50); do "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && return; sleep 0.2; done
    die "Postgres did not start: $(tail -5 "$WORK/pg.log")"
}
