#!/usr/bin/env bash
# Faults loopback cannot show, across hosts made of network namespaces: a
# client and a server host, each on its own link to a router that forwards
# between them (netns_routed in lib.sh; addresses exist only there).
#
#   1. Happy Eyeballs for real: a name whose IPv6 address is black-holed
#      on the way, and whose IPv4 address works; then one whose every
#      address is black-holed.
#   2. A peer that vanishes: mid-request (the server frees the connection
#      at the request deadline), mid-echo (the client reports a timeout),
#      and while idle (only TCP keepalive notices, on either side).
#   3. A tiny MTU (576) on the path, and the MTU changing mid-transfer.
#   4. kill -9 of the server under load, then a restart.
#
# Each check prints "ok WHAT"; the last line is "PASS: ..." only if all held.
# Usage (root): tests/netns/faults.sh path/to/sockets
set -euo pipefail

sockets=$(realpath "${1:?usage: $0 path/to/sockets}")
source "$(dirname "$0")/lib.sh"
command -v ss >/dev/null || fail "ss not found (apt-get install iproute2)"

netns_routed
server_ip=10.233.2.2
router() { ip -n "$(ns_name router)" "$@"; }
client() { ns_exec client "$sockets" "$@"; }
# established PORT: TCP connections the server host has open on PORT.
established() { ns_exec server ss -tnH state established "( sport = :$1 )" | wc -l; }
# at_least N PORT: whether the server host has N connections on PORT (for wait_for).
at_least() { [ "$(established "$2")" -ge "$1" ]; }
# serve NAME ARGS...: a server on the server host, waited for; sets SERVER_PID.
serve() {
  local name=$1
  shift
  ip netns exec "$(ns_name server)" "$sockets" "$@" >"$work/$name.out" 2>"$work/$name.log" &
  SERVER_PID=$!
  track_pid "$SERVER_PID"
  wait_for "$name listening" grep -q "Listening on" "$work/$name.log"
}
# between N LOW HIGH: whether LOW <= N < HIGH.
between() { [ "$1" -ge "$2" ] && [ "$1" -lt "$3" ]; }

# --- 1. Happy Eyeballs -----------------------------------------------------
# The router drops what is sent to 2001:db8:2::99 and 10.233.9.9 without a
# word, as a broken route on the Internet does: a SYN that is never answered.
router -6 route add blackhole 2001:db8:2::99/128
router route add blackhole 10.233.9.9/32
hosts_file client "127.0.0.1 localhost" \
  "2001:db8:2::99 half-broken" "$server_ip half-broken" \
  "2001:db8:2::99 all-broken" "10.233.9.9 all-broken"
serve app-a app-server :: 7000

start=$(date +%s%N)
client app-client half-broken 7000 search morpheus >"$work/he.out" 2>"$work/he.err"
took=$((($(date +%s%N) - start) / 1000000))
check "half-broken name: answered over IPv4" grep -q "Follow the white rabbit" "$work/he.out"
check "half-broken name: IPv6 tried first, IPv4 after the 250 ms attempt delay (${took} ms)" \
  between "$took" 250 1500
check "the client says which address did not answer" \
  grep -q "connected to $server_ip:7000 after: \[2001:db8:2::99\]:7000: no answer yet" "$work/he.err"

start=$(date +%s%N)
if client app-client -w 2 all-broken 7000 search morpheus >"$work/he2.out" 2>"$work/he2.err"; then
  fail "a name with no reachable address connected"
fi
took=$((($(date +%s%N) - start) / 1000000))
check "all-broken name: the 2 s connect timeout is honoured (${took} ms)" between "$took" 2000 4000
check "all-broken name: each address and its failure listed" \
  grep -q "\[2001:db8:2::99\]:7000: timed out after 2s; 10.233.9.9:7000: timed out after 2s" "$work/he2.err"

# --- 2. Vanishing peers ------------------------------------------------------
# Servers that never time out idle connections: one with keepalive, one without.
serve app-keepalive app-server --request-timeout 2 --idle-timeout 0 --keepalive 1 0.0.0.0 7001
serve app-plain app-server --idle-timeout 0 0.0.0.0 7002
serve echo echo-server --idle-timeout 0 0.0.0.0 7003
# Clients that go quiet: half a request (to 7001), and idle ones (7001, 7002).
hold() { # hold PORT HEX: connect, send the bytes, then stay quiet
  ip netns exec "$(ns_name client)" python3 -c '
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.sendall(bytes.fromhex(sys.argv[3]))
time.sleep(60)' "$server_ip" "$1" "$2" &
  track_pid $!
}
hold 7001 "$(printf '\x00\x67{"byteorder"' | od -An -tx1 | tr -d ' \n')"
hold 7001 ""
hold 7002 ""
quiet_clients_connected() { at_least 2 7001 && at_least 1 7002; }
wait_for "three quiet clients connected" quiet_clients_connected

# The client host's link goes down: every client there vanishes without a FIN.
router link set "${route_if[client]}" down
cut=$(date +%s%N)
wait_for "half a request freed at the 2 s request deadline" \
  grep -q "Closing connection to 10.233.1.2:[0-9]* (request not completed within 2s)" "$work/app-keepalive.log"
wait_for "an idle client freed by keepalive (1 s idle + 3 probes)" \
  grep -q "Closing connection to 10.233.1.2:[0-9]* (connection error: Connection timed out" "$work/app-keepalive.log"
freed=$((($(date +%s%N) - cut) / 1000000))
check "keepalive noticed the vanished client within 6 s (${freed} ms)" [ "$freed" -lt 6000 ]
check "the keepalive server holds no connection any more" [ "$(established 7001)" -eq 0 ]
check "without keepalive (and no idle timeout) the vanished client is still held" [ "$(established 7002)" -ge 1 ]
router link set "${route_if[client]}" up

# Our own client, idle with keepalive and no timeout, waiting for a server
# that will vanish.
# (Its input is a FIFO held open by a tracked sleep, so nothing outlives us.)
mkfifo "$work/quiet.in"
sleep 60 >"$work/quiet.in" &
track_pid $!
ip netns exec "$(ns_name client)" "$sockets" connect -w 0 --keepalive 1 "$server_ip" 7002 \
  <"$work/quiet.in" >"$work/connect-keepalive.out" 2>"$work/connect-keepalive.err" &
connect_pid=$!
track_pid "$connect_pid"
wait_for "keepalive client connected" at_least 2 7002

# Now the server host vanishes, for a client in the middle of an echo
# (connect, which streams its input), and
# for our idle keepalive client (connected before the cut, still open).
# (The input pauses for a second half-way, so the cut falls mid-echo.)
head -c 33554432 /dev/urandom >"$work/big.bin"
{ head -c 1048576 "$work/big.bin"; sleep 1; head -c 1048576 "$work/big.bin"; } |
  ip netns exec "$(ns_name client)" "$sockets" connect -w 2 "$server_ip" 7003 \
    >"$work/echo-cut.out" 2>"$work/echo-cut.err" &
echo_pid=$!
track_pid "$echo_pid"
sleep 0.5
router link set "${route_if[server]}" down
cut=$(date +%s%N)
echo_status=0
wait "$echo_pid" || echo_status=$?
took=$((($(date +%s%N) - cut) / 1000000))
check "client cut mid-echo fails (status $echo_status) with a timeout" \
  bash -c "[ $echo_status -ne 0 ] && grep -q 'timed out' '$work/echo-cut.err'"
check "... within its 2 s wait after the input resumed, not a hang (${took} ms)" [ "$took" -lt 5000 ]
connect_status=0
wait_for "the idle keepalive client noticed the server is gone" bash -c "! kill -0 $connect_pid 2>/dev/null"
wait "$connect_pid" || connect_status=$?
check "connect --keepalive exits non-zero (status $connect_status), saying it timed out" \
  bash -c "[ $connect_status -ne 0 ] && grep -qi 'timed out' '$work/connect-keepalive.err'"
router link set "${route_if[server]}" up

# --- 3. MTU ------------------------------------------------------------------
# The router's link to the server takes 576-byte packets; the client's side
# still sends 1500, so path MTU discovery (ICMP from the router) must work.
router link set "${route_if[server]}" mtu 576
ns_exec server ip link set "${host_if[server]}" mtu 576
head -c 4194304 /dev/urandom >"$work/4m.bin"
client echo-client -w 5 "$server_ip" 7003 --input "$work/4m.bin" >"$work/mtu-echo.out" 2>"$work/mtu-echo.err"
check "MTU 576 on the path: 4 MiB echoed byte-exact" grep -q "^Received 4194304 bytes" "$work/mtu-echo.out"
client check --profile robust --json -w 5 "$server_ip" 7000 >"$work/mtu-check.json" 2>"$work/mtu-check.err" || true
json_is "$work/mtu-check.json" 'r["summary"]["failed"] == 0 and r["summary"]["passed"] >= 30' \
  "MTU 576 on the path: the conformance checker's robust profile passes (segmentation, large content, errors)"
# The MTU changes while 32 MiB are on the way: 1500, 576, 1500, 576.
ip netns exec "$(ns_name client)" "$sockets" echo-client -w 5 "$server_ip" 7003 --input "$work/big.bin" \
  >"$work/mtu-change.out" 2>"$work/mtu-change.err" &
echo_pid=$!
for mtu in 1500 576 1500 576; do
  sleep 0.2
  router link set "${route_if[server]}" mtu "$mtu"
  ns_exec server ip link set "${host_if[server]}" mtu "$mtu"
done
wait "$echo_pid" || fail "echo while the MTU changed: $(cat "$work/mtu-change.err")"
check "MTU changed four times mid-transfer: 32 MiB echoed byte-exact" grep -q "^Received 33554432 bytes" "$work/mtu-change.out"
router link set "${route_if[server]}" mtu 1500
ns_exec server ip link set "${host_if[server]}" mtu 1500

# --- 4. kill -9 under load, and a restart -----------------------------------
serve app-victim app-server 0.0.0.0 7010
for mode in persistent oneshot; do
  ip netns exec "$(ns_name client)" "$sockets" bench app "$server_ip" 7010 --mode "$mode" -c 4 -d 5 -w 2 --json \
    >"$work/kill-$mode.json" 2>"$work/kill-$mode.err" &
  bench_pid=$!
  sleep 1.5
  kill -9 "$SERVER_PID"
  wait "$SERVER_PID" 2>/dev/null || true
  sleep 1
  serve "app-restarted-$mode" app-server 0.0.0.0 7010
  # It exits 1: it saw errors. The report says which.
  wait "$bench_pid" || true
  [ -s "$work/kill-$mode.json" ] || fail "bench under kill -9 ($mode) reported nothing: $(cat "$work/kill-$mode.err")"
  json_is "$work/kill-$mode.json" 'r["errors"]["refused"] + r["errors"]["reset"] + r["errors"]["closed"] > 0' \
    "$mode: kill -9 seen by the clients, counted by kind: $(json_get "$work/kill-$mode.json" 'r["errors"]')"
  json_is "$work/kill-$mode.json" 'r["errors"]["wrong answer"] == 0 and r["errors"]["bad frame"] == 0' \
    "$mode: no wrong answer and no bad frame across the kill"
  json_is "$work/kill-$mode.json" 'sum(r["timeline"]["per_second"][-4:]) > 0' \
    "$mode: the clients recovered: answers in the last second, from the restarted server"
  check "$mode: the restarted server served them" grep -q "Accepted connection from 10.233.1.2" "$work/app-restarted-$mode.log"
done

echo "PASS: faults across network namespaces (Happy Eyeballs, vanishing peers, keepalive, MTU, kill -9)"
