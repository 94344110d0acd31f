#!/usr/bin/env bash
# mask_compare.sh - what masking costs pgmoat per transaction, measured with pgbench.
#
# Usage (from the repo root, after `cargo build --release`):
#   benches/mask_compare.sh
#   DURATION=20 ROUNDS=5 benches/mask_compare.sh
#
# One throwaway Postgres (SCRAM, fsync off) with a 10,000-row table of six text
# columns, one pgmoat in front with rules masking two of them (ssn: partial, email:
# email) for everyone but group `dba`. A pgbench custom script selects 100 rows x 6
# columns per transaction; it runs as `agent` (two columns masked in every row) and
# as `dba` (same query, same gateway, nothing masked), interleaved for ROUNDS rounds.
# Reported: TPS and pgmoat's CPU (utime+stime of its process) per transaction, and
# the masked/unmasked CPU ratio (target: at most 1.5).
set -uo pipefail

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-4}
MODE=${MODE:-prepared}
REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
PGMOAT_BIN=${PGMOAT_BIN:-$REPO_ROOT/target/release/pgmoat}
. "$REPO_ROOT/benches/throwaway_pg.sh" mask_compare
[ -x "$PGMOAT_BIN" ] || die "no pgmoat at $PGMOAT_BIN (cargo build --release)"
# utime+stime (ticks) of a process, all threads.
ticks() {
    local s
    s=$(cat "/proc/$1/stat") || { echo 0; return; }
    s=${s##*) }
    # shellcheck disable=SC2086
    set -- $s
    echo $((${12} + ${13}))
}
CLK_TCK=$(getconf CLK_TCK)
start_pg
MOAT_PORT=$(free_port)
ADMIN_PORT=$(free_port)

PGPASSWORD=$SUPER_PW "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
    -c "CREATE ROLE app LOGIN PASSWORD '$APP_PW'" -c "CREATE DATABASE bench OWNER app" || die "roles"
PGPASSWORD=$APP_PW "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U app -d bench -c "
CREATE TABLE people (id int PRIMARY KEY, name text, email text, ssn text, city text, note text);
INSERT INTO people SELECT i, 'Person ' || i, 'person' || i || '@example.com',
  (i % 900 + 100) || '-' || (i % 90 + 10) || '-' || (i % 9000 + 1000),
  'City ' || (i % 97), 'a note about person ' || i FROM generate_series(1, 10000) i;
ANALYZE people;" || die "table"

mkdir -p "$WORK/rules"
printf '%s\n' \
    'masks:' \
    '  - id: pii' \
    '    columns: [people.ssn]' \
    '    method: partial' \
    '    keep_last: 4' \
    '    unless: { groups: [dba] }' \
    '  - id: contact' \
    '    columns: [people.email]' \
    '    method: email' \
    '    unless: { groups: [dba] }' >"$WORK/rules/masks.yaml"
printf '%s\n' \
    "listen: 127.0.0.1:$MOAT_PORT" \
    'workers: 1' \
    "admin: { listen: 127.0.0.1:$ADMIN_PORT, token_env: ADMIN_TOKEN }" \
    'rules: rules/' \
    'targets:' \
    "  bench: { host: 127.0.0.1, port: $PG_PORT, database: bench, user: app, password_env: APP_PW, tls: disable }" \
    'identities:' \
    '  users:' \
    '    - { name: agent, password_env: AGENT_PW, groups: [agents] }' \
    '    - { name: dba, password_env: DBA_PW, groups: [dba] }' >"$WORK/pgmoat.yaml"
APP_PW=$APP_PW AGENT_PW=agent-pw DBA_PW=dba-pw ADMIN_TOKEN=t \
    "$PGMOAT_BIN" serve -c "$WORK/pgmoat.yaml" >"$WORK/pgmoat.log" 2>&1 &
MOAT_PID=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$MOAT_PORT") 2>/dev/null && break; sleep 0.2; done

printf '%s\n' '\set a random(1, 9900)' \
    'SELECT id, name, email, ssn, city, note FROM people WHERE id BETWEEN :a AND :a + 99;' >"$WORK/select100.sql"

q() { PGPASSWORD=$2 "$PGBIN/psql" -X -At -h 127.0.0.1 -p "$MOAT_PORT" -U "$1" -d bench -c "$3"; }
q agent agent-pw "SELECT ssn FROM people WHERE id = 1" | grep -q '^\*\*\*-\*\*-' || die "agent's ssn is not masked: $(cat "$WORK/pgmoat.log")"
q dba dba-pw "SELECT ssn FROM people WHERE id = 1" | grep -q '^[0-9]' || die "dba's ssn is masked"

run() { # user password -> "tps cpu_us_per_txn"
    local before after out tps txns
    before=$(ticks "$MOAT_PID")
    out=$(PGPASSWORD=$2 "$PGBIN/pgbench" -n -M "$MODE" -f "$WORK/select100.sql" -c "$CLIENTS" -j 2 -T "$DURATION" \
        -h 127.0.0.1 -p "$MOAT_PORT" -U "$1" bench 2>&1)
    after=$(ticks "$MOAT_PID")
    tps=$(echo "$out" | awk '/^tps/ {print $3; exit}')
    txns=$(echo "$out" | awk '/number of transactions actually processed/ {print $NF}')
    txns=${txns%%/*}
    awk -v t="$tps" -v d=$((after - before)) -v n="${txns:-0}" -v hz="$CLK_TCK" \
        'BEGIN { printf "%s %.2f\n", t, (n > 0 ? d / hz * 1e6 / n : 0) }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }

printf '%-6s %-8s %10s %14s\n' round identity tps 'pgmoat_us/txn'
M=()
U=()
for r in $(seq 1 "$ROUNDS"); do
    read -r t c < <(run agent agent-pw)
    printf '%-6s %-8s %10s %14s\n' "$r" agent "$t" "$c"
    M+=("$c")
    read -r t c < <(run dba dba-pw)
    printf '%-6s %-8s %10s %14s\n' "$r" dba "$t" "$c"
    U+=("$c")
done
m=$(median "${M[@]}")
u=$(median "${U[@]}")
awk -v m="$m" -v u="$u" -v mode="$MODE" 'BEGIN { printf "median pgmoat CPU per txn (%s): masked %.1f us, unmasked %.1f us, ratio %.2f (target <= 1.5)\n", mode, m, u, (u > 0 ? m / u : 0) }'
