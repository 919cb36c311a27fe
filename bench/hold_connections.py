"""Opens N idle TCP connections to HOST PORT and holds them until stdin closes.

Usage: hold_connections.py HOST PORT N
Prints `holding N` once every connection is established. Used by
bench/run.sh to measure a server's memory per idle connection."""

import resource
import socket
import sys


def main():
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held = []
    for _ in range(count):
        sock = socket.create_connection((host, port), timeout=10)
        held.append(sock)
    print(f"holding {len(held)}", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
