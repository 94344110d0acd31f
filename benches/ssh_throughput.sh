#!/usr/bin/env bash
# SSH door throughput (SPEC section 8): `cat` of a big file and `scp` of it, straight to
# a real sshd and through pgmoat (recording on), round-robin in one run; medians in MB/s
# and pgmoat's peak RSS. Needs root (a login user is created), openssh-server/client,
# python3, and a release build:
#
#   cargo build --release && BIN=target/release/pgmoat benches/ssh_throughput.sh
#
# SIZE_MB (default 1024) and ROUNDS (default 3) adjust the run; BEFORE=binary also runs
# an older build ("before"), round-robin in the same run; RECORD=0 runs pgmoat
# without an audit store (so without recordings), to see what recording costs;
# PERF_OUT=file records a `perf` CPU profile of pgmoat for PERF_SECS (5) of the first
# `cat` through it (`perf report -i file`).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/pgmoat}
SIZE_MB=${SIZE_MB:-1024}
ROUNDS=${ROUNDS:-3}
USER_NAME=pgmoat-ssh
[ -x "$BIN" ] || { echo "no pgmoat binary at $BIN (cargo build --release)"; exit 1; }
id -u "$USER_NAME" >/dev/null 2>&1 || useradd -m -s /bin/sh "$USER_NAME"
usermod -p '*' "$USER_NAME"   # unlocked for keys, no password works
HOME_DIR=/home/$USER_NAME

W=$(mktemp -d /tmp/pgmoat-ssh-bench.XXXXXX)
chmod 755 "$W"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W" "$HOME_DIR/bench.bin"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
for k in host deploy client; do ssh-keygen -q -t ed25519 -N "" -C bench -f "$W/$k"; done
cp "$W/deploy.pub" "$W/authorized_keys"; chmod 644 "$W/authorized_keys"
mkdir -p /run/sshd
SSHD_PORT=$(free_port)
cat > "$W/sshd_config" <<CONF
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $W/host
PidFile $W/sshd.pid
AuthorizedKeysFile $W/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowUsers $USER_NAME
Subsystem sftp internal-sftp
CONF
/usr/sbin/sshd -D -e -f "$W/sshd_config" 2>"$W/sshd.log" & pids+=($!)
echo "[127.0.0.1]:$SSHD_PORT $(cut -d' ' -f1,2 "$W/host.pub")" > "$W/known_hosts"

# One gateway per binary: BIN ("pgmoat"), and BEFORE ("before") when given, each with
# its own audit store, measured round-robin in the same run.
declare -A GW_PORT GW_PID
start_gateway() { # name binary
  local name=$1 bin=$2 port; port=$(free_port)
  mkdir -p "$W/$name"
  cat > "$W/$name/pgmoat.yaml" <<CONF
listen: 127.0.0.1:0
targets:
  demo: { host: 127.0.0.1, port: 1, user: nobody, password_env: BENCH_PW, tls: disable }
identities:
  users:
    - name: bench
      password_env: BENCH_PW
      ssh_keys: ["$(cut -d' ' -f1,2 "$W/client.pub")"]
$( [ "${RECORD:-1}" = 0 ] || printf 'audit:\n  dir: %s/audit\n  durability: batch\n' "$W/$name")
ssh:
  listen: 127.0.0.1:$port
  host_key: $W/gw_host
  targets:
    bench:
      host: 127.0.0.1
      port: $SSHD_PORT
      user: $USER_NAME
      key_file: $W/deploy
      known_hosts: $W/known_hosts
CONF
  BENCH_PW=x RUST_LOG=warn "$bin" serve -c "$W/$name/pgmoat.yaml" 2>"$W/$name/pgmoat.log" & GW_PID[$name]=$!; pids+=($!)
  GW_PORT[$name]=$port
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
    sleep 0.1
  done
}
GATEWAYS=(pgmoat)
start_gateway pgmoat "$BIN"
if [ -n "${BEFORE:-}" ]; then GATEWAYS+=(before); start_gateway before "$BEFORE"; fi
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$SSHD_PORT) 2>/dev/null && break; sleep 0.1; done

dd if=/dev/urandom of="$HOME_DIR/bench.bin" bs=1M count="$SIZE_MB" status=none
chown "$USER_NAME:" "$HOME_DIR/bench.bin"
OPTS=(-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o IdentitiesOnly=yes)
direct_ssh=(ssh -p "$SSHD_PORT" "${OPTS[@]}" -i "$W/deploy" "$USER_NAME@127.0.0.1")
direct_scp=(scp -P "$SSHD_PORT" "${OPTS[@]}" -i "$W/deploy" "$USER_NAME@127.0.0.1:bench.bin")
gw_ssh() { local n=$1; shift; ssh -p "${GW_PORT[$n]}" "${OPTS[@]}" -i "$W/client" "bench+bench@127.0.0.1" "$@"; }
gw_scp() { local n=$1; shift; scp -P "${GW_PORT[$n]}" "${OPTS[@]}" -i "$W/client" "bench+bench@127.0.0.1:bench.bin" "$@"; }

mbps() { python3 -c "import sys; print(f'{$SIZE_MB/float(sys.argv[1]):.0f}')" "$1"; }
timed() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); python3 -c "print($t1-$t0)"; }
recordings() { # name what: report and remove what the transfer left in the audit store
  [ -d "$W/$1/audit/recordings" ] && du -sh "$W/$1/audit/recordings" | sed "s/^/$1 $2 recording: /"
  rm -rf "$W/$1/audit/recordings"
}
declare -A results
KEYS=(cat_direct scp_direct)
for n in "${GATEWAYS[@]}"; do KEYS+=("cat_$n" "scp_$n"); done
for r in $(seq "$ROUNDS"); do
  results[cat_direct]+="$(mbps "$(timed "${direct_ssh[@]}" cat bench.bin)") "
  for n in "${GATEWAYS[@]}"; do
    if [ -n "${PERF_OUT:-}" ] && [ "$r" = 1 ] && [ "$n" = pgmoat ]; then
      # A CPU profile of the gateway during the first `cat` through it.
      perf record -F 499 -g -p "${GW_PID[$n]}" -o "$PERF_OUT" -- sleep "${PERF_SECS:-5}" 2>/dev/null & perf_pid=$!
    fi
    results[cat_$n]+="$(mbps "$(timed gw_ssh "$n" cat bench.bin)") "
    [ -n "${perf_pid:-}" ] && { wait "$perf_pid" || true; perf_pid=; }
    recordings "$n" cat
  done
  results[scp_direct]+="$(mbps "$(timed "${direct_scp[@]}" "$W/down.bin")") "; rm -f "$W/down.bin"
  for n in "${GATEWAYS[@]}"; do
    results[scp_$n]+="$(mbps "$(timed gw_scp "$n" "$W/down.bin")") "; rm -f "$W/down.bin"
    recordings "$n" scp
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "size: $SIZE_MB MiB, rounds: $ROUNDS, recording: $( [ "${RECORD:-1}" = 0 ] && echo off || echo on ) (MB/s, median; all rounds in brackets)"
for k in "${KEYS[@]}"; do
  echo "$k: $(echo "${results[$k]}" | median) [${results[$k]}]"
done
for n in "${GATEWAYS[@]}"; do
  echo "$n peak RSS: $(grep VmHWM /proc/${GW_PID[$n]}/status | awk '{print $2, $3}')"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
