"""The raw asyncio HTTP/1.1 server: one ``asyncio.Protocol`` per TCP connection, on h11.

Routes requests to the engine path to the EngineServer, others to the application's
``http_handler``, and hands a connection over to the WebSocket transport after a 101.
No task per connection: everything runs in protocol callbacks and ``call_later`` timers.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import h11

from .request import HttpResponse, Request, parse_query
from .websocket import HandshakeError, WebSocketTransport, negotiate

if TYPE_CHECKING:
    from websockets.extensions import Extension

    from .server import EngineServer

logger = logging.getLogger(__name__)

__all__ = ["HttpProtocol"]

# Bytes a client may pipeline behind a request we have not answered yet.
_MAX_PIPELINED = 64 * 1024


class HttpProtocol(asyncio.Protocol):
    __slots__ = (
        "_body",
        "_body_size",
        "_busy",
        "_closed",
        "_conn",
        "_pending",
        "_request",
        "_timer",
        "_too_large",
        "_transport",
        "_ws",
        "server",
    )

    def __init__(self, server: EngineServer) -> None:
        self.server = server
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=server.max_header_size)
        self._transport: asyncio.Transport | None = None
        self._ws: WebSocketTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._request: h11.Request | None = None
        self._body: list[bytes] = []
        self._body_size = 0
        self._too_large = False
        # The responder of the request being answered; requests are answered in order.
        self._busy: _Responder | None = None
        self._pending = 0
        self._closed = False

    # ------------------------------------------------------------------ asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.server._connections.add(self)
        self._arm(self.server.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._cancel_timer()
        self.server._connections.discard(self)
        if self._ws is not None:
            self._ws.connection_lost()
        elif self._busy is not None:
            busy, self._busy = self._busy, None
            busy.aborted()

    def data_received(self, data: bytes) -> None:
        if self._ws is not None:
            try:
                self._ws.receive_data(data)
            except Exception:
                # A bug must not leave a half-processed connection open: drop this peer.
                logger.exception("error processing WebSocket data")
                self.abort()
            return
        if self._busy is not None:
            self._pending += len(data)
            if self._pending > _MAX_PIPELINED:
                self.abort()
                return
        elif self._request is None and self._conn.our_state is h11.IDLE:
            # Bytes of a new request: from here the client has header_timeout to finish.
            self._arm(self.server.header_timeout)
        self._conn.receive_data(data)
        self._process()

    def pause_writing(self) -> None:
        # More than the high-water mark is waiting in the socket's buffer.
        if self._ws is not None:
            self._ws.on_pause_writing()

    def resume_writing(self) -> None:
        if self._ws is not None:
            self._ws.on_resume_writing()

    def eof_received(self) -> bool | None:
        if self._ws is not None:
            # A WebSocket peer that half-closes without a close frame is gone.
            return False
        self._conn.receive_data(b"")
        if self._busy is None:
            self._process()
        # Keep the write side open: a pending long-poll response may still be written.
        return True

    # ------------------------------------------------------------------ parsing

    def _process(self) -> None:
        conn = self._conn
        while self._busy is None and not self._closed:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._bad_request(exc.error_status_hint)
                return
            if event is h11.NEED_DATA:
                return
            if event is h11.PAUSED:
                if conn.their_state is h11.MUST_CLOSE or conn.our_state is h11.MUST_CLOSE:
                    self._close()
                return
            if isinstance(event, h11.Request):
                # h11 bounds only headers that arrive in pieces; check complete ones too.
                size = len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers)
                if size > self.server.max_header_size:
                    self._bad_request(431)
                    return
                self._cancel_timer()
                self._request = event
                self._body = []
                self._body_size = 0
                self._too_large = False
                if self._content_length(event) > self.server.max_http_buffer_size:
                    self._too_large = True
                    self._dispatch()
                    return
            elif isinstance(event, h11.Data):
                self._body_size += len(event.data)
                if self._body_size > self.server.max_http_buffer_size:
                    self._too_large = True
                    self._dispatch()
                    return
                self._body.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._dispatch()
            elif isinstance(event, h11.ConnectionClosed):
                self._close()
                return

    @staticmethod
    def _content_length(event: h11.Request) -> int:
        for name, value in event.headers:
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0
        return 0

    def _dispatch(self) -> None:
        event = self._request
        assert event is not None and self._transport is not None
        self._request = None
        headers: dict[str, str] = {}
        for raw_name, raw_value in event.headers:
            name = raw_name.decode("latin-1")
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        target = event.target.decode("latin-1")
        path, _, raw_query = target.partition("?")
        upgrade = (
            event.method == b"GET" and "websocket" in headers.get("upgrade", "").lower()
        )
        request = Request(
            method=event.method.decode("ascii"),
            url=target,
            path=path,
            query=parse_query(raw_query),
            headers=headers,
            body=b"".join(self._body),
            remote_address=self._transport.get_extra_info("peername"),
            secure=self._transport.get_extra_info("sslcontext") is not None,
            upgrade=upgrade,
            body_too_large=self._too_large,
        )
        self._body = []
        responder = _Responder(self, request)
        self._busy = responder
        self._pending = 0
        server = self.server
        if not server.handles(target):
            if upgrade:
                responder.reject(404, b"Not Found", [("Content-Type", "text/plain")])
            elif server.http_handler is not None:
                server.spawn(self._run_app_handler(request, responder))
            else:
                responder.respond(404, [("Content-Type", "text/plain")], b"Not Found")
        elif upgrade:
            try:
                responder.ws_headers, responder.ws_extensions = negotiate(
                    headers, per_message_deflate=server.per_message_deflate
                )
            except HandshakeError as exc:
                logger.debug("bad websocket handshake: %s", exc)
                responder.reject(
                    400, b"Bad request", [("Connection", "close"), ("Content-type", "text/html")]
                )
                return
            self._guarded(server.handle_websocket, request, responder)
        else:
            self._guarded(server.handle_request, request, responder)

    def _guarded(self, handle: Any, request: Request, responder: _Responder) -> None:
        """A bug in the engine must cost this request, not the connection's other peers."""
        try:
            handle(request, responder)
        except Exception:
            logger.exception("error handling %s %s", request.method, request.url)
            if responder is self._busy:
                responder.respond(500, [("Content-Type", "text/plain")], b"Internal Server Error")

    async def _run_app_handler(self, request: Request, responder: _Responder) -> None:
        assert self.server.http_handler is not None
        try:
            response = await self.server.http_handler(request)
        except Exception:
            logger.exception("error in HTTP handler for %s %s", request.method, request.path)
            response = HttpResponse(
                500, [("Content-Type", "text/plain")], b"Internal Server Error"
            )
        responder.respond(response.status, response.headers, response.body)

    # ------------------------------------------------------------------ writing

    def _send_response(
        self, responder: _Responder, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        if responder is not self._busy or self._closed:
            return  # the connection went away while the answer was being prepared
        self._busy = None
        conn = self._conn
        raw_headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
        raw_headers.extend(
            (n.encode("latin-1"), v.encode("latin-1")) for n, v in responder.extra_headers
        )
        if not any(n.lower() == b"content-length" for n, _ in raw_headers):
            raw_headers.append((b"Content-Length", str(len(body)).encode()))
        if responder.request.body_too_large or self._too_large:
            raw_headers.append((b"Connection", b"close"))
        try:
            data = conn.send(
                h11.Response(status_code=status, headers=raw_headers, reason=_reason(status))
            )
            if body:
                data += conn.send(h11.Data(data=body))
            data += conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            logger.exception("could not send response")
            self.abort()
            return
        assert self._transport is not None
        self._transport.write(data)
        self._next_cycle()

    def _next_cycle(self) -> None:
        conn = self._conn
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
            # Not reading the rest of a refused body: close instead.
            self._close()
            return
        conn.start_next_cycle()
        if self.server._closing:
            self._close()
            return
        self._arm(self.server.keepalive_timeout)
        self._process()

    def _bad_request(self, status: int) -> None:
        if self._conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = b"Bad Request" if status == 400 else b""
            try:
                data = self._conn.send(
                    h11.Response(
                        status_code=status,
                        reason=_reason(status),
                        headers=[(b"Content-Length", str(len(body)).encode()),
                                 (b"Connection", b"close")],
                    )
                )
                data += self._conn.send(h11.Data(data=body)) if body else b""
                data += self._conn.send(h11.EndOfMessage())
                assert self._transport is not None
                self._transport.write(data)
            except h11.LocalProtocolError:
                pass
        self._close()

    def _switch_to_websocket(
        self, responder: _Responder, headers: list[tuple[str, str]]
    ) -> WebSocketTransport | None:
        if responder is not self._busy or self._closed or self._transport is None:
            return None
        self._busy = None
        conn = self._conn
        raw = [
            (n.encode("latin-1"), v.encode("latin-1"))
            for n, v in (*responder.ws_headers, *headers)
        ]
        self._transport.write(conn.send(h11.InformationalResponse(status_code=101, headers=raw)))
        trailing, _ = conn.trailing_data
        # The HTTP parser is never used again on this connection: drop it (about 1 KiB
        # per WebSocket connection).
        self._conn = None  # type: ignore[assignment]
        ws = WebSocketTransport(
            self._transport,
            self.server.loop,
            max_message_size=self.server.max_http_buffer_size,
            extensions=responder.ws_extensions,
            batcher=self.server.write_batcher,
            high_water=self.server.session_config.write_buffer_high_water,
        )
        self._ws = ws
        self._transport.set_write_buffer_limits(
            high=self.server.session_config.write_buffer_high_water
        )
        if trailing:
            self.server.loop.call_soon(self._feed_ws, trailing)
        return ws

    def _feed_ws(self, data: bytes) -> None:
        if self._ws is not None and not self._closed:
            self._ws.receive_data(data)

    def _reject_upgrade(
        self, responder: _Responder, status: int, body: bytes, headers: list[tuple[str, str]]
    ) -> None:
        # Raw bytes like Node's abortUpgrade, then close: the connection is not reusable.
        if responder is not self._busy or self._closed or self._transport is None:
            return
        self._busy = None
        lines = [f"HTTP/1.1 {status} {_reason(status).decode()}"]
        lines += [f"{n}: {v}" for n, v in headers]
        lines.append(f"Content-Length: {len(body)}")
        self._transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        self._close()

    # ------------------------------------------------------------------ timers and closing

    def _arm(self, delay: float) -> None:
        self._cancel_timer()
        self._timer = self.server.loop.call_later(delay, self._on_timeout)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timeout(self) -> None:
        self._timer = None
        if self._busy is None and self._ws is None:
            # Headers that never end, or an idle keep-alive connection.
            self._close()

    def close_when_idle(self) -> None:
        """Used at shutdown: close now unless a response is being prepared."""
        if self._busy is None and self._ws is None:
            self._close()

    def _close(self) -> None:
        if self._transport is not None and not self._closed:
            self._closed = True
            self._cancel_timer()
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._closed = True
            self._cancel_timer()
            self._transport.abort()


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class _Responder:
    """Answers one request on an HttpProtocol; see ``polling.Responder``."""

    __slots__ = ("extra_headers", "protocol", "request", "ws_extensions", "ws_headers")

    def __init__(self, protocol: HttpProtocol, request: Request) -> None:
        self.protocol = protocol
        self.request = request
        self.extra_headers: list[tuple[str, str]] = []
        self.ws_headers: list[tuple[str, str]] = []
        self.ws_extensions: list[Extension] = []

    def respond(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.protocol._send_response(self, status, headers, body)

    def aborted(self) -> None:
        session = self.protocol.server.sessions.get(self.request.query.get("sid", ""))
        transport: Any = session.transport if session is not None else None
        if transport is not None and transport.name == "polling":
            transport.on_poll_aborted(self)

    # UpgradeAcceptor
    def accept(self, headers: list[tuple[str, str]]) -> WebSocketTransport | None:
        return self.protocol._switch_to_websocket(self, headers)

    def reject(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        self.protocol._reject_upgrade(self, status, body, headers)
