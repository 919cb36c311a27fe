#!/usr/bin/env bash
# check_dissector.sh: prove contrib/wireshark/sockets.lua with tshark.
#
# Usage: tests/wireshark/check_dissector.sh [PCAP_FILE]
#
# PCAP_FILE defaults to sample.pcap next to this script. The assertions are
# about the traffic recorded in that sample (see contrib/wireshark/README.md):
# a search for "morpheus" and its answer, a search for the dog emoji, a binary
# upload, the pipelined bench run (search "trinity"), messages split across
# segments, a stream on port 40001 that only the heuristic can find, and some
# deliberately malformed messages that must give expert info, not Lua errors.
#
# Environment: TSHARK (default: tshark), BENCH_REQUESTS (default 22: the
# bench's 20 counted requests plus the 2 probe requests it sends first on the
# same connection; "sockets bench" reports "probe 2 request(s)").
#
# Exits 0 when every check passes, 1 with a FAIL line per failed check, 2 on
# usage or environment errors.

set -u -o pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
lua="$repo/contrib/wireshark/sockets.lua"
tshark=${TSHARK:-tshark}
bench_expected=${BENCH_REQUESTS:-22}

pcap=${1:-$here/sample.pcap}
if [[ $# -gt 1 || $pcap == -h || $pcap == --help ]]; then
    echo "usage: $0 [PCAP_FILE]" >&2
    exit 2
fi
[[ -r $pcap ]] || { echo "error: cannot read capture file: $pcap" >&2; exit 2; }
[[ -r $lua ]] || { echo "error: dissector not found: $lua" >&2; exit 2; }
command -v "$tshark" >/dev/null || { echo "error: tshark not found (set TSHARK=...)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A private HOME: no personal preferences, and no installed copy of the
# plugin in ~/.local/lib/wireshark/plugins that would clash with -X lua_script.
mkdir -p "$work/home"
ts() { HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config" \
       "$tshark" -X "lua_script:$lua" -r "$pcap" "$@"; }

failures=0
pass() { printf 'ok   %s\n' "$1"; }
fail() { printf 'FAIL %s\n' "$1"; failures=$((failures + 1)); }
check() { # check DESCRIPTION COMMAND...: pass if the command succeeds
    local what=$1; shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
count_lines() { grep -c -x -F -- "$1" "$2" || true; }   # exact whole lines

# --- Run tshark --------------------------------------------------------------

ts -V >"$work/verbose.txt" 2>"$work/verbose.err"
rc_v=$?
ts -2 -V >"$work/twopass.txt" 2>"$work/twopass.err"
rc_2=$?
ts -q -z io,stat,0 >"$work/iostat.txt" 2>"$work/iostat.err"
rc_q=$?
ts -Y sockets -T fields -E header=n -E occurrence=a -E aggregator=$'\x1e' \
   -e frame.number -e tcp.srcport -e tcp.dstport \
   -e sockets.action -e sockets.value -e sockets.result -e sockets.content_type \
   >"$work/fields.txt" 2>"$work/fields.err"
rc_f=$?
ts >"$work/summary.txt" 2>"$work/summary.err"
rc_s=$?

check "tshark exits 0 on every run (-V: $rc_v, -2 -V: $rc_2, -z io,stat: $rc_q, -T fields: $rc_f, summary: $rc_s)" \
    test "$rc_v$rc_2$rc_q$rc_f$rc_s" = 00000

# --- No Lua errors, no malformed-packet exceptions -----------------------------

# "[Malformed Packet" only comes from an exception while dissecting; the
# deliberately malformed samples must give expert info (checked below) instead.
bad_pattern='Lua: ?Error|Lua Error|\[Malformed|Dissector bug|lua_error|attempt to (index|call|compare|perform)|stack traceback'
if grep -E -i -n -- "$bad_pattern" "$work"/*.txt "$work"/*.err >"$work/errors.txt"; then
    fail "no Lua errors or [Malformed Packet] in tshark output; found:"
    head -20 "$work/errors.txt" | sed 's/^/       /'
else
    pass "no Lua errors or [Malformed Packet] in tshark output (5 runs, incl. two-pass and -z io,stat,0)"
fi
check "the dissector registered (io,stat ran with it)" grep -q -F "IO Statistics" "$work/iostat.txt"

V="$work/verbose.txt"
F="$work/fields.txt"
RS=$'\x1e'

# --- Search request and response ------------------------------------------------

check 'search request decodes: Action "search", Value "morpheus"' \
    grep -q -P "^\d+\t\d+\t65432\tsearch\tmorpheus\t" "$F"
check 'the -V tree shows "Action: search" then "Value: morpheus"' \
    bash -c 'grep -A1 -x -F "        Action: search" "$1" | grep -q -x -F "        Value: morpheus"' _ "$V"
check 'response shows its result "Follow the white rabbit. 🐰"' \
    grep -q -x -F "        Result: Follow the white rabbit. 🐰" "$V"
check 'Info column: Request search "morpheus"' grep -q -F 'Request search "morpheus"' "$work/summary.txt"
check 'Info column: Response "Follow the white rabbit. 🐰"' \
    grep -q -F 'Response "Follow the white rabbit. 🐰"' "$work/summary.txt"
check 'header fields: Header Length 103, Byte Order, Content-Type text/json, Content-Length 41' \
    bash -c 'grep -q -x -F "    Header Length: 103" "$1" && grep -q -x -F "        Byte Order: little" "$1" &&
             grep -q -x -F "        Content-Type: text/json" "$1" && grep -q -x -F "        Content-Encoding: utf-8" "$1" &&
             grep -q -x -F "        Content-Length: 41" "$1"' _ "$V"

# --- Emoji ----------------------------------------------------------------------------

check 'emoji search value decodes: Value "🐶"' grep -q -x -F "        Value: 🐶" "$V"
check 'emoji answer decodes: Result "🐾 Playing ball! 🏐"' grep -q -x -F "        Result: 🐾 Playing ball! 🏐" "$V"
check 'JSON \u escapes with a surrogate pair (\ud83d\udc36) decode to 🐶' \
    grep -q -A2 -F 'Content Text: {"value": "\ud83d\udc36", "action": "se\u0061rch"}' "$V"
check '  ... and that request shows Action "search" (from "se\u0061rch") and Value "🐶"' \
    bash -c 'grep -A2 -F "Content Text: {\"value\": \"\\ud83d\\udc36\"" "$1" | grep -q -x -F "        Value: 🐶"' _ "$V"
check 'latin-1 content decodes: Value "café"' grep -q -x -F "        Value: café" "$V"
check 'escaped quotes and backslash decode: Value say "hi"\ back...' \
    grep -q -F '        Value: say "hi"\ back\nnow\t' "$V"

# --- Binary -------------------------------------------------------------------------

check 'binary request shows its content type binary/custom-client-binary-type' \
    grep -q -x -F "        Content-Type: binary/custom-client-binary-type" "$V"
check 'binary request Info: Binary 16 bytes (binary/custom-client-binary-type) for upload "some bytes"' \
    grep -q -F "Binary 16 bytes (binary/custom-client-binary-type)" "$work/summary.txt"
check 'binary request content is "uploadsome bytes"' \
    grep -q -x -F "    Content: $(printf 'uploadsome bytes' | od -An -tx1 | tr -d ' \n')" "$V"
check 'binary response shows binary/custom-server-binary-type' \
    grep -q -F "Binary 37 bytes (binary/custom-server-binary-type)" "$work/summary.txt"
check 'empty binary request (content-length 0) decodes' \
    grep -q -F "Binary 0 bytes (binary/custom-client-binary-type)" "$work/summary.txt"

# --- Pipelined bench traffic -----------------------------------------------------

bench_req=$(count_lines "        Value: trinity" "$V")
bench_resp=$(count_lines "        Result: No match for 'trinity'." "$V")
fields_req=$(cut -f5 "$F" | tr "$RS" '\n' | grep -c -x -F trinity || true)
max_per_frame=$(awk -F'\t' -v rs="$RS" '{ n = gsub("trinity", "", $5); if (n > m) m = n } END { print m + 0 }' "$F")
check "pipelined bench: $bench_expected requests sent, $bench_req decoded in -V, $fields_req in -T fields" \
    test "$bench_req" -eq "$bench_expected" -a "$fields_req" -eq "$bench_expected"
check "pipelined bench: $bench_resp responses decoded, one per request" test "$bench_resp" -eq "$bench_expected"
check "pipelined bench: several requests decoded from one segment (max $max_per_frame per frame)" \
    test "$max_per_frame" -ge 2

# --- Reassembly ---------------------------------------------------------------------

# The 11 request vectors are each sent in three segments: a split inside the
# 2-byte length, inside the header and inside the content.
check 'messages split inside the proto-header, header and content reassemble (search "needle")' \
    grep -q -P "\tsearch\tneedle\t" "$F"
check 'big-endian client vector decodes (Header Length 100, Byte Order big)' \
    bash -c 'grep -q -x -F "    Header Length: 100" "$1" && grep -q -x -F "        Byte Order: big" "$1"' _ "$V"
check 'three pipelined requests cut at 70 and 300 bytes: split-1, split-2, split-3 all decoded' \
    bash -c 'for v in split-1 split-2 split-3; do grep -q -x -F "        Value: $v" "$1" || exit 1; done' _ "$V"

# --- Heuristic (a server on port 40001, not the registered 65432) ---------------------

heur=$(awk -F'\t' '$2 != 65432 && $3 != 65432' "$F" | wc -l)
check "heuristic dissector finds the protocol on port 40001 ($heur messages)" test "$heur" -ge 4
check 'heuristic: search "neo" on port 40001 decodes, also when split over 3 segments' \
    test "$(grep -c -P "^\d+\t\d+\t40001\tsearch\tneo\t" "$F")" -ge 2
check 'heuristic: binary request on port 40001 decodes' \
    grep -q -P "^\d+\t\d+\t40001\t\t\t\tbinary/custom-client-binary-type" "$F"

# --- Deliberately malformed messages: expert info, no Lua error ------------------------

check 'header length 0: expert info' grep -q -F "[Expert Info (Error/Malformed): header length 0" "$V"
check 'non-JSON header: expert info' \
    grep -q -F "[Expert Info (Error/Malformed): header length 12, but the header does not start with '{'" "$V"
check 'absurd header length (an HTTP request): expert info' \
    grep -q -F "[Expert Info (Error/Malformed): header length 18245, but the header does not start with '{'" "$V"
check 'missing content-length: expert info' \
    grep -q -F '[Expert Info (Error/Malformed): JSON header lacks required key "content-length"]' "$V"
check 'text/json content that is not JSON: expert info' \
    grep -q -F "[Expert Info (Warning/Protocol): text/json content is not valid JSON" "$V"
check 'text/json content that is a JSON array, not an object: expert info' \
    grep -q -F "[Expert Info (Warning/Protocol): text/json content must be a JSON object, got an array]" "$V"
check 'server error answers are flagged' grep -q -F "[Expert Info (Note/Response): Error: " "$V"
check 'traffic after the malformed streams still decodes' grep -q -P "^\d+\t\d+\t40001\tsearch\tneo\t" "$F"

# --- Result ------------------------------------------------------------------------------

total=$(grep -c '^Sockets Application Protocol' "$V" || true)
echo "decoded $total messages in $(grep -c '^Frame ' "$V") frames of $pcap"
if [[ $failures -ne 0 ]]; then
    echo "FAILED: $failures check(s) failed (dissector: $lua)"
    exit 1
fi
echo "PASSED: all checks"
