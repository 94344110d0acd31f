#!/usr/bin/env bash
# driver_suites.sh - run drivers' own test suites directly and through pgmoat.
#
# Usage (from the repo root, after `cargo build --release`):
#   PSYCOPG_SRC=/path/psycopg NODE_POSTGRES_SRC=/path/node-postgres benches/driver_suites.sh
#
# The suites' test files are in neither registry's package (the npm `pg` tarball and
# psycopg's PyPI sdist carry the library only), so the script needs source checkouts
# at the pinned tags, which it copies (it writes nothing into them):
#   PSYCOPG_SRC        psycopg, tag 3.3.4      (commit 83f110367cdd249cc0a352e2246ecea9e878e5a0)
#   NODE_POSTGRES_SRC  node-postgres, tag pg@8.23.0 (commit df274d1ba9ad9d11a8f1079314faeafde7208207)
# The libraries themselves and the suites' test dependencies come from PyPI and npm,
# pinned below, into a cache folder kept between runs.
#
# Environment:
#   SUITES        which suites, default "psycopg pg pg-cursor pg-pool"
#   PGMOAT_BIN    pgmoat binary, default $CARGO_TARGET_DIR or <repo>/target, release/pgmoat
#   CACHE         installs (a venv, node_modules), default /tmp/pgmoat-driver-suites
#   RESULTS       where results and logs are kept, default $CACHE/results-<time>
#   PYTEST_ARGS   more pytest arguments, e.g. "-m 'not slow'" or "-x tests/test_copy.py"
#   ONLY          direct | pgmoat: run one side only (no comparison)
#   PARALLEL      1: run the two sides of each suite at the same time (two test
#                 processes; psycopg's full suite takes ~20-30 min a side here); pgmoat's
#                 target `suite` is then the database suite_moat
#
# What it does: starts a throwaway Postgres (initdb as the `postgres` user when root,
# SCRAM, 127.0.0.1 on a free port, max_prepared_transactions=10 for psycopg's TPC
# tests) with a superuser role `suite` and database `suite` (the suites create and drop
# what they test, some terminate their own backends), and a release pgmoat in front of
# it with no rules: one target `suite` (the same role's credentials held by pgmoat) and
# a local SCRAM user `suite` with the same password, so the suites use one DSN that
# differs in the port only. Each suite then runs directly and through pgmoat, one test
# process at a time:
#   psycopg    pytest on its tests/ (psycopg, psycopg-binary, psycopg-pool from PyPI),
#              per-test timeout 120 s, junit XML
#   pg         node-postgres's own runner: `node FILE` for every test/integration/**/*-tests.js
#              (each file stops at its first failure), SCRAM tests on, no TLS
#   pg-cursor, pg-pool   mocha (json reporter) on their test/ folders
# and prints every test that passes directly but not through pgmoat (psycopg's run once
# more through pgmoat first: one that passes then is reported as flaky), then per-suite
# totals. Those that fail only because of a difference SPEC.md documents (the identity
# appended to application_name; standard_conforming_strings off refused) are listed
# in driver_suites/documented.tsv with the reason and are reported apart. Exit 0 when
# no other test passes directly and not through pgmoat, 1 otherwise.
#
# Nothing leaves this machine: tests that connect to other hosts are deselected by name
# (psycopg: test_connect_error_multi_hosts_each_message_preserved dials documentation
# range addresses, test_resolve_error_host looks up a name on the network resolver),
# and loopback guards (driver_suites/loopback_guard.{py,js}) refuse any other address
# or host name lookup from Python and node. Everything started is stopped on exit.
set -uo pipefail
# Everything below is inside main(), read whole before it runs: editing this file
# while it runs cannot change what the run does.
main() {
REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERE=$REPO_ROOT/benches/driver_suites
SUITES=${SUITES:-psycopg pg pg-cursor pg-pool}
CACHE=${CACHE:-/tmp/pgmoat-driver-suites}
PGMOAT_BIN=${PGMOAT_BIN:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/pgmoat}
ONLY=${ONLY:-}
PARALLEL=${PARALLEL:-0}

# ---------------------------------------------------------------- pins
PSYCOPG_VERSION=3.3.4
PY_PINS=(
    "psycopg==$PSYCOPG_VERSION" "psycopg-binary==$PSYCOPG_VERSION" "psycopg-pool==3.3.1"
    "pytest==8.4.2" "pytest-timeout==2.4.0" "anyio==4.9.0" "pproxy==2.7.9" "dnspython==2.7.0"
)
PG_VERSION=8.23.0
NODE_PINS=(
    "pg@$PG_VERSION" "pg-cursor@2.22.0" "pg-pool@3.14.0" "pg-protocol@1.16.0" "pg-connection-string@2.14.0"
    "pg-types@2.2.0" "pgpass@1.0.5" "async@2.6.4" "bluebird@3.7.2" "co@4.6.0"
    "pg-copy-streams@0.3.0" "mocha@11.7.5" "expect.js@0.3.1" "lodash@4.17.21"
)
# never run: they connect past this machine (see the header)
PYTEST_EXCLUDE="not test_connect_error_multi_hosts_each_message_preserved and not test_resolve_error_host"
# mypy's static checks of typing examples (test_typing): no database, and mypy is not installed
PYTEST_MARKERS="not mypy"

. "$REPO_ROOT/benches/throwaway_pg.sh" driver_suites

want() { case " $SUITES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
need_py=0; need_node=0
want psycopg && need_py=1
{ want pg || want pg-cursor || want pg-pool; } && need_node=1

# ---------------------------------------------------------------- sources
if [ $need_py = 1 ]; then
    [ -n "${PSYCOPG_SRC:-}" ] && [ -d "$PSYCOPG_SRC/tests" ] ||
        die "PSYCOPG_SRC must name a psycopg checkout at tag $PSYCOPG_VERSION (its tests/ are in no PyPI package)"
    v=$(sed -n 's/^version = "\(.*\)"/\1/p' "$PSYCOPG_SRC/psycopg/pyproject.toml" | head -1)
    [ "$v" = "$PSYCOPG_VERSION" ] || log "WARNING: PSYCOPG_SRC is psycopg $v, the pinned version is $PSYCOPG_VERSION"
fi
if [ $need_node = 1 ]; then
    [ -n "${NODE_POSTGRES_SRC:-}" ] && [ -d "$NODE_POSTGRES_SRC/packages/pg/test" ] ||
        die "NODE_POSTGRES_SRC must name a node-postgres checkout at tag pg@$PG_VERSION (its tests are in no npm package)"
    v=$(node -p "require('$NODE_POSTGRES_SRC/packages/pg/package.json').version")
    [ "$v" = "$PG_VERSION" ] || log "WARNING: NODE_POSTGRES_SRC has pg $v, the pinned version is $PG_VERSION"
fi
[ -x "$PGMOAT_BIN" ] || [ "$ONLY" = direct ] || die "no pgmoat at $PGMOAT_BIN: cargo build --release first (or set PGMOAT_BIN)"

# ---------------------------------------------------------------- installs (cached)
mkdir -p "$CACHE"
if [ $need_py = 1 ]; then
    VENV=$CACHE/venv
    if [ "$(cat "$VENV/.pins" 2>/dev/null)" != "${PY_PINS[*]}" ]; then
        log "installing ${PY_PINS[*]} into $VENV"
        rm -rf "$VENV"
        python3 -m venv "$VENV" || die "python3 -m venv failed"
        "$VENV/bin/pip" install -q "${PY_PINS[@]}" || die "pip install failed"
        echo "${PY_PINS[*]}" >"$VENV/.pins"
    fi
    rm -rf "$CACHE/psycopg"; mkdir -p "$CACHE/psycopg"
    cp -r "$PSYCOPG_SRC/tests" "$PSYCOPG_SRC/tools" "$PSYCOPG_SRC/pyproject.toml" "$CACHE/psycopg/"
fi
if [ $need_node = 1 ]; then
    NP=$CACHE/node-postgres
    mkdir -p "$NP/packages"
    if [ "$(cat "$NP/.pins" 2>/dev/null)" != "${NODE_PINS[*]}" ]; then
        log "installing ${NODE_PINS[*]} into $NP/node_modules"
        rm -rf "$NP/node_modules" "$NP/package.json" "$NP/package-lock.json"
        echo '{"name":"driver-suites","private":true}' >"$NP/package.json"
        (cd "$NP" && npm install --no-audit --no-fund --omit=optional --save-exact "${NODE_PINS[@]}") \
            >"$CACHE/npm-install.log" 2>&1 || { tail -20 "$CACHE/npm-install.log" >&2; die "npm install failed"; }
        echo "${NODE_PINS[*]}" >"$NP/.pins"
    fi
    for p in pg pg-cursor pg-pool; do
        rm -rf "${NP:?}/packages/$p"
        # the tests and the package's own source; dependencies resolve to $NP/node_modules
        (cd "$NODE_POSTGRES_SRC/packages/$p" && tar -c --exclude=node_modules .) |
            (mkdir -p "$NP/packages/$p" && tar -x -C "$NP/packages/$p")
    done
fi

RESULTS=${RESULTS:-$CACHE/results-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RESULTS"

# ---------------------------------------------------------------- postgres + pgmoat
start_pg "max_prepared_transactions = 10" "max_connections = 200"
log "postgres $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"
PGPASSWORD=$SUPER_PW "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres <<EOF ||
CREATE ROLE suite SUPERUSER LOGIN PASSWORD '$APP_PW';
CREATE DATABASE suite OWNER suite;
CREATE DATABASE suite_moat OWNER suite;
EOF
    die "creating role/database failed"

MOAT_PORT=""
# Run at the same time, the two sides would create and drop the same tables and types:
# pgmoat's side then gets a database of its own (no test names its database's name).
MOAT_DB=suite; [ "$PARALLEL" = 1 ] && MOAT_DB=suite_moat
if [ "$ONLY" != direct ]; then
    MOAT_PORT=$(free_port)
    ADMIN_PORT=$(free_port)
    cat >"$WORK/pgmoat.yaml" <<EOF
listen: 127.0.0.1:$MOAT_PORT
admin:
  listen: 127.0.0.1:$ADMIN_PORT
targets:
  suite:
    host: 127.0.0.1
    port: $PG_PORT
    database: $MOAT_DB
    user: suite
    password_env: SUITE_DB_PASSWORD
    tls: disable
  # the databases the suites name besides their own (node-postgres's gh-issues/130
  # terminates its backend with psql on template1), with the same role
  template1:
    host: 127.0.0.1
    port: $PG_PORT
    user: suite
    password_env: SUITE_DB_PASSWORD
    tls: disable
  postgres:
    host: 127.0.0.1
    port: $PG_PORT
    user: suite
    password_env: SUITE_DB_PASSWORD
    tls: disable
identities:
  users:
    - name: suite
      password_env: SUITE_CLIENT_PASSWORD
      groups: [suite]
EOF
    SUITE_DB_PASSWORD=$APP_PW SUITE_CLIENT_PASSWORD=$APP_PW RUST_LOG=${RUST_LOG:-info} \
        "$PGMOAT_BIN" serve -c "$WORK/pgmoat.yaml" --log-format json >"$RESULTS/pgmoat.log" 2>&1 &
    MOAT_PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$MOAT_PORT") 2>/dev/null && break
        kill -0 "$MOAT_PID" 2>/dev/null || break
        sleep 0.1
    done
    (exec 3<>"/dev/tcp/127.0.0.1/$MOAT_PORT") 2>/dev/null || die "pgmoat did not start: $(tail -5 "$RESULTS/pgmoat.log")"
    log "pgmoat ($PGMOAT_BIN, no rules) on 127.0.0.1:$MOAT_PORT"
fi

# ---------------------------------------------------------------- runners
# run_<suite> SIDE PORT -> $RESULTS/<suite>.<side>.tsv (status<TAB>test id), output in .log
run_psycopg() { # side port [test ids...]
    local side=$1 port=$2 out=$RESULTS/psycopg.$1
    shift 2
    # shellcheck disable=SC2086
    (cd "$CACHE/psycopg" &&
        PSYCOPG_TEST_DSN="host=127.0.0.1 port=$port dbname=suite user=suite password=$APP_PW" \
        PYTHONPATH=$HERE timeout 3600 "$VENV/bin/python" -m pytest -p loopback_guard \
        -o cache_dir="$WORK/pytest-cache-$side" -o junit_family=xunit1 --timeout=120 -q -rN \
        --junitxml="$out.xml" -k "$PYTEST_EXCLUDE" -m "$PYTEST_MARKERS" ${PYTEST_ARGS:-} "$@") >"$out.log" 2>&1
    tail -1 "$out.log" | sed "s/^/  psycopg $side: /" >&2
    python3 "$HERE/results.py" junit "$out.xml" >"$out.tsv"
}

node_env() { # port command...
    local port=$1; shift
    env PGHOST=127.0.0.1 PGPORT="$port" PGUSER=suite PGPASSWORD="$APP_PW" PGDATABASE=suite \
        PGTESTNOSSL=true SCRAM_TEST_PGHOST=127.0.0.1 SCRAM_TEST_PGPORT="$port" \
        SCRAM_TEST_PGUSER=suite SCRAM_TEST_PGPASSWORD="$APP_PW" SCRAM_TEST_PGDATABASE=suite \
        NODE_OPTIONS="--require $HERE/loopback_guard.js" "$@"
}

run_pg() {
    local side=$1 port=$2 out=$RESULTS/pg.$1 f rc
    : >"$out.tsv"; : >"$out.log"
    while read -r f; do
        (cd "$NP/packages/pg" && node_env "$port" timeout 120 node "$f") >"$WORK/one.$side.out" 2>&1
        rc=$?
        { echo "=== $f (exit $rc)"; cat "$WORK/one.$side.out"; } >>"$out.log"
        python3 "$HERE/results.py" pgfile "${f#test/integration/}" "$WORK/one.$side.out" "$rc" >>"$out.tsv"
    done < <(cd "$NP/packages/pg" && find test/integration -name '*-tests.js' | sort)
    echo "  pg $side: $(cut -f1 "$out.tsv" | sort | uniq -c | tr '\n' ' ')" >&2
}

run_mocha() { # package side port
    local pkg=$1 side=$2 port=$3 out=$RESULTS/$1.$2
    (cd "$NP/packages/$pkg" && node_env "$port" timeout 900 "$NP/node_modules/.bin/mocha" --exit \
        --reporter json --reporter-option output="$out.json" 'test/*.js') >"$out.log" 2>&1
    python3 "$HERE/results.py" mocha "$out.json" >"$out.tsv" || echo -e "fail\t$pkg (mocha did not finish)" >"$out.tsv"
    echo "  $pkg $side: $(cut -f1 "$out.tsv" | sort | uniq -c | tr '\n' ' ')" >&2
}

run_suite() { # suite side port
    case $1 in
        psycopg) run_psycopg "$2" "$3" ;;
        pg) run_pg "$2" "$3" ;;
        pg-cursor | pg-pool) run_mocha "$1" "$2" "$3" ;;
        *) die "unknown suite $1" ;;
    esac
}

# ---------------------------------------------------------------- run
regressions=0
summary=()
for s in $SUITES; do
    sides=()
    for side in direct pgmoat; do
        [ -n "$ONLY" ] && [ "$ONLY" != "$side" ] && continue
        port=$PG_PORT; [ "$side" = pgmoat ] && port=$MOAT_PORT
        log "$s $side (127.0.0.1:$port)"
        if [ "$PARALLEL" = 1 ]; then
            (t0=$SECONDS; run_suite "$s" "$side" "$port"; log "$s $side took $((SECONDS - t0)) s") &
            sides+=($!)
        else
            t0=$SECONDS
            run_suite "$s" "$side" "$port"
            log "$s $side took $((SECONDS - t0)) s"
        fi
    done
    [ ${#sides[@]} = 0 ] || wait "${sides[@]}"
    if [ -z "$ONLY" ]; then
        rerun=""
        if [ "$s" = psycopg ]; then
            # timing tests fail now and then on a loaded machine: what fails through
            # pgmoat alone runs once more, through pgmoat, before it counts
            mapfile -t again < <(python3 "$HERE/results.py" candidates "$RESULTS/$s.direct.tsv" \
                "$RESULTS/$s.pgmoat.tsv" "$s" "$HERE/documented.tsv")
            if [ ${#again[@]} -gt 0 ] && [ ${#again[@]} -le 200 ]; then
                log "psycopg: ${#again[@]} tests pass directly and not through pgmoat; running them once more"
                run_psycopg pgmoat-again "$MOAT_PORT" "${again[@]}"
                rerun=$RESULTS/psycopg.pgmoat-again.tsv
            fi
        fi
        line=$(python3 "$HERE/results.py" compare "$RESULTS/$s.direct.tsv" "$RESULTS/$s.pgmoat.tsv" "$s" \
            "$HERE/documented.tsv" $rerun)
        rc=$?
        echo "$line" | grep -v '^[a-z-]*: direct' || true
        summary+=("$(echo "$line" | grep '^[a-z-]*: direct')")
        [ $rc = 0 ] || regressions=$((regressions + 1))
    fi
done
if [ "$ONLY" != direct ]; then
    kill "$MOAT_PID" 2>/dev/null; wait "$MOAT_PID" 2>/dev/null; MOAT_PID=""
    n=$(grep -c '"level":"\(ERROR\|WARN\)"' "$RESULTS/pgmoat.log" || true)
    log "pgmoat logged $n warnings/errors (pgmoat.log)"
fi
echo
printf '%s\n' "${summary[@]}"
log "results and logs: $RESULTS"
[ $regressions = 0 ]
}
main "$@"
