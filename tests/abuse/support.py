"""Tools of the abuse suite: the gateway as a subprocess, raw HTTP / WebSocket / Socket.IO
clients an attacker would write, RSS sampling and the report file.

Everything here talks to 127.0.0.1 only; every wait has a bound. Attack sockets are bound to
the source address ``127.0.0.2`` (any 127/8 address is loopback on Linux) so that a server
limiting connections per peer address tells the attacker apart from the well-behaved
clients, which use 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h11
import jwt

REPO_ROOT = Path(__file__).resolve().parents[2]
JWT_SECRET = "abuse-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
API_KEY = "abuse-api-key-0123456789abcdef"
HOST = "127.0.0.1"
ATTACKER_ADDR = "127.0.0.2"
SIO_PATH = "/socket.io/"
#: Every client here says it comes from the allowed page, as a browser would: a server
#: that refuses other origins (issue 8, item 13) must still serve them.
ORIGIN = "http://localhost:5188"
STARTUP_TIMEOUT = 20.0
MIB = 1024 * 1024
#: Seconds a keep-alive connection is reused after its last answer.
KEEPALIVE_REUSE = 2.0

#: The gateway's environment in every test unless a test overrides a key. The
#: private-message limit is above what the normal clients send in a test (about 20 a
#: second each) and below the 3,000 messages of the flood.
BASE_ENV: dict[str, str] = {
    "JWT_SECRET": JWT_SECRET,
    "API_KEY": API_KEY,
    "HOST": HOST,
    "FRONTEND_URL": ORIGIN,
    "LOG_LEVEL": "INFO",
    "RATE_LIMIT_PRIVATE_MESSAGE": "2000",
}

_user_counter = itertools.count(1)


def unique_user(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_user_counter)}"


def mint_token(user_id: str, *, secret: str = JWT_SECRET, ttl: int = 900) -> str:
    claims = {"sub": user_id, "username": user_id.upper(), "exp": int(time.time()) + ttl}
    return jwt.encode(claims, secret, algorithm="HS256")


def rss_bytes(pid: int) -> int | None:
    """VmRSS of a process, None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---------------------------------------------------------------------- gateway process


class Gateway:
    """``python -m realtime_app --port 0`` of this worktree; stderr goes to a log file."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = {**BASE_ENV, **(env or {})}
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.log_path = Path(tempfile.mkstemp(prefix="abuse-gateway-", suffix=".log")[1])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self) -> Gateway:
        # The variables of whoever runs the suite must not change the server under test.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("JWT_", "API_KEY", "RATE_LIMIT_", "REDIS_", "MAX_",
                                    "FRONTEND_URL", "WEB_DIR", "BANNED_WORDS", "DEV_MODE",
                                    "PING_", "METRICS_", "STORED_"))}
        env.update(self.env)
        env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "realtime_app", "--port", "0", cwd=REPO_ROOT, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(),
                                              deadline - time.monotonic())
            except TimeoutError:
                break
            if not line:
                break
            if line.startswith(b"LISTENING "):
                self.port = int(line.split()[1])
                return self
        await self.stop()
        raise RuntimeError(f"gateway did not start; log:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def rss(self) -> int | None:
        return rss_bytes(self.pid) if self.proc is not None else None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, limit: int = 6000) -> str:
        return self.log_text()[-limit:]

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 8)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.wait_for(proc.wait(), 5)

    def remove_log(self) -> None:
        with contextlib.suppress(OSError):
            self.log_path.unlink()


class RssSampler:
    """Samples a process's RSS every ``period`` s in a thread; keeps the peak."""

    def __init__(self, pid: int, period: float = 0.05) -> None:
        self.pid = pid
        self.period = period
        self.peak = rss_bytes(pid) or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            value = rss_bytes(self.pid)
            if value is None:
                return
            self.peak = max(self.peak, value)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(2)
        return self.peak


# ---------------------------------------------------------------------- sockets


async def open_socket(
    port: int, *, local: str = ATTACKER_ADDR, rcvbuf: int | None = None,
    timeout: float = 10.0,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to the gateway from ``local``; ``rcvbuf`` caps the receive window
    (set before connecting, so that a client that stops reading stops the flow early)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((local, 0))
        sock.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (HOST, port)),
                               timeout)
        return await asyncio.open_connection(sock=sock, limit=2**22)
    except BaseException:
        sock.close()
        raise


def abort(writer: asyncio.StreamWriter) -> None:
    """Drop a connection abruptly: RST, like a peer that vanishes."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# ---------------------------------------------------------------------- HTTP


class HttpConnection:
    """One keep-alive HTTP/1.1 connection driven with h11 (requests one at a time)."""

    def __init__(self, port: int, *, local: str = ATTACKER_ADDR) -> None:
        self.port = port
        self.local = local
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._conn = h11.Connection(h11.CLIENT)
        self._last_used = 0.0

    async def _connect(self) -> None:
        self._reader, self._writer = await open_socket(self.port, local=self.local)
        self._conn = h11.Connection(h11.CLIENT)

    async def request(
        self, method: str, target: str, body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (), timeout: float = 15.0,
    ) -> tuple[int, dict[str, str], bytes]:
        return await asyncio.wait_for(self._request(method, target, body, headers), timeout)

    async def _request(
        self, method: str, target: str, body: bytes, headers: Iterable[tuple[str, str]],
    ) -> tuple[int, dict[str, str], bytes]:
        # A connection idle for a while may have been closed by the server's keep-alive
        # timeout (5 s): a new one, as browsers do, rather than a reset to misread.
        if (self._writer is None or self._conn.our_state is not h11.IDLE
                or time.monotonic() - self._last_used > KEEPALIVE_REUSE):
            self.close()
            await self._connect()
        assert self._reader is not None and self._writer is not None
        conn = self._conn
        all_headers = [("Host", f"{HOST}:{self.port}"), ("Origin", ORIGIN), *headers]
        if body or method in ("POST", "PUT"):
            all_headers.append(("Content-Length", str(len(body))))
        data = conn.send(h11.Request(method=method, target=target, headers=all_headers))
        if body:
            data += conn.send(h11.Data(data=body))
        data += conn.send(h11.EndOfMessage())
        self._writer.write(data)
        await self._writer.drain()
        status, response_headers, chunks = 0, {}, []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                received = await self._reader.read(65536)
                conn.receive_data(received)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                response_headers = {n.decode(): v.decode() for n, v in event.headers}
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("connection closed before the response")
        self._last_used = time.monotonic()
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            self.close()
        return status, response_headers, b"".join(chunks)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


async def http(
    port: int, method: str, target: str, body: bytes = b"",
    headers: Iterable[tuple[str, str]] = (), *, timeout: float = 15.0,
    local: str = ATTACKER_ADDR,
) -> tuple[int, dict[str, str], bytes]:
    connection = HttpConnection(port, local=local)
    try:
        return await connection.request(method, target, body, headers, timeout)
    finally:
        connection.close()


async def api_json(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = b"" if body is None else json.dumps(body).encode()
    headers = [("Authorization", f"Bearer {API_KEY}"), ("Content-Type", "application/json")]
    status, _, raw = await http(port, method, path, data, headers, local=HOST)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


async def connected_sockets(port: int) -> int | None:
    """The gateway's count of connected Socket.IO sockets (GET /stats), None if it fails."""
    try:
        status, body = await api_json(port, "GET", "/stats")
    except (OSError, TimeoutError, ConnectionError):
        return None
    if status != 200 or not isinstance(body, dict):
        return None
    return body.get("connectedClients")


class PollingSession:
    """The Engine.IO polling protocol by hand (payloads are packets joined by \\x1e)."""

    def __init__(self, port: int, *, local: str = ATTACKER_ADDR) -> None:
        self.port = port
        self.sid = ""
        self._get = HttpConnection(port, local=local)
        self._post = HttpConnection(port, local=local)

    def _target(self) -> str:
        return f"{SIO_PATH}?EIO=4&transport=polling&sid={self.sid}"

    async def open(self) -> PollingSession:
        status, _, body = await self._get.request("GET", f"{SIO_PATH}?EIO=4&transport=polling")
        if status != 200 or not body.startswith(b"0"):
            raise AssertionError(f"polling handshake failed: {status} {body[:200]!r}")
        self.sid = json.loads(body[1:])["sid"]
        return self

    async def post(self, payload: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
        status, _, body = await self._post.request(
            "POST", self._target(), payload, [("Content-Type", "text/plain;charset=UTF-8")],
            timeout=timeout)
        return status, body

    async def get(self, timeout: float = 30.0) -> tuple[int, list[str]]:
        status, _, body = await self._get.request("GET", self._target(), timeout=timeout)
        return status, body.decode(errors="replace").split("\x1e") if body else []

    async def login(self, token: str) -> None:
        status, body = await self.post(b'40{"token":' + json.dumps(token).encode() + b"}")
        assert status == 200, (status, body)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status, packets = await self.get()
            assert status == 200, (status, packets)
            if any(p.startswith("40{") for p in packets):
                return
            if any(p.startswith("44") for p in packets):
                raise AssertionError(f"CONNECT refused: {packets}")
        raise AssertionError("no CONNECT answer on the polling session")

    async def drain(self, stop: asyncio.Event, seen: list[int]) -> None:
        """Polls (answering pings) until ``stop``: a client that reads what it is sent."""
        while not stop.is_set():
            try:
                status, packets = await self.get(timeout=15)
            except (OSError, TimeoutError, ConnectionError, h11.ProtocolError):
                return
            if status != 200:
                return
            seen[0] += len(packets)
            if "2" in packets:
                with contextlib.suppress(OSError, TimeoutError, ConnectionError,
                                         h11.ProtocolError):
                    await self.post(b"3", timeout=15)
            if "1" in packets:
                return

    def close(self) -> None:
        self._get.close()
        self._post.close()


# ---------------------------------------------------------------------- WebSocket


def ws_frame(payload: bytes | str, opcode: int = 1, *, mask: bytes | None = None) -> bytes:
    """A client frame (masked, as RFC 6455 requires of clients)."""
    data = payload.encode() if isinstance(payload, str) else payload
    key = os.urandom(4) if mask is None else mask
    length = len(data)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    if key == b"\0\0\0\0":
        return head + key + data
    # XOR with the repeated key, at C speed through int arithmetic.
    repeated = (key * (length // 4 + 1))[:length]
    masked = (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        length, "big") if length else b""
    return head + key + masked


async def ws_read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(2)
    opcode, length = head[0] & 0x0F, head[1] & 0x7F
    if length == 126:
        length = struct.unpack("!H", await reader.readexactly(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", await reader.readexactly(8))[0]
    if head[1] & 0x80:
        await reader.readexactly(4)  # servers do not mask; tolerate it anyway
    return opcode, await reader.readexactly(length)


def upgrade_request(port: int, path: str = f"{SIO_PATH}?EIO=4&transport=websocket") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nOrigin: {ORIGIN}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode()


async def ws_open(
    port: int, *, rcvbuf: int | None = None, local: str = ATTACKER_ADDR, timeout: float = 10.0,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket straight to the Engine.IO endpoint; returns after the 101."""
    reader, writer = await open_socket(port, local=local, rcvbuf=rcvbuf, timeout=timeout)
    try:
        writer.write(upgrade_request(port))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"upgrade refused: {head[:200]!r}")
    except BaseException:
        writer.transport.abort()
        raise
    return reader, writer


class SioClient:
    """A raw Socket.IO client over one WebSocket: answers pings, acks what asks for an ack
    (unless ``auto_ack`` is off), records events and resolves acks of what it emits."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.events: list[tuple[str, Any]] = []
        self.raw_events: list[str] = []
        self.connect_answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self.auto_ack = True
        self.new_event = asyncio.Event()
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._task = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(
        cls, port: int, token: str | None, *, local: str = ATTACKER_ADDR,
        timeout: float = 10.0,
    ) -> SioClient:
        reader, writer = await ws_open(port, local=local, timeout=timeout)
        client = cls(reader, writer)
        auth = {} if token is None else {"token": token}
        client.send_text("40" + json.dumps(auth))
        try:
            answer = await asyncio.wait_for(asyncio.shield(client.connect_answer), timeout)
        except BaseException:
            client.abort()
            raise
        if not answer.startswith("0"):  # CONNECT (4 is CONNECT_ERROR)
            client.abort()
            raise ConnectionRefusedError(f"CONNECT refused: {answer[:300]}")
        return client

    def send_text(self, engine_packet: str) -> None:
        self.writer.write(ws_frame(engine_packet))

    def emit_raw(self, sio_packet_body: str) -> asyncio.Future[Any]:
        """Send ``42<id>`` + ``sio_packet_body`` (the JSON array text) and return the ack."""
        ack_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = future
        self.send_text(f"42{ack_id}{sio_packet_body}")
        return future

    def emit(self, event: str, *args: Any) -> asyncio.Future[Any]:
        return self.emit_raw(json.dumps([event, *args]))

    async def call(self, event: str, *args: Any, timeout: float = 15.0) -> Any:
        return await asyncio.wait_for(self.emit(event, *args), timeout)

    async def _read(self) -> None:
        try:
            while True:
                opcode, payload = await ws_read_frame(self.reader)
                if opcode == 8:
                    self.close_reason = "close frame without a code"
                    if len(payload) >= 2:
                        self.close_code = struct.unpack("!H", payload[:2])[0]
                        self.close_reason = payload[2:].decode(errors="replace")
                    return
                if opcode == 9:
                    self.writer.write(ws_frame(payload, 10))
                    continue
                if opcode != 1:
                    continue
                try:
                    self._on_packet(payload.decode("utf-8", "surrogatepass"))
                except (ValueError, IndexError, TypeError):
                    self.raw_events.append(f"<unparsable> {payload[:200]!r}")
        except (asyncio.IncompleteReadError, OSError, ConnectionError):
            return
        finally:
            self.closed.set()
            for future in self._acks.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection closed"))
            if not self.connect_answer.done():
                self.connect_answer.set_exception(ConnectionError("connection closed"))

    def _on_packet(self, text: str) -> None:
        if text == "2":
            self.send_text("3")
            return
        if not text.startswith("4"):
            return
        body = text[1:]
        kind = body[:1]
        if kind in ("0", "4") and not self.connect_answer.done():
            self.connect_answer.set_result(body)
            return
        if kind == "1":
            self.events.append(("disconnect", None))
            return
        if kind not in ("2", "3"):
            return
        rest = body[1:]
        digits = len(rest) - len(rest.lstrip("0123456789"))
        ack_id = int(rest[:digits]) if digits else None
        data = json.loads(rest[digits:])
        if kind == "3":
            future = self._acks.pop(ack_id, None) if ack_id is not None else None
            if future is not None and not future.done():
                future.set_result(data[0] if data else None)
            return
        self.raw_events.append(rest[digits:])
        self.events.append((data[0], data[1] if len(data) > 1 else None))
        self.new_event.set()
        if ack_id is not None and self.auto_ack:
            self.send_text(f"43{ack_id}[true]")

    def received(self, event: str) -> list[Any]:
        return [data for name, data in self.events if name == event]

    async def wait_for(self, predicate: Any, timeout: float) -> bool:
        """Until ``predicate()`` holds (True) or ``timeout`` s pass (False)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed.is_set():
                return bool(predicate())
            self.new_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.new_event.wait(), min(remaining, 0.5))
        return True

    async def close(self) -> None:
        if not self.closed.is_set():
            with contextlib.suppress(OSError, RuntimeError):
                self.writer.write(ws_frame(struct.pack("!H", 1000), 8))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closed.wait(), 2)
        self.abort()

    def abort(self) -> None:
        abort(self.writer)
        self._task.cancel()


# ---------------------------------------------------------------------- blocking clients


def blocking_connect(port: int, timeout: float = 20.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((ATTACKER_ADDR, 0))
    sock.connect((HOST, port))
    return sock


def recv_until_eof(sock: socket.socket, deadline: float, limit: int = 1 << 20) -> tuple[bytes, str]:
    """Everything the server sends until it closes; and how it ended (eof/reset/timeout)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return b"".join(chunks), "timeout"
        except ConnectionResetError:
            return b"".join(chunks), "reset"
        except OSError as exc:
            return b"".join(chunks), f"error {exc}"
        if not data:
            return b"".join(chunks), "eof"
        chunks.append(data)
        size += len(data)
    return b"".join(chunks), "limit"


def send_all(sock: socket.socket, data: bytes, deadline: float) -> str:
    """Send like a browser uploading (everything, then read the answer); how it went."""
    view = memoryview(data)
    sent = 0
    while sent < len(view):
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            sent += sock.send(view[sent:sent + 262144])
        except TimeoutError:
            return f"timeout after {sent} bytes"
        except ConnectionResetError:
            return f"reset after {sent} bytes"
        except BrokenPipeError:
            return f"broken pipe after {sent} bytes"
        except OSError as exc:
            return f"error {exc} after {sent} bytes"
    return "complete"


# ---------------------------------------------------------------------- report file


def report_path() -> Path:
    return Path(os.environ.get("ABUSE_REPORT") or "/tmp/abuse-report.json")


_report_lock = threading.Lock()


def reset_report(meta: dict[str, Any]) -> None:
    path = report_path()
    with _report_lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"run": meta, "results": []}, indent=1))


def add_to_report(entry: dict[str, Any]) -> None:
    path = report_path()
    with _report_lock:
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            report = {"run": {}, "results": []}
        results = [r for r in report.get("results", []) if r.get("test") != entry.get("test")]
        results.append(entry)
        report["results"] = results
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=1, default=str))
        tmp.replace(path)
