#!/usr/bin/env bash
# held_memory.sh - what 1,000 statements held for approval cost pgmoat.
#
# Usage (from the repo root, after `cargo build --release`; needs python3-psycopg):
#   benches/held_memory.sh
#   HELD=2000 benches/held_memory.sh
#
# One throwaway Postgres (SCRAM, max_connections above HELD), one pgmoat in front
# with an `approve` rule on writes to `orders`. benches/held_memory.py opens HELD
# sessions (psycopg, extended protocol), has each send an UPDATE that the rule holds
# at its Execute, and reports pgmoat's RSS (no sessions, HELD idle sessions, HELD
# held statements) and its CPU while they all wait (target: under 50 MiB extra for
# 1,000, and no CPU spent waiting), then denies them all through the admin API.
set -uo pipefail

HELD=${HELD:-1000}
REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
PGMOAT_BIN=${PGMOAT_BIN:-$REPO_ROOT/target/release/pgmoat}
. "$REPO_ROOT/benches/throwaway_pg.sh" held_memory
[ -x "$PGMOAT_BIN" ] || die "no pgmoat at $PGMOAT_BIN (cargo build --release)"
start_pg "max_connections = $((HELD + 50))"
MOAT_PORT=$(free_port)
ADMIN_PORT=$(free_port)

PGPASSWORD=$SUPER_PW "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
    -c "CREATE ROLE app LOGIN PASSWORD '$APP_PW'" -c "CREATE DATABASE bench OWNER app" || die "roles"
PGPASSWORD=$APP_PW "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U app -d bench -c "
CREATE TABLE orders (id int PRIMARY KEY, status text);
INSERT INTO orders SELECT i, 'open' FROM generate_series(1, $HELD) i;" || die "table"

mkdir -p "$WORK/rules"
printf '%s\n' \
    'rules:' \
    '  - id: agent-writes-need-approval' \
    '    when: { groups: [agents], tables_written: [orders] }' \
    '    action: approve' \
    '    approvers: [dba]' >"$WORK/rules/rules.yaml"
printf '%s\n' \
    "listen: 127.0.0.1:$MOAT_PORT" \
    "admin: { listen: 127.0.0.1:$ADMIN_PORT, token_env: ADMIN_TOKEN }" \
    'rules: rules/' \
    'approvals: { timeout: 10m }' \
    'targets:' \
    "  bench: { host: 127.0.0.1, port: $PG_PORT, database: bench, user: app, password_env: APP_PW, tls: disable }" \
    'identities:' \
    '  users:' \
    '    - { name: agent, password_env: AGENT_PW, groups: [agents] }' \
    '    - { name: alice, password_env: DBA_PW, groups: [dba] }' >"$WORK/pgmoat.yaml"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(cd "$WORK" && APP_PW=$APP_PW AGENT_PW=agent-pw DBA_PW=dba-pw ADMIN_TOKEN=t RUST_LOG=warn \
    exec "$PGMOAT_BIN" serve -c "$WORK/pgmoat.yaml") >"$WORK/pgmoat.log" 2>&1 &
MOAT_PID=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$MOAT_PORT") 2>/dev/null && break; sleep 0.2; done

HELD=$HELD MOAT_PID=$MOAT_PID ADMIN=http://127.0.0.1:$ADMIN_PORT ADMIN_TOKEN=t \
    DSN="host=127.0.0.1 port=$MOAT_PORT dbname=bench user=agent password=agent-pw" \
    python3 "$REPO_ROOT/benches/held_memory.py" || die "held_memory.py failed; pgmoat log: $(tail -5 "$WORK/pgmoat.log")"
