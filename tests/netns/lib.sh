# Network-namespace test harness: hosts that exist only for one test run.
# Sourced by the scripts beside it; needs root, `ip` (iproute2), python3.
#
#   netns_topology 1 2 3   a client host and a balancer host joined by one
#                          veth pair (10.231.0.0/24), and a server host per
#                          argument, each joined to the balancer by its own
#                          pair (10.231.N.0/24)
#   netns_lan HOST...      hosts on one switched LAN (a bridge in a host of
#                          its own): HOST gets 10.232.0.N/24 and fd32::N/64,
#                          N its position from 1; multicast routes to the LAN
#   netns_routed           hosts client, router and server: client
#                          10.233.1.2 and 2001:db8:1::2, server 10.233.2.2
#                          and 2001:db8:2::2, each on its own veth pair to
#                          the router (.1 / ::1 on each side), which forwards;
#                          the links are route_if[client] and route_if[server]
#                          on the router's side, host_if[HOST] on the host's
#   hosts_file HOST LINE...  the host's own /etc/hosts (ip netns exec
#                          bind-mounts /etc/netns/NAME/hosts over it)
#   ns_exec HOST CMD...    runs CMD on a host (client, balancer, serverN);
#                          to signal a background process later, start it
#                          with `ip netns exec "$(ns_name HOST)" CMD &`
#                          instead, so that $! is CMD itself
#   track_pid PID          kills PID on exit
#   wait_for WHAT CMD...   retries CMD for up to 15 s, fails naming WHAT
#   check WHAT CMD...      runs CMD once, prints "ok WHAT" or fails
#   json_is FILE EXPR WHAT evaluates a Python expression over the JSON in FILE (as r)
#   json_get FILE EXPR     prints a Python expression over the JSON in FILE
#
# Names carry this shell's pid, so runs side by side do not collide, and
# everything made is removed on exit (also on failure or Ctrl-C).

prefix="sk$$"
work=$(mktemp -d)
namespaces=()
pids=()

cleanup() {
  local status=$?
  # Everything still running on our hosts, tracked or not.
  for ns in "${namespaces[@]}"; do pids+=($(ip netns pids "$ns" 2>/dev/null)); done
  # A second SIGTERM makes a sockets server exit at once, drain or not.
  for signal in TERM TERM KILL; do
    for pid in "${pids[@]}"; do kill -"$signal" "$pid" 2>/dev/null || true; done
    sleep 0.1
  done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ns in "${namespaces[@]}"; do
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
  done
  if [ "$status" -ne 0 ]; then
    echo "--- logs in $work (kept):" >&2
    for log in "$work"/*.log "$work"/*.err; do
      [ -s "$log" ] && { echo "--- $log" >&2; tail -n 40 "$log" >&2; }
    done
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

[ "$(id -u)" -eq 0 ] || fail "network namespaces need root (CI runs as root)"
command -v ip >/dev/null || fail "ip not found (apt-get install iproute2)"

ns_name() { echo "$prefix-$1"; }

ns_exec() {
  local host=$1
  shift
  ip netns exec "$(ns_name "$host")" "$@"
}

add_host() {
  local ns
  ns=$(ns_name "$1")
  ip netns add "$ns"
  namespaces+=("$ns")
  ip -n "$ns" link set lo up
}

# link A ADDR_A B ADDR_B: a veth pair between hosts A and B, addresses /24.
link() {
  local a=$1 addr_a=$2 b=$3 addr_b=$4
  local if_a="${prefix}${b: -1}a" if_b="${prefix}${b: -1}b"
  [ "$b" = balancer ] && { if_a="${prefix}ca"; if_b="${prefix}cb"; }
  ip link add "$if_a" netns "$(ns_name "$a")" type veth peer name "$if_b" netns "$(ns_name "$b")"
  ip -n "$(ns_name "$a")" addr add "$addr_a/24" dev "$if_a"
  ip -n "$(ns_name "$b")" addr add "$addr_b/24" dev "$if_b"
  ip -n "$(ns_name "$a")" link set "$if_a" up
  ip -n "$(ns_name "$b")" link set "$if_b" up
}

netns_topology() {
  add_host client
  add_host balancer
  link client 10.231.0.2 balancer 10.231.0.1
  for n in "$@"; do
    add_host "server$n"
    link balancer "10.231.$n.1" "server$n" "10.231.$n.2"
  done
}

netns_lan() {
  add_host switch
  ip -n "$(ns_name switch)" link add br0 type bridge
  ip -n "$(ns_name switch)" link set br0 up
  local n=0 host
  for host in "$@"; do
    n=$((n + 1))
    add_host "$host"
    local if_host="${prefix}l${n}h" if_port="${prefix}l${n}p"
    ip link add "$if_host" netns "$(ns_name "$host")" type veth peer name "$if_port" netns "$(ns_name switch)"
    ip -n "$(ns_name switch)" link set "$if_port" master br0
    ip -n "$(ns_name switch)" link set "$if_port" up
    ip -n "$(ns_name "$host")" addr add "10.232.0.$n/24" broadcast 10.232.0.255 dev "$if_host"
    ip -n "$(ns_name "$host")" -6 addr add "fd32::$n/64" dev "$if_host" nodad
    ip -n "$(ns_name "$host")" link set "$if_host" up
    ip -n "$(ns_name "$host")" route add 224.0.0.0/4 dev "$if_host"
    ip -n "$(ns_name "$host")" -6 route add ff00::/8 dev "$if_host" table local 2>/dev/null || true
    lan_if[$host]=$if_host
  done
}

declare -A lan_if

netns_routed() {
  add_host router
  ip netns exec "$(ns_name router)" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
  local n=0 host
  for host in client server; do
    n=$((n + 1))
    add_host "$host"
    local if_host="${prefix}r${n}h" if_router="${prefix}r${n}r"
    ip link add "$if_host" netns "$(ns_name "$host")" type veth peer name "$if_router" netns "$(ns_name router)"
    ip -n "$(ns_name "$host")" addr add "10.233.$n.2/24" dev "$if_host"
    ip -n "$(ns_name "$host")" -6 addr add "2001:db8:$n::2/64" dev "$if_host" nodad
    ip -n "$(ns_name router)" addr add "10.233.$n.1/24" dev "$if_router"
    ip -n "$(ns_name router)" -6 addr add "2001:db8:$n::1/64" dev "$if_router" nodad
    ip -n "$(ns_name "$host")" link set "$if_host" up
    ip -n "$(ns_name router)" link set "$if_router" up
    ip -n "$(ns_name "$host")" route add default via "10.233.$n.1"
    ip -n "$(ns_name "$host")" -6 route add default via "2001:db8:$n::1"
    host_if[$host]=$if_host
    route_if[$host]=$if_router
  done
}

declare -A host_if route_if

hosts_file() {
  local host=$1
  shift
  mkdir -p "/etc/netns/$(ns_name "$host")"
  printf '%s\n' "$@" >"/etc/netns/$(ns_name "$host")/hosts"
}

track_pid() { pids+=("$1"); }

wait_for() {
  local what=$1
  shift
  local deadline=$((SECONDS + 15))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out waiting for: $what"
    sleep 0.05
  done
  echo "ok $what"
}

check() {
  local what=$1
  shift
  "$@" || fail "$what"
  echo "ok $what"
}

json_is() {
  local file=$1 expr=$2 what=$3
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if ($expr) else 1)" "$file" ||
    fail "$what: $(cat "$file")"
  echo "ok $what"
}

json_get() {
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1"
}
