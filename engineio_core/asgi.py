"""ASGI adapter: the same EngineServer under uvicorn, hypercorn or any ASGI server.

``EngineASGIApp(engine, other_app)`` answers the engine path (long-polling and
WebSocket) and passes everything else to ``other_app`` (or answers 404). The ASGI server
owns the sockets and the WebSocket framing here, so this path is slower than the raw
server (``EngineServer.start``): a task per connection and one ``send`` per message.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .packet import OutgoingPacket, ProtocolError, decode_packet
from .request import Request, parse_query
from .server import EngineServer
from .session import Session

logger = logging.getLogger(__name__)

__all__ = ["EngineASGIApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _request_from_scope(scope: Scope, *, upgrade: bool) -> Request:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    raw_query = scope.get("query_string", b"").decode("latin-1")
    path = scope.get("raw_path", b"").decode("latin-1") or scope.get("path", "/")
    client = scope.get("client")
    return Request(
        method=scope.get("method", "GET"),
        url=f"{path}?{raw_query}" if raw_query else path,
        path=path,
        query=parse_query(raw_query),
        headers=headers,
        remote_address=tuple(client) if client else None,
        secure=scope.get("scheme") in ("https", "wss"),
        upgrade=upgrade,
    )


class _AsgiResponder:
    """Holds the answer to one polling request until the ASGI handler sends it."""

    __slots__ = ("answer", "done", "extra_headers")

    def __init__(self) -> None:
        self.extra_headers: list[tuple[str, str]] = []
        self.done = asyncio.Event()
        self.answer: tuple[int, list[tuple[str, str]], bytes] | None = None

    def respond(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        if self.answer is None:
            self.answer = (status, [*headers, *self.extra_headers], body)
            self.done.set()


class _AsgiWebSocket:
    """Engine.IO transport over an ASGI WebSocket connection."""

    __slots__ = ("_high_water", "_queue", "_queued_bytes", "_readable", "_send", "_wake",
                 "close_code", "closed", "congested_since", "session", "wants_close")

    name = "websocket"

    def __init__(self, send: Send, high_water: int) -> None:
        self._send = send
        self._high_water = high_water
        self._queued_bytes = 0
        self._queue: deque[str | bytes] = deque()
        self._wake = asyncio.Event()
        # Cleared while the session has paused reading (backpressure): the read loop waits.
        self._readable = asyncio.Event()
        self._readable.set()
        self.congested_since = 0.0
        self.closed = False
        self.wants_close = False
        self.close_code = 1000
        self.session: Session | None = None

    @property
    def writable(self) -> bool:
        return not (self.closed or self.wants_close)

    @property
    def congested(self) -> bool:
        return self._queued_bytes > self._high_water

    def send_one(self, packet: OutgoingPacket) -> None:
        self.send([packet])

    def send(self, packets: list[OutgoingPacket]) -> None:
        if self.writable:
            was_congested = self.congested
            for packet in packets:
                data = packet.websocket_data
                self._queue.append(data)
                self._queued_bytes += len(data)
            if not was_congested and self.congested:
                self.congested_since = asyncio.get_running_loop().time()
            self._wake.set()

    def pause_reading(self) -> None:
        self._readable.clear()

    def resume_reading(self) -> None:
        self._readable.set()

    def buffered_amount(self) -> int:
        return self._queued_bytes

    def close(self, callback: Callable[[], object] | None = None) -> None:
        self.wants_close = True
        self._wake.set()
        self._readable.set()  # a paused read loop must see the close
        if callback is not None:
            callback()

    def discard(self) -> None:
        self.session = None

    async def writer(self) -> None:
        """Drain the queue into the ASGI connection until closed."""
        send = self._send
        try:
            while not self.closed:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    item = self._queue.popleft()
                    self._queued_bytes -= len(item)
                    if isinstance(item, str):
                        await send({"type": "websocket.send", "text": item})
                    else:
                        await send({"type": "websocket.send", "bytes": item})
                if self.wants_close and not self.closed:
                    self.closed = True
                    await send({"type": "websocket.close", "code": self.close_code})
        except Exception as exc:  # the peer went away under us: nothing left to write to
            logger.debug("asgi websocket writer stopped: %r", exc)
            self.closed = True


class _AsgiAcceptor:
    __slots__ = ("accepted", "decided", "headers", "high_water", "rejected", "send")

    def __init__(self, send: Send, high_water: int) -> None:
        self.send = send
        self.high_water = high_water
        self.accepted: _AsgiWebSocket | None = None
        self.headers: list[tuple[str, str]] = []
        self.rejected: tuple[int, bytes, list[tuple[str, str]]] | None = None
        self.decided = asyncio.Event()

    def reject(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        self.rejected = (status, body, headers)
        self.decided.set()

    def accept(self, headers: list[tuple[str, str]]) -> _AsgiWebSocket:
        self.headers = headers
        self.accepted = _AsgiWebSocket(self.send, self.high_water)
        self.decided.set()
        return self.accepted


class EngineASGIApp:
    """Serve ``engine`` as an ASGI application, optionally in front of ``other_app``."""

    def __init__(self, engine: EngineServer, other_app: ASGIApp | None = None) -> None:
        self.engine = engine
        self.other_app = other_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        path = scope.get("path", "")
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
        elif kind in ("http", "websocket") and self.engine.handles(path):
            if kind == "http":
                await self._http(scope, receive, send)
            else:
                await self._websocket(scope, receive, send)
        elif self.other_app is not None:
            await self.other_app(scope, receive, send)
        elif kind == "http":
            await _send_response(send, 404, [("Content-Type", "text/plain")], b"Not Found")
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.other_app is not None:
            # The other app owns the lifespan protocol; we only learn about shutdown by
            # wrapping its receive.
            async def wrapped_receive() -> Message:
                message = await receive()
                if message["type"] == "lifespan.shutdown":
                    await self.engine.stop()
                return message

            await self.other_app(scope, wrapped_receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.engine.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        engine = self.engine
        request = _request_from_scope(scope, upgrade=False)
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > engine.max_http_buffer_size:
                request.body_too_large = True
                break
            chunks.append(chunk)
            more = message.get("more_body", False)
        request.body = b"".join(chunks)
        responder = _AsgiResponder()
        engine.handle_request(request, responder)
        if responder.answer is None:
            # A long-poll GET: wait for data, or for the client to go away.
            disconnect = asyncio.ensure_future(_wait_disconnect(receive))
            answered = asyncio.ensure_future(responder.done.wait())
            try:
                await asyncio.wait({disconnect, answered}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                disconnect.cancel()
                answered.cancel()
            if responder.answer is None:
                session = engine.sessions.get(request.query.get("sid", ""))
                transport: Any = session.transport if session is not None else None
                if transport is not None and transport.name == "polling":
                    transport.on_poll_aborted(responder)
                return
        status, headers, body = responder.answer
        if not any(n.lower() == "content-length" for n, _ in headers):
            headers = [*headers, ("Content-Length", str(len(body)))]
        await _send_response(send, status, headers, body)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        engine = self.engine
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        request = _request_from_scope(scope, upgrade=True)
        acceptor = _AsgiAcceptor(send, engine.session_config.write_buffer_high_water)
        engine.handle_websocket(request, acceptor)
        await acceptor.decided.wait()  # allow_request may be async
        if acceptor.accepted is None:
            await self._reject(scope, send, acceptor.rejected)
            return
        ws = acceptor.accepted
        await send(
            {
                "type": "websocket.accept",
                "headers": [(n.encode("latin-1"), v.encode("latin-1"))
                            for n, v in acceptor.headers],
            }
        )
        writer = asyncio.ensure_future(ws.writer())
        try:
            await self._read_loop(ws, receive)
        finally:
            ws.wants_close = True
            ws._wake.set()
            await asyncio.wait({writer}, timeout=1.0)
            writer.cancel()

    async def _read_loop(self, ws: _AsgiWebSocket, receive: Receive) -> None:
        max_size = self.engine.max_http_buffer_size
        while not ws.closed:
            if not ws._readable.is_set():
                await ws._readable.wait()
                continue
            message = await receive()
            if message["type"] == "websocket.disconnect":
                ws.closed = True
                if ws.session is not None:
                    ws.session.on_transport_close(ws)
                return
            text = message.get("text")
            data: str | bytes = text if text is not None else message.get("bytes") or b""
            session = ws.session
            if session is None:
                continue
            if len(data) > max_size:
                ws.close_code = 1009  # message too big, as the raw server answers
                session.on_transport_error(ws, "message too big")
                return
            try:
                packet = decode_packet(data)
            except ProtocolError:
                session.on_parse_error(ws)
                continue
            session.receive(ws, packet)

    @staticmethod
    async def _reject(
        scope: Scope, send: Send, rejected: tuple[int, bytes, list[tuple[str, str]]] | None
    ) -> None:
        status, body, headers = rejected or (400, b"Bad request", [])
        if "websocket.http.response" in scope.get("extensions", {}):
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": status,
                    "headers": [
                        (n.encode("latin-1"), v.encode("latin-1"))
                        for n, v in headers
                        if n.lower() != "connection"
                    ],
                }
            )
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _send_response(
    send: Send, status: int, headers: list[tuple[str, str]], body: bytes
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers],
        }
    )
    await send({"type": "http.response.body", "body": body})
