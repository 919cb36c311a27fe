"""A server in the socket guide's design: selectors, non-blocking sockets,
one request per connection, close after the response.

Usage: guide_server.py HOST PORT
Prints the bound address (host:port) as its first stdout line, then, per
request, `request-hex <hex of the whole request message>`."""

import selectors
import socket
import sys

from guide_proto import REQUEST_SEARCH, Reader, create_message, json_decode, json_encode

sel = selectors.DefaultSelector()


class Connection:
    def __init__(self, sock, addr):
        self.sock = sock
        self.addr = addr
        self.reader = Reader()
        self.raw = b""
        self.send_buffer = None

    def process_events(self, mask):
        if mask & selectors.EVENT_READ:
            self.read()
        if mask & selectors.EVENT_WRITE:
            self.write()

    def read(self):
        try:
            data = self.sock.recv(4096)
        except BlockingIOError:
            return
        if not data:
            self.close()
            return
        self.raw += data
        if self.reader.feed(data):
            print("request-hex", self.raw.hex(), flush=True)
            self.send_buffer = self.create_response()
            sel.modify(self.sock, selectors.EVENT_WRITE, data=self)

    def create_response(self):
        header = self.reader.jsonheader
        if header["content-type"] == "text/json":
            request = json_decode(self.reader.content, header["content-encoding"])
            action = request.get("action")
            if action == "search":
                query = request.get("value")
                answer = REQUEST_SEARCH.get(query) or f"No match for '{query}'."
                content = {"result": answer}
            else:
                content = {"result": f"Error: invalid action '{action}'."}
            return create_message(
                content_bytes=json_encode(content, "utf-8"), content_type="text/json", content_encoding="utf-8"
            )
        return create_message(
            content_bytes=b"First 10 bytes of request: " + self.reader.content[:10],
            content_type="binary/custom-server-binary-type",
            content_encoding="binary",
        )

    def write(self):
        try:
            sent = self.sock.send(self.send_buffer)
        except BlockingIOError:
            return
        self.send_buffer = self.send_buffer[sent:]
        if not self.send_buffer:
            self.close()

    def close(self):
        sel.unregister(self.sock)
        self.sock.close()


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((host, port))
    lsock.listen()
    lsock.setblocking(False)
    sel.register(lsock, selectors.EVENT_READ, data=None)
    bound = lsock.getsockname()
    print(f"{bound[0]}:{bound[1]}", flush=True)
    try:
        while True:
            for key, mask in sel.select(timeout=None):
                if key.data is None:
                    conn, addr = key.fileobj.accept()
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, data=Connection(conn, addr))
                else:
                    try:
                        key.data.process_events(mask)
                    except Exception as exc:  # one bad client must not stop the server
                        print(f"error: {exc!r}", file=sys.stderr, flush=True)
                        key.data.close()
    except KeyboardInterrupt:
        pass
    finally:
        sel.close()


if __name__ == "__main__":
    main()
