#!/usr/bin/env bash
# pgbench_compare.sh - compare direct Postgres, pgbouncer and pgmoat with pgbench.
#
# Usage (from the repo root, after `cargo build --release`):
#   benches/pgbench_compare.sh
#   DURATION=30 ROUNDS=5 PGMOAT_WORKERS=2 benches/pgbench_compare.sh
#
# Environment:
#   DURATION        seconds per pgbench run (-T), default 10
#   ROUNDS          number of rounds, default 3
#   PGMOAT_BIN      pgmoat binary, default <repo>/target/release/pgmoat
#   PGMOAT_WORKERS  tokio worker threads for pgmoat (`workers:`), default 1
#   PGMOAT_RULES    a rule file or folder for pgmoat (`rules:`), e.g. rules/; default none
#   SKIP_PGMOAT     set to 1 to benchmark only direct + pgbouncer (no binary needed)
#   SCALE           pgbench -i scale factor, default 10
#   WARMUP          seconds of warm-up per target before round 1, default 2 (0 = none)
#   PGMOAT_AUDIT_MODES  e.g. "fsync batch": one more pgmoat per mode, with an audit
#                   store under the temp dir, as targets pgmoat-fsync / pgmoat-batch
#   PGMOAT_PARALLEL_FLUSHES  `audit.parallel_flushes` for those (default: pgmoat's, 1)
#   TMPDIR          where the throwaway cluster and audit stores go (default /tmp); on
#                   tmpfs (/dev/shm) a flush costs nothing, which isolates pgmoat's own
#                   cost of fsync mode (its wake-ups) from the disk's
#   WORKLOADS       subset of "select-simple select-prepared latency-1c" (default all);
#                   also select-simple-c32 (32 clients: how group commit scales)
#
# What it does: starts a throwaway Postgres 15 cluster (SCRAM auth, 127.0.0.1 on a
# free port, no unix socket, fsync=off), a pgbouncer in session-pooling mode and
# pgmoat, each in front of it, all on 127.0.0.1 only. It then runs, for several
# rounds, three pgbench workloads against each target, interleaved round-robin
# (the target order rotates each round) so drift affects all targets equally:
#   select-simple    pgbench -n -S -M simple   -c 8 -j 2 -T DURATION
#   select-prepared  pgbench -n -S -M prepared -c 8 -j 2 -T DURATION
#   latency-1c       pgbench -n -S -M simple   -c 1 -j 1 -T DURATION
# For each run it records TPS (without initial connection time), average latency,
# the CPU time (utime+stime from /proc/PID/stat, all threads) used by the
# middlebox process per transaction, and the CPU used by the Postgres server
# (postmaster incl. reaped children + live children) per transaction.
# The summary gives medians over rounds, pgmoat/pgbouncer ratios and, for the
# single-client run, the latency each middlebox adds over direct per query.
# Everything started is stopped and the temp dir removed on exit.
#
# When run as root, initdb/postgres/pgbouncer run as the `postgres` user.
# Note: pgbench, Postgres and the middleboxes share this machine's cores, so
# absolute numbers are host-bound; compare targets within one run.
set -uo pipefail

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
PGMOAT_BIN=${PGMOAT_BIN:-$REPO_ROOT/target/release/pgmoat}
PGMOAT_WORKERS=${PGMOAT_WORKERS:-1}
SKIP_PGMOAT=${SKIP_PGMOAT:-0}
SCALE=${SCALE:-10}
WARMUP=${WARMUP:-2}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- binaries
PGBIN=""
if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/postgres" ]; then
    PGBIN=$(pg_config --bindir)
else
    for d in /usr/lib/postgresql/*/bin; do [ -x "$d/postgres" ] && PGBIN=$d; done
fi
[ -n "$PGBIN" ] || die "no Postgres server binaries found (pg_config --bindir or /usr/lib/postgresql/*/bin)"
PGBOUNCER=${PGBOUNCER:-/usr/sbin/pgbouncer}
[ -x "$PGBOUNCER" ] || PGBOUNCER=$(command -v pgbouncer || true)
# shellcheck disable=SC2015
[ -n "$PGBOUNCER" ] && [ -x "$PGBOUNCER" ] || die "pgbouncer not found (apt-get install pgbouncer)"
PGBENCH=$PGBIN/pgbench; [ -x "$PGBENCH" ] || PGBENCH=$(command -v pgbench || true)
[ -n "$PGBENCH" ] || die "pgbench not found"
PSQL=$PGBIN/psql; [ -x "$PSQL" ] || PSQL=$(command -v psql || true)
[ -n "$PSQL" ] || die "psql not found"

if [ "$SKIP_PGMOAT" != 1 ]; then
    if [ ! -x "$PGMOAT_BIN" ]; then
        echo "pgmoat binary not found at '$PGMOAT_BIN'." >&2
        echo "Run \`cargo build --release\` first (or set PGMOAT_BIN, or SKIP_PGMOAT=1)." >&2
        exit 1
    fi
    PGMOAT_BIN=$(cd "$(dirname "$PGMOAT_BIN")" && pwd)/$(basename "$PGMOAT_BIN")
fi

CLK_TCK=$(getconf CLK_TCK)

# Run a command as the postgres user when we are root. setpriv execs the
# command, and as_pg execs setpriv, so for `as_pg cmd &` $! is cmd's own pid.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
    else
        exec "$@"
    fi
}
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user"
fi

free_port() {
    local p
    if command -v python3 >/dev/null 2>&1 &&
        p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null); then
        echo "$p"; return
    fi
    while :; do
        p=$((20000 + RANDOM % 30000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}
# pick distinct free ports
PORTS=()
pick_port() {
    local p u
    while :; do
        p=$(free_port); u=1
        for q in "${PORTS[@]:-}"; do [ "$q" = "$p" ] && u=0; done
        [ $u = 1 ] && break
    done
    PORTS+=("$p"); echo "$p"
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- cleanup
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pgbench_compare.XXXXXX")
chmod 755 "$WORK"
PG_PID=""; BOUNCER_PID=""; MOAT_PID=""
declare -A MOAT_PIDS=() MOAT_PORTS=()

stop_pid() { # pid signal name
    local pid=$1 sig=$2 name=$3
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill "-$sig" "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name did not stop, killing"; kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    trap - EXIT INT TERM
    for n in "${!MOAT_PIDS[@]}"; do stop_pid "${MOAT_PIDS[$n]}" TERM "$n"; done
    stop_pid "$BOUNCER_PID" TERM pgbouncer
    stop_pid "$PG_PID" INT postgres
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- postgres
PG_PORT=$(pick_port)
PG_SUPER_PW="super-$RANDOM$RANDOM"
BENCH_PW="bench-$RANDOM$RANDOM"
PGDATA=$WORK/pgdata
mkdir -p "$PGDATA"; chmod 700 "$PGDATA"
printf '%s\n' "$PG_SUPER_PW" >"$WORK/pwfile"
if [ "$(id -u)" = 0 ]; then chown postgres: "$PGDATA" "$WORK/pwfile"; fi

log "initdb ($PGBIN) in $PGDATA"
(as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=scram-sha-256 \
    --pwfile="$WORK/pwfile" -E UTF8 --no-locale) >"$WORK/initdb.log" 2>&1 ||
    { cat "$WORK/initdb.log" >&2; die "initdb failed"; }
cat >>"$PGDATA/postgresql.conf" <<EOF
# pgbench_compare.sh
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = ''
max_connections = 100
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF

log "starting postgres on 127.0.0.1:$PG_PORT"
as_pg "$PGBIN/postgres" -D "$PGDATA" >"$WORK/postgres.log" 2>&1 &
PG_PID=$!
for _ in $(seq 1 100); do
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
    kill -0 "$PG_PID" 2>/dev/null || { cat "$WORK/postgres.log" >&2; die "postgres exited"; }
    sleep 0.2
done
"$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" || { cat "$WORK/postgres.log" >&2; die "postgres not ready"; }

PGPASSWORD=$PG_SUPER_PW "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres <<EOF || die "creating role/database failed"
CREATE ROLE bench LOGIN PASSWORD '$BENCH_PW';
CREATE DATABASE bench OWNER bench;
EOF
log "pgbench -i -s $SCALE"
PGPASSWORD=$BENCH_PW "$PGBENCH" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U bench bench \
    >"$WORK/pgbench-init.log" 2>&1 || { cat "$WORK/pgbench-init.log" >&2; die "pgbench -i failed"; }

# ---------------------------------------------------------------- pgbouncer
BOUNCER_PORT=$(pick_port)
. "$REPO_ROOT/benches/pgbouncer_conf.sh"
write_pgbouncer_conf "$WORK/pgbouncer" "$BOUNCER_PORT" "$PG_PORT" "$BENCH_PW"

log "starting pgbouncer ($("$PGBOUNCER" --version | head -1)) on 127.0.0.1:$BOUNCER_PORT"
as_pg "$PGBOUNCER" "$WORK/pgbouncer/pgbouncer.ini" >"$WORK/pgbouncer/stdout.log" 2>&1 &
BOUNCER_PID=$!
for _ in $(seq 1 100); do
    port_open "$BOUNCER_PORT" && break
    kill -0 "$BOUNCER_PID" 2>/dev/null || break
    sleep 0.1
done
port_open "$BOUNCER_PORT" ||
    { cat "$WORK/pgbouncer/stdout.log" "$WORK/pgbouncer/pgbouncer.log" >&2 2>/dev/null; die "pgbouncer did not start"; }

# ---------------------------------------------------------------- pgmoat
# One instance per name: "pgmoat" (no audit) and "pgmoat-<mode>" for each mode in
# PGMOAT_AUDIT_MODES, with its audit store under $WORK (this machine's disk).
MOAT_CLIENT_PW="client-$RANDOM$RANDOM"
declare -A MOAT_ADMINS
start_pgmoat() { # name [audit durability]
    local name=$1 mode=${2:-} port admin dir ok code
    port=$(pick_port); admin=$(pick_port); dir=$WORK/$name
    mkdir -p "$dir"
    cat >"$dir/pgmoat.yaml" <<EOF
listen: 127.0.0.1:$port
workers: $PGMOAT_WORKERS
admin:
  listen: 127.0.0.1:$admin
targets:
  bench:
    host: 127.0.0.1
    port: $PG_PORT
    database: bench
    user: bench
    password_env: BENCH_DB_PASSWORD
    tls: disable
identities:
  users:
    - name: bench
      password_env: BENCH_CLIENT_PASSWORD
      groups: [bench]
EOF
    if [ -n "${PGMOAT_RULES:-}" ]; then
        echo "rules: $(cd "$(dirname "$PGMOAT_RULES")" && pwd)/$(basename "$PGMOAT_RULES")" >>"$dir/pgmoat.yaml"
    fi
    if [ -n "$mode" ]; then
        printf 'audit:\n  dir: %s\n  durability: %s\n' "$dir/audit" "$mode" >>"$dir/pgmoat.yaml"
        [ -n "${PGMOAT_PARALLEL_FLUSHES:-}" ] &&
            echo "  parallel_flushes: $PGMOAT_PARALLEL_FLUSHES" >>"$dir/pgmoat.yaml"
    fi
    log "starting $name ($PGMOAT_BIN, workers=$PGMOAT_WORKERS${mode:+, audit $mode}) on 127.0.0.1:$port, admin :$admin"
    BENCH_DB_PASSWORD=$BENCH_PW BENCH_CLIENT_PASSWORD=$MOAT_CLIENT_PW \
        "$PGMOAT_BIN" serve -c "$dir/pgmoat.yaml" >"$dir/pgmoat.log" 2>&1 &
    MOAT_PIDS[$name]=$!
    MOAT_PORTS[$name]=$port
    MOAT_ADMINS[$name]=$admin
    ok=0
    for _ in $(seq 1 150); do
        kill -0 "${MOAT_PIDS[$name]}" 2>/dev/null || break
        if port_open "$port"; then
            if command -v curl >/dev/null 2>&1; then
                code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$admin/healthz" || true)
                [ "$code" = 200 ] && { ok=1; break; }
            else
                ok=1; break
            fi
        fi
        sleep 0.1
    done
    [ $ok = 1 ] || { tail -n 50 "$dir/pgmoat.log" >&2; die "$name did not become ready (port $port, /healthz on $admin)"; }
    TARGETS="$TARGETS $name"
}
TARGETS="direct pgbouncer"
if [ "$SKIP_PGMOAT" != 1 ]; then
    start_pgmoat pgmoat
    MOAT_PID=${MOAT_PIDS[pgmoat]}
    for mode in ${PGMOAT_AUDIT_MODES:-}; do
        case $mode in fsync|batch) ;; *) die "PGMOAT_AUDIT_MODES: unknown mode '$mode' (fsync, batch)" ;; esac
        start_pgmoat "pgmoat-$mode" "$mode"
    done
fi

# ---------------------------------------------------------------- measuring
# utime+stime (ticks) of one process, all its threads (fields 14,15 of stat).
proc_ticks() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    s=${s##*) }   # drop "pid (comm) " so field 3 (state) is first
    # shellcheck disable=SC2086 # split into fields on purpose
    set -- $s
    echo $((${12} + ${13}))
}
# Postgres server CPU ticks: postmaster utime+stime+cutime+cstime (cutime covers
# backends already exited and reaped) + utime+stime of live children.
pg_ticks() {
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v pp="$PG_PID" '
        { l = $0; sub(/^.*\) /, "", l); n = split(l, f, " ")
          if (n < 15) next
          if (f[2] == pp) s += f[12] + f[13]
          if ($1 == pp)   s += f[12] + f[13] + f[14] + f[15] }
        END { printf "%d\n", s }'
}
target_conn() { # target -> "port user password"
    case $1 in
        direct) echo "$PG_PORT bench $BENCH_PW" ;;
        pgbouncer) echo "$BOUNCER_PORT bench $BENCH_PW" ;;
        pgmoat*) echo "${MOAT_PORTS[$1]} bench $MOAT_CLIENT_PW" ;;
    esac
}
target_pid() {
    case $1 in
        pgbouncer) echo "$BOUNCER_PID" ;;
        pgmoat*) echo "${MOAT_PIDS[$1]}" ;;
        *) echo "" ;;
    esac
}
workload_args() {
    case $1 in
        select-simple) echo "-n -S -M simple -c 8 -j 2" ;;
        select-prepared) echo "-n -S -M prepared -c 8 -j 2" ;;
        latency-1c) echo "-n -S -M simple -c 1 -j 1" ;;
        select-simple-c32) echo "-n -S -M simple -c 32 -j 2" ;;
    esac
}
WORKLOADS=${WORKLOADS:-"select-simple select-prepared latency-1c"}
RESULTS=$WORK/results.tsv
: >"$RESULTS"

run_pgbench() { # target duration args... ; prints output to stdout
    local target=$1 dur=$2; shift 2
    local port user pw
    read -r port user pw <<<"$(target_conn "$target")"
    PGPASSWORD=$pw "$PGBENCH" -h 127.0.0.1 -p "$port" -U "$user" "$@" -T "$dur" bench 2>&1
}

# A counter from a pgmoat's /metrics (0 when it has none).
moat_metric() { # target metric
    curl -s --max-time 2 "http://127.0.0.1:${MOAT_ADMINS[$1]}/metrics" 2>/dev/null |
        awk -v m="$2" '$1 == m {print $2; found = 1} END {if (!found) print 0}'
}
FLUSHES=$WORK/flushes.tsv
: >"$FLUSHES"

one_run() { # round workload target
    local round=$1 wl=$2 target=$3 pid out rc tps txns lat c0 c1 p0 p1 cpu_us pg_us f0 n0 f1 n1
    pid=$(target_pid "$target")
    [ -n "$pid" ] && c0=$(proc_ticks "$pid")
    if [ "$target" = pgmoat-fsync ]; then
        f0=$(moat_metric "$target" pgmoat_audit_fsync_microseconds_total)
        n0=$(moat_metric "$target" pgmoat_audit_fsyncs_total)
    fi
    p0=$(pg_ticks)
    # shellcheck disable=SC2046
    out=$(run_pgbench "$target" "$DURATION" $(workload_args "$wl")); rc=$?
    [ -n "$pid" ] && c1=$(proc_ticks "$pid")
    if [ "$target" = pgmoat-fsync ]; then
        # The mean flush of this run, as pgmoat's writer measured it under the load.
        f1=$(moat_metric "$target" pgmoat_audit_fsync_microseconds_total)
        n1=$(moat_metric "$target" pgmoat_audit_fsyncs_total)
        awk -v w="$wl" -v r="$round" -v f="$((f1 - f0))" -v n="$((n1 - n0))" \
            'BEGIN { if (n > 0) printf "%s\t%s\t%.1f\t%d\n", w, r, f / n, n }' >>"$FLUSHES"
    fi
    sleep 0.3   # let backends of direct connections exit and be reaped
    p1=$(pg_ticks)
    tps=$(printf '%s\n' "$out" | awk '/^tps = .*without initial connection time/ {print $3; exit}')
    [ -n "$tps" ] || tps=$(printf '%s\n' "$out" | awk '/^tps = / {print $3; exit}')
    txns=$(printf '%s\n' "$out" | awk -F': *' '/number of transactions actually processed/ {split($2, a, "/"); print a[1]; exit}')
    lat=$(printf '%s\n' "$out" | awk '/^latency average = / {print $4; exit}')
    if [ $rc != 0 ] || [ -z "$tps" ] || [ -z "$txns" ] || [ "$txns" = 0 ]; then
        log "run failed: round $round $wl $target (rc=$rc)"
        printf '%s\n' "$out" | tail -n 20 >&2
        printf '%s\t%s\t%s\tNA\tNA\tNA\tNA\tNA\n' "$wl" "$target" "$round" >>"$RESULTS"
        return
    fi
    if [ -n "$pid" ]; then
        cpu_us=$(awk -v a="$c0" -v b="$c1" -v hz="$CLK_TCK" -v n="$txns" 'BEGIN {printf "%.2f", (b - a) / hz * 1e6 / n}')
    else
        cpu_us=NA
    fi
    pg_us=$(awk -v a="$p0" -v b="$p1" -v hz="$CLK_TCK" -v n="$txns" 'BEGIN {printf "%.2f", (b - a) / hz * 1e6 / n}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$wl" "$target" "$round" "$tps" "$txns" "${lat:-NA}" "$cpu_us" "$pg_us" >>"$RESULTS"
    log "$(printf 'round %s %-15s %-9s tps=%-10s lat=%sms mbox_cpu=%sus/txn pg_cpu=%sus/txn' \
        "$round" "$wl" "$target" "$tps" "${lat:-NA}" "$cpu_us" "$pg_us")"
}

# sanity check every target with one query before measuring
for t in $TARGETS; do
    read -r port user pw <<<"$(target_conn "$t")"
    r=$(PGPASSWORD=$pw "$PSQL" -X -At -h 127.0.0.1 -p "$port" -U "$user" -d bench -c 'select count(*) from pgbench_branches' 2>&1) ||
        die "target $t: query failed: $r"
    [ "$r" = "$SCALE" ] || die "target $t: unexpected result '$r'"
done

if [ "$WARMUP" != 0 ]; then
    for t in $TARGETS; do
        log "warm-up $t (${WARMUP}s)"
        run_pgbench "$t" "$WARMUP" -n -S -M simple -c 8 -j 2 >/dev/null ||
            log "warm-up of $t failed"
    done
fi

read -r -a TARR <<<"$TARGETS"
NT=${#TARR[@]}
log "measuring: $ROUNDS rounds x 3 workloads x $NT targets x ${DURATION}s"
for round in $(seq 1 "$ROUNDS"); do
    for wl in $WORKLOADS; do
        for k in $(seq 0 $((NT - 1))); do
            t=${TARR[$(((k + round - 1) % NT))]}
            one_run "$round" "$wl" "$t"
        done
    done
done

# ---------------------------------------------------------------- summary
median() { # values on stdin (NA ignored)
    grep -v '^NA$' | sort -g | awk '{a[NR] = $1}
        END { if (NR == 0) print "NA"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
med() { awk -F'\t' -v w="$1" -v t="$2" -v c="$3" '$1 == w && $2 == t {print $c}' "$RESULTS" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || b + 0 == 0) print "NA"; else printf "%.3f", a / b }'; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "NA") print "NA"; else printf f, v }'; }

echo
echo "=================================================================================="
echo "pgbench comparison: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(nproc) cores, $(uname -r)"
echo "Postgres $("$PGBIN/postgres" --version | awk '{print $3}') (fsync=off, synchronous_commit=off, scale $SCALE)," \
    "$("$PGBOUNCER" --version | head -1) (session pooling)"
[ "$SKIP_PGMOAT" != 1 ] && echo "pgmoat: $PGMOAT_BIN (workers=$PGMOAT_WORKERS, rules=${PGMOAT_RULES:-none})"
echo "duration ${DURATION}s x $ROUNDS rounds, interleaved; medians over rounds; CLK_TCK=$CLK_TCK"
echo "mbox CPU = middlebox process utime+stime per txn; pg CPU = Postgres server per txn"
echo "=================================================================================="
for wl in $WORKLOADS; do
    echo
    echo "workload: $wl  (pgbench $(workload_args "$wl") -T $DURATION)"
    printf '  %-12s %12s %14s %14s %12s\n' target "TPS" "mbox CPU us/tx" "pg CPU us/tx" "latency ms"
    for t in $TARGETS; do
        printf '  %-12s %12s %14s %14s %12s\n' "$t" \
            "$(fmt "$(med "$wl" "$t" 4)" %.1f)" "$(fmt "$(med "$wl" "$t" 7)" %.2f)" \
            "$(fmt "$(med "$wl" "$t" 8)" %.2f)" "$(fmt "$(med "$wl" "$t" 6)" %.3f)"
    done
    if [ "$SKIP_PGMOAT" != 1 ]; then
        echo "  pgmoat/pgbouncer: TPS ratio $(ratio "$(med "$wl" pgmoat 4)" "$(med "$wl" pgbouncer 4)")," \
            "CPU/txn ratio $(ratio "$(med "$wl" pgmoat 7)" "$(med "$wl" pgbouncer 7)")"
    fi
    for mode in ${PGMOAT_AUDIT_MODES:-}; do
        echo "  pgmoat-$mode/pgmoat (audit $mode vs off): TPS ratio $(ratio "$(med "$wl" "pgmoat-$mode" 4)" "$(med "$wl" pgmoat 4)")"
        if [ "$mode" = fsync ]; then
            # The closed-loop ceiling the disk allows: each statement waits, on average,
            # for the rest of the flush in progress and then its own (1.5 flushes L) on
            # top of audit-off's round trip R: R / (R + 1.5 L).
            L=$(awk -F'\t' -v w="$wl" '$1 == w {print $3}' "$FLUSHES" | median)
            R=$(med "$wl" pgmoat 6)
            ceil=$(awk -v r="$R" -v l="$L" 'BEGIN { if (r == "NA" || l == "NA") print "NA"; else printf "%.3f", r * 1000 / (r * 1000 + 1.5 * l) }')
            got=$(ratio "$(med "$wl" pgmoat-fsync 4)" "$(med "$wl" pgmoat 4)")
            echo "  fsync: mean flush under load ${L} us; ceiling R/(R+1.5L) = $ceil of audit off;" \
                "measured $got = $(ratio "$got" "$ceil") of the ceiling"
        fi
    done
    if [ "$wl" = latency-1c ]; then
        d=$(med "$wl" direct 6)
        for t in $TARGETS; do
            [ "$t" = direct ] && continue
            m=$(med "$wl" "$t" 6)
            # also from 1/TPS, which has finer resolution than the ms line (1 client)
            mt=$(med "$wl" "$t" 4); dt=$(med "$wl" direct 4)
            echo "  added latency per query, $t over direct:" \
                "$(awk -v a="$m" -v b="$d" 'BEGIN { if (a == "NA" || b == "NA") print "NA"; else printf "%.1f us", (a - b) * 1000 }')" \
                "(from 1/TPS: $(awk -v a="$mt" -v b="$dt" 'BEGIN { if (a == "NA" || b == "NA" || a + 0 == 0 || b + 0 == 0) print "NA"; else printf "%.1f us", 1e6 / a - 1e6 / b }'))"
        done
    fi
done
echo
echo "raw results (workload target round tps txns latency_ms mbox_cpu_us pg_cpu_us):"
sed 's/^/  /' "$RESULTS"
