#!/usr/bin/env bash
# UDP to many responders on a LAN made of network namespaces (a bridge, and
# hosts c, s1, s2 on 10.232.0.0/24 and fd32::/64, which exist only there):
# echo servers join a multicast group (two of them on s1, sharing the port),
# a client sends to the group or to the broadcast address and lists every
# responder. IPv4 and IPv6.
#
# Usage (root): tests/netns/multicast.sh path/to/sockets
set -euo pipefail

sockets=$(realpath "${1:?usage: $0 path/to/sockets}")
source "$(dirname "$0")/lib.sh"

netns_lan c s1 s2
# c is 10.232.0.1, s1 .2, s2 .3.

serve() { # serve HOST LOGNAME ARGS...: an echo server on HOST, waited for
  local host=$1 name=$2
  shift 2
  ip netns exec "$(ns_name "$host")" "$sockets" echo-server --udp "$@" >"$work/$name.out" 2>"$work/$name.log" &
  track_pid $!
  wait_for "$name listening" grep -q "Listening on" "$work/$name.log"
}

serve s1 s1-group-a --multicast 239.1.2.3 0.0.0.0 7777
serve s1 s1-group-b --multicast 239.1.2.3 0.0.0.0 7777
serve s2 s2-group --multicast 239.1.2.3 --interface "${lan_if[s2]}" 0.0.0.0 7777
serve s1 s1-any 0.0.0.0 7778
serve s2 s2-any 0.0.0.0 7778
serve s1 s1-group6 --multicast ff15::5:1 --interface "${lan_if[s1]}" :: 7779
serve s2 s2-group6 --multicast ff15::5:1 --interface "${lan_if[s2]}" :: 7779

client() { ns_exec c "$sockets" "$@"; }

out=$(client echo-client --udp 239.1.2.3 7777 "to the group" --linger 1)
echo "$out" >"$work/group.out"
check "multicast: three answers, from s1 (two servers sharing the port) and s2" grep -q "^3 answer(s) from 2 responder(s) to 239.1.2.3:7777" "$work/group.out"
check "each answered the message" [ "$(grep -c "^Received b'to the group' from 10.232.0.[23]:7777$" "$work/group.out")" -eq 3 ]

out=$(client echo-client --udp 10.232.0.255 7778 "to everyone" --broadcast --linger 1)
echo "$out" >"$work/broadcast.out"
check "broadcast: two responders" grep -q "^2 answer(s) from 2 responder(s) to 10.232.0.255:7778" "$work/broadcast.out"
check "broadcast answers from 10.232.0.2 and 10.232.0.3" \
  bash -c "grep -q 'from 10.232.0.2:7778' '$work/broadcast.out' && grep -q 'from 10.232.0.3:7778' '$work/broadcast.out'"
if client echo-client --udp 10.232.0.255 7778 x --linger 0.5 >"$work/nobroadcast.out" 2>&1; then
  fail "a broadcast without --broadcast was sent"
fi
check "without --broadcast the system refuses, and the error says what to add" grep -q "add --broadcast" "$work/nobroadcast.out"

out=$(client echo-client --udp ff15::5:1 7779 "to the v6 group" --multicast-interface "${lan_if[c]}" --linger 1)
echo "$out" >"$work/group6.out"
check "IPv6 multicast: two responders" grep -q "^2 answer(s) from 2 responder(s) to \[ff15::5:1\]:7779" "$work/group6.out"
check "IPv6 answers from fd32::2 and fd32::3" \
  bash -c "grep -q 'from \[fd32::2\]:7779' '$work/group6.out' && grep -q 'from \[fd32::3\]:7779' '$work/group6.out'"

printf 'one line\n' | ns_exec c "$sockets" connect --udp 239.1.2.3 7777 --linger 1 >"$work/connect.out" 2>"$work/connect.err"
check "connect --udp to the group: every echo on stdout" [ "$(grep -c '^one line$' "$work/connect.out")" -eq 3 ]
check "connect lists the responders on stderr" grep -q "2 responder(s) to 239.1.2.3:7777: 10.232.0.2:7777 (2), 10.232.0.3:7777 (1)" "$work/connect.err"

# A TTL of 1 keeps the group on this LAN; a member of the group on the
# client's own host hears it only with the loop on.
serve c c-group --multicast 239.1.2.3 0.0.0.0 7777
out=$(client echo-client --udp 239.1.2.3 7777 loop --linger 1 --multicast-loop false)
check "--multicast-loop false: the client's own host does not hear it" bash -c "! grep -q 'from 10.232.0.1:' <<< '$out'"
out=$(client echo-client --udp 239.1.2.3 7777 loop --linger 1)
check "loop on (the default): it does" grep -q "from 10.232.0.1:7777" <<< "$out"

echo "PASS: multicast and broadcast across network namespaces"
