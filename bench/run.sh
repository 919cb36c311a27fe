#!/usr/bin/env bash
# Reproduces the figures in BENCHMARKS.md, all in one run on this machine:
#   bash bench/run.sh            # 10 s per measurement
#   DURATION=3 bash bench/run.sh # quicker, noisier
#   SECTIONS="tls echo" bash bench/run.sh   # only some sections: persistent,
#                                           # oneshot, latency, memory, echo, tls, deploy, broker, cpu
#   BEFORE=path/to/old/sockets SECTIONS=cpu bash bench/run.sh   # also measure an older build
# Installs what it needs (iperf3, redis, python3), builds the release binary,
# and prints a Markdown report on stdout. Every server and client here runs on
# loopback and shares the machine's cores unless a line says it is pinned.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
SECTIONS=${SECTIONS:-cpu persistent oneshot latency memory echo tls deploy broker}
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
ROOT=$(pwd)
S="$ROOT/target/release/sockets"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1; }
if ! need iperf3 || ! need redis-server || ! need redis-benchmark || ! need python3 || ! need taskset || ! need haproxy || ! need openssl || ! need valgrind; then
  echo "installing iperf3, redis, python3, haproxy, openssl, valgrind ..." >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 redis-server redis-tools python3 util-linux haproxy openssl valgrind >&2
fi
cargo build --release --bins --examples >&2
MINIMAL="$ROOT/target/release/examples/minimal_server"

# start NAME CMD...: runs a server that prints its address first on stdout; sets PORT.
start() {
  local name=$1; shift
  "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" &
  PIDS+=($!); LAST_PID=$!
  for _ in $(seq 100); do
    if [ -s "$WORK/$name.out" ]; then break; fi
    sleep 0.05
  done
  PORT=$(head -1 "$WORK/$name.out" | sed 's/.*://')
}
stop() { kill "$LAST_PID" 2>/dev/null || true; wait "$LAST_PID" 2>/dev/null || true; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
# cpu_ticks PID: user + system CPU the process has used, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# instructions N BENCH_FLAGS CMD...: instructions a server (CMD, which prints
# its address first; under callgrind) executes from start to exit while
# bench sends N requests.
instructions() {
  local n=$1 bench_flags=$2
  shift 2
  local out="$WORK/cg.$RANDOM"
  valgrind --tool=callgrind --callgrind-out-file="$out.cg" "$@" > "$out.stdout" 2>/dev/null &
  local pid=$!
  for _ in $(seq 400); do [ -s "$out.stdout" ] && break; sleep 0.05; done
  # shellcheck disable=SC2086 # flags are words
  "$S" bench app 127.0.0.1 "$(head -1 "$out.stdout" | sed 's/.*://')" $bench_flags -n "$n" -w 60 --json > /dev/null 2>&1 || true
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  grep -m1 -E '^(summary|totals):' "$out.cg" | awk '{ print $2 }'
}
# instructions_per_request BENCH_FLAGS CMD...: the difference between runs
# of 20,000 and 60,000 requests, over 40,000: start-up and shutdown cancel out.
instructions_per_request() {
  local a b
  a=$(instructions 20000 "$@"); b=$(instructions 60000 "$@")
  python3 -c "print(round(($b - $a) / 40000))"
}
# haproxy_defaults: the start of every HAProxy configuration here (one thread, TCP).
haproxy_defaults() {
  cat <<CFG
global
    maxconn 5000
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
CFG
}
# per_request TICKS REQUESTS: microseconds of CPU per request.
per_request() { python3 -c "print(f'{$1 * 1e6 / $(getconf CLK_TCK) / $2:.2f}')"; }

echo "# Benchmark run"
echo
echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), ${DURATION} s per measurement."
echo "Client and server share every core unless a line says they are pinned."
echo

# 0. Server CPU per unit of work, against references run the same way:
# the minimal server (examples/minimal_server.rs) and redis-server. The
# load generator is the same for each; bench --server-pid reads the
# server's CPU from /proc around the run.
if want cpu; then
echo "## Server CPU per unit of work"
echo
# cpu_row NAME BENCH_ARGS...: runs bench against the last started
# server, stops it, and adds a row to `rows`: name, server CPU per unit, rate.
cpu_row() {
  local name=$1
  shift
  "$S" bench "$@" -d "$DURATION" --server-pid "$LAST_PID" --json > "$WORK/cpu.json"
  stop
  local per rate
  per=$(json 'round(d["server_cpu"]["per_unit_us"], 2)' < "$WORK/cpu.json")
  rate=$(json 'round(d["requests_per_second"] or d["megabytes_per_second"])' < "$WORK/cpu.json")
  rows+=("$name|$per|$rate")
}
# redis_row CLIENTS PIPELINE: adds redis-server's CPU per PING_INLINE under redis-benchmark.
redis_row() {
  local rport n before after start_ns took_ns
  rport=$(free_port)
  n=$((DURATION * ($2 > 1 ? 400000 : 25000)))
  redis-server --port "$rport" --save '' --appendonly no > "$WORK/redis-cpu.log" 2>&1 &
  PIDS+=($!); LAST_PID=$!
  for _ in $(seq 100); do redis-cli -p "$rport" ping > /dev/null 2>&1 && break; sleep 0.05; done
  before=$(cpu_ticks "$LAST_PID")
  start_ns=$(date +%s%N)
  redis-benchmark -p "$rport" -t ping_inline -c "$1" -P "$2" -n "$n" -q > /dev/null 2>&1
  took_ns=$(($(date +%s%N) - start_ns))
  after=$(cpu_ticks "$LAST_PID")
  stop
  rows+=("redis-server (redis-benchmark -t ping_inline)|$(per_request $((after - before)) "$n")|$(python3 -c "print(f'{$n * 1e9 / $took_ns:.0f}')")")
}
# table TITLE UNIT ROWS...: rows as NAME|PER|RATE, ratios against the last row.
table() {
  local title=$1 unit=$2
  shift 2
  local reference=${!#}
  local ref_per=${reference#*|}; ref_per=${ref_per%%|*}
  echo "### $title"
  echo
  echo "| server | server CPU µs per $unit | vs ${reference%%|*} | rate |"
  echo "|---|---|---|---|"
  for row in "$@"; do
    IFS='|' read -r name per rate <<< "$row"
    echo "| $name | $per | $(ratio "$per" "$ref_per") | $rate |"
  done
  echo
}

rows=()
start app "$S" app-server -q 127.0.0.1 0; cpu_row "sockets app-server (default: a runtime and listener per core)" app 127.0.0.1 "$PORT" -c 64 -P 16
start app "$S" app-server -q 127.0.0.1 0 --threads 1; cpu_row "sockets app-server --threads 1" app 127.0.0.1 "$PORT" -c 64 -P 16
if [ -n "${BEFORE:-}" ]; then
  start app "$BEFORE" app-server -q 127.0.0.1 0; cpu_row "before (work-stealing runtime)" app 127.0.0.1 "$PORT" -c 64 -P 16
fi
# The floor with as many runtimes as ours has by default: what a second
# thread costs any server while the load generator shares the cores.
start minimal "$MINIMAL" app 0 cores; cpu_row "minimal server, a runtime per core" app 127.0.0.1 "$PORT" -c 64 -P 16
start minimal "$MINIMAL" app; cpu_row "minimal server" app 127.0.0.1 "$PORT" -c 64 -P 16
redis_row 64 16
table "Persistent, 64 connections, pipeline 16 (rate: requests/s)" request "${rows[@]}"

rows=()
start app "$S" app-server -q 127.0.0.1 0 --threads 1; cpu_row "sockets app-server --threads 1" app 127.0.0.1 "$PORT" -c 1
start minimal "$MINIMAL" app; cpu_row "minimal server" app 127.0.0.1 "$PORT" -c 1
redis_row 1 1
table "Persistent, 1 connection, no pipelining (rate: requests/s)" request "${rows[@]}"

rows=()
start app "$S" app-server -q 127.0.0.1 0 --one-shot; cpu_row "sockets app-server --one-shot (default: a runtime and listener per core)" app 127.0.0.1 "$PORT" --mode oneshot -c 8
start app "$S" app-server -q 127.0.0.1 0 --one-shot --threads 1; cpu_row "sockets app-server --one-shot --threads 1" app 127.0.0.1 "$PORT" --mode oneshot -c 8
if [ -n "${BEFORE:-}" ]; then
  start app "$BEFORE" app-server -q 127.0.0.1 0 --one-shot; cpu_row "before --one-shot (work-stealing runtime)" app 127.0.0.1 "$PORT" --mode oneshot -c 8
  start app "$BEFORE" app-server -q 127.0.0.1 0 --one-shot --threads 1; cpu_row "before --one-shot --threads 1" app 127.0.0.1 "$PORT" --mode oneshot -c 8
fi
start minimal "$MINIMAL" app-oneshot 0 cores; cpu_row "minimal server, a runtime per core" app 127.0.0.1 "$PORT" --mode oneshot -c 8
start minimal "$MINIMAL" app-oneshot; cpu_row "minimal server" app 127.0.0.1 "$PORT" --mode oneshot -c 8
table "Oneshot, 8 workers: connect, request, response, close (rate: connections/s)" connection "${rows[@]}"

# The same with the load generator on two threads: by default each server
# core serves the connections that arrive on its CPU, so a one-thread load
# generator puts all the work on one CPU (the least CPU per connection, but
# only one CPU's worth of rate), and two threads use both.
rows=()
start app "$S" app-server -q 127.0.0.1 0 --one-shot; cpu_row "sockets app-server --one-shot (default)" app 127.0.0.1 "$PORT" --mode oneshot -c 8 --threads 2
if [ -n "${BEFORE:-}" ]; then
  start app "$BEFORE" app-server -q 127.0.0.1 0 --one-shot --threads 1; cpu_row "before --one-shot --threads 1" app 127.0.0.1 "$PORT" --mode oneshot -c 8 --threads 2
fi
start minimal "$MINIMAL" app-oneshot; cpu_row "minimal server" app 127.0.0.1 "$PORT" --mode oneshot -c 8 --threads 2
table "Oneshot, 8 workers, load generator on 2 threads (rate: connections/s)" connection "${rows[@]}"

rows=()
start echo "$S" echo-server -q 127.0.0.1 0; cpu_row "sockets echo-server (splice)" echo 127.0.0.1 "$PORT" -c 1 --block-size 65536
start minimal "$MINIMAL" echo; cpu_row "minimal echo loop" echo 127.0.0.1 "$PORT" -c 1 --block-size 65536
table "Echo, 1 connection, 64 KiB blocks (rate: MB/s echoed)" MB "${rows[@]}"

# User-space instructions per request: repeatable where CPU time is not.
echo "### Instructions per request (valgrind --tool=callgrind, one thread each)"
echo
echo "| load | sockets app-server --threads 1 | minimal server | ratio |"
echo "|---|---|---|---|"
for load in "-c 64 -P 16||app" "-c 1||app" "--mode oneshot -c 8|--one-shot|app-oneshot"; do
  IFS='|' read -r bench_flags server_flags minimal_mode <<< "$load"
  # shellcheck disable=SC2086 # flags are words
  ours=$(instructions_per_request "$bench_flags" "$S" app-server -q 127.0.0.1 0 --threads 1 $server_flags)
  theirs=$(instructions_per_request "$bench_flags" "$MINIMAL" "$minimal_mode")
  echo "| $bench_flags ${server_flags:+(server $server_flags)} | $ours | $theirs | $(ratio "$ours" "$theirs") |"
done
echo
fi

# 1. Persistent connections, 64 x pipeline 16: app-server search vs redis PING.
if want persistent; then
echo "## Persistent, 64 connections, pipeline 16"
echo
echo "| server | server threads | load-generator threads | requests/s | vs redis |"
echo "|---|---|---|---|---|"
rport=$(free_port)
redis-server --port "$rport" --save '' --appendonly no --daemonize no > "$WORK/redis.log" 2>&1 &
PIDS+=($!); REDIS_PID=$!
sleep 0.5
redis_rps=$(redis-benchmark -p "$rport" -t ping_inline -c 64 -P 16 -n $((DURATION * 1500000)) -q 2>/dev/null | tr '\r' '\n' | grep -E 'requests per second' | tail -1 | sed -E 's/.*: ([0-9.]+) requests per second.*/\1/')
kill "$REDIS_PID"; wait "$REDIS_PID" 2>/dev/null || true
for threads in 1 2; do
  for client_threads in 1 2; do
    start app "$S" app-server -q 127.0.0.1 0 --threads "$threads"
    rps=$("$S" bench app 127.0.0.1 "$PORT" -c 64 -P 16 -d "$DURATION" --threads "$client_threads" --json | json 'round(d["requests_per_second"])')
    stop
    echo "| sockets app-server (search) | $threads | $client_threads | $rps | $(ratio "$rps" "$redis_rps") |"
  done
done
echo "| redis-server (redis-benchmark -t ping_inline -c 64 -P 16) | 1 | 1 | ${redis_rps%.*} | 1.00 |"
echo
echo "Logging cost: the same load with the default info logs (a line per request, capped at 100 a second) written to a file:"
echo
start app "$S" app-server 127.0.0.1 0 --threads 2
logged=$("$S" bench app 127.0.0.1 "$PORT" -c 64 -P 16 -d "$DURATION" --threads 2 --json | json 'round(d["requests_per_second"])')
stop
start app "$S" app-server -q 127.0.0.1 0 --threads 2
quiet=$("$S" bench app 127.0.0.1 "$PORT" -c 64 -P 16 -d "$DURATION" --threads 2 --json | json 'round(d["requests_per_second"])')
stop
echo "| logs | requests/s | ratio |"
echo "|---|---|---|"
echo "| -q (warnings only) | $quiet | 1.00 |"
echo "| info (default) | $logged | $(ratio "$logged" "$quiet") |"
echo

fi

# 2. Oneshot: a new connection per request, 8 workers.
if want oneshot; then
echo "## Oneshot (a connection per request), 8 workers"
echo
echo "| server | requests/s | vs Python guide-style server |"
echo "|---|---|---|"
start python python3 "$ROOT/tests/python/guide_server.py" 127.0.0.1 0
py_rps=$("$S" bench app 127.0.0.1 "$PORT" --mode oneshot -c 8 -d "$DURATION" --json | json 'round(d["requests_per_second"])')
stop
for opts in "--threads 1" "--threads 1 --one-shot" "--threads 2 --one-shot"; do
  # shellcheck disable=SC2086
  start app "$S" app-server -q 127.0.0.1 0 $opts
  rps=$("$S" bench app 127.0.0.1 "$PORT" --mode oneshot -c 8 -d "$DURATION" --json | json 'round(d["requests_per_second"])')
  stop
  echo "| sockets app-server $opts | $rps | $(ratio "$rps" "$py_rps") |"
done
echo "| tests/python/guide_server.py (selectors, one request per connection) | $py_rps | 1.00 |"
echo

fi

# 3. Latency: one connection, no pipelining, client and server pinned to CPU 0,
# ours against the minimal server in the same run.
if want latency; then
echo "## Latency, 1 connection, no pipelining, client and server pinned to CPU 0"
echo
echo "| server | requests/s | p50 µs | p99 µs | p99.9 µs | max µs |"
echo "|---|---|---|---|---|---|"
for server in ours minimal; do
  case $server in
    ours) start app taskset -c 0 "$S" app-server -q 127.0.0.1 0 --threads 1 ;;
    minimal) start minimal taskset -c 0 "$MINIMAL" app ;;
  esac
  lat=$(taskset -c 0 "$S" bench app 127.0.0.1 "$PORT" -c 1 -d "$DURATION" --json \
    | json '"%d | %.1f | %.1f | %.1f | %.1f" % (d["requests_per_second"], d["latency_us"]["p50"], d["latency_us"]["p99"], d["latency_us"]["p99.9"], d["latency_us"]["max"])')
  stop
  echo "| $server | $lat |"
done
echo

fi

# 4. Memory per idle connection: as many as one process may open here
# (the hard limit is 20,000 descriptors), and how fast one more connection
# is answered while they sit there.
if want memory; then
IDLE=${IDLE:-19000}
echo "## Memory, $IDLE idle connections"
echo
echo "| server | RSS before | RSS with $IDLE idle | per connection | kernel slab per socket | a new connection's requests meanwhile: p50 / p99 µs |"
echo "|---|---|---|---|---|---|"
slab_kib() { awk '/^Slab:/ {print $2}' /proc/meminfo; }
# RSS from smaps_rollup: VmRSS in /proc/PID/status is summed from per-thread
# counters that lag (by tens of MB, seen here), smaps_rollup walks the pages.
rss_kib() { awk '/^Rss:/ {print $2}' "/proc/$1/smaps_rollup"; }
for server in app-server echo-server; do
  start idle "$S" "$server" -q 127.0.0.1 0 --threads 1 --max-connections 20000 --idle-timeout 0
  before=$(rss_kib "$LAST_PID")
  slab_before=$(slab_kib)
  mkfifo "$WORK/hold.in"
  python3 "$ROOT/bench/hold_connections.py" 127.0.0.1 "$PORT" "$IDLE" < "$WORK/hold.in" > "$WORK/hold.out" &
  HOLD_PID=$!; PIDS+=($HOLD_PID)
  exec 9> "$WORK/hold.in"
  for _ in $(seq 240); do grep -q holding "$WORK/hold.out" 2>/dev/null && break; sleep 0.25; done
  sleep 1
  after=$(rss_kib "$LAST_PID")
  slab_after=$(slab_kib)
  probe="n/a (echo)"
  if [ "$server" = app-server ]; then
    probe=$("$S" bench app 127.0.0.1 "$PORT" -c 1 -n 20000 --json | json '"%.0f / %.0f" % (d["latency_us"]["p50"], d["latency_us"]["p99"])')
  fi
  exec 9>&-
  wait "$HOLD_PID" 2>/dev/null || true
  rm -f "$WORK/hold.in"
  stop
  # Both ends of each connection are sockets of this kernel: 2 per connection.
  echo "| sockets $server | ${before} KiB | ${after} KiB | $(( (after - before) * 1024 / IDLE )) bytes | $(( (slab_after - slab_before) * 1024 / (2 * IDLE) )) bytes | $probe |"
done
echo

fi

# 5. Echo throughput vs iperf3 over loopback.
if want echo; then
echo "## Echo throughput over loopback, 64 KiB blocks"
echo
echo "| streams | iperf3 MB/s | sockets echo (--threads 1) MB/s | ratio | sockets echo (--threads 2) MB/s | ratio |"
echo "|---|---|---|---|---|---|"
for streams in 1 8; do
  iport=$(free_port)
  iperf3 -s -1 -p "$iport" > /dev/null 2>&1 &
  PIDS+=($!); IPERF_PID=$!
  sleep 0.5
  iperf_mbs=$(iperf3 -c 127.0.0.1 -p "$iport" -t "$DURATION" -P "$streams" -J | json 'round(d["end"]["sum_received"]["bits_per_second"] / 8 / 1e6, 1)')
  wait "$IPERF_PID" 2>/dev/null || true
  row="| $streams | $iperf_mbs"
  for threads in 1 2; do
    start echo "$S" echo-server -q 127.0.0.1 0 --threads "$threads"
    mbs=$("$S" bench echo 127.0.0.1 "$PORT" -c "$streams" --block-size 65536 -d "$DURATION" --json | json 'round(d["megabytes_per_second"], 1)')
    stop
    row="$row | $mbs | $(ratio "$mbs" "$iperf_mbs")"
  done
  echo "$row |"
done
echo
echo "Echo MB/s counts bytes that came back (each crossed loopback twice); iperf3 counts bytes received once."
fi

# 6. TLS: the cost of TLS, against HAProxy terminating TLS in front of the
# plaintext server, and handshakes per second.
if want tls; then
echo "## TLS"
echo
"$S" cert localhost 127.0.0.1 --cert "$WORK/tls.pem" --key "$WORK/tls.key" > /dev/null
cat "$WORK/tls.pem" "$WORK/tls.key" > "$WORK/haproxy.pem"
start plain "$S" app-server -q 127.0.0.1 0 --threads 1
PLAIN_PORT=$PORT; PLAIN_PID=$LAST_PID
start tls "$S" app-server -q 127.0.0.1 0 --threads 1 --tls-cert "$WORK/tls.pem" --tls-key "$WORK/tls.key"
TLS_PORT=$PORT; TLS_PID=$LAST_PID
HAPROXY_PORT=$(free_port)
{ haproxy_defaults; cat <<CFG
frontend tls_in
    bind 127.0.0.1:$HAPROXY_PORT ssl crt $WORK/haproxy.pem
    default_backend app
backend app
    server plain 127.0.0.1:$PLAIN_PORT
CFG
} > "$WORK/haproxy.cfg"
haproxy -f "$WORK/haproxy.cfg" -db > "$WORK/haproxy.log" 2>&1 &
PIDS+=($!); HAPROXY_PID=$!
sleep 0.7
tls=(--tls-ca "$WORK/tls.pem")
echo "Every server runs one thread; the load generator one; all share the 2 cores."
echo
echo "| persistent, 64 connections, pipeline 16 | requests/s | ratio |"
echo "|---|---|---|"
plain=$("$S" bench app 127.0.0.1 "$PLAIN_PORT" -c 64 -P 16 -d "$DURATION" --json | json 'round(d["requests_per_second"])')
direct=$("$S" bench app 127.0.0.1 "$TLS_PORT" -c 64 -P 16 -d "$DURATION" --json "${tls[@]}" | json 'round(d["requests_per_second"])')
proxied=$("$S" bench app 127.0.0.1 "$HAPROXY_PORT" -c 64 -P 16 -d "$DURATION" --json "${tls[@]}" | json 'round(d["requests_per_second"])')
echo "| sockets app-server, plaintext | $plain | 1.00 |"
echo "| sockets app-server --tls-cert (TLS 1.3) | $direct | $(ratio "$direct" "$plain") |"
echo "| HAProxy 1 thread terminating TLS → plaintext app-server | $proxied | $(ratio "$proxied" "$plain") |"
echo
echo "Ours over TLS / HAProxy terminating TLS: $(ratio "$direct" "$proxied")"
echo
echo "| oneshot, 8 workers: a TLS handshake per request | handshakes/s | ratio |"
echo "|---|---|---|"
for resume in on off; do
  extra=(); [ "$resume" = off ] && extra=(--tls-no-resume)
  ours=$("$S" bench app 127.0.0.1 "$TLS_PORT" --mode oneshot -c 8 -d "$DURATION" --json "${tls[@]}" "${extra[@]}" | json 'round(d["tls_handshakes"]["per_second"])')
  theirs=$("$S" bench app 127.0.0.1 "$HAPROXY_PORT" --mode oneshot -c 8 -d "$DURATION" --json "${tls[@]}" "${extra[@]}" | json 'round(d["tls_handshakes"]["per_second"])')
  echo "| sockets app-server, resumption $resume | $ours | $(ratio "$ours" "$theirs") |"
  echo "| HAProxy → app-server, resumption $resume | $theirs | 1.00 |"
done
echo
s_time=$(timeout $((DURATION + 10)) openssl s_time -connect "127.0.0.1:$TLS_PORT" -new -time "$DURATION" -CAfile "$WORK/tls.pem" 2>/dev/null | grep -m1 'connections in' || true)
echo "openssl s_time -new against sockets app-server: $s_time"
echo
kill "$HAPROXY_PID" "$PLAIN_PID" "$TLS_PID" 2>/dev/null || true
fi

# 7. Deployment: the cost of --metrics and --proxy-protocol, and HAProxy
# sending PROXY v2 to one and two instances.
if want deploy; then
echo "## Deployment features"
echo
echo "Server CPU per request (from /proc/PID/stat) is the figure to read: client and server share the 2 cores,"
echo "so requests/s moves with whatever else runs. Each configuration ran twice, alternating; the table shows both runs."
echo
echo "| load | server flags | bench flags | requests/s | server µs CPU/request | vs plain |"
echo "|---|---|---|---|---|---|"
configs=("plain||" "metrics|--metrics 127.0.0.1:0|" "proxy|--proxy-protocol|--send-proxy v2" "both|--metrics 127.0.0.1:0 --proxy-protocol|--send-proxy v2")
for load in persistent oneshot; do
  case $load in
    persistent) load_flags=(-c 64 -P 16) ;;
    oneshot) load_flags=(--mode oneshot -c 8) ;;
  esac
  declare -A base=()
  for round in 1 2; do
    for config in "${configs[@]}"; do
      IFS='|' read -r name server_flags bench_flags <<< "$config"
      # shellcheck disable=SC2086 # flags are words
      start "$name" "$S" app-server -q 127.0.0.1 0 --threads 1 $server_flags
      before=$(cpu_ticks "$LAST_PID")
      # shellcheck disable=SC2086
      report=$("$S" bench app 127.0.0.1 "$PORT" "${load_flags[@]}" -d "$DURATION" --json $bench_flags)
      after=$(cpu_ticks "$LAST_PID")
      stop
      rps=$(echo "$report" | json 'round(d["requests_per_second"])')
      n=$(echo "$report" | json 'd["requests"]')
      us=$(per_request $((after - before)) "$n")
      [ "$name" = plain ] && base[$round]=$us
      echo "| $load | ${server_flags:-(none)} | ${bench_flags:-(none)} | $rps | $us | $(ratio "$us" "${base[$round]}") |"
    done
  done
done
echo
echo "Instructions the server executes per request (valgrind --tool=callgrind; repeatable to a few"
echo "instructions, unlike CPU time on this machine). Oneshot: one connection per request."
echo
echo "| server flags | bench flags | persistent, -c 8 -P 16 | vs plain | persistent, -c 8 -P 1 | vs plain | oneshot, -c 8 | vs plain |"
echo "|---|---|---|---|---|---|---|---|"
declare -A plain_ir=()
for config in "${configs[@]}"; do
  IFS='|' read -r name server_flags bench_flags <<< "$config"
  row="| ${server_flags:-(none)} | ${bench_flags:-(none)}"
  for load in "-c 8 -P 16" "-c 8 -P 1" "--mode oneshot -c 8"; do
    # shellcheck disable=SC2086 # flags are words
    ir=$(instructions_per_request "$load $bench_flags" "$S" app-server -q 127.0.0.1 0 --threads 1 $server_flags)
    [ "$name" = plain ] && plain_ir[$load]=$ir
    row="$row | $ir | $(ratio "$ir" "${plain_ir[$load]}")"
  done
  echo "$row |"
done
echo
echo "### HAProxy (PROXY v2) in front of one and two instances"
echo
start one "$S" app-server -q 127.0.0.1 0 --threads 1 --proxy-protocol --proxy-from 127.0.0.1
ONE_PORT=$PORT; ONE_PID=$LAST_PID
start two "$S" app-server -q 127.0.0.1 0 --threads 1 --proxy-protocol --proxy-from 127.0.0.1
TWO_PORT=$PORT; TWO_PID=$LAST_PID
start direct "$S" app-server -q 127.0.0.1 0 --threads 1
DIRECT_PORT=$PORT; DIRECT_PID=$LAST_PID
H1=$(free_port); H2=$(free_port)
{ haproxy_defaults; cat <<CFG
frontend to_one
    bind 127.0.0.1:$H1
    default_backend one
frontend to_two
    bind 127.0.0.1:$H2
    default_backend two
backend one
    server a 127.0.0.1:$ONE_PORT send-proxy-v2
backend two
    balance roundrobin
    server a 127.0.0.1:$ONE_PORT send-proxy-v2
    server b 127.0.0.1:$TWO_PORT send-proxy-v2
CFG
} > "$WORK/haproxy-deploy.cfg"
haproxy -f "$WORK/haproxy-deploy.cfg" -db > "$WORK/haproxy-deploy.log" 2>&1 &
PIDS+=($!); HAPROXY_PID=$!
sleep 0.7
echo "Each instance and HAProxy run one thread; the load generator one; all share the 2 cores."
echo
echo "| load | path | requests/s | vs direct |"
echo "|---|---|---|---|"
for load in persistent oneshot; do
  case $load in
    persistent) load_flags=(-c 64 -P 16) ;;
    oneshot) load_flags=(--mode oneshot -c 8) ;;
  esac
  direct=$("$S" bench app 127.0.0.1 "$DIRECT_PORT" "${load_flags[@]}" -d "$DURATION" --json | json 'round(d["requests_per_second"])')
  one=$("$S" bench app 127.0.0.1 "$H1" "${load_flags[@]}" -d "$DURATION" --json | json 'round(d["requests_per_second"])')
  two=$("$S" bench app 127.0.0.1 "$H2" "${load_flags[@]}" -d "$DURATION" --json | json 'round(d["requests_per_second"])')
  echo "| $load | direct, no HAProxy | $direct | 1.00 |"
  echo "| $load | HAProxy → 1 instance | $one | $(ratio "$one" "$direct") |"
  echo "| $load | HAProxy → 2 instances | $two | $(ratio "$two" "$direct") |"
done
echo
kill "$HAPROXY_PID" "$ONE_PID" "$TWO_PID" "$DIRECT_PID" 2>/dev/null || true
fi

# 8. Broker: fan-out to 100 subscribers, ours against redis-server
# PUBLISH/SUBSCRIBE, both single-threaded, the same load generator speaking
# each one's protocol; server CPU per delivered message from /proc.
if want broker; then
echo "## Broker: publish/subscribe fan-out, 100 subscribers"
echo
start broker "$S" broker -q 127.0.0.1 0 --threads 1
BROKER_PORT=$PORT; BROKER_PID=$LAST_PID
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --client-output-buffer-limit "pubsub 0 0 0" > "$WORK/redis-broker.log" 2>&1 &
PIDS+=($!); REDIS_PID=$!
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping > /dev/null 2>&1 && break; sleep 0.05; done
MESSAGES=$((DURATION * 20000))
echo "\`bench broker -s 100 -n $MESSAGES --message-size 32\`, one publisher with a window of 64 unanswered publishes; best of 2."
echo
echo "| server | delivered/s | p50 µs | p99 µs | server CPU ns / delivery | vs redis |"
echo "|---|---|---|---|---|---|"
declare -A delivered=() cpu=() p50=() p99=()
for server in redis ours; do
  case $server in
    ours) port=$BROKER_PORT; pid=$BROKER_PID; extra=() ;;
    redis) port=$REDIS_PORT; pid=$REDIS_PID; extra=(--redis) ;;
  esac
  best=0
  for _ in 1 2; do
    before=$(cpu_ticks "$pid")
    "$S" bench broker 127.0.0.1 "$port" -s 100 -n "$MESSAGES" --message-size 32 "${extra[@]}" --json > "$WORK/broker.json"
    after=$(cpu_ticks "$pid")
    rate=$(json 'round(d["delivered_per_second"])' < "$WORK/broker.json")
    if [ "$rate" -gt "$best" ]; then
      best=$rate
      count=$(json 'd["delivered"]' < "$WORK/broker.json")
      cpu[$server]=$(python3 -c "print(round(($after - $before) * 1e9 / $(getconf CLK_TCK) / $count))")
      p50[$server]=$(json 'round(d["latency_us"]["p50"])' < "$WORK/broker.json")
      p99[$server]=$(json 'round(d["latency_us"]["p99"])' < "$WORK/broker.json")
    fi
  done
  delivered[$server]=$best
done
for server in redis ours; do
  echo "| $server | ${delivered[$server]} | ${p50[$server]} | ${p99[$server]} | ${cpu[$server]} | $(ratio "${delivered[$server]}" "${delivered[redis]}") (CPU $(ratio "${cpu[$server]}" "${cpu[redis]}")) |"
done
echo
kill "$BROKER_PID" "$REDIS_PID" 2>/dev/null || true
fi
