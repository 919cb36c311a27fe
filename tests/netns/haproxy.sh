#!/usr/bin/env bash
# Three app-server instances behind HAProxy, each on its own "host": network
# namespaces joined by veth pairs, in a private subnet that exists only
# inside them. HAProxy sends PROXY v2 and health-checks each server with the
# real search request of contrib/haproxy/haproxy.cfg; clients run on a host of their own.
#
#   client 10.231.0.2 ── 10.231.0.1 balancer 10.231.N.1 ── 10.231.N.2 server N (N = 1..3)
#
# Shows: every request answered correctly; requests spread over the three
# servers; each server logs and counts the client host's address, not the
# balancer's; SIGTERM to one server under load loses no request and HAProxy
# routes around it; restarted, it comes back into rotation.
#
# Usage (root): tests/netns/haproxy.sh path/to/sockets
# Cleans up its namespaces and processes on exit, whatever happens; every
# wait is bounded. Prints one line per check; exits non-zero on the first
# that fails.
set -euo pipefail

sockets=$(realpath "${1:?usage: $0 path/to/sockets}")
source "$(dirname "$0")/lib.sh"

port=7000
servers=(1 2 3)
declare -A server_pid

netns_topology "${servers[@]}"

# The health check of the shipped example, contrib/haproxy/haproxy.cfg: a
# search for "health-check" (a miss, counted apart from the clients' hits).
check_lines=$(awk '/^backend app_servers/ { on = 1; next } /^backend/ { on = 0 } on && /^ *(option tcp-check|tcp-check )/' \
  "$(dirname "$0")/../../contrib/haproxy/haproxy.cfg")
[ "$(echo "$check_lines" | wc -l)" -eq 3 ] || fail "no health check found in contrib/haproxy/haproxy.cfg"

start_server() {
  local n=$1
  # Not through ns_exec: $! must be the server itself, to signal it.
  ip netns exec "$(ns_name "server$n")" "$sockets" app-server "10.231.$n.2" "$port" \
    --proxy-protocol --proxy-from "10.231.$n.1" --drain-delay 1 \
    --metrics "10.231.$n.2:9100" -v \
    >"$work/server$n.out" 2>>"$work/server$n.log" &
  server_pid[$n]=$!
  wait_for "server $n listening" grep -q "Listening on" "$work/server$n.log"
}

for n in "${servers[@]}"; do start_server "$n"; done

cat >"$work/haproxy.cfg" <<EOF
global
    log stderr format short local0 notice
    pidfile $work/haproxy.pid

defaults
    mode tcp
    log global
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    retries 3
    option redispatch

frontend app
    bind 10.231.0.1:$port
    default_backend servers

backend servers
    balance roundrobin
$check_lines
$(for n in "${servers[@]}"; do
    echo "    server s$n 10.231.$n.2:$port send-proxy-v2 check check-send-proxy inter 200ms fall 2 rise 2"
  done)
EOF
ip netns exec "$(ns_name balancer)" haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
haproxy_pid=$!
track_pid "$haproxy_pid"
for n in "${servers[@]}"; do track_pid "${server_pid[$n]}"; done

# Health checks: HAProxy's own search request, answered by each server.
for n in "${servers[@]}"; do
  wait_for "server $n healthy (answers HAProxy's check)" \
    grep -q "Accepted connection from 10.231.$n.1:[0-9]* (PROXY v2, the balancer's own connection)" "$work/server$n.log"
done
sleep 1 # rise 2 × inter 200ms: all three in rotation

bench() { # bench NAME ARGS...: runs sockets bench app from the client host, JSON in $work/NAME.json
  local name=$1
  shift
  # Its exit status is not checked here: the report says what went wrong.
  ns_exec client "$sockets" bench app 10.231.0.1 "$port" --json "$@" >"$work/$name.json" 2>"$work/$name.err" || true
}

metric() { # metric N NAME: a server's sample, scraped from its metrics listener
  ns_exec "server$1" curl -s --max-time 5 "http://10.231.$1.2:9100/metrics" |
    awk -v name="$2" '$1 == name { print $2 }'
}
hits() { metric "$1" 'sockets_requests_total{action="search",outcome="hit"}'; }

# 1. Spread, correctness, real client address. Oneshot: a connection per
# request, so HAProxy's round robin spreads requests. A modest rate keeps
# every connection's log line within the servers' log limit.
before=()
for n in "${servers[@]}"; do before[$n]=$(hits "$n"); done
bench spread --mode oneshot -c 4 -n 150 --rate 50
json_is "$work/spread.json" 'r["requests"] == 150 and sum(r["errors"].values()) == 0' \
  "150 requests through HAProxy, all answered correctly"
total=0
for n in "${servers[@]}"; do
  got=$(($(hits "$n") - ${before[$n]}))
  total=$((total + got))
  check "server $n answered $got of them (round robin: about 50)" [ "$got" -ge 30 ]
  from_client=$(grep -c "Accepted connection from 10.231.0.2:[0-9]* (via 10.231.$n.1:[0-9]*, PROXY v2)" "$work/server$n.log" || true)
  check "server $n logged the client host 10.231.0.2 for each ($from_client), via the balancer" [ "$from_client" -eq "$got" ]
done
probe=$(json_get "$work/spread.json" 'r["probe_requests"]')
check "the servers' counts add up to the requests sent and bench's probe of $probe ($total)" [ "$total" -eq $((150 + probe)) ]

# 2. SIGTERM one server under load: nothing lost, HAProxy routes around it.
bench rolling --mode oneshot -c 8 -d 4 &
bench_pid=$!
sleep 1.5
kill -TERM "${server_pid[2]}"
# --drain-delay 1: server 2 fails HAProxy's checks for a second (fall 2 ×
# inter 200ms), so HAProxy stops sending it clients before it closes its
# listener: no connection lands in a queue that is about to close.
wait_for "server 2 drains: HAProxy marks it down" grep -q "servers/s2 is DOWN" "$work/haproxy.log"
wait_for "server 2 exits" bash -c "! kill -0 ${server_pid[2]} 2>/dev/null"
check "server 2 stopped gracefully (exit status 0)" wait "${server_pid[2]}"
before3=$(hits 3)
wait "$bench_pid" || true
json_is "$work/rolling.json" 'r["requests"] > 0 and sum(r["errors"].values()) == 0 and r["unanswered"] == 0' \
  "load while server 2 stopped: $(json_get "$work/rolling.json" 'r["requests"]') requests, no error, none unanswered"
after3=$(hits 3)
check "the others kept serving (server 3: $((after3 - before3)) more after server 2 stopped)" [ "$after3" -gt "$before3" ]
check "server 2 logged its drain" grep -q "draining for 1s" "$work/server2.log"

# 3. Restarted, it comes back into rotation.
start_server 2
track_pid "${server_pid[2]}"
wait_for "HAProxy marks server 2 up" grep -q "servers/s2 is UP" "$work/haproxy.log"
bench back --mode oneshot -c 4 -n 90
json_is "$work/back.json" 'r["requests"] == 90 and sum(r["errors"].values()) == 0' "90 more requests, all answered"
back=$(hits 2)
check "the restarted server 2 took its share ($back)" [ "$back" -ge 15 ]

echo "PASS: HAProxy with PROXY v2 across network namespaces"
