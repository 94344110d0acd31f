#!/usr/bin/env bash
# cluster.sh - what scale-out costs: pgbench -S through one node and through three
# nodes sharing a state database, and the round trip of an approval across nodes.
#
# Usage (from the repo root, after `cargo build --release`):
#   benches/cluster.sh
#   DURATION=20 ROUNDS=3 APPROVALS=100 benches/cluster.sh
#
# Environment:
#   DURATION   seconds per pgbench run, default 10
#   ROUNDS     rounds of the throughput runs (medians are reported), default 3
#   APPROVALS  approval round trips to time, default 50
#   PGMOAT_BIN default <repo>/target/release/pgmoat
#
# What it does: one throwaway Postgres serves as the upstream (database `bench`,
# pgbench scale 10) and as the state database (database `pgmoat_state`). It runs
#   solo       one pgmoat without `cluster:`           pgbench -S -c 8 -j 2
#   member     one pgmoat with `cluster:` (alone)      pgbench -S -c 8 -j 2
#   three      three pgmoat with `cluster:`, one pgbench -S -c 3 -j 1 against each
# and reports TPS (summed over nodes) and pgmoat CPU (utime+stime of every node)
# per transaction. The control plane should cost nothing per statement that needs
# no approval: solo and member should match, and three should use the same CPU per
# transaction in total. Then it times APPROVALS approval round trips: a statement
# held on node 1 (psql), listed and approved through node 2's admin API; the time
# from the approve call to psql's return is the round trip (p50/p99 printed).
set -uo pipefail

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
APPROVALS=${APPROVALS:-50}
REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
PGMOAT_BIN=${PGMOAT_BIN:-$REPO_ROOT/target/release/pgmoat}
[ -x "$PGMOAT_BIN" ] || { echo "no pgmoat binary at $PGMOAT_BIN: cargo build --release first" >&2; exit 1; }
# shellcheck source=benches/throwaway_pg.sh
. "$REPO_ROOT/benches/throwaway_pg.sh" pgmoat-cluster-bench
PGBENCH=$PGBIN/pgbench
PSQL=$PGBIN/psql
command -v curl >/dev/null || die "curl is needed"

start_pg "max_connections = 200"
export PGPASSWORD=$SUPER_PW
psql_super() { "$PSQL" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }
psql_super -d postgres -c "CREATE ROLE app LOGIN PASSWORD '$APP_PW'" \
    -c "CREATE DATABASE bench OWNER app" -c "CREATE DATABASE pgmoat_state" >/dev/null || die "setup"
PGPASSWORD=$APP_PW "$PGBENCH" -q -i -s 10 -h 127.0.0.1 -p "$PG_PORT" -U app bench >/dev/null 2>&1 || die "pgbench -i"
PGPASSWORD=$APP_PW "$PSQL" -X -q -h 127.0.0.1 -p "$PG_PORT" -U app -d bench \
    -c "CREATE TABLE approvals_bench (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
        INSERT INTO approvals_bench SELECT i FROM generate_series(1, 10000) i" || die "setup table"

mkdir -p "$WORK/rules"
cat >"$WORK/rules/rules.yaml" <<'EOF'
rules:
  - id: approve-bench-writes
    when: { groups: [agents], tables_written: [approvals_bench] }
    action: approve
    approvers: [dba]
EOF

export APP_PW AGENT_PW=agent-pw ADMIN_TOKEN=bench-token
export STATE_URL="host=127.0.0.1 port=$PG_PORT user=postgres password=$SUPER_PW dbname=pgmoat_state"
PIDS=()
cleanup_nodes() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; PIDS=(); }
trap 'cleanup_nodes; cleanup' EXIT

# start_node NAME PORT ADMIN_PORT CLUSTER(0|1)
start_node() {
    local cluster=""
    if [ "$4" = 1 ]; then
        cluster="cluster:
  node: $1
  state_url_env: STATE_URL"
    fi
    cat >"$WORK/$1.yaml" <<EOF
listen: 127.0.0.1:$2
workers: 1
admin: { listen: 127.0.0.1:$3, token_env: ADMIN_TOKEN }
targets:
  bench: { host: 127.0.0.1, port: $PG_PORT, database: bench, user: app, password_env: APP_PW, tls: disable }
identities:
  users:
    - { name: agent, password_env: AGENT_PW, groups: [agents] }
    - { name: alice, password_env: AGENT_PW, groups: [dba] }
rules: $WORK/rules
approvals: { timeout: 60s }
$cluster
EOF
    "$PGMOAT_BIN" serve -c "$WORK/$1.yaml" >"$WORK/$1.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$2" && return; sleep 0.1; done
    die "node $1 did not start: $(tail -3 "$WORK/$1.log")"
}
cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$t"; }
HZ=$(getconf CLK_TCK)

# run_bench LABEL PORT... : pgbench -S against each port at once; prints "tps cpu_us_per_txn"
run_bench() {
    local ports=("$@") n=${#ports[@]} clients=8 jobs=2 i tps=0 before after
    [ "$n" -gt 1 ] && clients=3 && jobs=1
    before=$(cpu_ticks "${PIDS[@]}")
    for i in "${!ports[@]}"; do
        PGPASSWORD=agent-pw "$PGBENCH" -n -S -M prepared -c "$clients" -j "$jobs" -T "$DURATION" \
            -h 127.0.0.1 -p "${ports[$i]}" -U agent bench >"$WORK/pgbench.$i" 2>&1 &
    done
    wait # (a command substitution's subshell: its only jobs are these pgbench runs)
    after=$(cpu_ticks "${PIDS[@]}")
    for i in "${!ports[@]}"; do
        tps=$(awk -v t="$tps" '/^tps/ && /without/ {t += $3} END {print t}' "$WORK/pgbench.$i")
    done
    awk -v tps="$tps" -v d="$((after - before))" -v hz="$HZ" -v s="$DURATION" \
        'BEGIN { printf "%.0f %.2f\n", tps, d / hz * 1e6 / (tps * s) }'
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
declare -A TPS CPU
for round in $(seq "$ROUNDS"); do
    for mode in solo member three; do
        case $mode in
            solo) start_node solo 17001 17101 0; r=$(run_bench 17001) ;;
            member) start_node gw-1 17001 17101 1; r=$(run_bench 17001) ;;
            three) start_node gw-1 17001 17101 1; start_node gw-2 17002 17102 1; start_node gw-3 17003 17103 1
                   r=$(run_bench 17001 17002 17003) ;;
        esac
        cleanup_nodes
        log "round $round $mode: tps/cpu-us-per-txn $r"
        TPS[$mode]+="${r% *} "; CPU[$mode]+="${r#* } "
    done
done
echo
echo "pgbench -S -M prepared, ${DURATION}s, medians of $ROUNDS rounds (pgmoat CPU summed over nodes)"
printf '%-8s %10s %16s\n' mode tps cpu-us/txn
for mode in solo member three; do
    printf '%-8s %10s %16s\n' "$mode" "$(tr ' ' '\n' <<<"${TPS[$mode]}" | grep . | median)" \
        "$(tr ' ' '\n' <<<"${CPU[$mode]}" | grep . | median)"
done

# ---------------------------------------------------------------- approvals
start_node gw-1 17001 17101 1; start_node gw-2 17002 17102 1
api() { curl -s -H "Authorization: Bearer bench-token" "$@"; }
: >"$WORK/rtt"
for i in $(seq "$APPROVALS"); do
    PGPASSWORD=agent-pw "$PSQL" -X -q -h 127.0.0.1 -p 17001 -U agent -d bench \
        -c "UPDATE approvals_bench SET v = v + 1 WHERE id = $i" >/dev/null 2>&1 &
    held=$!
    id=""
    for _ in $(seq 500); do
        id=$(api "http://127.0.0.1:17102/api/v1/approvals" | python3 -c 'import json,sys; l=json.load(sys.stdin); print(l[0]["id"] if l else "")' 2>/dev/null)
        [ -n "$id" ] && break
        sleep 0.01
    done
    [ -n "$id" ] || die "no pending request seen through node 2"
    t0=$(date +%s%N)
    api -X POST -d '{"by":"alice"}' "http://127.0.0.1:17102/api/v1/approvals/$id/approve" >/dev/null
    wait "$held" || die "the approved statement failed"
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000)) >>"$WORK/rtt"
done
echo
echo "approval round trip (approve through node 2 -> statement done on node 1), $APPROVALS requests:"
sort -n "$WORK/rtt" | awk '{a[NR]=$1} END {printf "  p50 %.2f ms   p99 %.2f ms   max %.2f ms\n", a[int(NR*0.5+0.5)]/1000, a[int(NR*0.99+0.5)]/1000, a[NR]/1000}'
