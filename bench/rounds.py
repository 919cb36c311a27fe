"""Alternates servers under the same load, several rounds, and reports each
one's server CPU per unit of work and rate as medians with their range.

Usage: rounds.py ROUNDS "BENCH_FLAGS" NAME=COMMAND ...

Each COMMAND starts a server that prints its address on the first line of
stdout (every `sockets` server, `minimal_server`); `sockets bench app` then
loads it for 4 s with BENCH_FLAGS and `--server-pid`, and it is stopped
with SIGTERM. Ratios are against the last server named, per round and as a
median: on a machine whose figures move by 10 % between runs, alternating
rounds compare servers under the same conditions. PIN=CPU runs the server
and the load generator with `taskset -c CPU`. Run from the repository after
`cargo build --release --bin sockets --example minimal_server`, e.g.:

  python3 bench/rounds.py 5 "--mode oneshot -c 8" \\
    "ours=target/release/sockets app-server -q 127.0.0.1 0 --one-shot" \\
    "minimal=target/release/examples/minimal_server app-oneshot 0"
"""

import json
import os
import shlex
import signal
import statistics
import subprocess
import sys

SOCKETS = os.environ.get("SOCKETS", "target/release/sockets")


def measure(command, bench_flags, pin):
    """One 4 s load against one freshly started server: its JSON report."""
    argv = shlex.split(command)
    prefix = ["taskset", "-c", pin] if pin else []
    server = subprocess.Popen(prefix + argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = server.stdout.readline().strip().rsplit(":", 1)[1]
        client = [SOCKETS, "bench", "app", "127.0.0.1", port, *bench_flags, "-d", "4",
                  "--server-pid", str(server.pid), "--json"]
        out = subprocess.run(prefix + client, capture_output=True, text=True, check=True).stdout
        return json.loads(out)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    rounds, bench_flags = int(sys.argv[1]), sys.argv[2].split()
    servers = [arg.split("=", 1) for arg in sys.argv[3:]]
    pin = os.environ.get("PIN")
    results = {name: [] for name, _ in servers}
    for _ in range(rounds):
        for name, command in servers:
            report = measure(command, bench_flags, pin)
            latency = report["latency_us"]
            results[name].append((report["server_cpu"]["per_unit_us"], report["requests_per_second"],
                                  latency["p50"], latency["p99"], latency["p99.9"]))
    median = statistics.median
    reference = servers[-1][0]
    reference_cpu = median(r[0] for r in results[reference])
    for name, _ in servers:
        cpu = [r[0] for r in results[name]]
        rate = [r[1] for r in results[name]]
        print(f"{name}: server CPU {median(cpu):.2f} µs per unit ({min(cpu):.2f}-{max(cpu):.2f}), "
              f"{median(cpu) / reference_cpu:.2f}x {reference}; rate {median(rate):.0f} "
              f"({min(rate):.0f}-{max(rate):.0f}); latency µs p50 {median(r[2] for r in results[name]):.1f} "
              f"p99 {median(r[3] for r in results[name]):.1f} p99.9 {median(r[4] for r in results[name]):.1f}")
    for name, _ in servers[:-1]:
        ratios = [ours[0] / theirs[0] for ours, theirs in zip(results[name], results[reference])]
        print(f"  {name} / {reference}, per round: {', '.join(f'{r:.2f}' for r in ratios)}; "
              f"median {median(ratios):.2f}")


if __name__ == "__main__":
    main()
