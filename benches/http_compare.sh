#!/usr/bin/env bash
# The HTTP gateway against nginx as a reverse proxy, in one interleaved run.
#
#   cargo build --release && DURATION=10 ROUNDS=3 benches/http_compare.sh
#   BEFORE=/tmp/pgmoat-main DURATION=5 ROUNDS=5 benches/http_compare.sh   # and an older build, same run
#
# One nginx serves the upstream files (a small JSON document without PII, and one with
# SSNs); a second nginx proxies to it (keep-alive pool); pgmoat's HTTP gateway proxies
# to it too, with a bearer token (a local user's token_env secret), the audit trail on
# (batch), and a `json:` mask on the `masked` target only. wrk (or oha) drives each
# target round-robin; the script prints requests/s and p50/p99 latency per run, and
# the medians. AUDIT=0 runs pgmoat without an audit trail. WORKERS=n gives the nginx
# proxy n worker processes and pgmoat n tokio workers (default 1 each, so the two are
# compared like for like). BEFORE=binary runs a second pgmoat (say, main's build) on
# the same targets in the same rounds. SPLIT=1: after the rounds, one run per proxy
# (nginx's workers, pgmoat, BEFORE) measuring user and system CPU per request (from
# /proc/PID/stat) and the system calls per request by name (`perf stat` on the
# syscalls:sys_enter_* tracepoints), page faults, context switches and CPU migrations
# per request, the same split by thread (CPU, minor faults, voluntary and involuntary
# switches, from /proc/PID/task/*/{stat,status}: pgmoat's session thread apart from
# `pgmoat-audit`, `pgmoat-chores` and the rest), then one run each under `strace -c -f`
# for the calls that failed (EAGAIN). PROFILE=1: `perf record -g` of pgmoat over one run per
# path (small, masked); prints the top symbols (self) and keeps the data in
# $PROFILE_DIR (default /tmp). Needs: nginx, wrk (`apt-get install nginx wrk`); perf
# and strace for SPLIT and PROFILE.
# Numbers go to benches/README.md, never into tests.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-16}
WORKERS=${WORKERS:-1}
BEFORE=${BEFORE:-}
BIN=${BIN:-target/release/pgmoat}
[ -x "$BIN" ] || BIN=/work/main/target/release/pgmoat
command -v nginx >/dev/null || { echo "needs nginx: apt-get install -y nginx"; exit 1; }
command -v wrk >/dev/null || { echo "needs wrk: apt-get install -y wrk"; exit 1; }

W=$(mktemp -d /tmp/pgmoat-httpbench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$W"; }
trap cleanup EXIT

mkdir -p "$W/www" "$W/up" "$W/px" "$W/audit"
printf '{"status":"ok","items":[1,2,3],"name":"widget","price":12.5}' > "$W/www/small.json"
python3 - "$W/www/users.json" <<'PY'
import json, sys
users = [{"id": i, "name": f"user {i}", "ssn": f"{100+i:03d}-45-{1000+i:04d}", "plan": "pro"} for i in range(10)]
open(sys.argv[1], "w").write(json.dumps({"users": users}))
PY

nginx_conf() { # $1 dir, $2 port, $3 body of the server block, $4 workers
cat > "$1/nginx.conf" <<NGX
worker_processes ${4:-1};
daemon off;
user root;
error_log $1/error.log warn;
pid $1/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  default_type application/json;
  types { application/json json; }
  upstream up { server 127.0.0.1:18081; keepalive 64; }
  server {
    listen 127.0.0.1:$2 reuseport;
    $3
  }
}
NGX
}
nginx_conf "$W/up" 18081 "root $W/www; location / { }"
nginx_conf "$W/px" 18082 "location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; }" "$WORKERS"
nginx -p "$W/up" -c "$W/up/nginx.conf" & PIDS+=($!)
nginx -p "$W/px" -c "$W/px/nginx.conf" & PIDS+=($!)
NGINX_PX=$!

cat > "$W/rules.yaml" <<'YML'
masks:
  - id: ssn
    json: ["$.users[*].ssn"]
    targets: [masked]
    method: partial
YML
gateway_conf() { # $1 http port
cat <<YML
listen: 127.0.0.1:0
workers: $WORKERS
targets:
  unused: { host: 127.0.0.1, port: 1, user: x, tls: disable }
identities:
  users:
    - { name: bench, token_env: BENCH_TOKEN, groups: [agents] }
rules: $W/rules.yaml
$( [ "${AUDIT:-1}" = 1 ] && echo "audit: { dir: $W/audit, durability: batch }" )
http:
  listen: 127.0.0.1:$1
  targets:
    plain: { url: "http://127.0.0.1:18081" }
    masked: { url: "http://127.0.0.1:18081" }
YML
}
export BENCH_TOKEN=bench-token-0123456789abcdef
start_gateway() { # $1 binary, $2 http port, $3 name
  mkdir -p "$W/audit-$3"
  gateway_conf "$2" | sed "s#dir: $W/audit#dir: $W/audit-$3#" > "$W/$3.yaml"
  "$1" serve -c "$W/$3.yaml" 2>"$W/$3.log" & PIDS+=($!)
  for _ in $(seq 50); do curl -sf -o /dev/null -H "Authorization: Bearer $BENCH_TOKEN" "http://127.0.0.1:$2/plain/small.json" && break; sleep 0.2; done
  curl -sf -H "Authorization: Bearer $BENCH_TOKEN" "http://127.0.0.1:$2/masked/users.json" | grep -q '\*\*\*-\*\*-1000' || { echo "$3: masking not in effect"; cat "$W/$3.log"; exit 1; }
}
declare -A GW_PID
start_gateway "$BIN" 18083 pgmoat; GW_PID[pgmoat]=$!
if [ -n "$BEFORE" ]; then start_gateway "$BEFORE" 18084 before; GW_PID[before]=$!; fi

run() { # name url [header]
  local out
  if [ -n "${3:-}" ]; then out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "$3" "$2"); else out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$2"); fi
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  echo "$1 $rps $p50 $p99" | tee -a "$W/results"
}
AUTH="Authorization: Bearer $BENCH_TOKEN"
for r in $(seq "$ROUNDS"); do
  echo "round $r"
  run direct-small   http://127.0.0.1:18081/small.json
  run nginx-small    http://127.0.0.1:18082/small.json
  run pgmoat-small   http://127.0.0.1:18083/plain/small.json "$AUTH"
  [ -n "$BEFORE" ] && run before-small http://127.0.0.1:18084/plain/small.json "$AUTH"
  run direct-users   http://127.0.0.1:18081/users.json
  run nginx-users    http://127.0.0.1:18082/users.json
  run pgmoat-masked  http://127.0.0.1:18083/masked/users.json "$AUTH"
  [ -n "$BEFORE" ] && run before-masked http://127.0.0.1:18084/masked/users.json "$AUTH"
done
threads_cpu() { # pids: "name utime stime minflt nvcsw nivcsw" per thread (names with spaces joined by _)
  local p f
  for p in ${1//,/ }; do
    for f in /proc/"$p"/task/*; do
      sed -E 's/^[0-9]+ \((.*)\) /\1\t/' "$f/stat" 2>/dev/null |
        awk -F'\t' -v sw="$(awk '/^voluntary_ctxt_switches/ {v=$2} /^nonvoluntary_ctxt_switches/ {n=$2} END {print v, n}' "$f/status" 2>/dev/null)" \
          '{ gsub(/ /, "_", $1); split($2, a, " "); split(sw, c, " "); print $1, a[12], a[13], a[8], c[1], c[2] }'
    done
  done
}
split() { # name pids url [header]: CPU and system calls per request, one run
  local name=$1 pids=$2 url=$3 hdr=${4:-} out n u0=0 s0=0 u1=0 s1=0 p
  threads_cpu "$pids" >"$W/threads0.$name"
  for p in ${pids//,/ }; do read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat"); u0=$((u0 + a)); s0=$((s0 + b)); done
  perf stat -x, -e 'syscalls:sys_enter_*,page-faults,context-switches,cpu-migrations' -p "$pids" -o "$W/perf.$name" &
  local perf=$!
  sleep 0.3
  if [ -n "$hdr" ]; then out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" -H "$hdr" "$url"); else out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" "$url"); fi
  kill -INT "$perf"; wait "$perf" || true
  for p in ${pids//,/ }; do read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat"); u1=$((u1 + a)); s1=$((s1 + b)); done
  threads_cpu "$pids" >"$W/threads1.$name"
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  awk -v t="$name" -v n="$n" -v hz="$(getconf CLK_TCK)" -v u=$((u1 - u0)) -v s=$((s1 - s0)) 'BEGIN {
    f = 1e6 / hz / n
    printf "%-8s %9d requests  user %5.2f  sys %5.2f  total %5.2f us/request\n", t, n, u*f, s*f, (u+s)*f }'
  awk -F, -v n="$n" '$1 ~ /^[0-9]+$/ && $1 > 0 && $3 ~ /^syscalls:/ { sub("syscalls:sys_enter_", "", $3); tot += $1; printf "    %-16s %6.2f\n", $3, $1 / n }
    END { printf "    %-16s %6.2f per request\n", "(all)", tot / n }' "$W/perf.$name" | sort -k2 -rn
  awk -F, -v n="$n" '$1 ~ /^[0-9]+$/ && $3 !~ /^syscalls:/ { printf "    %-16s %6.3f per request\n", $3, $1 / n }' "$W/perf.$name"
  # per thread (by name; threads that came and went are missed): CPU, minor faults,
  # voluntary and involuntary context switches per request
  awk -v n="$n" -v hz="$(getconf CLK_TCK)" '
    FNR == NR { u0[$1] += $2; s0[$1] += $3; f0[$1] += $4; v0[$1] += $5; i0[$1] += $6; next }
    { u1[$1] += $2; s1[$1] += $3; f1[$1] += $4; v1[$1] += $5; i1[$1] += $6 }
    END { f = 1e6 / hz / n
      for (k in u1) printf "    thread %-16s user %5.2f  sys %5.2f us  faults %6.3f  vcsw %5.3f  ivcsw %5.3f /request\n", k,
        (u1[k] - u0[k]) * f, (s1[k] - s0[k]) * f, (f1[k] - f0[k]) / n, (v1[k] - v0[k]) / n, (i1[k] - i0[k]) / n }
  ' "$W/threads0.$name" "$W/threads1.$name"
  strace -c -f -p "$pids" -o "$W/strace.$name" 2>/dev/null &
  local st=$!
  sleep 0.5
  if [ -n "$hdr" ]; then out=$(wrk -t1 -c"$CONNS" -d3s -H "$hdr" "$url"); else out=$(wrk -t1 -c"$CONNS" -d3s "$url"); fi
  kill -INT "$st"; wait "$st" || true
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "    under strace -c ($n requests): calls and errors per request"
  awk -v n="$n" 'NF >= 5 && $NF != "syscall" && $NF != "total" && $4 ~ /^[0-9]+$/ {
      e = (NF == 6) ? $5 : 0; printf "      %-16s %6.2f calls %6.2f errors\n", $NF, $4 / n, e / n }' "$W/strace.$name"
}
if [ -n "${SPLIT:-}" ]; then
  echo
  echo "CPU and system calls per request (small JSON, ${DURATION}s, $CONNS connections):"
  split nginx "$(pgrep -P "$NGINX_PX" | paste -sd,)" http://127.0.0.1:18082/small.json
  split pgmoat "${GW_PID[pgmoat]}" http://127.0.0.1:18083/plain/small.json "$AUTH"
  [ -n "$BEFORE" ] && split before "${GW_PID[before]}" http://127.0.0.1:18084/plain/small.json "$AUTH"
  split pg-mask "${GW_PID[pgmoat]}" http://127.0.0.1:18083/masked/users.json "$AUTH"
fi
if [ -n "${PROFILE:-}" ]; then
  mkdir -p "${PROFILE_DIR:-/tmp}"
  for what in plain/small.json masked/users.json; do
    name=${what%%/*}
    wrk -t1 -c"$CONNS" -d"$((DURATION + 2))s" -H "$AUTH" "http://127.0.0.1:18083/$what" >/dev/null &
    load=$!
    sleep 1
    perf record -q -g -F 2999 -p "${GW_PID[pgmoat]}" -o "${PROFILE_DIR:-/tmp}/http-perf.$name.data" -- sleep "$DURATION" 2>/dev/null
    wait "$load"
    echo "pgmoat, $what: top symbols (self), perf record -g -F 2999, ${DURATION}s"
    perf report -i "${PROFILE_DIR:-/tmp}/http-perf.$name.data" --no-children --sort symbol --percent-limit 0.8 --stdio 2>/dev/null |
      grep -v '^#' | grep -v '^$' | grep '%' | cut -c1-120 | head -40
  done
fi
[ -s "$W/results" ] || exit 0
echo
echo "medians (requests/s, p50, p99) over $ROUNDS rounds of ${DURATION}s, $CONNS connections, $WORKERS worker(s):"
python3 - "$W/results" <<'PY'
import sys, statistics, collections
def ms(v):
    for suf, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(suf):
            return float(v[: -len(suf)]) * f
    return float(v)
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, rps, p50, p99 = line.split()
    rows[name].append((float(rps), ms(p50), ms(p99)))
for name, v in rows.items():
    print(f"{name:15s} {statistics.median(x[0] for x in v):>10.0f} req/s  p50 {statistics.median(x[1] for x in v):.3f} ms  p99 {statistics.median(x[2] for x in v):.3f} ms")
PY
