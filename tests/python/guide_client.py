"""A client in the socket guide's design: a non-blocking connect, one
request, one response, close.

Usage: guide_client.py HOST PORT ACTION VALUE
Prints `response-hex <hex of the whole response message>`, then the guide's
`Got result: ...` or `Got response: ...` line."""

import selectors
import socket
import sys

from guide_proto import Reader, create_message, json_encode


def create_request(action, value):
    if action == "search":
        return create_message(
            content_bytes=json_encode({"action": action, "value": value}, "utf-8"),
            content_type="text/json",
            content_encoding="utf-8",
        )
    return create_message(
        content_bytes=bytes(action + value, encoding="utf-8"),
        content_type="binary/custom-client-binary-type",
        content_encoding="binary",
    )


def main():
    host, port, action, value = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    sel = selectors.DefaultSelector()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.connect_ex((host, port))
    sel.register(sock, selectors.EVENT_WRITE)
    to_send = create_request(action, value)
    reader = Reader()
    raw = b""
    try:
        while True:
            events = sel.select(timeout=10)
            if not events:
                sys.exit("error: timed out")
            for _key, mask in events:
                if mask & selectors.EVENT_WRITE:
                    sent = sock.send(to_send)
                    to_send = to_send[sent:]
                    if not to_send:
                        sel.modify(sock, selectors.EVENT_READ)
                if mask & selectors.EVENT_READ:
                    data = sock.recv(4096)
                    if not data:
                        sys.exit("error: peer closed")
                    raw += data
                    if reader.feed(data):
                        print("response-hex", raw.hex())
                        header = reader.jsonheader
                        if header["content-type"] == "text/json":
                            from guide_proto import json_decode

                            result = json_decode(reader.content, header["content-encoding"]).get("result")
                            print(f"Got result: {result}")
                        else:
                            print(f"Got response: {reader.content!r}")
                        return
    finally:
        sel.close()
        sock.close()


if __name__ == "__main__":
    main()
