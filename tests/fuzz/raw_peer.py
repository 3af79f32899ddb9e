"""Blocking byte-level peers for a Socket.IO server on loopback: a WebSocket whose frames are
written by hand (so they can be anything) and Engine.IO long-polling over http.client.

Every read has a timeout; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import socket
import struct
import time

IO_TIMEOUT = 3.0
RS = "\x1e"
PATH = "/socket.io/"


class Closed(Exception):
    """The server closed the connection."""


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True,
          rsv: int = 0, length: int | None = None) -> bytes:
    """One WebSocket frame as a client writes it (``length`` may lie about the payload)."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0x0F)
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head = bytes((first, mask_bit | n))
    elif n < 65536:
        head = bytes((first, mask_bit | 126)) + struct.pack("!H", n)
    else:
        head = bytes((first, mask_bit | 127)) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class RawWebSocket:
    """A client WebSocket on /socket.io/ (Engine.IO 4), frames sent as given."""

    def __init__(self, port: int, query: str = "EIO=4&transport=websocket") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        self.buf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {PATH}?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = self._read_until(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise AssertionError(f"upgrade refused: {head[:200]!r}")
        kind, data = self.recv()
        assert kind == "text" and isinstance(data, str) and data[0] == "0", data
        self.sid: str = json.loads(data[1:])["sid"]

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionError, OSError) as exc:
            if isinstance(exc, TimeoutError | socket.timeout):
                raise TimeoutError from None
            raise Closed(str(exc)) from None
        if not chunk:
            raise Closed("EOF")
        self.buf += chunk

    def _read_until(self, marker: bytes) -> bytes:
        deadline = time.monotonic() + IO_TIMEOUT
        while marker not in self.buf:
            self._fill(deadline)
        head, _, self.buf = self.buf.partition(marker)
        return head

    def _read_exact(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self, timeout: float = IO_TIMEOUT) -> tuple[str, str | bytes]:
        """The next frame from the server: ("text", str), ("binary", bytes), ("close",
        bytes), ("ping"/"pong", bytes). Raises Closed at EOF, TimeoutError."""
        deadline = time.monotonic() + timeout
        b0, b1 = self._read_exact(2, deadline)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read_exact(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read_exact(8, deadline))[0]
        payload = self._read_exact(n, deadline)
        opcode = b0 & 0x0F
        if opcode == 1:
            return "text", payload.decode()
        kinds = {2: "binary", 8: "close", 9: "ping", 10: "pong"}
        return kinds.get(opcode, f"opcode {opcode}"), payload

    def send_raw(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise Closed(str(exc)) from None

    def send_text(self, text: str) -> None:
        self.send_raw(frame(1, text.encode("utf-8", "surrogatepass")))

    def send_binary(self, data: bytes) -> None:
        self.send_raw(frame(2, data))

    def wait_text(self, prefix: str, timeout: float = IO_TIMEOUT) -> str:
        """The next text message starting with ``prefix`` (pings are answered)."""
        deadline = time.monotonic() + timeout
        while True:
            kind, data = self.recv(max(0.0, deadline - time.monotonic()))
            if kind == "text" and data == "2":
                self.send_text("3")
            elif kind == "text" and isinstance(data, str) and data.startswith(prefix):
                return data
            elif kind == "close":
                raise Closed(f"close frame {data!r}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Polling:
    """An Engine.IO long-polling session over one keep-alive HTTP/1.1 connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=IO_TIMEOUT)
        status, body = self.request("GET", "")
        assert status == 200 and body[:1] == b"0", (status, body)
        self.sid: str = json.loads(body[1:])["sid"]

    def request(self, method: str, query: str, body: bytes | None = None) -> tuple[int, bytes]:
        sid = f"&sid={self.sid}" if query == "" and hasattr(self, "sid") else ""
        url = f"{PATH}?EIO=4&transport=polling{sid}{query}"
        headers = {"Content-Type": "text/plain;charset=UTF-8"} if body is not None else {}
        try:
            self.conn.request(method, url, body=body, headers=headers)
            response = self.conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            # The server may close the connection after an error answer: start again.
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=IO_TIMEOUT)
            raise Closed(str(exc)) from None

    def post(self, body: bytes) -> tuple[int, bytes]:
        return self.request("POST", "", body)

    def get(self) -> tuple[int, bytes]:
        return self.request("GET", "")

    def close(self) -> None:
        self.conn.close()
