"""The Engine.IO server: request verification, handshakes, the session registry, handlers.

Transport-agnostic: the raw asyncio HTTP server (``http.py``) and the ASGI adapter
(``asgi.py``) both parse requests and call ``handle_request`` / ``handle_websocket``.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import inspect
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, overload

import orjson

from .cors import CorsOptions, same_origin
from .polling import PollingTransport, Responder
from .request import HttpResponse, Request
from .session import Session, SessionConfig
from .timers import SlottedClock
from .websocket import WriteBatcher

if TYPE_CHECKING:
    from .http import HeadLimiter, HttpProtocol

logger = logging.getLogger(__name__)

__all__ = ["ERROR_MESSAGES", "CookieOptions", "EngineServer", "Forbidden"]

UNKNOWN_TRANSPORT = 0
UNKNOWN_SID = 1
BAD_HANDSHAKE_METHOD = 2
BAD_REQUEST = 3
FORBIDDEN = 4
UNSUPPORTED_PROTOCOL_VERSION = 5

#: Error bodies exactly as Node's engine.io sends them; clients match on these strings.
#: The message of a handshake refused because the server is stopping (HTTP 503).
SHUTTING_DOWN = "Server shutting down"
ERROR_MESSAGES = {
    UNKNOWN_TRANSPORT: "Transport unknown",
    UNKNOWN_SID: "Session ID unknown",
    BAD_HANDSHAKE_METHOD: "Bad handshake method",
    BAD_REQUEST: "Bad request",
    FORBIDDEN: "Forbidden",
    UNSUPPORTED_PROTOCOL_VERSION: "Unsupported protocol version",
}

# Memory is reclaimed once this many sessions closed, RECLAIM_DELAY seconds after the
# last of them, and at most once per RECLAIM_INTERVAL seconds.
RECLAIM_AFTER_CLOSES = 1000
RECLAIM_DELAY = 2.0
RECLAIM_INTERVAL = 60.0


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``: returns freed heap pages to the system (Linux only)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None


_malloc_trim = _find_malloc_trim()


def _freeze_after_full_collection(phase: str, info: dict[str, Any]) -> None:
    """A ``gc.callbacks`` hook: after a full collection, move its survivors out of the
    collector's sight (``gc.freeze``), so the next full collection scans only what was
    allocated since, not every connection's objects again.

    Each server connection is about 55 GC-tracked objects that live as long as it does.
    Python runs a full collection each time the long-lived objects grew by 25%, and its
    pause grows with the heap: 60-210 ms at 5,000 connections (270k objects), measured
    in the middle of a broadcast's write loop, the whole of fanout-5000's p99. Frozen
    objects are still freed by reference counting when their connection closes; a
    reference cycle among them waits for ``_reclaim`` (unfreeze, collect, freeze again).
    """
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


def install_gc_freeze() -> None:
    """Freeze the survivors of every full collection (once per process; idempotent)."""
    if _freeze_after_full_collection not in gc.callbacks:
        gc.callbacks.append(_freeze_after_full_collection)

_EVENTS = ("connection", "message", "close", "headers", "initial_headers", "connection_error")


# Results that are certainly not awaitable: checked first because inspect.isawaitable()
# costs an ABC lookup, and handlers run once per message.
_PLAIN_TYPES = frozenset({type(None), bool, int, float, str, bytes, list, tuple, dict})


def is_awaitable(value: object) -> bool:
    """``inspect.isawaitable`` with a fast path for the usual handler results."""
    kind = type(value)
    if kind in _PLAIN_TYPES:
        return False
    return kind is CoroutineType or inspect.isawaitable(value)


class Forbidden(Exception):
    """Raise from ``allow_request`` to refuse with a message the client will see."""

    def __init__(self, message: str = "Forbidden") -> None:
        super().__init__(message)
        self.message = message


class CookieOptions:
    """The ``io`` cookie set on the handshake response (off unless configured)."""

    __slots__ = ("http_only", "name", "path", "same_site")

    def __init__(
        self, name: str = "io", *, path: str = "/", http_only: bool = True, same_site: str = "Lax"
    ) -> None:
        self.name = name
        self.path = path
        self.http_only = http_only
        self.same_site = same_site

    def header(self, sid: str) -> str:
        parts = [f"{self.name}={sid}", f"Path={self.path}"]
        if self.http_only:
            parts.append("HttpOnly")
        if self.same_site:
            parts.append(f"SameSite={self.same_site}")
        return "; ".join(parts)


class UpgradeAcceptor(Protocol):
    """Answers a WebSocket upgrade request: refuse it, or switch protocols."""

    def reject(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None: ...

    def accept(self, headers: list[tuple[str, str]]) -> Any:
        """Switch protocols, adding ``headers``; return the Transport, None if the peer left.

        The acceptor validated the WebSocket handshake itself before the server saw it.
        """
        ...


class RequestResponder(Responder, Protocol):
    extra_headers: list[tuple[str, str]]


AllowRequest = Callable[[Request], "bool | Awaitable[bool | None] | None"]
HttpHandler = Callable[[Request], Awaitable[HttpResponse]]
PathFileHandler = Callable[[Request], "HttpResponse | None"]

# The handlers of ``EngineServer.on``. A handler returns nothing, or an awaitable (a
# coroutine function's) that the server runs as a task; its errors are logged.
HandlerResult = Awaitable[object] | None
#: ``on("connection")``: a new session (after the handshake, or the first upgrade).
ConnectionHandler = Callable[[Session], HandlerResult]
#: ``on("message")``: a message of a session, str for text, bytes for binary.
MessageHandler = Callable[[Session, str | bytes], HandlerResult]
#: ``on("close")``: a session closed, with the reason (Node's reasons).
CloseHandler = Callable[[Session, str], HandlerResult]
#: ``on("headers")`` / ``on("initial_headers")``: adds response headers to the list in
#: place (initial: handshake responses only); called inline, never awaited.
HeadersHook = Callable[[list[tuple[str, str]], Request], None]
#: ``on("connection_error")``: a refused request, with the Engine.IO error code and message.
ConnectionErrorHandler = Callable[[Request, int, str], HandlerResult]

_ConnectionT = TypeVar("_ConnectionT", bound=ConnectionHandler)
_MessageT = TypeVar("_MessageT", bound=MessageHandler)
_CloseT = TypeVar("_CloseT", bound=CloseHandler)
_HeadersT = TypeVar("_HeadersT", bound=HeadersHook)
_ConnectionErrorT = TypeVar("_ConnectionErrorT", bound=ConnectionErrorHandler)


class EngineServer:
    """An Engine.IO v4 server.

    Times are in seconds, sizes in bytes. Handlers::

        @server.on("connection")
        def connected(session): ...

        @server.on("message")
        def message(session, data): ...      # str for text, bytes for binary

        @server.on("close")
        def closed(session, reason): ...

    Plain functions are called inline; coroutine functions are run as tasks.

    HTTP edge (raw server; see ``http.py``): a request head must be complete
    ``header_timeout`` seconds after its first byte (a new connection: after the accept);
    a body ``body_timeout`` seconds after the head plus one second per ``min_body_rate``
    bytes received (None: ``body_timeout`` is absolute); later bytes never restart these.
    At most ``max_connections_in_head`` connections (``..._per_address`` per peer
    address) may have a request partly received; above, the connection is answered 503
    and closed. Requests that arrive in one read are never counted. None disables a cap.
    Behind a reverse proxy every client has the proxy's address: raise or disable the
    per-address cap there. Idle keep-alive connections close after ``keepalive_timeout``.

    Origins: when ``cors`` names the allowed origins (not ``"*"``/True/False), an engine
    request (polling or WebSocket upgrade; not a preflight) whose ``Origin`` is neither
    one of them nor the request's own host is refused 403 ``{"code":4,...}``: that is
    what keeps a foreign page from opening a WebSocket with the user's cookies.
    ``allow_missing_origin=False`` also refuses requests without ``Origin`` (non-browser
    clients), except browsers' same-origin requests (``Sec-Fetch-Site: same-origin``):
    set it when cookies authenticate the handshake.
    """

    def __init__(
        self,
        *,
        path: str = "/engine.io/",
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
        upgrade_timeout: float = 10.0,
        max_http_buffer_size: int = 1_000_000,
        transports: tuple[str, ...] | list[str] = ("polling", "websocket"),
        allow_upgrades: bool = True,
        cors: CorsOptions | None = None,
        cookie: CookieOptions | bool | None = None,
        allow_request: AllowRequest | None = None,
        per_message_deflate: bool = False,
        write_buffer_high_water: int = 64 * 1024,
        max_write_buffer: int = 1024 * 1024,
        congestion_timeout: float = 30.0,
        max_header_size: int = 16 * 1024,
        header_timeout: float = 10.0,
        body_timeout: float = 20.0,
        min_body_rate: float | None = 4096,
        keepalive_timeout: float = 5.0,
        max_connections_in_head: int | None = 1000,
        max_connections_in_head_per_address: int | None = 16,
        allow_missing_origin: bool = True,
        http_handler: HttpHandler | None = None,
        reclaim_memory: bool = True,
        freeze_gc: bool = True,
    ) -> None:
        for name in transports:
            if name not in ("polling", "websocket"):
                raise ValueError(f"unknown transport {name!r}")
        if not path.endswith("/"):
            path += "/"
        self.path = path
        self.transports = tuple(transports)
        self.allow_upgrades = allow_upgrades
        self.max_http_buffer_size = max_http_buffer_size
        self.cors = cors
        self.cookie = CookieOptions() if cookie is True else (cookie or None)
        self.allow_request = allow_request
        self.per_message_deflate = per_message_deflate
        self.max_header_size = max_header_size
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.min_body_rate = min_body_rate
        self.keepalive_timeout = keepalive_timeout
        self.max_connections_in_head = max_connections_in_head
        self.max_connections_in_head_per_address = max_connections_in_head_per_address
        self.allow_missing_origin = allow_missing_origin
        self._head_limiter: HeadLimiter | None = None  # made by http.py on first use
        self.http_handler = http_handler
        #: Files served under ``path`` before the engine looks at a request (Socket.IO's
        #: ``serve_client``): returns an answer, or None to let the engine answer.
        self.path_file_handler: PathFileHandler | None = None
        #: After many sessions closed, collect garbage and trim the heap once (see _reclaim).
        self.reclaim_memory = reclaim_memory
        #: Freeze the survivors of each full garbage collection, from the first session on
        #: (process-wide: see ``_freeze_after_full_collection``).
        self.freeze_gc = freeze_gc
        self._closed_since_reclaim = 0
        self._last_reclaim = -RECLAIM_INTERVAL
        upgrades = ("websocket",) if allow_upgrades and "websocket" in self.transports else ()
        self.session_config = SessionConfig(
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            upgrade_timeout=upgrade_timeout,
            max_payload=max_http_buffer_size,
            upgrades=upgrades,
            write_buffer_high_water=write_buffer_high_water,
            max_write_buffer=max_write_buffer,
            congestion_timeout=congestion_timeout,
        )
        self.sessions: dict[str, Session] = {}
        self._handlers: dict[str, list[Callable[..., Any]]] = {e: [] for e in _EVENTS}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._write_batcher: WriteBatcher | None = None
        self._session_clock: SlottedClock | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[HttpProtocol] = set()
        self._closing = False

    # ------------------------------------------------------------------ handlers

    @overload
    def on(self, event: Literal["connection"]) -> Callable[[_ConnectionT], _ConnectionT]: ...
    @overload
    def on(self, event: Literal["connection"], handler: _ConnectionT) -> _ConnectionT: ...
    @overload
    def on(self, event: Literal["message"]) -> Callable[[_MessageT], _MessageT]: ...
    @overload
    def on(self, event: Literal["message"], handler: _MessageT) -> _MessageT: ...
    @overload
    def on(self, event: Literal["close"]) -> Callable[[_CloseT], _CloseT]: ...
    @overload
    def on(self, event: Literal["close"], handler: _CloseT) -> _CloseT: ...
    @overload
    def on(
        self, event: Literal["headers", "initial_headers"]
    ) -> Callable[[_HeadersT], _HeadersT]: ...
    @overload
    def on(
        self, event: Literal["headers", "initial_headers"], handler: _HeadersT
    ) -> _HeadersT: ...
    @overload
    def on(
        self, event: Literal["connection_error"]
    ) -> Callable[[_ConnectionErrorT], _ConnectionErrorT]: ...
    @overload
    def on(
        self, event: Literal["connection_error"], handler: _ConnectionErrorT
    ) -> _ConnectionErrorT: ...

    def on(self, event: str, handler: Callable[..., Any] | None = None) -> Any:
        """Register a handler, directly or as a decorator (see the handler types above)."""
        if event not in self._handlers:
            raise ValueError(f"unknown event {event!r}; expected one of {_EVENTS}")

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self._handlers[event].append(fn)
            return fn

        return register(handler) if handler is not None else register

    def _emit(self, event: str, *args: Any) -> None:
        for handler in self._handlers[event]:
            self.call_handler(handler, *args)

    def call_handler(self, handler: Callable[..., Any], *args: Any) -> None:
        """Run an application handler; its errors are logged, never raised into I/O."""
        try:
            result = handler(*args)
        except Exception:
            logger.exception("error in handler %r", handler)
            return
        if is_awaitable(result):
            self.spawn(result)

    def spawn(self, awaitable: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run a coroutine as a task the server keeps track of (and logs the errors of)."""
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("error in handler task", exc_info=task.exception())

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def session_clock(self) -> SlottedClock:
        """The sessions' timers (heartbeats, upgrades): one loop timer per 10 ms slot."""
        if self._session_clock is None:
            self._session_clock = SlottedClock(self.loop)
        return self._session_clock

    @property
    def write_batcher(self) -> WriteBatcher:
        """Coalesces WebSocket writes per loop iteration (see ``websocket.WriteBatcher``)."""
        if self._write_batcher is None:
            self._write_batcher = WriteBatcher(self.loop)
        return self._write_batcher

    @property
    def clients_count(self) -> int:
        return len(self.sessions)

    # ------------------------------------------------------------------ HTTP requests

    def handles(self, url: str) -> bool:
        return url.startswith(self.path)

    def handle_request(self, request: Request, responder: RequestResponder) -> None:
        """Answer one HTTP request to the engine path (polling, preflight, errors)."""
        cors = self.cors
        if cors is not None:
            if request.method == "OPTIONS":
                headers = cors.preflight_headers(
                    request.origin, request.headers.get("access-control-request-headers")
                )
                responder.extra_headers = headers
                responder.respond(204, [("Content-Length", "0")], b"")
                return
            responder.extra_headers = cors.response_headers(request.origin)
        if self.path_file_handler is not None:
            # Before the origin guard, as Node does: a script is not a session.
            found = self.path_file_handler(request)
            if found is not None:
                responder.respond(found.status, found.headers, found.body)
                return
        if not self._origin_allowed(request):
            self._abort_request(request, responder, FORBIDDEN)
            return
        code = self._verify(request)
        if code is not None:
            self._abort_request(request, responder, code)
            return
        sid = request.query.get("sid")
        if sid:
            session = self.sessions[sid]
            transport = session.transport
            if not isinstance(transport, PollingTransport):
                # transport=websocket without upgrade headers, for a WebSocket session.
                self._abort_request(request, responder, BAD_REQUEST)
                return
            responder.extra_headers = self._hook_headers(
                request, responder.extra_headers, handshake_sid=None
            )
            if request.method == "GET":
                transport.on_poll(responder)
            elif request.method == "POST":
                if request.body_too_large:
                    # Like the reference: refuse the body, keep the session. The client
                    # closes its side on the 413 ("transport error").
                    responder.respond(413, [], b"")
                elif request.headers.get("content-type") == "application/octet-stream":
                    # Binary bodies are Engine.IO v3; the reference fails the session.
                    responder.respond(400, [], b"")
                    session.on_transport_error(transport, "invalid content")
                else:
                    transport.on_data(request.body, responder)
            else:
                responder.respond(500, [], b"")
            return
        if self.allow_request is not None:
            self._check_then(request, lambda: self._handshake_polling(request, responder),
                             lambda code, msg: self._abort_request(request, responder, code, msg))
            return
        self._handshake_polling(request, responder)

    def _origin_allowed(self, request: Request) -> bool:
        """The cross-site WebSocket hijacking guard (see the class docstring)."""
        headers = request.headers
        origin = headers.get("origin")
        if origin is None:
            return self.allow_missing_origin or headers.get("sec-fetch-site") == "same-origin"
        cors = self.cors
        return (
            cors is None
            or cors.accepts_origin(origin)
            or same_origin(origin, headers.get("host"))
        )

    def _verify(self, request: Request) -> int | None:
        """Node's ``verify()`` without ``allowRequest``: an error code, or None."""
        transport = request.query.get("transport")
        if transport not in self.transports:
            return UNKNOWN_TRANSPORT
        sid = request.query.get("sid")
        if sid:
            session = self.sessions.get(sid)
            if session is None:
                return UNKNOWN_SID
            if not request.upgrade and session.transport.name != transport:
                return BAD_REQUEST
            if request.query.get("EIO") != "4":  # every session here speaks v4
                return BAD_REQUEST
            return None
        if request.method != "GET":
            return BAD_HANDSHAKE_METHOD
        if transport == "websocket" and not request.upgrade:
            return BAD_REQUEST
        return None

    def _check_then(
        self,
        request: Request,
        proceed: Callable[[], None],
        refuse: Callable[[int, str | None], None],
    ) -> None:
        """Run ``allow_request`` (sync or async), then proceed or refuse."""
        assert self.allow_request is not None

        def decide(result: Any, error: BaseException | None) -> None:
            if isinstance(error, Forbidden):
                refuse(FORBIDDEN, error.message)
            elif error is not None:
                logger.error("allow_request failed", exc_info=error)
                refuse(FORBIDDEN, None)
            elif result is False:
                refuse(FORBIDDEN, None)
            else:
                proceed()

        try:
            result = self.allow_request(request)
        except Exception as exc:
            decide(None, exc)
            return
        if not inspect.isawaitable(result):
            decide(result, None)
            return

        async def wait() -> None:
            try:
                value = await result
            except Exception as exc:
                decide(None, exc)
            else:
                decide(value, None)

        self.spawn(wait())

    def _abort_request(
        self, request: Request, responder: Responder, code: int, message: str | None = None,
        status: int | None = None,
    ) -> None:
        self._emit("connection_error", request, code, ERROR_MESSAGES[code])
        if status is None:
            status = 403 if code == FORBIDDEN else 400
        body = orjson.dumps({"code": code, "message": message or ERROR_MESSAGES[code]})
        responder.respond(status, [("Content-Type", "application/json")], body)

    def _hook_headers(
        self, request: Request, headers: list[tuple[str, str]], *, handshake_sid: str | None
    ) -> list[tuple[str, str]]:
        """``headers`` plus the cookie (on a handshake) and what the hooks add."""
        if handshake_sid is None and not self._handlers["headers"]:
            return headers
        headers = list(headers)
        if handshake_sid is not None:
            if self.cookie is not None:
                headers.append(("Set-Cookie", self.cookie.header(handshake_sid)))
            for hook in self._handlers["initial_headers"]:
                hook(headers, request)
        for hook in self._handlers["headers"]:
            hook(headers, request)
        return headers

    def generate_id(self) -> str:
        """A new session id: 20 URL-safe characters, like Node's base64id."""
        while True:
            sid = secrets.token_urlsafe(15)
            if sid not in self.sessions:
                return sid

    def _open_session(self, sid: str, request: Request, transport: Any) -> Session:
        session = Session(sid, transport, self.session_config, self.session_clock,
                          request=request)
        transport.session = session
        session.on_message = self._on_session_message
        session.on_close = self._on_session_close
        self.sessions[sid] = session
        # Frozen cycles are freed by _reclaim only: without it, freezing would keep them.
        if self.freeze_gc and self.reclaim_memory and len(self.sessions) == 1:
            install_gc_freeze()
        session.open()
        return session

    def _handshake_polling(self, request: Request, responder: RequestResponder) -> None:
        if request.query.get("EIO") != "4":
            self._abort_request(request, responder, UNSUPPORTED_PROTOCOL_VERSION)
            return
        if self._closing:
            # 503: this server stops; another one (behind a balancer) can take the client.
            self._abort_request(request, responder, BAD_REQUEST, SHUTTING_DOWN, status=503)
            return
        sid = self.generate_id()
        responder.extra_headers = self._hook_headers(
            request, responder.extra_headers, handshake_sid=sid
        )
        transport = PollingTransport(self.loop)
        session = self._open_session(sid, request, transport)
        transport.on_poll(responder)
        self._emit("connection", session)

    # ------------------------------------------------------------------ WebSocket

    def handle_websocket(self, request: Request, acceptor: UpgradeAcceptor) -> None:
        """Answer a WebSocket upgrade request to the engine path."""
        if not self._origin_allowed(request):
            # 403 and the polling answer's body rather than Node's bare 400: a refused
            # origin is a policy decision the operator should recognise in any log.
            self._emit("connection_error", request, FORBIDDEN, ERROR_MESSAGES[FORBIDDEN])
            body = orjson.dumps({"code": FORBIDDEN, "message": ERROR_MESSAGES[FORBIDDEN]})
            acceptor.reject(
                403, body, [("Connection", "close"), ("Content-Type", "application/json")]
            )
            return
        code = self._verify(request)
        if code is not None:
            self._abort_upgrade(request, acceptor, code)
            return
        if self.allow_request is not None:
            self._check_then(
                request,
                lambda: self._accept_websocket(request, acceptor),
                lambda code, msg: self._abort_upgrade(request, acceptor, code, msg),
            )
            return
        self._accept_websocket(request, acceptor)

    def _abort_upgrade(
        self, request: Request, acceptor: UpgradeAcceptor, code: int, message: str | None = None,
        status: int = 400,
    ) -> None:
        # Node answers every refused upgrade with a bare 400 and a text/html message.
        self._emit("connection_error", request, code, ERROR_MESSAGES[code])
        body = (message or ERROR_MESSAGES[code]).encode()
        acceptor.reject(status, body, [("Connection", "close"), ("Content-type", "text/html")])

    def _accept_websocket(self, request: Request, acceptor: UpgradeAcceptor) -> None:
        sid = request.query.get("sid")
        if request.query.get("transport") != "websocket":
            # An upgrade asking for another transport: like the reference, complete the
            # WebSocket handshake and close it at once, without a session.
            transport = acceptor.accept(self._cors_headers(request))
            if transport is not None:
                transport.close()
            return
        if sid:
            session = self.sessions.get(sid)
            if session is None:  # closed while allow_request ran
                self._abort_upgrade(request, acceptor, UNKNOWN_SID)
                return
            transport = acceptor.accept(self._cors_headers(request))
            if transport is not None:
                transport.session = session
                # Refused (and the WebSocket closed) if already upgrading or upgraded,
                # as the reference does.
                session.begin_upgrade(transport)
            return
        if request.query.get("EIO") != "4":
            self._abort_upgrade(request, acceptor, UNSUPPORTED_PROTOCOL_VERSION)
            return
        if self._closing:
            self._abort_upgrade(request, acceptor, BAD_REQUEST, SHUTTING_DOWN, status=503)
            return
        sid = self.generate_id()
        headers = self._hook_headers(request, self._cors_headers(request), handshake_sid=sid)
        transport = acceptor.accept(headers)
        if transport is None:
            return
        session = self._open_session(sid, request, transport)
        self._emit("connection", session)

    def _cors_headers(self, request: Request) -> list[tuple[str, str]]:
        return self.cors.response_headers(request.origin) if self.cors is not None else []

    # ------------------------------------------------------------------ session events

    def _on_session_message(self, session: Session, data: str | bytes) -> None:
        for handler in self._handlers["message"]:
            self.call_handler(handler, session, data)

    def _on_session_close(self, session: Session, reason: str) -> None:
        self.sessions.pop(session.sid, None)
        self._emit("close", session, reason)
        if self.reclaim_memory:
            self._closed_since_reclaim += 1
            if self._closed_since_reclaim == RECLAIM_AFTER_CLOSES:
                self.loop.call_later(RECLAIM_DELAY, self._reclaim)

    def _reclaim(self) -> None:
        """Give memory back to the system after a flood of disconnects.

        Closed sessions are freed by reference counting, but what the system allocated
        for them stays with the process: glibc keeps freed heap pages, and asyncio's own
        transports are reference cycles that wait for a full collection. Both are done
        here, at most once per ``RECLAIM_INTERVAL`` and only after many closes, because a
        full collection holds the loop for a time that grows with the live heap.
        """
        now = self.loop.time()
        wait = self._last_reclaim + RECLAIM_INTERVAL - now
        if wait > 0:
            self.loop.call_later(wait, self._reclaim)
            return
        self._last_reclaim = now
        self._closed_since_reclaim = 0
        started = time.perf_counter()
        # Frozen objects are never collected: cycles among those of closed connections
        # (asyncio's transports are such cycles) are found only once thawed. The full
        # collection freezes the survivors again (see _freeze_after_full_collection).
        gc.unfreeze()
        gc.collect()
        if _malloc_trim is not None:
            _malloc_trim(0)
        logger.debug("reclaimed memory after disconnects in %.1f ms",
                     (time.perf_counter() - started) * 1000)

    # ------------------------------------------------------------------ running

    async def start(self, host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> None:
        """Listen on host:port inside the running loop, without blocking.

        Extra keyword arguments go to ``loop.create_server`` (``ssl``, ``backlog``...).
        """
        from .http import HttpProtocol

        loop = self.loop
        kwargs.setdefault("backlog", 2048)
        self._server = await loop.create_server(
            lambda: HttpProtocol(self), host, port, **kwargs
        )

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    def refuse_new_sessions(self) -> None:
        """Answer new handshakes 503 (the server is stopping); existing sessions go on.

        The listening socket stays open until ``stop()``: a long-polling client opens new
        connections for its requests (through a balancer too), and its last acks must
        still reach this server.
        """
        self._closing = True

    async def drain(self, timeout: float) -> bool:
        """First half of a graceful stop: take no new work, let the work in flight finish.

        Refuses new sessions, stops reading from every peer (no new packets reach the
        layers above), then waits up to ``timeout`` seconds for the tasks in flight
        (handlers, HTTP handlers). Sessions stay open, so answers still reach their peers;
        ``stop()`` closes them. True if every task finished.
        """
        self.refuse_new_sessions()
        for session in list(self.sessions.values()):
            session.hold_reading()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # A finishing task may start another (an answer's follow-up): wait for those too.
        while self._tasks:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.wait(list(self._tasks), timeout=remaining)
        return True

    async def stop(self, reason: str = "server shutting down", timeout: float = 5.0) -> None:
        """Stop accepting, close every session (peers get a close), close connections."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions.values()):
            session.close(reason, discard=True)
        for connection in list(self._connections):
            connection.close_when_idle()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), timeout)
            except TimeoutError:
                for connection in list(self._connections):
                    connection.abort()
            self._server = None
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()

    async def serve(self, host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> None:
        """Listen and serve until cancelled, then shut down gracefully."""
        await self.start(host, port, **kwargs)
        try:
            await asyncio.Future()
        finally:
            await self.stop()
