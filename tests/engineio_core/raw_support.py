"""Byte-level HTTP and WebSocket clients for the raw differential tests.

Used by ``test_raw_http.py`` and ``test_raw_websocket.py``. Everything here is a
bounded-wait client: every read has a timeout, nothing sleeps for a fixed time
to "let things happen".

* :func:`http_request` / :class:`HttpConnection` speak HTTP/1.1 over
  ``asyncio.open_connection`` and return a parsed :class:`HttpResponse`
  (Content-Length, chunked and close-delimited bodies).
* :class:`RawWebSocket` does the opening handshake by hand and sends/receives
  single frames, so tests can send frames a real client never would.
* :class:`PollingSession` drives an Engine.IO session over long-polling.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..interop_support import ServerHandle, start_server

IO_TIMEOUT = 5.0
RS = "\x1e"

#: Flags of both servers in the raw tests (times in ms, sizes in bytes).
RAW_FLAGS: dict[str, Any] = {
    "ping_interval": 300,
    "ping_timeout": 200,
    "max_payload": 1000,
    "cors": "*",
}
ENGINE_PATH = "/engine.io/"

#: The raw tests compare the reference with our own HTTP server. The ``asgi`` kind of
#: interop_support runs under uvicorn, whose HTTP layer writes its own bytes; it can be
#: tried with ``RAW_SERVER_KINDS=node,asgi``.
SERVER_KINDS = tuple(
    k.strip() for k in os.environ.get("RAW_SERVER_KINDS", "node,python").split(",") if k.strip()
)


@contextlib.contextmanager
def raw_server(kind: str) -> Iterator[ServerHandle]:
    """A ``node`` or ``python`` echo server with :data:`RAW_FLAGS` (skips without node)."""
    with start_server(kind, **RAW_FLAGS) as srv:
        yield srv


# --------------------------------------------------------------------- HTTP


@dataclass
class HttpResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    #: The raw bytes of the status line and headers (for diagnostics).
    head: bytes = b""

    def header(self, name: str) -> str | None:
        """The value of a header (case-insensitive); repeated values joined by ", "."""
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return ", ".join(values) if values else None

    def header_names(self) -> set[str]:
        return {n.lower() for n, _ in self.headers}

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<HttpResponse {self.status} {self.headers!r} {self.body[:300]!r}>"


class ConnectionClosed(Exception):
    """The server closed the connection before a complete response."""


async def _read_head(reader: asyncio.StreamReader, timeout: float) -> bytes:
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except asyncio.IncompleteReadError as exc:
        raise ConnectionClosed(f"connection closed after {exc.partial[:200]!r}") from None


def _parse_head(head: bytes) -> tuple[int, str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    assert version.startswith("HTTP/1."), f"not an HTTP response: {head[:200]!r}"
    code, _, reason = rest.partition(" ")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return int(code), reason, headers


async def read_response(
    reader: asyncio.StreamReader, *, method: str = "GET", timeout: float = IO_TIMEOUT
) -> HttpResponse:
    """Read one complete HTTP response (bounded by ``timeout`` seconds overall)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    def left() -> float:
        return max(0.01, deadline - loop.time())

    while True:
        head = await _read_head(reader, left())
        status, reason, headers = _parse_head(head)
        if status != 100:
            break
    lower = {n.lower(): v for n, v in headers}
    body = b""
    try:
        if method == "HEAD" or status in (101, 204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in lower.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), left())
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    # trailers until the empty line
                    while (await asyncio.wait_for(reader.readuntil(b"\r\n"), left())) != b"\r\n":
                        pass
                    break
                chunks.append(await asyncio.wait_for(reader.readexactly(size), left()))
                await asyncio.wait_for(reader.readexactly(2), left())
            body = b"".join(chunks)
        elif "content-length" in lower:
            body = await asyncio.wait_for(reader.readexactly(int(lower["content-length"])), left())
        else:
            body = await asyncio.wait_for(reader.read(), left())
    except asyncio.IncompleteReadError as exc:
        raise ConnectionClosed(f"body cut short: {exc.partial[:200]!r}") from None
    return HttpResponse(status, reason, headers, body, head)


def build_request(
    method: str,
    target: str,
    *,
    host: str = "127.0.0.1",
    headers: list[tuple[str, str]] | None = None,
    body: bytes | str | None = None,
) -> bytes:
    if isinstance(body, str):
        body = body.encode()
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for name, value in headers or []:
        lines.append(f"{name}: {value}")
    if body is not None and not any(n.lower() == "content-length" for n, _ in headers or []):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


class HttpConnection:
    """One keep-alive HTTP/1.1 connection; requests are sent and answered in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1") -> HttpConnection:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), IO_TIMEOUT)
        return cls(reader, writer)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def request(
        self,
        method: str,
        target: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | str | None = None,
        timeout: float = IO_TIMEOUT,
    ) -> HttpResponse:
        await self.send_raw(build_request(method, target, headers=headers, body=body))
        return await read_response(self.reader, method=method, timeout=timeout)

    async def read_response(self, method: str = "GET", timeout: float = IO_TIMEOUT) -> HttpResponse:
        return await read_response(self.reader, method=method, timeout=timeout)

    async def wait_closed_by_peer(self, timeout: float) -> bytes:
        """Read until EOF (or a reset); returns what was read. TimeoutError if still open."""
        data = bytearray()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"connection still open after {timeout}s; read {bytes(data)!r}")
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), remaining)
            except ConnectionError:
                return bytes(data)
            if not chunk:
                return bytes(data)
            data += chunk

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)

    async def __aenter__(self) -> HttpConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def http_request(
    port: int,
    method: str,
    target: str,
    *,
    headers: list[tuple[str, str]] | None = None,
    body: bytes | str | None = None,
    timeout: float = IO_TIMEOUT,
) -> HttpResponse:
    """Send one request on a fresh connection, read the response, close."""
    conn = await HttpConnection.open(port)
    try:
        return await conn.request(method, target, headers=headers, body=body, timeout=timeout)
    finally:
        await conn.close()


async def raw_exchange(port: int, data: bytes, timeout: float = IO_TIMEOUT) -> bytes:
    """Send raw bytes and read everything until the server closes (bounded)."""
    conn = await HttpConnection.open(port)
    try:
        await conn.send_raw(data)
        return await conn.wait_closed_by_peer(timeout)
    finally:
        await conn.close()


def error_json(code: int, message: str) -> bytes:
    """The exact error body both servers send (JSON.stringify formatting)."""
    return json.dumps({"code": code, "message": message}, separators=(",", ":")).encode()


# ------------------------------------------------------------ Engine.IO polling


def decode_polling_payload(body: bytes) -> list[str | bytes]:
    """Split a polling response into packets; binary packets (``b...``) become bytes."""
    out: list[str | bytes] = []
    for part in body.decode("utf-8").split(RS):
        if part.startswith("b"):
            out.append(base64.b64decode(part[1:]))
        else:
            out.append(part)
    return out


@dataclass
class Handshake:
    sid: str
    data: dict[str, Any]
    raw: HttpResponse | str | None = None


@dataclass
class PollingSession:
    """An Engine.IO session over long-polling, driven by hand."""

    port: int
    path: str
    sid: str
    handshake: dict[str, Any]
    #: Packets seen by :meth:`collect_messages`, and the raw GET bodies they came in.
    received: list[str | bytes] = field(default_factory=list)
    raw_bodies: list[bytes] = field(default_factory=list)

    def url(self, transport: str = "polling", **extra: str) -> str:
        query = f"EIO=4&transport={transport}&sid={self.sid}"
        for key, value in extra.items():
            query += f"&{key}={value}"
        return f"{self.path}?{query}"

    @classmethod
    async def open(cls, port: int, path: str) -> PollingSession:
        res = await http_request(port, "GET", f"{path}?EIO=4&transport=polling")
        assert res.status == 200, res
        assert res.body.startswith(b"0{"), res
        data = json.loads(res.body[1:])
        return cls(port, path, data["sid"], data)

    async def get(self, timeout: float = IO_TIMEOUT) -> HttpResponse:
        return await http_request(self.port, "GET", self.url(), timeout=timeout)

    async def post(
        self, body: bytes | str, *, headers: list[tuple[str, str]] | None = None
    ) -> HttpResponse:
        headers = headers or [("Content-Type", "text/plain;charset=UTF-8")]
        return await http_request(self.port, "POST", self.url(), headers=headers, body=body)

    async def poll_packets(self, timeout: float = IO_TIMEOUT) -> list[str | bytes]:
        """One GET; asserts 200 and returns the decoded packets."""
        res = await self.get(timeout=timeout)
        assert res.status == 200, res
        self.raw_bodies.append(res.body)
        return decode_polling_payload(res.body)

    async def collect_messages(
        self, expected: int, *, timeout: float = IO_TIMEOUT, answer_pings: bool = True
    ) -> list[str | bytes]:
        """GET until ``expected`` message packets (``4...`` or binary) arrived.

        Pings are answered with a POSTed pong so the session stays alive; noops ignored.
        Returns the messages: text ones with their ``4`` prefix, binary ones as bytes.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        messages: list[str | bytes] = []
        while len(messages) < expected:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"got only {messages!r} of {expected} messages")
            for packet in await self.poll_packets(timeout=remaining):
                self.received.append(packet)
                if isinstance(packet, bytes) or packet.startswith("4"):
                    messages.append(packet)
                elif packet == "2" and answer_pings:
                    res = await self.post("3")
                    assert res.status == 200, res
                elif packet not in ("2", "6"):  # noops and unanswered pings are skipped
                    raise AssertionError(f"unexpected packet {packet!r} (so far {messages!r})")
        return messages


# ------------------------------------------------------------------ WebSocket


class WsClosed(Exception):
    pass


@dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        if self.opcode != 0x8 or len(self.payload) < 2:
            return None
        return struct.unpack("!H", self.payload[:2])[0]

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")


OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    if n < 126:
        header = bytes((first, mask_bit | n))
    elif n < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not mask:
        return header + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return header + key + masked


class RawWebSocket:
    """A client WebSocket built by hand: handshake, then single frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.response: HttpResponse | None = None

    @staticmethod
    def upgrade_request(target: str, *, extra: list[tuple[str, str]] | None = None) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        headers = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", "13"),
            *(extra or []),
        ]
        return build_request("GET", target, headers=headers)

    @classmethod
    async def connect(
        cls, port: int, target: str, *, extra: list[tuple[str, str]] | None = None
    ) -> RawWebSocket:
        """Connect and read the handshake answer (``.response``); no exception on non-101."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), IO_TIMEOUT
        )
        ws = cls(reader, writer)
        writer.write(cls.upgrade_request(target, extra=extra))
        await writer.drain()
        head = await _read_head(reader, IO_TIMEOUT)
        status, reason, headers = _parse_head(head)
        body = b""
        if status != 101:
            lower = {n.lower(): v for n, v in headers}
            if "content-length" in lower:
                body = await asyncio.wait_for(
                    reader.readexactly(int(lower["content-length"])), IO_TIMEOUT
                )
        ws.response = HttpResponse(status, reason, headers, body, head)
        return ws

    async def send_frame(
        self, opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True
    ) -> None:
        self.writer.write(encode_frame(opcode, payload, fin=fin, mask=mask))
        await self.writer.drain()

    async def send_text(self, text: str | bytes) -> None:
        await self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    async def send_binary(self, data: bytes) -> None:
        await self.send_frame(OP_BINARY, data)

    async def recv_frame(self, timeout: float = IO_TIMEOUT) -> Frame:
        """The next frame; raises WsClosed at EOF/reset, TimeoutError when none comes."""
        try:
            b1, b2 = await asyncio.wait_for(self.reader.readexactly(2), timeout)
            n = b2 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            key = await self.reader.readexactly(4) if b2 & 0x80 else None
            payload = await asyncio.wait_for(self.reader.readexactly(n), timeout)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise WsClosed(str(exc)) from None
        if key is not None:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return Frame(bool(b1 & 0x80), b1 & 0x0F, payload)

    async def recv_data(self, timeout: float = IO_TIMEOUT, *, answer_pings: bool = True) -> Frame:
        """The next text/binary/close frame; Engine.IO pings (``2``) answered with ``3``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.recv_frame(max(0.01, deadline - loop.time()))
            if frame.opcode == OP_PING:
                await self.send_frame(OP_PONG, frame.payload)
                continue
            if frame.opcode == OP_TEXT and frame.payload == b"2" and answer_pings:
                await self.send_text("3")
                continue
            return frame

    async def wait_close(self, timeout: float = IO_TIMEOUT) -> tuple[Frame | None, list[Frame]]:
        """Read until the server's close frame, or EOF. Returns (close frame, frames before)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        before: list[Frame] = []
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no close within {timeout}s; frames: {before!r}")
            try:
                frame = await self.recv_frame(remaining)
            except WsClosed:
                return None, before
            if frame.opcode == OP_CLOSE:
                return frame, before
            before.append(frame)

    async def wait_eof(self, timeout: float = IO_TIMEOUT) -> bytes:
        """Read until the TCP connection is closed by the server (bounded)."""
        data = bytearray()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"connection still open after {timeout}s")
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), remaining)
            except ConnectionError:
                return bytes(data)
            if not chunk:
                return bytes(data)
            data += chunk

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)


# ------------------------------------------------------------ assertions


ERROR_MESSAGES = {
    0: "Transport unknown",
    1: "Session ID unknown",
    2: "Bad handshake method",
    3: "Bad request",
    4: "Forbidden",
    5: "Unsupported protocol version",
}


def assert_error(res: HttpResponse, code: int, message: str | None = None) -> None:
    """An Engine.IO HTTP error: 400 (403 for Forbidden), JSON body byte for byte."""
    message = message or ERROR_MESSAGES[code]
    expected_status = 403 if code == 4 else 400
    assert (res.status, res.body) == (expected_status, error_json(code, message)), res
    assert res.header("content-type") == "application/json", res


async def assert_fresh_client_works(port: int) -> None:
    """The server still serves a new client: a polling handshake succeeds."""
    session = await PollingSession.open(port, ENGINE_PATH)
    assert session.handshake["upgrades"] == ["websocket"]


async def start_pending_get(session: PollingSession) -> asyncio.Task[HttpResponse]:
    """Send a GET that the server will hold (nothing to send yet).

    There is no way to observe that the server has registered the GET, so this
    yields briefly to let the request reach it before the caller sends the next one.
    """
    task = asyncio.ensure_future(session.get())
    await asyncio.sleep(0.05)
    return task


async def wait_session_gone(session: PollingSession, timeout: float = IO_TIMEOUT) -> list[str]:
    """GET until the server answers 400 "Session ID unknown" (bounded).

    Returns the packets received on the way (pings are not answered). Fails on any
    other error answer.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen: list[str] = []
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError(f"session still alive after {timeout}s; got {seen!r}")
        res = await session.get(timeout=remaining)
        if res.status == 400:
            assert_error(res, 1)
            return seen
        assert res.status == 200, res
        seen.extend(p if isinstance(p, str) else repr(p) for p in decode_polling_payload(res.body))
