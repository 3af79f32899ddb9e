"""The raw asyncio HTTP/1.1 server: one ``asyncio.Protocol`` per TCP connection, on h11.

Routes requests to the engine path to the EngineServer, others to the application's
``http_handler``, and hands a connection over to the WebSocket transport after a 101.
No task per connection: everything runs in protocol callbacks and ``call_later`` timers.

Slow clients (slowloris): a request head must be complete ``header_timeout`` seconds after
its first byte (a new connection: after it was accepted), however the bytes trickle in; a
body must be complete ``body_timeout`` seconds after the head, plus one second per
``min_body_rate`` bytes received (a slow upload that keeps moving is not cut, a stalled or
trickling one is). Connections whose request is still arriving are capped
(``HeadLimiter``). A request that arrives complete in one read, the usual case, never
touches that accounting.

Refusals (413, 400, 408) are followed by a lingering close (``HttpProtocol.linger_close``):
the answer, a half-close, then whatever the peer still sends is read and dropped for a
bounded time, so the peer reads the answer instead of a connection reset.
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

__all__ = ["LINGER_MAX_BYTES", "LINGER_TIMEOUT", "HeadLimiter", "HttpProtocol"]

# Bytes a client may pipeline behind a request we have not answered yet.
_MAX_PIPELINED = 64 * 1024

#: Lingering close: at most this long, and this many bytes read and dropped, before the
#: connection is reset anyway. Enough for a refused upload of several MB on a LAN; a
#: client that reads its answer stops sending at the half-close well before that.
LINGER_TIMEOUT = 2.0
LINGER_MAX_BYTES = 16 * 1024 * 1024

#: Refused connections are logged at most once per this many seconds (with a count).
_LOG_INTERVAL = 10.0

# Written as raw bytes: h11 cannot answer a request whose head it has not parsed.
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
)
_BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
)


class HttpProtocol(asyncio.Protocol):
    __slots__ = (
        "_body",
        "_body_size",
        "_body_start",
        "_busy",
        "_closed",
        "_conn",
        "_discarder",
        "_idle",
        "_in_progress",
        "_peer",
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
        self._body_start = 0.0
        self._too_large = False
        # The responder of the request being answered; requests are answered in order.
        self._busy: _Responder | None = None
        self._pending = 0
        self._closed = False
        # Between requests of a keep-alive connection (not for a new one: its head
        # deadline runs from the accept).
        self._idle = False
        # Counted by the HeadLimiter: a request of this connection is partly received.
        self._in_progress = False
        self._peer: str | None = None
        self._discarder: _Discarder | None = None

    # ------------------------------------------------------------------ asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's declared type is the base class; a stream server gives a WriteTransport.
        self._transport = transport  # type: ignore[assignment]
        self.server._connections.add(self)
        # Absolute: later bytes do not restart it (a head trickled a byte at a time is
        # cut here all the same).
        self._arm(self.server.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._cancel_timer()
        if self._in_progress:
            self._release()
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
        elif self._idle:
            # The first byte of the next request on a keep-alive connection: from here
            # the head has header_timeout, and later bytes do not restart it.
            self._idle = False
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
        # Unless the request was refused meanwhile: then close now (asyncio still writes
        # out the answer first).
        return self._discarder is None

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
                if self._request is not None or not self._idle:
                    self._incomplete()
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
                self._idle = False
                self._request = event
                self._body = []
                self._body_size = 0
                self._too_large = False
                if self._content_length(event) > self.server.max_http_buffer_size:
                    self._refuse_body()
                    return
            elif isinstance(event, h11.Data):
                self._body_size += len(event.data)
                if self._body_size > self.server.max_http_buffer_size:
                    self._refuse_body()
                    return
                self._body.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._dispatch()
            elif isinstance(event, h11.ConnectionClosed):
                self._close()
                return

    def _incomplete(self) -> None:
        """A read ended inside a request (head or body): the slow path of a connection."""
        if self._request is not None and self._timer is None:
            # The head is in, the body is not: from now the body deadline runs.
            self._body_start = self.server.loop.time()
            self._arm(self.server.body_timeout)
        if not self._in_progress and not self._closed:
            if _head_limiter(self.server).enter(self):
                self._in_progress = True
            else:
                assert self._transport is not None
                self._transport.write(_BUSY_RESPONSE)
                self._close()

    def _release(self) -> None:
        self._in_progress = False
        _head_limiter(self.server).leave(self)

    def _refuse_body(self) -> None:
        """Answer a body bigger than max_http_buffer_size without reading it."""
        self._too_large = True
        self._body = []
        # Read and drop what still comes from now on, so the 413 reaches the client.
        self._start_discarding()
        self._dispatch()

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
        if self._in_progress:
            self._cancel_timer()  # the body deadline
            self._release()
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
            # HEAD: the headers GET would get (Content-Length included), no body.
            if body and responder.request.method != "HEAD":
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
            if conn.their_state is h11.SEND_BODY:
                # A refused body is still arriving: not read, but not reset either.
                self.linger_close()
            else:
                self._close()
            return
        conn.start_next_cycle()
        if self.server._closing:
            self._close()
            return
        self._idle = True
        self._arm(self.server.keepalive_timeout)
        self._process()

    def _bad_request(self, status: int) -> None:
        if self._conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = b"Bad Request" if status == 400 else b""
            request = self._request
            # A HEAD answer has GET's headers (Content-Length too), never a body.
            head = request is not None and request.method == b"HEAD"
            body_sent = b"" if head else body
            try:
                data = self._conn.send(
                    h11.Response(
                        status_code=status,
                        reason=_reason(status),
                        headers=[(b"Content-Length", str(len(body)).encode()),
                                 (b"Connection", b"close")],
                    )
                )
                data += self._conn.send(h11.Data(data=body_sent)) if body_sent else b""
                data += self._conn.send(h11.EndOfMessage())
                assert self._transport is not None
                self._transport.write(data)
            except h11.LocalProtocolError:
                pass
        # The rest of a bad request may still be on its way.
        self.linger_close()

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
        # None only from here on, where nothing reads it: typed as never None elsewhere.
        self._conn = None  # type: ignore[assignment]
        ws = WebSocketTransport(
            self._transport,
            self.server.loop,
            max_message_size=self.server.max_http_buffer_size,
            extensions=responder.ws_extensions,
            batcher=self.server.write_batcher,
            high_water=self.server.session_config.write_buffer_high_water,
            # After a 1009 (message too big) the peer may still be sending: let it read
            # the close frame instead of getting a reset.
            closer=self.linger_close,
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
        if self._busy is not None or self._ws is not None or self._closed:
            return
        if self._request is not None:
            # A body: body_timeout, plus one second per min_body_rate bytes received.
            server = self.server
            rate = server.min_body_rate
            if rate:
                left = (self._body_start + server.body_timeout + self._body_size / rate
                        - server.loop.time())
                if left > 0:
                    self._timer = server.loop.call_later(left, self._on_timeout)
                    return
            self._request_timeout()
        elif self._in_progress:
            self._request_timeout()  # a head that did not end in time
        else:
            # Nothing received: a silent new connection, or an idle keep-alive one.
            self._close()

    def _request_timeout(self) -> None:
        logger.debug("request not received in time from %s", self._peer)
        assert self._transport is not None
        self._transport.write(_TIMEOUT_RESPONSE)
        self.linger_close()

    def close_when_idle(self) -> None:
        """Used at shutdown: close now unless a response is being prepared."""
        if self._busy is None and self._ws is None:
            self._close()

    def _close(self) -> None:
        if self._transport is not None and not self._closed:
            self._closed = True
            self._cancel_timer()
            if self._in_progress:
                self._release()
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._closed = True
            self._cancel_timer()
            self._transport.abort()

    # ------------------------------------------------------------------ lingering close

    def _start_discarding(self, budget: int = LINGER_MAX_BYTES) -> _Discarder | None:
        """From now on, what the peer sends is read and dropped (never stored)."""
        transport = self._transport
        if self._discarder is None and transport is not None and not transport.is_closing():
            self._discarder = _Discarder(self, transport, budget)
            transport.set_protocol(self._discarder)
            transport.resume_reading()  # it may have been paused for backpressure
        return self._discarder

    def linger_close(
        self, timeout: float = LINGER_TIMEOUT, max_bytes: int = LINGER_MAX_BYTES
    ) -> None:
        """Close after the answer already written, without resetting a peer still sending.

        Half-closes (FIN after the buffered answer, when the transport can), then reads and
        drops what still arrives until the peer closes its side, ``timeout`` seconds pass
        or ``max_bytes`` were dropped (then the connection is reset). Closing with unread
        bytes would make the kernel send a reset, which a client sees instead of the
        answer. Idempotent; call it after the last write (nothing can be written after).
        The HttpProtocol's ``connection_lost`` still runs when the connection ends.
        """
        if self._closed and self._discarder is None:
            return
        self._closed = True
        self._cancel_timer()
        if self._in_progress:
            self._release()
        discarder = self._start_discarding(max_bytes)
        if discarder is not None:
            discarder.linger(timeout)


class _Discarder(asyncio.Protocol):
    """The protocol of a connection in its lingering close: counts bytes, keeps none."""

    __slots__ = ("_budget", "_owner", "_peer_done", "_timer", "_transport")

    def __init__(self, owner: HttpProtocol, transport: asyncio.Transport, budget: int) -> None:
        self._owner = owner
        self._transport = transport
        self._budget = budget
        self._peer_done = False
        self._timer: asyncio.TimerHandle | None = None

    def linger(self, timeout: float) -> None:
        """The answer is written: half-close, and end the connection within ``timeout``."""
        transport = self._transport
        if self._timer is not None or transport.is_closing():
            return
        if self._peer_done:
            transport.close()  # writes the answer out first
            return
        if transport.can_write_eof():
            transport.write_eof()
        self._timer = self._owner.server.loop.call_later(timeout, transport.abort)

    def data_received(self, data: bytes) -> None:
        self._budget -= len(data)
        if self._budget < 0:
            self._transport.abort()

    def eof_received(self) -> bool:
        self._peer_done = True
        # Before the answer is written (an application handler is still preparing it)
        # keep the connection to write it; after, close.
        return self._timer is None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._owner.connection_lost(exc)


class HeadLimiter:
    """Caps the connections whose request is still arriving (head, or body after it).

    A connection is counted from the end of a read that leaves its request incomplete to
    the moment the request is complete (or the connection ends), so requests that arrive
    in one read, and idle connections, are never counted. Above a cap the connection
    that just became incomplete is answered 503 and closed; refusals are logged at most
    once per ``_LOG_INTERVAL`` seconds, with a count.
    """

    __slots__ = ("_by_address", "_log_timer", "_refused", "count", "server")

    def __init__(self, server: EngineServer) -> None:
        self.server = server
        self.count = 0
        self._by_address: dict[str, int] = {}
        self._refused = 0
        self._log_timer: asyncio.TimerHandle | None = None

    def enter(self, protocol: HttpProtocol) -> bool:
        server = self.server
        total = server.max_connections_in_head
        per_address = server.max_connections_in_head_per_address
        address: str | None = None
        if per_address is not None:
            assert protocol._transport is not None
            peer = protocol._transport.get_extra_info("peername")
            # A Unix socket's peer name is not an address: only the total cap applies.
            if isinstance(peer, tuple) and peer:
                address = str(peer[0])
        if total is not None and self.count >= total:
            self._refuse(address)
            return False
        held = self._by_address.get(address, 0) if address is not None else 0
        if per_address is not None and address is not None and held >= per_address:
            self._refuse(address)
            return False
        self.count += 1
        if address is not None:
            self._by_address[address] = held + 1
        protocol._peer = address
        return True

    def leave(self, protocol: HttpProtocol) -> None:
        self.count -= 1
        address = protocol._peer
        if address is not None:
            held = self._by_address.get(address, 0) - 1
            if held > 0:
                self._by_address[address] = held
            else:
                self._by_address.pop(address, None)
            protocol._peer = None

    def _refuse(self, address: str | None) -> None:
        # Under attack this runs for every refused connection: count, log rarely.
        if self._log_timer is None:
            server = self.server
            logger.warning(
                "closed a connection from %s: too many connections are receiving a request "
                "(%d in all; max_connections_in_head=%s, max_connections_in_head_per_address"
                "=%s); further refusals are counted and logged every %g s",
                address or "?", self.count, server.max_connections_in_head,
                server.max_connections_in_head_per_address, _LOG_INTERVAL,
            )
            self._log_timer = server.loop.call_later(_LOG_INTERVAL, self._flush_log)
        else:
            self._refused += 1

    def _flush_log(self) -> None:
        self._log_timer = None
        if self._refused:
            server = self.server
            logger.warning(
                "closed %d more connections in %g s: too many receiving a request "
                "(max_connections_in_head=%s, max_connections_in_head_per_address=%s)",
                self._refused, _LOG_INTERVAL, server.max_connections_in_head,
                server.max_connections_in_head_per_address,
            )
            self._refused = 0
            self._log_timer = server.loop.call_later(_LOG_INTERVAL, self._flush_log)


def _head_limiter(server: EngineServer) -> HeadLimiter:
    limiter = server._head_limiter
    if limiter is None:
        limiter = server._head_limiter = HeadLimiter(server)
    return limiter


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
