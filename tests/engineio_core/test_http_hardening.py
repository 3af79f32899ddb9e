"""The HTTP edge under hostile clients (issue 8, items 4, 9, 13 and 14).

* Slowloris: a request head has an absolute deadline, a body a deadline that only a body
  that keeps moving extends, and connections whose request is still arriving are capped
  (in all and per peer address).
* ``HEAD`` is answered like the request's GET, without the body, on a connection that
  stays usable.
* Cross-site WebSocket hijacking: with named CORS origins, a foreign ``Origin`` is refused
  on upgrades and polling, on the raw server and through the ASGI adapter.
* Lingering close: a refused upload reads its answer, not a connection reset, and the
  server keeps none of the bytes it drops.

Servers run in-process with small timeouts; every wait is bounded, nothing asserts a
duration. The attacks' shape is the issue's, scaled down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from engineio_core import CorsOptions, EngineServer, HttpResponse, Request
from engineio_core.asgi import EngineASGIApp
from engineio_core.cors import same_origin
from engineio_core.http import LINGER_MAX_BYTES, HttpProtocol

from .raw_support import (
    ENGINE_PATH,
    SERVER_KINDS,
    HttpConnection,
    PollingSession,
    RawWebSocket,
    build_request,
    error_json,
    raw_server,
    read_response,
)

HANDSHAKE = f"{ENGINE_PATH}?EIO=4&transport=polling"
WS_HANDSHAKE = f"{ENGINE_PATH}?EIO=4&transport=websocket"
FORBIDDEN_BODY = b'{"code":4,"message":"Forbidden"}'
HTTP_LOGGER = "engineio_core.http"


async def app(request: Request) -> HttpResponse:
    """An application handler: says how much body it got."""
    if request.body_too_large:
        return HttpResponse(413, [("Content-Type", "text/plain")], b"too large")
    body = f"{request.method} {request.path} {len(request.body)}".encode()
    return HttpResponse(200, [("Content-Type", "text/plain")], body)


@pytest.fixture
async def make_server() -> AsyncIterator[Callable[..., Any]]:
    servers: list[EngineServer] = []

    async def make(**options: Any) -> EngineServer:
        server = EngineServer(**options)

        @server.on("message")
        def echo(session: Any, data: Any) -> None:
            session.send(data)

        await server.start("127.0.0.1", 0)
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.01)


def in_progress(server: EngineServer) -> int:
    """Connections the HeadLimiter counts (a request partly received)."""
    return server._head_limiter.count if server._head_limiter is not None else 0


async def trickle(
    conn: HttpConnection, data: bytes, *, step: int, interval: float
) -> tuple[int, bytes]:
    """Send ``data`` ``step`` bytes at a time, reading what the server says meanwhile.

    Stops at EOF or reset from the server; returns (bytes sent, bytes received).
    """
    received = b""
    sent = 0
    while sent < len(data):
        try:
            await conn.send_raw(data[sent:sent + step])
        except ConnectionError:
            break
        sent += step
        try:
            chunk = await asyncio.wait_for(conn.reader.read(4096), interval)
        except TimeoutError:
            continue
        except ConnectionError:
            break
        if not chunk:
            break
        received += chunk
    return min(sent, len(data)), received


# ------------------------------------------------------------------ slowloris (item 4)


async def test_head_trickled_a_byte_at_a_time_is_cut_at_header_timeout(make_server: Any) -> None:
    # The reproduction: the deadline used to restart on every byte, so one byte
    # every few seconds kept a connection open indefinitely.
    server = await make_server(header_timeout=0.5)
    head = b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 300
    async with await HttpConnection.open(server.port) as conn:
        sent, received = await trickle(conn, head, step=1, interval=0.05)
    assert sent < len(head), "the server waited for the whole trickled head"
    assert received.startswith(b"HTTP/1.1 408 "), received
    await wait_until(lambda: in_progress(server) == 0)


async def test_keepalive_request_head_deadline_runs_from_its_first_byte(
    make_server: Any,
) -> None:
    server = await make_server(header_timeout=0.5, keepalive_timeout=30, http_handler=app)
    async with await HttpConnection.open(server.port) as conn:
        assert (await conn.request("GET", "/first")).status == 200
        head = b"GET /second HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 300
        sent, received = await trickle(conn, head, step=1, interval=0.05)
    assert sent < len(head)
    assert received.startswith(b"HTTP/1.1 408 "), received


async def test_silent_connection_and_idle_keepalive_are_closed_without_answer(
    make_server: Any,
) -> None:
    server = await make_server(header_timeout=0.3, keepalive_timeout=0.3, http_handler=app)
    async with await HttpConnection.open(server.port) as silent:
        assert await silent.wait_closed_by_peer(5) == b""
    async with await HttpConnection.open(server.port) as idle:
        assert (await idle.request("GET", "/x")).status == 200
        assert await idle.wait_closed_by_peer(5) == b""


async def test_stalled_body_is_cut_at_body_timeout(make_server: Any) -> None:
    # The reproduction: Content-Length 100 and nothing sent stayed open 95 s.
    server = await make_server(body_timeout=0.3, http_handler=app)
    async with await HttpConnection.open(server.port) as conn:
        await conn.send_raw(build_request("POST", "/upload", headers=[("Content-Length", "100")]))
        await conn.send_raw(b"only a part")
        res = await conn.read_response(timeout=5)
        assert res.status == 408
        assert await conn.wait_closed_by_peer(5) == b""
    await wait_until(lambda: in_progress(server) == 0)


async def test_slow_body_that_keeps_moving_is_not_cut(make_server: Any) -> None:
    # 3,000 bytes at about 6 KB/s: longer than body_timeout, but far above min_body_rate.
    server = await make_server(body_timeout=0.3, min_body_rate=500, http_handler=app)
    body = b"x" * 3000
    async with await HttpConnection.open(server.port) as conn:
        await conn.send_raw(build_request("POST", "/upload", headers=[("Content-Length", "3000")]))
        for offset in range(0, len(body), 300):
            await conn.send_raw(body[offset:offset + 300])
            await asyncio.sleep(0.05)
        res = await conn.read_response(timeout=5)
    assert (res.status, res.body) == (200, b"POST /upload 3000")


async def test_body_trickled_below_min_body_rate_is_cut(make_server: Any) -> None:
    # 10 bytes every 50 ms (200 B/s) against a minimum of 500 B/s.
    server = await make_server(body_timeout=0.3, min_body_rate=500, http_handler=app)
    async with await HttpConnection.open(server.port) as conn:
        await conn.send_raw(build_request("POST", "/upload", headers=[("Content-Length", "2000")]))
        sent, received = await trickle(conn, b"y" * 2000, step=10, interval=0.05)
    assert sent < 2000
    assert received.startswith(b"HTTP/1.1 408 "), received


async def test_per_address_cap_on_connections_receiving_a_request(
    make_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = await make_server(max_connections_in_head_per_address=3, http_handler=app)
    partial = b"GET /slow HTTP/1.1\r\nHost: x\r\n"
    held = [await HttpConnection.open(server.port) for _ in range(3)]
    try:
        for conn in held:
            await conn.send_raw(partial)
        await wait_until(lambda: in_progress(server) == 3)
        # At the cap, a request that arrives whole is still served: it is never counted.
        async with await HttpConnection.open(server.port) as whole:
            assert (await whole.request("GET", "/whole")).status == 200
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=HTTP_LOGGER):
            for _ in range(4):
                async with await HttpConnection.open(server.port) as extra:
                    await extra.send_raw(partial)
                    res = await extra.read_response(timeout=5)
                    assert res.status == 503
                    assert await extra.wait_closed_by_peer(5) == b""
        # Four refusals, one log line (the rest are counted for the next one).
        lines = [r for r in caplog.records if r.name == HTTP_LOGGER]
        assert len(lines) == 1, [r.getMessage() for r in lines]
        assert "max_connections_in_head_per_address=3" in lines[0].getMessage()
        # The connections that were first are served when their heads end.
        for conn in held:
            await conn.send_raw(b"\r\n")
            res = await conn.read_response(timeout=5)
            assert (res.status, res.body) == (200, b"GET /slow 0")
    finally:
        for conn in held:
            await conn.close()
    await wait_until(lambda: in_progress(server) == 0)


async def test_total_cap_on_connections_receiving_a_request(make_server: Any) -> None:
    server = await make_server(
        max_connections_in_head=2, max_connections_in_head_per_address=None, http_handler=app
    )
    held = [await HttpConnection.open(server.port) for _ in range(2)]
    try:
        for conn in held:
            # Incomplete in the body this time: it counts until the request is complete.
            await conn.send_raw(build_request("POST", "/up", headers=[("Content-Length", "5")]))
        await wait_until(lambda: in_progress(server) == 2)
        async with await HttpConnection.open(server.port) as extra:
            await extra.send_raw(b"GET / HTTP/1.1\r\n")
            assert (await extra.read_response(timeout=5)).status == 503
        for conn in held:
            await conn.send_raw(b"12345")
            assert (await conn.read_response(timeout=5)).body == b"POST /up 5"
    finally:
        for conn in held:
            await conn.close()
    await wait_until(lambda: in_progress(server) == 0)


async def test_idle_keepalive_and_silent_connections_are_not_counted(make_server: Any) -> None:
    # Decision: only a connection with part of a request received counts. A new
    # connection that sent nothing is bounded by header_timeout, an idle keep-alive one
    # by keepalive_timeout; counting them would let a browser's idle pool (or a local
    # proxy's burst of fresh connections) fill the per-address cap.
    server = await make_server(max_connections_in_head_per_address=1, http_handler=app)
    async with (
        await HttpConnection.open(server.port) as idle,
        await HttpConnection.open(server.port) as silent,
        await HttpConnection.open(server.port) as first,
        await HttpConnection.open(server.port) as second,
    ):
        assert (await idle.request("GET", "/a")).status == 200
        assert silent.writer is not None
        await first.send_raw(b"GET /b HTTP/1.1\r\n")
        await wait_until(lambda: in_progress(server) == 1)
        await second.send_raw(b"GET /c HTTP/1.1\r\n")
        assert (await second.read_response(timeout=5)).status == 503  # the cap works...
        await first.send_raw(b"Host: x\r\n\r\n")  # ...and idle/silent were not in it
        assert (await first.read_response(timeout=5)).body == b"GET /b 0"
        assert (await idle.request("GET", "/d")).body == b"GET /d 0"


async def test_count_released_when_a_counted_client_goes_away(make_server: Any) -> None:
    server = await make_server(max_connections_in_head_per_address=2, http_handler=app)
    for _ in range(3):  # more rounds than the cap: nothing may leak between them
        conns = [await HttpConnection.open(server.port) for _ in range(2)]
        for conn in conns:
            await conn.send_raw(b"GET /gone HTTP/1.1\r\n")
        await wait_until(lambda: in_progress(server) == 2)
        for conn in conns:
            await conn.close()
        await wait_until(lambda: in_progress(server) == 0)
    assert server._head_limiter is not None and server._head_limiter._by_address == {}


# ------------------------------------------------------------------ HEAD (item 9)


async def test_head_to_application_path_keeps_connection(
    make_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = await make_server(http_handler=app)
    with caplog.at_level(logging.ERROR):
        async with await HttpConnection.open(server.port) as conn:
            head = await conn.request("HEAD", "/page")
            assert head.status == 200
            assert head.header("content-length") == str(len(b"HEAD /page 0"))
            assert head.body == b""
            # Keep-alive: no body bytes were sent, the next answer parses from its start.
            get = await conn.request("GET", "/page")
            assert (get.status, get.body) == (200, b"GET /page 0")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_head_without_http_handler_and_with_sid(
    make_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = await make_server()
    session = await PollingSession.open(server.port, ENGINE_PATH)
    with caplog.at_level(logging.ERROR):
        async with await HttpConnection.open(server.port) as conn:
            missing = await conn.request("HEAD", "/nowhere")
            assert (missing.status, missing.header("content-length")) == (404, "9")
            # Node answers a HEAD poll 500 (not a GET: it must not take queued packets).
            polled = await conn.request("HEAD", session.url())
            assert polled.status == 500
            again = await conn.request("GET", "/nowhere")
            assert (again.status, again.body) == (404, b"Not Found")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.fixture(scope="module", params=SERVER_KINDS)
def reference_server(request: pytest.FixtureRequest):
    with raw_server(request.param) as srv:
        yield srv


async def test_head_to_engine_path_like_reference(reference_server: Any) -> None:
    # Differential: Node answers HEAD like its GET would be refused (400, "Bad handshake
    # method" since a handshake must be a GET), without a body, and keeps the connection.
    async with await HttpConnection.open(reference_server.port) as conn:
        head = await conn.request("HEAD", HANDSHAKE)
        assert (head.status, head.body) == (400, b"")
        if reference_server.kind == "python":
            expected = error_json(2, "Bad handshake method")
            assert head.header("content-length") == str(len(expected))
        get = await conn.request("GET", HANDSHAKE)
        assert get.status == 200 and get.body.startswith(b"0{"), get


# ------------------------------------------------------------------ origins (item 13)

GOOD = "https://good.example"
EVIL = "https://evil.example"


async def upgrade_status(server: EngineServer, origin: str | None, **extra: str) -> int:
    headers = [("Origin", origin)] if origin is not None else []
    headers += list(extra.items())
    ws = await RawWebSocket.connect(server.port, WS_HANDSHAKE, extra=headers)
    try:
        assert ws.response is not None
        if ws.response.status == 403:
            assert ws.response.body == FORBIDDEN_BODY
            assert ws.response.header("content-type") == "application/json"
        return ws.response.status
    finally:
        await ws.close()


async def polling_status(server: EngineServer, origin: str | None, **extra: str) -> int:
    headers = [("Origin", origin)] if origin is not None else []
    headers += list(extra.items())
    async with await HttpConnection.open(server.port) as conn:
        res = await conn.request("GET", HANDSHAKE, headers=headers)
    if res.status == 403:
        assert res.body == FORBIDDEN_BODY
    return res.status


@pytest.mark.parametrize(
    "rule",
    [[GOOD], GOOD, re.compile(r"^https://good\.example$"), lambda origin: origin == GOOD],
    ids=["list", "string", "regex", "callable"],
)
async def test_foreign_origin_refused_with_named_origins(make_server: Any, rule: Any) -> None:
    server = await make_server(cors=CorsOptions(origin=rule, credentials=True))
    errors: list[tuple[int, str]] = []
    server.on("connection_error", lambda request, code, message: errors.append((code, message)))
    # A browser on a foreign page: refused on both transports.
    assert await upgrade_status(server, EVIL) == 403
    assert await polling_status(server, EVIL) == 403
    assert await polling_status(server, "null") == 403  # sandboxed frames, file: pages
    assert errors == [(4, "Forbidden")] * 3
    # A named origin, the server's own origin, and clients that send no Origin pass.
    assert await upgrade_status(server, GOOD) == 101
    assert await polling_status(server, GOOD) == 200
    # (raw_support sends "Host: 127.0.0.1": the page of this host is same-origin.)
    assert await upgrade_status(server, "http://127.0.0.1") == 101
    assert await upgrade_status(server, "https://127.0.0.1:443") == 101
    assert await upgrade_status(server, None) == 101
    assert await polling_status(server, None) == 200


async def test_foreign_origin_refused_on_session_requests(make_server: Any) -> None:
    server = await make_server(cors=CorsOptions(origin=[GOOD]))
    session = await PollingSession.open(server.port, ENGINE_PATH)
    async with await HttpConnection.open(server.port) as conn:
        res = await conn.request("POST", session.url(), body="4hi", headers=[("Origin", EVIL)])
        assert (res.status, res.body) == (403, FORBIDDEN_BODY)
        # A preflight is still answered (without Access-Control-Allow-Origin).
        pre = await conn.request("OPTIONS", session.url(), headers=[("Origin", EVIL)])
        assert pre.status == 204 and pre.header("access-control-allow-origin") is None


@pytest.mark.parametrize("rule", ["*", True], ids=["any", "reflect"])
async def test_any_origin_rules_do_not_check(make_server: Any, rule: Any) -> None:
    server = await make_server(cors=CorsOptions(origin=rule))
    assert await upgrade_status(server, EVIL) == 101
    assert await polling_status(server, EVIL) == 200


async def test_allow_missing_origin_false(make_server: Any) -> None:
    server = await make_server(cors=CorsOptions(origin=[GOOD]), allow_missing_origin=False)
    assert await upgrade_status(server, None) == 403
    assert await polling_status(server, None) == 403
    assert await upgrade_status(server, GOOD) == 101
    # Browsers send no Origin on a same-origin GET, but do send Sec-Fetch-Site.
    assert await polling_status(server, None, **{"Sec-Fetch-Site": "same-origin"}) == 200
    assert await polling_status(server, None, **{"Sec-Fetch-Site": "cross-site"}) == 403


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("https://app.example", "app.example", True),
        ("http://app.example:8080", "APP.example:8080", True),
        ("https://app.example", "app.example:443", True),
        ("https://app.example:8443", "app.example", False),
        ("https://app.example.evil", "app.example", False),
        ("null", "app.example", False),
        ("https://app.example", None, False),
    ],
)
def test_same_origin(origin: str, host: str | None, same: bool) -> None:
    assert same_origin(origin, host) is same


def test_named_origins() -> None:
    assert not CorsOptions(origin="*").restricts_origins
    assert not CorsOptions(origin=True).restricts_origins
    assert not CorsOptions(origin=False).restricts_origins
    fixed = CorsOptions(origin=GOOD)
    assert fixed.restricts_origins and fixed.accepts_origin(GOOD)
    assert not fixed.accepts_origin(GOOD + ".evil")
    listed = CorsOptions(origin=[re.compile(r"\.good\.example$"), GOOD])
    assert listed.accepts_origin("https://a.good.example") and listed.accepts_origin(GOOD)
    assert not listed.accepts_origin(EVIL)


class AsgiCall:
    """Drives EngineASGIApp with a scope and scripted receive messages."""

    def __init__(self, *incoming: dict[str, Any]) -> None:
        self.incoming = list(incoming)
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.incoming:
            return self.incoming.pop(0)
        await asyncio.sleep(5)  # never reached in these tests; bounded anyway
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


def asgi_scope(kind: str, query: bytes, origin: str | None) -> dict[str, Any]:
    headers = [(b"host", b"gateway.example")]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return {
        "type": kind, "path": ENGINE_PATH, "raw_path": ENGINE_PATH.encode(),
        "query_string": query, "headers": headers, "method": "GET", "scheme": "http",
        "client": ("127.0.0.1", 5000), "extensions": {"websocket.http.response": {}},
    }


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [(EVIL, False), (GOOD, True), (None, True), ("http://gateway.example", True)],
    ids=["foreign", "named", "none", "same-origin"],
)
async def test_asgi_adapter_checks_origin(origin: str | None, accepted: bool) -> None:
    engine = EngineServer(cors=CorsOptions(origin=[GOOD]))
    asgi = EngineASGIApp(engine)
    try:
        ws = AsgiCall({"type": "websocket.connect"}, {"type": "websocket.disconnect"})
        await asyncio.wait_for(
            asgi(asgi_scope("websocket", b"EIO=4&transport=websocket", origin),
                 ws.receive, ws.send), 5)
        first = ws.sent[0]
        if accepted:
            assert first["type"] == "websocket.accept", ws.sent
        else:
            assert first["type"] == "websocket.http.response.start", ws.sent
            assert first["status"] == 403
            assert ws.sent[1]["body"] == FORBIDDEN_BODY
        http = AsgiCall({"type": "http.request", "body": b"", "more_body": False})
        await asyncio.wait_for(
            asgi(asgi_scope("http", b"EIO=4&transport=polling", origin), http.receive,
                 http.send), 5)
        assert http.sent[0]["status"] == (200 if accepted else 403)
    finally:
        await engine.stop()


# ------------------------------------------------------------------ lingering close (item 14)

TEN_MB = 10 * 1024 * 1024


async def send_big_body_then_read(port: int, target: str, size: int) -> tuple[int, bytes]:
    """POST ``size`` bytes in 64 KiB chunks, then read the answer (all bounded)."""
    async with await HttpConnection.open(port) as conn:
        head = build_request("POST", target, headers=[
            ("Content-Type", "text/plain;charset=UTF-8"), ("Content-Length", str(size))])
        chunk = b"4" * 65536

        async def upload() -> None:
            await conn.send_raw(head)
            for _ in range(size // len(chunk)):
                await conn.send_raw(chunk)

        await asyncio.wait_for(upload(), 20)
        res = await read_response(conn.reader, timeout=10)
        return res.status, res.body


async def test_refused_10mb_polling_post_reads_its_413(make_server: Any) -> None:
    # The reproduction: the 413 was written and the socket closed while the
    # client was still sending, so the kernel reset the connection and the client saw a
    # network error instead of the 413.
    server = await make_server()
    session = await PollingSession.open(server.port, ENGINE_PATH)
    status, _ = await send_big_body_then_read(server.port, session.url(), TEN_MB)
    assert status == 413
    # As in the reference, the session survives the refused body.
    assert (await session.post("4after")).status == 200
    assert await session.collect_messages(1) == ["4after"]


async def test_refused_10mb_post_to_application_reads_its_answer(make_server: Any) -> None:
    # The application answers later (a task): meanwhile the body is dropped as it comes,
    # instead of counting as pipelined bytes and resetting the connection.
    server = await make_server(http_handler=app)
    assert await send_big_body_then_read(server.port, "/upload", TEN_MB) == (413, b"too large")


async def test_bad_chunked_body_answered_400_while_client_keeps_sending(
    make_server: Any,
) -> None:
    # h11 refuses the body mid-way (a bad chunk size); the client is still sending.
    server = await make_server(http_handler=app)
    async with await HttpConnection.open(server.port) as conn:
        await conn.send_raw(build_request(
            "POST", "/upload", headers=[("Transfer-Encoding", "chunked")]) + b"zz\r\n")

        async def keep_sending() -> None:
            for _ in range(32):
                await conn.send_raw(b"q" * 65536)

        await asyncio.wait_for(keep_sending(), 20)
        res = await conn.read_response(timeout=10)
        assert (res.status, res.body) == (400, b"Bad Request")
        assert await conn.wait_closed_by_peer(5) == b""


class FakeTransport(asyncio.Transport):
    """Records what HttpProtocol does to its transport; no socket."""

    def __init__(self) -> None:
        super().__init__()
        self.protocol: asyncio.BaseProtocol | None = None
        self.written = bytearray()
        self.eof_written = False
        self.closed = False
        self.aborted = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.eof_written, "write after write_eof"
        self.written += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


async def test_lingering_close_keeps_none_of_the_dropped_bytes() -> None:
    server = EngineServer(max_http_buffer_size=1000)
    protocol = HttpProtocol(server)
    transport = FakeTransport()
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    try:
        head = build_request("POST", f"{HANDSHAKE}&sid=nope",
                             headers=[("Content-Length", str(TEN_MB))])
        protocol.data_received(head + b"4" * 1000)
        assert transport.written.startswith(b"HTTP/1.1 400 "), bytes(transport.written)
        assert transport.eof_written  # half-closed after the answer
        reader = transport.get_protocol()
        assert reader is not protocol  # what comes now goes to the discarding reader
        chunk = b"4" * 65536
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            for _ in range(TEN_MB // len(chunk)):
                reader.data_received(chunk)  # type: ignore[attr-defined]
            after, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert after - before < 64 * 1024 and peak - before < 64 * 1024
        assert protocol._body == [] and not transport.aborted and not transport.closed
        # The peer is done sending: now the connection is closed.
        assert reader.eof_received() is False  # type: ignore[attr-defined]
        reader.connection_lost(None)
        assert protocol not in server._connections
    finally:
        if protocol._discarder is not None and protocol._discarder._timer is not None:
            protocol._discarder._timer.cancel()


async def test_lingering_close_has_a_byte_budget() -> None:
    server = EngineServer(max_http_buffer_size=1000)
    protocol = HttpProtocol(server)
    transport = FakeTransport()
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    try:
        protocol.data_received(build_request("POST", "/x", headers=[
            ("Content-Length", str(10 * LINGER_MAX_BYTES))]))
        reader = transport.get_protocol()
        chunk = b"x" * (1024 * 1024)
        for _ in range(LINGER_MAX_BYTES // len(chunk)):
            reader.data_received(chunk)  # type: ignore[attr-defined]
        assert not transport.aborted
        reader.data_received(chunk)  # type: ignore[attr-defined]
        assert transport.aborted  # more than we read for anybody: reset after all
    finally:
        reader.connection_lost(None)  # type: ignore[attr-defined]


async def test_refused_body_while_the_application_answers_and_peer_half_closes() -> None:
    # The application answers later; the peer stops sending (half-close) before that:
    # the connection stays open to write the answer, then closes without lingering.
    release = asyncio.Event()

    async def slow_app(request: Request) -> HttpResponse:
        await release.wait()
        return await app(request)

    server = EngineServer(max_http_buffer_size=1000, http_handler=slow_app)
    protocol = HttpProtocol(server)
    transport = FakeTransport()
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    protocol.data_received(build_request("POST", "/up", headers=[("Content-Length", "5000")]))
    reader = transport.get_protocol()
    assert reader is not protocol
    reader.data_received(b"x" * 4000)  # type: ignore[attr-defined]
    assert reader.eof_received() is True  # type: ignore[attr-defined]
    release.set()
    await wait_until(lambda: transport.closed)
    assert transport.written.startswith(b"HTTP/1.1 413 ")
    assert transport.written.endswith(b"too large") and not transport.eof_written
    reader.connection_lost(None)  # type: ignore[attr-defined]
    await server.stop()


async def test_head_refused_mid_body_gets_headers_only() -> None:
    server = EngineServer()
    protocol = HttpProtocol(server)
    transport = FakeTransport()
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    protocol.data_received(
        build_request("HEAD", "/x", headers=[("Transfer-Encoding", "chunked")]) + b"zz\r\n")
    head, _, body = bytes(transport.written).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"Content-Length: 11" in head
    assert body == b"" and transport.eof_written
    transport.get_protocol().connection_lost(None)


async def test_linger_close_on_a_websocket_connection(make_server: Any) -> None:
    # What the WebSocket layer does for a message that is too big (close 1009): write the
    # close frame, then linger_close(), so the peer reads the close, not a reset.
    server = await make_server()
    closed: list[str] = []
    server.on("close", lambda session, reason: closed.append(reason))
    ws = await RawWebSocket.connect(server.port, WS_HANDSHAKE)
    try:
        assert ws.response is not None and ws.response.status == 101
        assert (await ws.recv_data()).text.startswith("0{")
        (protocol,) = [c for c in server._connections if c._ws is not None]
        protocol.linger_close()
        with contextlib.suppress(ConnectionError):
            for _ in range(64):  # 4 MiB the server drops
                ws.writer.write(b"\x82\x7f" + b"\x00" * 65536)
                await asyncio.wait_for(ws.writer.drain(), 10)
        assert await ws.wait_eof(5) == b""
    finally:
        await ws.close()
    await wait_until(lambda: closed == ["transport close"])
