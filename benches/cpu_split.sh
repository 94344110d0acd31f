#!/usr/bin/env bash
# cpu_split.sh - user and system CPU per transaction of PgBouncer and one or more pgmoat
# builds, side by side on one throwaway Postgres, interleaved round by round.
#
#   cargo build --release
#   MODE=simple RULES=rules/baseline.yaml ROUNDS=3 benches/cpu_split.sh
#   BINS="/tmp/pgmoat.before target/release/pgmoat" MODE=prepared benches/cpu_split.sh
#
# MODE     pgbench -M (simple | prepared), default simple
# RULES    a rule file or folder for every pgmoat, default none
# AUDIT    fsync | batch: an audit store per pgmoat, default none
# BINS     pgmoat binaries, default target/release/pgmoat (each becomes moat1, moat2, ...)
# ROUNDS   default 3; T seconds per run, default 8
# SYSCALLS 1: also count the middlebox's system calls, page faults and context switches
#          (voluntary and not) per transaction (perf stat)
# THREADS  1: also split each middlebox's CPU per transaction by thread name (from
#          /proc/PID/task/*/stat; pgmoat's audit writer is `pgmoat-audit`)
# STRACE   1: after the rounds, one 3 s run per target under `strace -c -f`: which calls
# PROFILE  1: after the rounds, `perf record` each pgmoat for 4 s of load; prints its top
#          user-space symbols (self time) and the split by thread and object;
#          PROFILE_OUT=/tmp/x keeps each profile as /tmp/x.moatN (delete it after);
#          PROFILE_SECS=N records N s instead of 4 (more samples for small symbols);
#          PROFILE_GRAPH=1 records call graphs too (`--call-graph dwarf`, -F 999)
#
# Each run is `pgbench -n -S -M MODE -c 8 -j 2 -T T`; the line printed per run gives
# TPS and the middlebox's utime and stime (from /proc/PID/stat) per transaction.
# pgbench_compare.sh gives medians and Postgres's CPU; this one splits user from system
# time, which is where a proxy's own work shows (the kernel's TCP work is the same for
# any proxy), and compares builds.
set -uo pipefail
cd "$(dirname "$0")/.."
. benches/throwaway_pg.sh cpu_split
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
[ -x "$PGBOUNCER" ] || die "pgbouncer not found (apt-get install pgbouncer)"
start_pg "shared_buffers = 256MB" "max_connections = 100"
PGPASSWORD=$SUPER_PW "$PGBIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres \
    -c "create role bench login password '$APP_PW'" -c "create database bench owner bench" >/dev/null ||
    die "cannot create the bench database"
PGPASSWORD=$APP_PW "$PGBIN/pgbench" -q -i -s 10 -h 127.0.0.1 -p "$PG_PORT" -U bench bench >/dev/null 2>&1 ||
    die "pgbench -i failed"

CLIENT_PW=c$RANDOM$RANDOM
declare -A PID PORTN
PIDS=()
stop_all() { [ ${#PIDS[@]} -gt 0 ] && kill "${PIDS[@]}" 2>/dev/null; cleanup; }
trap stop_all EXIT

. benches/pgbouncer_conf.sh
PORTN[pgbouncer]=$(free_port)
write_pgbouncer_conf "$WORK/pgbouncer" "${PORTN[pgbouncer]}" "$PG_PORT" "$CLIENT_PW" "user=bench password=$APP_PW"
as_pg "$PGBOUNCER" "$WORK/pgbouncer/pgbouncer.ini" >"$WORK/pgbouncer/stdout.log" 2>&1 &
PID[pgbouncer]=$!; PIDS+=($!)

n=0
for bin in ${BINS:-target/release/pgmoat}; do
    [ -x "$bin" ] || die "no pgmoat binary at $bin (cargo build --release)"
    n=$((n + 1)); name=moat$n
    PORTN[$name]=$(free_port)
    {
        echo "listen: 127.0.0.1:${PORTN[$name]}"
        echo "workers: 1"
        echo "targets:"
        echo "  bench: { host: 127.0.0.1, port: $PG_PORT, database: bench, user: bench, password_env: BENCH_DB_PASSWORD, tls: disable }"
        echo "identities:"
        echo "  users:"
        echo "    - { name: bench, password_env: BENCH_CLIENT_PASSWORD, groups: [bench] }"
        [ -n "${RULES:-}" ] && echo "rules: $(realpath "$RULES")"
        [ -n "${AUDIT:-}" ] && printf 'audit:\n  dir: %s\n  durability: %s\n' "$WORK/audit$n" "$AUDIT"
    } >"$WORK/$name.yaml"
    BENCH_DB_PASSWORD=$APP_PW BENCH_CLIENT_PASSWORD=$CLIENT_PW "$bin" serve -c "$WORK/$name.yaml" >"$WORK/$name.log" 2>&1 &
    PID[$name]=$!; PIDS+=($!)
    log "$name: $bin"
done
sleep 1

export PGPASSWORD=$CLIENT_PW
TARGETS="pgbouncer $(seq -f 'moat%g' -s ' ' 1 $n)"
threads_cpu() { # pid: "name utime stime" per thread (names with spaces joined by _)
    for f in /proc/"$1"/task/*/stat; do
        sed -E 's/^[0-9]+ \((.*)\) /\1\t/' "$f" 2>/dev/null | awk -F'\t' '{ gsub(/ /, "_", $1); split($2, a, " "); print $1, a[12], a[13] }'
    done
}
run() { # target seconds
    "$PGBIN/pgbench" -n -S -M "${MODE:-simple}" -c 8 -j 2 -T "$2" -h 127.0.0.1 -p "${PORTN[$1]}" -U bench bench 2>&1
}
for t in $TARGETS; do run "$t" 2 >/dev/null; done # warm-up
for r in $(seq "${ROUNDS:-3}"); do
    for t in $TARGETS; do
        read -r u0 s0 < <(awk '{print $14, $15}' "/proc/${PID[$t]}/stat")
        [ -n "${THREADS:-}" ] && threads_cpu "${PID[$t]}" >"$WORK/threads0.$t"
        if [ -n "${SYSCALLS:-}" ]; then
            perf stat -x, -e raw_syscalls:sys_enter,page-faults,context-switches -p "${PID[$t]}" -o "$WORK/perf.$t" &
            PERF=$!
        fi
        out=$(run "$t" "${T:-8}")
        read -r u1 s1 < <(awk '{print $14, $15}' "/proc/${PID[$t]}/stat")
        [ -n "${THREADS:-}" ] && threads_cpu "${PID[$t]}" >"$WORK/threads1.$t"
        calls=0 faults=0 switches=0
        if [ -n "${SYSCALLS:-}" ]; then
            kill -INT "$PERF"; wait "$PERF"
            calls=$(awk -F, '/raw_syscalls/ {print $1}' "$WORK/perf.$t")
            faults=$(awk -F, '/page-faults/ {print $1}' "$WORK/perf.$t")
            switches=$(awk -F, '/context-switches/ {print $1}' "$WORK/perf.$t")
        fi
        txns=$(echo "$out" | awk '/processed/ {split($NF, a, "/"); print a[1]}')
        tps=$(echo "$out" | awk '/tps =/ {print $3}')
        [ -n "$txns" ] || die "pgbench against $t failed: $out"
        awk -v r="$r" -v t="$t" -v tps="$tps" -v n="$txns" -v hz="$(getconf CLK_TCK)" \
            -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v c="${calls:-0}" -v pf="${faults:-0}" -v cs="${switches:-0}" 'BEGIN {
                f = 1e6 / hz / n
                printf "round %d %-10s tps %7.0f  user %5.2f  sys %5.2f  total %5.2f us/txn", r, t, tps, u*f, s*f, (u+s)*f
                if (c > 0) printf "  syscalls %5.2f  faults %5.3f  switches %5.2f /txn", c / n, pf / n, cs / n
                printf "\n"
            }'
        if [ -n "${THREADS:-}" ]; then
            # per thread name: CPU used during the run (threads that came and went are
            # missed: a session's work runs on the long-lived workers)
            awk -v n="$txns" -v hz="$(getconf CLK_TCK)" '
                FNR == NR { u0[$1] += $2; s0[$1] += $3; next }
                { u1[$1] += $2; s1[$1] += $3 }
                END { f = 1e6 / hz / n
                      for (k in u1) printf "        thread %-16s user %5.2f  sys %5.2f us/txn\n", k, (u1[k] - u0[k]) * f, (s1[k] - s0[k]) * f }
            ' "$WORK/threads0.$t" "$WORK/threads1.$t"
        fi
    done
done
if [ -n "${STRACE:-}" ]; then
    for t in $TARGETS; do
        strace -c -f -p "${PID[$t]}" -o "$WORK/strace.$t" &
        ST=$!
        sleep 0.5
        out=$(run "$t" 3)
        kill -INT "$ST"; wait "$ST"
        txns=$(echo "$out" | awk '/processed/ {split($NF, a, "/"); print a[1]}')
        log "$t under strace: $txns transactions; calls:"
        awk -v n="$txns" 'NF >= 5 && $NF != "syscall" && $NF != "total" && $4 ~ /^[0-9]+$/ {
            printf "  %-16s %6.2f per txn\n", $NF, $4 / n }' "$WORK/strace.$t"
    done
fi
if [ -n "${PROFILE:-}" ]; then
    for t in $(seq -f 'moat%g' -s ' ' 1 $n); do
        secs=${PROFILE_SECS:-4}
        run "$t" $((secs + 2)) >/dev/null &
        LOAD=$!
        sleep 1
        if [ -n "${PROFILE_GRAPH:-}" ]; then
            perf record -q -F 999 --call-graph dwarf,16384 -p "${PID[$t]}" -o "$WORK/perf.data.$t" -- sleep "$secs" 2>/dev/null
        else
            perf record -q -F 2999 -p "${PID[$t]}" -o "$WORK/perf.data.$t" -- sleep "$secs" 2>/dev/null
        fi
        wait "$LOAD"
        log "$t: top user-space symbols (self), perf record, $secs s"
        perf report -i "$WORK/perf.data.$t" --no-children --sort symbol --percent-limit 0.7 --stdio 2>/dev/null |
            grep -v '^#' | grep -v '^$' | grep -v '\[k\]' | cut -c1-110 | head -45
        log "$t: samples per thread and object (user and kernel)"
        perf report -i "$WORK/perf.data.$t" --no-children --sort comm,dso --percent-limit 1 --stdio 2>/dev/null |
            grep -v '^#' | grep -v '^$' | cut -c1-110 | head -20
        [ -n "${PROFILE_OUT:-}" ] && cp "$WORK/perf.data.$t" "$PROFILE_OUT.$t"
    done
fi
