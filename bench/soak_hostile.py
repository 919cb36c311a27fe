"""Hostile clients for bench/soak.sh: runs them against an app-server for a
while, then prints what they did, per kind, as one JSON object on stdout.

Usage: soak_hostile.py HOST PORT SECONDS REQUEST_TIMEOUT IDLE_TIMEOUT

Three kinds, each in its own threads, each repeating until SECONDS are up:

- slowloris: begins a request, sends its first bytes one at a time and
  never the rest. After --request-timeout the server must answer
  `Error: request not completed within ...` and close.
- never_reading: pipelines binary requests as fast as it can and never
  reads an answer. The server must stop reading it (backpressure) and close it once
  its answers make no progress for --idle-timeout (`write_stalled`).
- reset_mid_frame: sends half a request, then closes with SO_LINGER 0, so
  the server gets a TCP RST in the middle of a frame (`reset`).

The soak compares these counts with the server's metrics: every connection
the server closed for a client's fault must be one of ours. So each attack
ends before the script does, by the server's hand if the server works: new
attacks stop early enough for the last one to be cut before SECONDS, and
one the server fails to cut is given up after a bounded wait and counted as
`not_cut` (a failure the soak reports). Python's standard library only.
"""

import json
import select
import socket
import struct
import sys
import threading
import time

SLOWLORIS_THREADS = 4
NEVER_READING_THREADS = 2
RESET_THREADS = 1
# Between two resets: a few a second is plenty to show a leak per reset in
# the soak's fd and RSS figures, without flooding the server's log.
RESET_PAUSE = 0.2
# The never-reader's socket buffers, set before connecting. Small, to halve
# what each attack parks in kernel buffers (about 4 MB, not 8, on loopback:
# the server's receive buffer still grows); what the server must do is the same.
NEVER_READING_BUFFER = 64 * 1024
# How many times the server's limit an attack is given before it counts as
# not cut, plus a fixed margin for a loaded machine (debug builds in CI).
GRACE_FACTOR = 1.5
GRACE_SECONDS = 3.0


def frame(content_type, content):
    """One protocol message (docs/PROTOCOL.md section 2), as our clients write it."""
    header = json.dumps(
        {
            "byteorder": "little",
            "content-type": content_type,
            "content-encoding": "utf-8" if content_type == "text/json" else "binary",
            "content-length": len(content),
        },
        ensure_ascii=False,
    ).encode()
    return struct.pack(">H", len(header)) + header + content


SEARCH = frame("text/json", json.dumps({"action": "search", "value": "morpheus"}).encode())
# The never-reader sends binary requests, so the server's count of search
# hits stays the load generators' alone and the soak can compare the two.
BINARY = frame("binary/custom-client-binary-type", b"binary soak never reads")


class Counts:
    """Counters shared by every thread of one kind."""

    def __init__(self, **names):
        self.lock = threading.Lock()
        self.values = dict(names)

    def add(self, name, by=1):
        with self.lock:
            self.values[name] = self.values.get(name, 0) + by

    def maximum(self, name, value):
        with self.lock:
            self.values[name] = round(max(self.values.get(name, 0), value), 3)


def connect(host, port, buffer=None):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if buffer:
        # Before connect(), or the window is already advertised.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
    sock.settimeout(5)
    sock.connect((host, port))
    return sock


def connect_counted(host, port, counts, buffer=None):
    """A new attack connection, counted; None (after a pause) if refused."""
    try:
        sock = connect(host, port, buffer=buffer)
    except OSError:
        counts.add("connect_failed")
        time.sleep(0.5)
        return None
    counts.add("connections")
    return sock


def read_until_closed(sock, until):
    """Everything the server sends until it closes, or None if `until` passes first."""
    data = b""
    while time.monotonic() < until:
        sock.settimeout(max(0.01, until - time.monotonic()))
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            return None
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    return None


def is_timeout_farewell(data):
    """Whether `data` is exactly one well-framed `Error: request not completed ...` answer."""
    if len(data) < 2:
        return False
    header_len = struct.unpack(">H", data[:2])[0]
    try:
        header = json.loads(data[2 : 2 + header_len])
        content = data[2 + header_len :]
        if header["content-type"] != "text/json" or header["content-length"] != len(content):
            return False
        return json.loads(content)["result"].startswith("Error: request not completed")
    except (ValueError, KeyError, TypeError):
        return False


def slowloris(host, port, stop_at, request_timeout, counts):
    # A byte every eighth of the request timeout: alive, but the 146-byte
    # request could never complete. It trickles for three quarters of the
    # limit and then only waits, so no byte of ours crosses the server's
    # close (a byte arriving after it would turn the farewell into a reset).
    pause = request_timeout / 8
    trickle_for = request_timeout * 0.75
    grace = request_timeout * GRACE_FACTOR + GRACE_SECONDS
    while time.monotonic() < stop_at:
        sock = connect_counted(host, port, counts)
        if sock is None:
            continue
        began = time.monotonic()
        answer = None  # what the server said before closing; None: it has not closed
        with sock:
            try:
                for byte in SEARCH:
                    if time.monotonic() - began >= trickle_for:
                        break
                    sock.sendall(bytes([byte]))
                    # Waiting for the server's answer is the pause between two bytes.
                    answer = read_until_closed(sock, time.monotonic() + pause)
                    if answer is not None:
                        break
                if answer is None:
                    answer = read_until_closed(sock, began + grace)
            except OSError:
                answer = b""  # closed already: the farewell is lost
        took = time.monotonic() - began
        if answer is None:
            counts.add("not_cut")
        elif is_timeout_farewell(answer):
            counts.add("cut_with_error")
            counts.maximum("max_seconds_to_cut", took)
        else:
            counts.add("cut_silently")
            counts.maximum("max_seconds_to_cut", took)


def never_reading(host, port, stop_at, idle_timeout, counts):
    burst = BINARY * 64
    grace = idle_timeout * GRACE_FACTOR + GRACE_SECONDS
    while time.monotonic() < stop_at:
        sock = connect_counted(host, port, counts, buffer=NEVER_READING_BUFFER)
        if sock is None:
            continue
        sock.setblocking(False)
        began = time.monotonic()
        last_progress = began
        sent = 0
        unsent = memoryview(b"")  # the rest of a burst the socket took only part of
        backpressured = False
        outcome = "not_cut"
        with sock:
            while time.monotonic() - last_progress < grace:
                if not unsent:
                    unsent = memoryview(burst)
                try:
                    n = sock.send(unsent)
                    unsent = unsent[n:]
                    sent += n
                    last_progress = time.monotonic()
                except BlockingIOError:
                    # Full: the server reads slower than we write, or has
                    # stopped reading us; then it must give up on us.
                    backpressured |= time.monotonic() - last_progress > 1
                    select.select([], [sock], [], 0.1)
                except OSError:
                    outcome = "cut"
                    break
        counts.add(outcome)
        counts.add("backpressured", int(backpressured))
        counts.add("requests_sent", sent // len(BINARY))
        counts.maximum("max_seconds_to_cut", time.monotonic() - began)


def reset_mid_frame(host, port, stop_at, counts):
    half = SEARCH[: len(SEARCH) // 2]
    while time.monotonic() < stop_at:
        sock = connect_counted(host, port, counts)
        if sock is None:
            continue
        try:
            sock.sendall(half)
            # Let the server read the half, so the RST lands mid-frame rather
            # than on a connection that has sent nothing yet.
            time.sleep(0.05)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            counts.add("resets")
        except OSError:
            counts.add("send_failed")
        finally:
            sock.close()
        time.sleep(RESET_PAUSE)


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__.split("\n\n")[1])
    host, port = sys.argv[1], int(sys.argv[2])
    seconds, request_timeout, idle_timeout = map(float, sys.argv[3:6])
    start = time.monotonic()
    end = start + seconds
    kinds = {
        "slowloris": Counts(connections=0, cut_with_error=0, cut_silently=0, not_cut=0, connect_failed=0),
        "never_reading": Counts(connections=0, backpressured=0, cut=0, not_cut=0, requests_sent=0, connect_failed=0),
        "reset_mid_frame": Counts(connections=0, resets=0, send_failed=0, connect_failed=0),
    }
    # Each kind stops starting attacks when the last one could still be cut
    # (filling the buffers takes the never-reader a moment) before `end`.
    threads = []
    for _ in range(SLOWLORIS_THREADS):
        stop_at = end - request_timeout - 1
        args = (host, port, stop_at, request_timeout, kinds["slowloris"])
        threads.append(threading.Thread(target=slowloris, args=args))
    for _ in range(NEVER_READING_THREADS):
        stop_at = end - idle_timeout - 2
        args = (host, port, stop_at, idle_timeout, kinds["never_reading"])
        threads.append(threading.Thread(target=never_reading, args=args))
    for _ in range(RESET_THREADS):
        threads.append(threading.Thread(target=reset_mid_frame, args=(host, port, end - 1, kinds["reset_mid_frame"])))
    for thread in threads:
        thread.daemon = True  # a stuck attack must not keep the soak waiting
        thread.start()
    # Every attack is bounded by its grace; past that, report what we have.
    longest = max(request_timeout, idle_timeout) * GRACE_FACTOR + GRACE_SECONDS + 2
    for thread in threads:
        thread.join(max(0.0, end + longest - time.monotonic()))
    report = {name: counts.values for name, counts in kinds.items()}
    report["threads"] = {
        "slowloris": SLOWLORIS_THREADS,
        "never_reading": NEVER_READING_THREADS,
        "reset_mid_frame": RESET_THREADS,
    }
    report["unfinished_threads"] = sum(thread.is_alive() for thread in threads)
    report["seconds"] = round(time.monotonic() - start, 3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
