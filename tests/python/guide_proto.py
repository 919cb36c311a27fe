"""The message protocol of PROTOCOL.md, written the way the socket guide's
Python programs do it (stdlib only). Shared by guide_server.py and
guide_client.py, which the Rust tests run against our binary."""

import io
import json
import struct
import sys

REQUEST_SEARCH = {
    "morpheus": "Follow the white rabbit. \U0001f430",
    "ring": "In the caves beneath the Misty Mountains. \U0001f48d",
    "\U0001f436": "\U0001f43e Playing ball! \U0001f3d0",
}


def json_encode(obj, encoding):
    return json.dumps(obj, ensure_ascii=False).encode(encoding)


def json_decode(json_bytes, encoding):
    with io.TextIOWrapper(io.BytesIO(json_bytes), encoding=encoding, newline="") as tiow:
        return json.load(tiow)


def create_message(*, content_bytes, content_type, content_encoding):
    jsonheader = {
        "byteorder": sys.byteorder,
        "content-type": content_type,
        "content-encoding": content_encoding,
        "content-length": len(content_bytes),
    }
    jsonheader_bytes = json_encode(jsonheader, "utf-8")
    message_hdr = struct.pack(">H", len(jsonheader_bytes))
    return message_hdr + jsonheader_bytes + content_bytes


class Reader:
    """Incremental parser: feed it bytes, ask whether a message is complete."""

    def __init__(self):
        self.buffer = b""
        self.jsonheader_len = None
        self.jsonheader = None
        self.content = None

    def feed(self, data):
        self.buffer += data
        if self.jsonheader_len is None and len(self.buffer) >= 2:
            self.jsonheader_len = struct.unpack(">H", self.buffer[:2])[0]
            self.buffer = self.buffer[2:]
        if self.jsonheader_len is not None and self.jsonheader is None:
            if len(self.buffer) >= self.jsonheader_len:
                self.jsonheader = json_decode(self.buffer[: self.jsonheader_len], "utf-8")
                self.buffer = self.buffer[self.jsonheader_len :]
                for reqhdr in ("byteorder", "content-length", "content-type", "content-encoding"):
                    if reqhdr not in self.jsonheader:
                        raise ValueError(f"Missing required header '{reqhdr}'.")
        if self.jsonheader is not None and self.content is None:
            content_len = self.jsonheader["content-length"]
            if len(self.buffer) >= content_len:
                self.content = self.buffer[:content_len]
                self.buffer = self.buffer[content_len:]
        return self.content is not None
