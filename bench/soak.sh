#!/usr/bin/env bash
# Soak test: runs `sockets app-server` for SECONDS under a mixed load at
# about half of what this machine can serve, with hostile clients attacking
# it throughout; samples the server's memory, descriptors, threads and error
# counters; and checks that nothing grows, no answer is wrong, and every
# error the server counted was caused on purpose by a hostile client.
#
#   bash bench/soak.sh [SECONDS]                          # default 60, release build
#   SOCKETS=target/debug/sockets bash bench/soak.sh 60    # as CI runs it
#   OUT=soak-out INTERVAL=5 bash bench/soak.sh 3600       # an hour, kept in soak-out/
#
# Writes to OUT (default: a new temporary directory, printed at the end):
# soak.csv (a row per sample), soak.png (its plot), summary.md (the table
# printed at the end), and each process's output. Exits 0 if every check
# passes, 1 if one fails, 2 on a usage error. Builds nothing: it runs the
# binary it is given, so it can run beside a build. Everything it starts
# listens on or connects to 127.0.0.1 and is stopped on exit. The whole run
# takes about SECONDS + 12 s (capacity measurement, drain, plot); a
# watchdog stops it, failed, at SECONDS + 30 s.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-60}
SOCKETS=${SOCKETS:-target/release/sockets}
INTERVAL=${INTERVAL:-2}
if ! [[ $DURATION =~ ^[0-9]+$ ]] || ((DURATION < 20)); then
  # The never-reading attack alone takes IDLE_TIMEOUT plus a few seconds.
  echo "usage: bash bench/soak.sh [SECONDS]  (a whole number, at least 20)" >&2
  exit 2
fi
if ! [[ $INTERVAL =~ ^[1-9][0-9]*$ ]]; then
  echo "error: INTERVAL must be a whole number of seconds, at least 1" >&2
  exit 2
fi
if [ ! -x "$SOCKETS" ]; then
  echo "error: $SOCKETS is not an executable: build it, or set SOCKETS=path" >&2
  exit 2
fi

# Short server limits, so that hostile clients are cut many times in a soak
# of a minute, and each cut can be matched with the attack that caused it.
REQUEST_TIMEOUT=2
IDLE_TIMEOUT=5
# Capacity is measured per load, alone, for this long before the soak.
CALIBRATE_SECONDS=2
# Memory and descriptors are judged after this fraction of the soak, once
# allocator pools, TLS session caches and connection counts have settled.
WARMUP_FRACTION=0.2
# A server count may exceed what hostile clients did by this much. Each
# hostile action causes at most one count, so a clean run matches exactly;
# the slack lets a stray close on a loaded machine pass without hiding a trend.
SLACK=2
# Descriptors may grow by the connections that come and go (hostile ones and
# oneshot workers, counted by the analysis) plus this many: a metrics scrape
# and connections in teardown.
FD_SLACK=8

OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/soak.XXXXXX")}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
PIDS=()

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 0.3
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'echo "FAIL: stopped by SIGTERM, or by the time limit (SECONDS + 30 s)" >&2; exit 1' TERM
# The time limit: a watchdog (one process, so the cleanup can stop it)
# sends SIGTERM if anything hangs past every other guard below.
TIME_LIMIT_MARGIN=30
python3 -c 'import os, signal, sys, time; time.sleep(int(sys.argv[1])); os.kill(int(sys.argv[2]), signal.SIGTERM)' \
  $((DURATION + TIME_LIMIT_MARGIN)) $$ &
PIDS+=("$!")

# A copy of the binary: a build that finishes during the soak must not
# change what is measured, nor leave the path missing when a load starts.
BIN="$WORK/sockets"
cp "$SOCKETS" "$BIN"

need() { command -v "$1" > /dev/null 2>&1; }
if ! need gnuplot; then
  echo "installing gnuplot-nox ..." >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >&2
fi
for tool in curl python3; do
  need "$tool" || { echo "error: the soak needs $tool" >&2; exit 2; }
done

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# now_ms: wall-clock milliseconds (EPOCHREALTIME is seconds.microseconds).
now_ms() { local us=${EPOCHREALTIME/[.,]/}; echo $((us / 1000)); }
# seconds MS: milliseconds as seconds with three decimals.
seconds() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }

# start_server NAME FLAGS...: starts an app-server on a free port, with
# metrics, and waits for its first two stdout lines (its address, then
# `metrics: URL`). Sets SERVER_PID, SERVER_PORT and SERVER_METRICS.
start_server() {
  local name=$1
  shift
  "$BIN" app-server -q 127.0.0.1 0 --metrics 127.0.0.1:0 \
    --request-timeout "$REQUEST_TIMEOUT" --idle-timeout "$IDLE_TIMEOUT" --shutdown-timeout 2 "$@" \
    > "$OUT/$name.out" 2> "$OUT/$name.err" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  for _ in $(seq 200); do
    grep -q '^metrics: ' "$OUT/$name.out" 2> /dev/null && break
    kill -0 "$SERVER_PID" 2> /dev/null || break
    sleep 0.05
  done
  SERVER_METRICS=$(sed -n 's/^metrics: //p' "$OUT/$name.out")
  SERVER_PORT=$(head -1 "$OUT/$name.out" | sed 's/.*://')
  if [ -z "$SERVER_METRICS" ]; then
    echo "error: the $name server did not start: $(cat "$OUT/$name.err")" >&2
    exit 1
  fi
}

# process_fields PID: resident memory in KiB (from smaps_rollup, a walk of
# the pages: VmRSS lags by tens of MB), open descriptors, threads.
process_fields() {
  [ -d "/proc/$1" ] || return 1
  local fds=(/proc/"$1"/fd/*)
  echo "$(awk '/^Rss:/ { print $2 }' "/proc/$1/smaps_rollup"),${#fds[@]},$(awk '/^Threads:/ { print $2 }' "/proc/$1/status")"
}
# metrics_fields URL: from one scrape, connections open, requests answered,
# connections closed for a hostile client's doing (request_timeout,
# write_stalled, idle_timeout, reset), closes for any other fault
# (unexpected: bad_frame, limit, tls_handshake_failed, denied, ... and
# accept errors), and error answers other than a slowloris's farewell.
metrics_fields() {
  curl -fsS --max-time 2 "$1" | awk '
    /^#/ { next }
    { split($1, part, /[{}]/); name = part[1]; labels = part[2] }
    name == "sockets_connections_open" { open = $2 }
    name == "sockets_accept_errors_total" { unexpected += $2 }
    name == "sockets_requests_total" {
      requests += $2
      if (labels !~ /outcome="(hit|miss|binary|request_timeout)"/) error_answers += $2
    }
    name == "sockets_connections_closed_total" {
      match(labels, /reason="[a-z_]+"/)
      reason = substr(labels, RSTART + 8, RLENGTH - 9)
      closed[reason] = $2
      if (reason !~ /^(client_closed|response_sent|request_timeout|write_stalled|idle_timeout|reset)$/) unexpected += $2
    }
    END {
      printf "%d,%d,%d,%d,%d,%d,%d,%d\n", open, requests, closed["request_timeout"], closed["write_stalled"],
        closed["idle_timeout"], closed["reset"], unexpected, error_answers
    }'
}
# idle_fields PID URL: once the server reports no connection open
# (waiting up to 3 s for closes in progress), its process fields.
idle_fields() {
  local open
  for _ in $(seq 60); do
    open=$(metrics_fields "$2" | cut -d, -f1) || true
    [ "$open" = 0 ] && break
    sleep 0.05
  done
  echo "$(process_fields "$1"),${open:-unknown}"
}

# TLS runs on a second server process, since a server listens on one
# address and serves TLS on all of it or on none. Both are sampled and held
# to the same checks; hostile clients attack the plaintext one only (past
# the handshake, TLS connections run the same connection driver).
# The certificate comes from `sockets cert` (the tests' way: no dependency),
# else from openssl; with neither, the soak goes on without TLS.
TLS=yes
if "$BIN" cert localhost 127.0.0.1 --cert "$WORK/tls.pem" --key "$WORK/tls.key" > /dev/null 2>&1; then
  :
elif need openssl && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$WORK/tls.key" -out "$WORK/tls.pem" > /dev/null 2>&1; then
  :
else
  TLS=no
  echo "TLS: skipped (no certificate: neither \`sockets cert\` nor openssl made one)"
fi

start_server plain
PLAIN_PID=$SERVER_PID PLAIN_PORT=$SERVER_PORT PLAIN_METRICS=$SERVER_METRICS
TLS_PID='' TLS_PORT='' TLS_METRICS=''
if [ "$TLS" = yes ]; then
  start_server tls --tls-cert "$WORK/tls.pem" --tls-key "$WORK/tls.key"
  TLS_PID=$SERVER_PID TLS_PORT=$SERVER_PORT TLS_METRICS=$SERVER_METRICS
fi

# The loads, as NAME|SERVER|BENCH FLAGS. Oneshot makes a connection per
# request (and a TLS handshake, mostly resumed); persistent keeps its
# connections; pipelined keeps 16 requests in flight on each.
LOADS=("oneshot|plain|--mode oneshot -c 4" "persistent|plain|-c 8" "pipelined|plain|-c 8 -P 16")
if [ "$TLS" = yes ]; then
  LOADS+=("tls_oneshot|tls|--mode oneshot -c 4" "tls_pipelined|tls|-c 4 -P 8")
fi

# bench SERVER FLAGS SECONDS [EXTRA...]: runs the load generator for one
# load, its JSON report to stdout; bounded in time whatever the server does
# (a run ends one -w after its duration at most, and `timeout` backs that).
bench() {
  local server=$1 flags=$2 seconds=$3
  shift 3
  local port=$PLAIN_PORT tls=()
  if [ "$server" = tls ]; then port=$TLS_PORT tls=(--tls-ca "$WORK/tls.pem"); fi
  # shellcheck disable=SC2086 # flags are words
  timeout -k 2 $((seconds + 10)) "$BIN" bench app 127.0.0.1 "$port" $flags "${tls[@]}" \
    -d "$seconds" -w 5 --json "$@"
}

# Capacity: each load alone, as fast as it goes. In the soak all run at
# once, each at capacity / (2 x number of loads): together about half of
# what the machine can serve, whatever machine and build this is.
echo "Measuring capacity (${CALIBRATE_SECONDS} s per load) with $SOCKETS ..." >&2
declare -A RATE=()
for load in "${LOADS[@]}"; do
  IFS='|' read -r name server flags <<< "$load"
  rc=0
  bench "$server" "$flags" "$CALIBRATE_SECONDS" > "$OUT/calibrate-$name.json" 2> "$OUT/calibrate-$name.err" || rc=$?
  if ((rc != 0)); then
    # 124: the load generator outlived its time limit.
    echo "FAIL: measuring the capacity of the $name load failed (exit $rc): $(cat "$OUT/calibrate-$name.err")" >&2
    exit 1
  fi
  capacity=$(json 'round(d["requests_per_second"])' < "$OUT/calibrate-$name.json")
  rate=$((capacity / (2 * ${#LOADS[@]})))
  if ((rate < 1)); then rate=1; fi
  RATE[$name]=$rate
  echo "  $name: $capacity requests/s alone; soak rate ${RATE[$name]}/s" >&2
done

# The servers at rest, every calibration connection closed: the descriptor
# count to come back to once the soak's clients are gone.
PLAIN_IDLE_BEFORE=$(idle_fields "$PLAIN_PID" "$PLAIN_METRICS")
TLS_IDLE_BEFORE=''
if [ "$TLS" = yes ]; then TLS_IDLE_BEFORE=$(idle_fields "$TLS_PID" "$TLS_METRICS"); fi

echo "Soaking for $DURATION s; samples every $INTERVAL s to $OUT/soak.csv ..." >&2
LOAD_PIDS=()
for load in "${LOADS[@]}"; do
  IFS='|' read -r name server flags <<< "$load"
  bench "$server" "$flags" "$DURATION" --rate "${RATE[$name]}" > "$OUT/soak-$name.json" 2> "$OUT/soak-$name.err" &
  LOAD_PIDS+=("$!")
  PIDS+=("$!")
done
# The hostile clients stop starting attacks early enough for the server to
# cut the last ones before SECONDS; the timeout only guards against a hang.
timeout -k 2 $((DURATION + 20)) python3 bench/soak_hostile.py 127.0.0.1 "$PLAIN_PORT" "$DURATION" \
  "$REQUEST_TIMEOUT" "$IDLE_TIMEOUT" > "$OUT/hostile.json" 2> "$OUT/hostile.err" &
HOSTILE_PID=$!
PIDS+=("$HOSTILE_PID")

COLUMNS_SERVER="rss_kib,fds,threads,conns_open,requests,request_timeout,write_stalled,idle_timeout,reset,unexpected_closes,error_answers"
echo "t_s,$COLUMNS_SERVER,tls_${COLUMNS_SERVER//,/,tls_}" > "$OUT/soak.csv"
EMPTY_SERVER=${COLUMNS_SERVER//[a-z_]/}

# Samples on a fixed schedule (not after a fixed sleep), so that the time
# a scrape takes does not stretch the soak.
SOAK_START=$(now_ms)
DIED=''
# The last sample is taken before the loads end (at DURATION).
for ((n = 0; n * INTERVAL < DURATION; n++)); do
  due=$((SOAK_START + n * INTERVAL * 1000))
  wait_ms=$((due - $(now_ms)))
  if ((wait_ms > 0)); then sleep "$(seconds "$wait_ms")"; fi
  row=$(seconds $(($(now_ms) - SOAK_START)))
  for server in plain tls; do
    if [ "$server" = plain ]; then pid=$PLAIN_PID url=$PLAIN_METRICS; else pid=$TLS_PID url=$TLS_METRICS; fi
    if [ -z "$pid" ]; then
      row="$row,$EMPTY_SERVER"
    elif fields=$(process_fields "$pid" 2> /dev/null) && metrics=$(metrics_fields "$url"); then
      row="$row,$fields,$metrics"
    else
      DIED="$DIED $server"
      row="$row,$EMPTY_SERVER"
    fi
  done
  echo "$row" >> "$OUT/soak.csv"
  if [ -n "$DIED" ]; then
    echo "FAIL: the$DIED server stopped answering during the soak" >&2
    break
  fi
done

# Every client ends by itself (bench after its duration, the hostile script
# once its last attack was cut); their exit codes go to the analysis.
declare -A LOAD_RC=()
i=0
for load in "${LOADS[@]}"; do
  IFS='|' read -r name _ _ <<< "$load"
  if wait "${LOAD_PIDS[$i]}"; then LOAD_RC[$name]=0; else LOAD_RC[$name]=$?; fi
  i=$((i + 1))
done
if wait "$HOSTILE_PID"; then HOSTILE_RC=0; else HOSTILE_RC=$?; fi

# The servers at rest again, then their final counts: these must match
# what the clients did exactly, give or take SLACK.
PLAIN_IDLE_AFTER=$(idle_fields "$PLAIN_PID" "$PLAIN_METRICS" 2> /dev/null) || PLAIN_IDLE_AFTER=''
TLS_IDLE_AFTER=''
if [ "$TLS" = yes ]; then TLS_IDLE_AFTER=$(idle_fields "$TLS_PID" "$TLS_METRICS" 2> /dev/null) || TLS_IDLE_AFTER=''; fi
curl -fsS --max-time 2 "$PLAIN_METRICS" > "$OUT/plain-final.prom" || true
if [ "$TLS" = yes ]; then curl -fsS --max-time 2 "$TLS_METRICS" > "$OUT/tls-final.prom" || true; fi

# A graceful stop (SIGTERM) must still work after the soak, and exit 0.
# stop_server PID: sets STOPPED to its exit code, or to `hung` if it
# outlived its --shutdown-timeout by far (it is then left to the cleanup).
stop_server() {
  kill -TERM "$1" 2> /dev/null || true
  for _ in $(seq 100); do
    kill -0 "$1" 2> /dev/null || break
    sleep 0.05
  done
  STOPPED=hung
  if kill -0 "$1" 2> /dev/null; then return; fi
  if wait "$1"; then STOPPED=0; else STOPPED=$?; fi
}
stop_server "$PLAIN_PID"
PLAIN_EXIT=$STOPPED TLS_EXIT=''
if [ "$TLS" = yes ]; then
  stop_server "$TLS_PID"
  TLS_EXIT=$STOPPED
fi

# The analysis: reads soak.csv, the reports and the final counts, prints the
# summary (also written to summary.md) and exits 1 if a check failed.
loads_spec=''
for load in "${LOADS[@]}"; do
  IFS='|' read -r name server flags <<< "$load"
  loads_spec+="$name|$server|$flags|${RATE[$name]}|${LOAD_RC[$name]}"$'\n'
done
status=0
OUT="$OUT" DURATION="$DURATION" WARMUP_FRACTION="$WARMUP_FRACTION" SLACK="$SLACK" FD_SLACK="$FD_SLACK" \
  TLS="$TLS" LOADS_SPEC="$loads_spec" HOSTILE_RC="$HOSTILE_RC" DIED="$DIED" SOCKETS="$SOCKETS" \
  PLAIN_EXIT="$PLAIN_EXIT" TLS_EXIT="$TLS_EXIT" PLAIN_IDLE="$PLAIN_IDLE_BEFORE|$PLAIN_IDLE_AFTER" \
  TLS_IDLE="$TLS_IDLE_BEFORE|$TLS_IDLE_AFTER" REQUEST_TIMEOUT="$REQUEST_TIMEOUT" IDLE_TIMEOUT="$IDLE_TIMEOUT" \
  python3 - > "$OUT/summary.md" << 'PYTHON' || status=$?
import csv, json, os, re

out = os.environ["OUT"]
duration = float(os.environ["DURATION"])
warmup = duration * float(os.environ["WARMUP_FRACTION"])
slack = int(os.environ["SLACK"])
tls = os.environ["TLS"] == "yes"
servers = ["plain", "tls"] if tls else ["plain"]
checks = []  # (what, passed, figures)


def check(what, passed, figures):
    checks.append((what, bool(passed), figures))


def mib(kib):
    return f"{kib / 1024:.1f}"


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def prometheus(path):
    values = {}
    try:
        with open(path) as f:
            for line in f:
                if line.strip() and not line.startswith("#"):
                    key, value = line.rsplit(" ", 1)
                    values[key] = float(value)
    except OSError:
        pass
    return values


def closed(metrics, reason):
    return int(metrics.get(f'sockets_connections_closed_total{{reason="{reason}"}}', 0))


with open(f"{out}/soak.csv") as f:
    rows = list(csv.DictReader(f))


def steady(column):
    """(t, value) after the warm-up."""
    return [(float(r["t_s"]), float(r[column])) for r in rows if r[column] != "" and float(r["t_s"]) >= warmup]


def thirds(points):
    """Mean of the first and of the last third of the values."""
    k = max(1, len(points) // 3)
    first, last = [v for _, v in points[:k]], [v for _, v in points[-k:]]
    return sum(first) / len(first), sum(last) / len(last)


def slope_per_minute(points):
    """Least-squares slope of value over time, per minute."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / var if var else 0.0


# --- Loads: every answer right, nothing unanswered, rate held. ---
loads = []
for line in os.environ["LOADS_SPEC"].strip().splitlines():
    name, server, flags, rate, rc = line.split("|")
    report = load_json(f"{out}/soak-{name}.json")
    calibration = load_json(f"{out}/calibrate-{name}.json")
    workers = int(re.search(r"-c (\d+)", flags).group(1)) if "oneshot" in flags else 0
    loads.append({"name": name, "server": server, "flags": flags, "rate": int(rate), "soak": report,
                  "calibration": calibration, "workers": workers})
    if report is None:
        check(f"{name}: the load generator reported", False, f"no JSON report (exit {rc}); see soak-{name}.err")
        continue
    errors = report["errors"]
    check(
        f"{name}: no errors, no wrong answers, nothing unanswered",
        errors["total"] == 0 and report["unanswered"] == 0 and rc == "0",
        f'{errors["total"]} errors ({errors["wrong answer"]} wrong answers), {report["unanswered"]} unanswered, exit {rc}',
    )
    achieved = report["requests"] / report["elapsed_seconds"]
    check(f"{name}: held its rate (at least 90 %)", achieved >= 0.9 * int(rate), f"{achieved:.0f}/s of {rate}/s")

# --- Hostile clients: each attack ran and was cut by the server. ---
hostile = load_json(f"{out}/hostile.json")
if hostile is None:
    check("hostile clients reported", False, f'exit {os.environ["HOSTILE_RC"]}; see hostile.err')
    hostile = {"slowloris": {}, "never_reading": {}, "reset_mid_frame": {}, "threads": {}, "unfinished_threads": 1}
slow, never, resets = hostile["slowloris"], hostile["never_reading"], hostile["reset_mid_frame"]
slow_n, never_n, resets_n = slow.get("connections", 0), never.get("connections", 0), resets.get("resets", 0)
check(
    "slowloris: every attack cut by the server with its error answer",
    slow_n > 0 and slow.get("cut_with_error", 0) == slow_n,
    f'{slow_n} connections: {slow.get("cut_with_error", 0)} cut with the error, '
    f'{slow.get("cut_silently", 0)} without, {slow.get("not_cut", 0)} not cut, '
    f'slowest cut {slow.get("max_seconds_to_cut", 0)} s (limit {os.environ["REQUEST_TIMEOUT"]} s)',
)
check(
    "never reading: every attack held back, then cut",
    never_n > 0 and never.get("cut", 0) == never_n and never.get("backpressured", 0) == never_n,
    f'{never_n} connections, {never.get("requests_sent", 0)} requests sent, {never.get("backpressured", 0)} held back, '
    f'{never.get("cut", 0)} cut, {never.get("not_cut", 0)} not cut, slowest {never.get("max_seconds_to_cut", 0)} s',
)
check("reset mid-frame: resets sent", resets_n > 0 and resets.get("send_failed", 0) == 0, f"{resets_n} resets")
connect_failed = sum(hostile[k].get("connect_failed", 0) for k in ("slowloris", "never_reading", "reset_mid_frame"))
check("hostile clients could always connect, and all finished", connect_failed == 0 and hostile["unfinished_threads"] == 0,
      f'{connect_failed} failed connects, {hostile["unfinished_threads"]} unfinished')

# --- Server errors: each accounted for by a hostile client. ---
final = {server: prometheus(f"{out}/{server}-final.prom") for server in servers}
for server in servers:
    check(f"{server}: final metrics scraped", bool(final[server]), "")
plain = final["plain"]
timeout_answers = int(plain.get('sockets_requests_total{action="other",outcome="request_timeout"}', 0))
accounting = [
    ("request_timeout closes", closed(plain, "request_timeout"), "slowloris connections", slow_n),
    ("request_timeout error answers", timeout_answers, "slowloris connections", slow_n),
    ("write_stalled + idle_timeout closes", closed(plain, "write_stalled") + closed(plain, "idle_timeout"),
     "never-reading connections", never_n),
    ("reset closes", closed(plain, "reset"), "resets sent", resets_n),
]
for what, count, cause, caused in accounting:
    check(f"plain: {what} <= {cause} + {slack}", count <= caused + slack, f"{count} vs {caused}")
expected_reasons = {"client_closed", "response_sent", "request_timeout", "write_stalled", "idle_timeout", "reset"}
expected_outcomes = {"hit", "miss", "binary", "request_timeout"}
unexpected = {}
for server in servers:
    m = final[server]
    if server == "tls":  # no hostile client there: any error is unexpected
        expected = {"client_closed", "response_sent"}
        outcomes = {"hit", "miss", "binary"}
    else:
        expected, outcomes = expected_reasons, expected_outcomes
    found = {}
    for key, value in m.items():
        reason = re.fullmatch(r'sockets_connections_closed_total\{reason="(\w+)"\}', key)
        outcome = re.fullmatch(r'sockets_requests_total\{action="\w+",outcome="(\w+)"\}', key)
        if value and reason and reason.group(1) not in expected:
            found[f"closed {reason.group(1)}"] = int(value)
        if value and outcome and outcome.group(1) not in outcomes:
            found[f"answered {outcome.group(1)}"] = int(value)
    for key in ("sockets_accept_errors_total", 'sockets_tls_handshakes_total{result="failed"}'):
        if m.get(key):
            found[key] = int(m[key])
    unexpected[server] = found
    check(f"{server}: no error no hostile client caused", not found,
          ", ".join(f"{k} {v}" for k, v in found.items()) or "none")
# Search hits are the load generators' alone (the never-reader asks binary
# questions): the server must have answered exactly what they counted.
for server in servers:
    counted = sum(
        report["requests"] + report["probe_requests"]
        for load in loads if load["server"] == server
        for report in (load["soak"], load["calibration"]) if report
    )
    hits = int(final[server].get('sockets_requests_total{action="search",outcome="hit"}', 0))
    check(f"{server}: search hits answered = requests the load generators counted", hits == counted,
          f"{hits} answered, {counted} counted")

# --- Resources: flat after the warm-up. ---
resources = {}
for server in servers:
    prefix = "" if server == "plain" else "tls_"
    rss, fds, threads = steady(prefix + "rss_kib"), steady(prefix + "fds"), steady(prefix + "threads")
    if len(rss) < 3:
        check(f"{server}: enough samples after the warm-up", False, f"{len(rss)} samples")
        continue
    rss_first, rss_last = thirds(rss)
    rss_limit = max(0.10 * rss_first, 2048)
    check(f"{server}: RSS flat (last third <= first third + max(10 %, 2 MiB))", rss_last <= rss_first + rss_limit,
          f"{rss_first / 1024:.1f} -> {rss_last / 1024:.1f} MiB")
    in_flight = sum(load["workers"] for load in loads if load["server"] == server)
    if server == "plain":
        in_flight += sum(hostile["threads"].values())
    fd_limit = in_flight + int(os.environ["FD_SLACK"])
    fds_first, fds_last = thirds(fds)
    check(f"{server}: fds flat (last third <= first third + {fd_limit})", fds_last <= fds_first + fd_limit,
          f"{fds_first:.1f} -> {fds_last:.1f}")
    threads_first, threads_last = thirds(threads)
    # Tokio's blocking pool starts threads on demand and retires them idle.
    check(f"{server}: threads flat (last third <= first third + 4)", threads_last <= threads_first + 4,
          f"{threads_first:.1f} -> {threads_last:.1f}")
    resources[server] = {
        "rss": (rss[0][1], rss[-1][1], rss_first, rss_last, rss_limit, slope_per_minute(rss),
                max(float(r[prefix + "rss_kib"]) for r in rows if r[prefix + "rss_kib"])),
        "fds": (fds[0][1], fds[-1][1], fds_first, fds_last, fd_limit, max(v for _, v in fds)),
        "threads": (min(v for _, v in threads), max(v for _, v in threads)),
        "start": float(rows[0][prefix + "rss_kib"]),
    }

# At rest after the soak, a server must hold what it held at rest before:
# no connection, and the same descriptors (a leaked socket shows here).
idle = {}
for server in servers:
    before, after = (part.split(",") for part in os.environ["PLAIN_IDLE" if server == "plain" else "TLS_IDLE"].split("|"))
    idle[server] = (before, after)
    if len(after) < 4:
        check(f"{server}: at rest after the soak", False, "not measured (the server stopped?)")
        continue
    check(f"{server}: at rest after the soak: no connection open, fds as at rest before",
          after[3] == "0" and after[1] == before[1],
          f"{after[3]} connections open; fds {before[1]} before, {after[1]} after")

for server in servers:
    code = os.environ["PLAIN_EXIT" if server == "plain" else "TLS_EXIT"]
    check(f"{server}: SIGTERM after the soak: graceful exit 0", code == "0", f"exit {code}")
    with open(f"{out}/{server}.err", errors="replace") as f:
        panics = sum("panicked" in line for line in f)
    check(f"{server}: no panic in its log", panics == 0, f"{panics} lines")
if os.environ["DIED"]:
    check("servers answered every sample", False, f'stopped:{os.environ["DIED"]}')

# --- Report ---
passed = all(ok for _, ok, _ in checks)
p = print
p(f"## Soak: {duration:.0f} s, `{os.environ['SOCKETS']}`, TLS {'on' if tls else 'skipped'}: {'PASS' if passed else 'FAIL'}")
p()
p(f"Server limits: --request-timeout {os.environ['REQUEST_TIMEOUT']} s, --idle-timeout {os.environ['IDLE_TIMEOUT']} s. "
  f"Warm-up: the first {warmup:.0f} s; \"first/last third\" are means of the samples after it.")
p()
p("| load | server | flags | capacity alone/s | soak rate/s | requests | achieved/s | errors | wrong answers | unanswered |")
p("|---|---|---|---|---|---|---|---|---|---|")
for load in loads:
    report, calibration = load["soak"], load["calibration"]
    row = f'| {load["name"]} | {load["server"]} | `{load["flags"]}` | {calibration["requests_per_second"]:.0f} | {load["rate"]} |'
    if report:
        p(f'{row} {report["requests"]} | {report["requests"] / report["elapsed_seconds"]:.0f} | '
          f'{report["errors"]["total"]} | {report["errors"]["wrong answer"]} | {report["unanswered"]} |')
    else:
        p(f"{row} - | - | no report | - | - |")
p()
p("| resource | " + " | ".join(servers) + " |")
p("|---|" + "---|" * len(servers) + "")
if len(resources) == len(servers):
    p("| RSS MiB: soak start; after warm-up → end | " + " | ".join(
        f'{mib(resources[s]["start"])}; {mib(resources[s]["rss"][0])} → {mib(resources[s]["rss"][1])}' for s in servers) + " |")
    p("| RSS MiB: first third → last third (limit +) | " + " | ".join(
        f'{mib(resources[s]["rss"][2])} → {mib(resources[s]["rss"][3])} (+{mib(resources[s]["rss"][4])})' for s in servers) + " |")
    p("| RSS slope after warm-up, KiB/min | " + " | ".join(f'{resources[s]["rss"][5]:+.0f}' for s in servers) + " |")
    p("| RSS MiB peak | " + " | ".join(mib(resources[s]["rss"][6]) for s in servers) + " |")
    p("| fds: after warm-up → end | " + " | ".join(f'{resources[s]["fds"][0]:.0f} → {resources[s]["fds"][1]:.0f}' for s in servers) + " |")
    p("| fds: first third → last third (limit +) | " + " | ".join(
        f'{resources[s]["fds"][2]:.1f} → {resources[s]["fds"][3]:.1f} (+{resources[s]["fds"][4]})' for s in servers) + " |")
    p("| fds peak | " + " | ".join(f'{resources[s]["fds"][5]:.0f}' for s in servers) + " |")
    p("| at rest before → after: fds; RSS MiB | " + " | ".join(
        f'{idle[s][0][1]} → {idle[s][1][1] if len(idle[s][1]) > 1 else "?"}; '
        f'{mib(float(idle[s][0][0]))} → {mib(float(idle[s][1][0])) if idle[s][1][0] else "?"}' for s in servers) + " |")
    p("| threads min–max | " + " | ".join(f'{resources[s]["threads"][0]:.0f}–{resources[s]["threads"][1]:.0f}' for s in servers) + " |")
p()
p(f"| hostile kind | what it did | what the plain server counted | allowed |")
p("|---|---|---|---|")
p(f'| slowloris | {slow_n} connections, {slow.get("cut_with_error", 0)} cut with `Error: request not completed`, '
  f'{slow.get("cut_silently", 0)} cut without it, {slow.get("not_cut", 0)} not cut | {closed(plain, "request_timeout")} request_timeout closes, {timeout_answers} error answers | ≤ {slow_n + slack} |')
p(f'| never reading | {never_n} connections, {never.get("requests_sent", 0)} requests sent and answers never read, {never.get("backpressured", 0)} held back, '
  f'{never.get("cut", 0)} cut | {closed(plain, "write_stalled")} write_stalled + {closed(plain, "idle_timeout")} idle_timeout closes | ≤ {never_n + slack} |')
p(f'| reset mid-frame | {resets_n} resets | {closed(plain, "reset")} reset closes | ≤ {resets_n + slack} |')
for server in servers:
    found = unexpected.get(server, {})
    p(f'| (none) | | {server}: {", ".join(f"{k} {v}" for k, v in found.items()) or "no other error"} | 0 |')
p()
p("| check | result | figures |")
p("|---|---|---|")
for what, ok, figures in checks:
    p(f"| {what} | {'pass' if ok else '**FAIL**'} | {figures} |")
raise SystemExit(0 if passed else 1)
PYTHON
cat "$OUT/summary.md"

# The plot: resources over time (the dashed line ends the warm-up), and the
# server's cumulative error counts. Its script is kept in OUT, to re-plot.
cat > "$OUT/soak.gp" << 'GNUPLOT'
set terminal pngcairo size 1400,1000 font ",10"
set output out
set datafile separator ","
set datafile missing ""
set xlabel "seconds"
set grid
set key bottom right
# Room above the highest point, so a flat line does not hide in the border.
set offsets 0, 0, graph 0.1, 0
set arrow 1 from warm, graph 0 to warm, graph 1 nohead dashtype 2 linecolor "gray"
set xrange [0:dur]
set multiplot layout 2,2 title "sockets app-server soak: ".label
set title "resident memory (MiB)"
set yrange [0:*]
if (tls) {
  plot csv using "t_s":(column("rss_kib")/1024) with linespoints title "plain", \
       csv using "t_s":(column("tls_rss_kib")/1024) with linespoints title "TLS"
} else {
  plot csv using "t_s":(column("rss_kib")/1024) with linespoints title "plain"
}
set title "open file descriptors, and connections open"
if (tls) {
  plot csv using "t_s":"fds" with linespoints title "plain fds", \
       csv using "t_s":"conns_open" with lines dashtype 3 title "plain connections", \
       csv using "t_s":"tls_fds" with linespoints title "TLS fds", \
       csv using "t_s":"tls_conns_open" with lines dashtype 3 title "TLS connections"
} else {
  plot csv using "t_s":"fds" with linespoints title "plain fds", \
       csv using "t_s":"conns_open" with lines dashtype 3 title "plain connections"
}
set title "threads"
if (tls) {
  plot csv using "t_s":"threads" with linespoints title "plain", \
       csv using "t_s":"tls_threads" with linespoints title "TLS"
} else {
  plot csv using "t_s":"threads" with linespoints title "plain"
}
set title "errors the servers counted (cumulative)"
set key top left
# Below zero too, so that a line of zeros shows above the border.
set yrange [*:*]
set offsets 0, 0, graph 0.1, graph 0.05
if (tls) {
  plot csv using "t_s":"request_timeout" with lines title "request timeout (slowloris)", \
       csv using "t_s":(column("write_stalled")+column("idle_timeout")) with lines title "write stalled + idle (never reading)", \
       csv using "t_s":"reset" with lines title "reset (reset mid-frame)", \
       csv using "t_s":(column("unexpected_closes")+column("error_answers")) with lines linewidth 2 title "anything else (plain)", \
       csv using "t_s":(column("tls_unexpected_closes")+column("tls_error_answers")+column("tls_request_timeout")+column("tls_write_stalled")+column("tls_idle_timeout")+column("tls_reset")) with lines linewidth 2 title "anything else (TLS)"
} else {
  plot csv using "t_s":"request_timeout" with lines title "request timeout (slowloris)", \
       csv using "t_s":(column("write_stalled")+column("idle_timeout")) with lines title "write stalled + idle (never reading)", \
       csv using "t_s":"reset" with lines title "reset (reset mid-frame)", \
       csv using "t_s":(column("unexpected_closes")+column("error_answers")) with lines linewidth 2 title "anything else (plain)"
}
unset multiplot
GNUPLOT
tls_plot=0
if [ "$TLS" = yes ]; then tls_plot=1; fi
(cd "$OUT" && gnuplot -e "out='soak.png'; csv='soak.csv'; tls=$tls_plot; dur=$DURATION; warm=$(python3 -c "print($DURATION * $WARMUP_FRACTION)"); label='$DURATION s, $SOCKETS'" \
  soak.gp > gnuplot.log 2>&1) || echo "warning: gnuplot failed, see $OUT/gnuplot.log" >&2

echo
echo "Output: $OUT (soak.csv, soak.png, summary.md, process logs)"
exit "$status"
