#!/usr/bin/env python3
"""Writes the fuzzers' starting corpus, fuzz/seeds/<target>/, from the test
vectors (tests/vectors/*.json): each target gets the inputs it reads, in the
layout sockets::invariants::check describes. Run it again when the vectors
change; the files are committed, and tests/invariants.rs replays them."""
import json
import pathlib
import struct

root = pathlib.Path(__file__).resolve().parent
repo = root.parent
vectors = []
for name in ("messages.json", "broker.json"):
    vectors += json.loads((repo / "tests/vectors" / name).read_text())["vectors"]
seeds = root / "seeds"


def put(target, name, data):
    directory = seeds / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)


for v in vectors:
    wire = bytes.fromhex(v["hex"])
    header_len = struct.unpack(">H", wire[:2])[0]
    header, content = wire[2:2 + header_len], wire[2 + header_len:]
    # decode: three cuts (in the header length, the header, the content), limit 2**20.
    cuts = [1, 2 + header_len // 2, len(wire) - 1]
    put("decode", v["name"], bytes([len(cuts), 20]) + b"".join(struct.pack(">H", c) for c in cuts) + wire)
    put("header", v["name"], header)
    if v["kind"] == "request":
        put("request", v["name"], content)
    else:
        put("reply", v["name"], wire)
    put("escape", v["name"], content)

all_wire = b"".join(bytes.fromhex(v["hex"]) for v in vectors)
put("decode", "all-vectors-back-to-back", bytes([0, 20]) + all_wire)
put("reply", "all-vectors-back-to-back", all_wire)
put("decode", "content-over-the-limit", bytes([0, 4]) + bytes.fromhex(vectors[0]["hex"]))
put("escape", "controls-and-bidi", "a\nb\rc\x1b[2J\u202e\u2066\x00\x7f\u0085'\"\\".encode() + b"\xff\xfe")

proxy = {
    "v1-tcp4": b"PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\nrest",
    "v1-tcp6": b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n",
    "v1-unknown": b"PROXY UNKNOWN\r\n",
    "v2-tcp4": bytes.fromhex("0d0a0d0a000d0a515549540a" "21" "11" "000c" "c0000201c0000202dc0401bb"),
    "v2-local": bytes.fromhex("0d0a0d0a000d0a515549540a" "20" "00" "0000"),
    "v2-tcp6-tlv": bytes.fromhex("0d0a0d0a000d0a515549540a" "21" "21" "0029"
                                 "20010db8000000000000000000000001" "20010db8000000000000000000000002"
                                 "dc0401bb" "0100026832"),
    "not-proxy": b"GET / HTTP/1.1\r\n",
}
for name, data in proxy.items():
    put("proxy", name, data)
