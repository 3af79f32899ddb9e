"""The Socket.IO server: namespaces on top of an Engine.IO server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Literal, overload

from engineio_core import EngineServer, Session

from .adapter import InMemoryAdapter, RecoveryOptions
from .broadcast import BroadcastOperator, Rooms
from .client import Client
from .namespace import (
    Namespace,
    NamespaceMatcher,
    ParentNamespace,
    _ConnectionT,
    _ConnectMiddlewareT,
    _NewNamespaceT,
    _ServerSideEventT,
)
from .packet import JsonParser, Parser
from .socket import Socket

logger = logging.getLogger(__name__)

__all__ = ["Server"]

AdapterFactory = Callable[[Namespace], InMemoryAdapter]


class Server:
    """A Socket.IO v5 server.

    ::

        io = Server(cors=CorsOptions(origin="*"))

        @io.on("connection")
        def connected(socket):
            socket.join("lobby")

            @socket.on("chat")
            def chat(text):
                socket.to("lobby").emit("chat", text)
                return "ok"              # the ack

        await io.serve("127.0.0.1", 3000)

    Times are in seconds. Extra keyword arguments configure the Engine.IO server (see
    ``engineio_core.EngineServer``) when ``engine`` is not given. ``serve_client=True``
    serves the browser client at ``<path>socket.io.js`` (``.min.js``, ``.esm.min.js``,
    ``.msgpack.min.js`` and their ``.map``) as Node's ``serveClient`` does (see
    ``socketio_core.client_bundle``).
    """

    def __init__(
        self,
        engine: EngineServer | None = None,
        *,
        path: str | None = None,
        connect_timeout: float = 45.0,
        parser: Parser | None = None,
        adapter: AdapterFactory = InMemoryAdapter,
        connection_state_recovery: RecoveryOptions | bool | None = None,
        max_concurrent_handlers: int | None = 16,
        attachment_timeout: float = 30.0,
        serve_client: bool = False,
        **engine_options: Any,
    ) -> None:
        if engine is None:
            engine = EngineServer(path=path or "/socket.io/", **engine_options)
        elif engine_options or path is not None:
            raise TypeError("with engine=..., give path and engine options to the EngineServer")
        self.engine = engine
        if serve_client:
            # Node's serveClient (on by default there; opt-in here).
            from .client_bundle import ClientBundle

            engine.path_file_handler = ClientBundle(engine.path)
        self.connect_timeout = connect_timeout
        #: Handler coroutines in flight per connection before it is read no more (None:
        #: no bound). See ``Client.spawn_handler``.
        if max_concurrent_handlers is not None and max_concurrent_handlers < 1:
            raise ValueError("max_concurrent_handlers must be at least 1 (or None)")
        self.max_concurrent_handlers = max_concurrent_handlers
        #: Time for the binary attachments of a packet to arrive after its text part.
        self.attachment_timeout = attachment_timeout
        self.parser: Parser = parser or JsonParser()
        self.adapter_factory = adapter
        if connection_state_recovery is True:
            connection_state_recovery = RecoveryOptions()
        self.recovery: RecoveryOptions | None = connection_state_recovery or None
        self._nsps: dict[str, Namespace] = {}
        self._parent_nsps: list[ParentNamespace] = []
        self._handlers: dict[str, list[Callable[..., Any]]] = {}
        engine.on("connection", self._on_engine_connection)
        engine.on("close", self._on_engine_close)
        self.sockets = self.of("/")

    # ------------------------------------------------------------------ namespaces

    def of(self, name: str | NamespaceMatcher) -> Namespace:
        """The namespace with this name (created on first use), or a dynamic one for a
        compiled regex or a predicate ``(name, auth) -> bool`` (may be async)."""
        if isinstance(name, str):
            if not name.startswith("/"):
                name = "/" + name
            nsp = self._nsps.get(name)
            if nsp is None:
                nsp = self._nsps[name] = Namespace(self, name)
                if name != "/":
                    self.sockets._emit_reserved("new_namespace", nsp)
            return nsp
        parent = ParentNamespace(self, name)
        self._parent_nsps.append(parent)
        return parent

    @property
    def namespaces(self) -> list[Namespace]:
        """The namespaces that exist now (dynamic ones once a client connected to them)."""
        return list(self._nsps.values())

    async def _match_dynamic(self, name: str, auth: dict[str, Any]) -> Namespace | None:
        for parent in list(self._parent_nsps):
            try:
                matched = await parent.matches(name, auth)
            except Exception:
                logger.exception("dynamic namespace matcher failed")
                matched = False
            if matched:
                existing = self._nsps.get(name)
                if existing is not None:
                    return existing
                child = parent.create_child(name)
                self._nsps[name] = child
                self.sockets._emit_reserved("new_namespace", child)
                return child
        return None

    def _on_socket_removed(self, nsp: Namespace) -> None:
        """Hook for cleaning up empty child namespaces (kept, like Node's default)."""

    # ------------------------------------------------------------------ main namespace

    # The same overloads as Namespace.on (see there for the ignores).
    @overload
    def on(  # type: ignore[overload-overlap]
        self, event: Literal["connection"]
    ) -> Callable[[_ConnectionT], _ConnectionT]: ...
    @overload
    def on(self, event: Literal["connection"], handler: _ConnectionT) -> _ConnectionT: ...
    @overload
    def on(  # type: ignore[overload-overlap]
        self, event: Literal["new_namespace"]
    ) -> Callable[[_NewNamespaceT], _NewNamespaceT]: ...
    @overload
    def on(self, event: Literal["new_namespace"], handler: _NewNamespaceT) -> _NewNamespaceT: ...
    @overload
    def on(self, event: str) -> Callable[[_ServerSideEventT], _ServerSideEventT]: ...
    @overload
    def on(self, event: str, handler: _ServerSideEventT) -> _ServerSideEventT: ...

    def on(self, event: str, handler: Callable[..., Any] | None = None) -> Any:
        """``connection`` and ``new_namespace`` handlers of the main namespace, and
        server-side events (``server_side_emit`` of other nodes) for other names."""
        if handler is None:
            return self.sockets.on(event)
        return self.sockets.on(event, handler)

    def use(self, middleware: _ConnectMiddlewareT) -> _ConnectMiddlewareT:
        return self.sockets.use(middleware)

    def to(self, *rooms: Rooms) -> BroadcastOperator:
        return self.sockets.to(*rooms)

    in_ = to

    def except_(self, *rooms: Rooms) -> BroadcastOperator:
        return self.sockets.except_(*rooms)

    @property
    def volatile(self) -> BroadcastOperator:
        return self.sockets.volatile

    @property
    def local(self) -> BroadcastOperator:
        return self.sockets.local

    def compress(self, compress: bool) -> BroadcastOperator:
        return self.sockets.compress(compress)

    def timeout(self, seconds: float) -> BroadcastOperator:
        return self.sockets.timeout(seconds)

    def emit(self, event: str, *args: Any) -> None:
        self.sockets.emit(event, *args)

    def send(self, *args: Any) -> None:
        self.sockets.send(*args)

    async def emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        return await self.sockets.emit_with_ack(event, *args)

    async def fetch_sockets(self) -> list[Socket]:
        return await self.sockets.fetch_sockets()

    def sockets_join(self, *rooms: Rooms) -> None:
        self.sockets.sockets_join(*rooms)

    def sockets_leave(self, *rooms: Rooms) -> None:
        self.sockets.sockets_leave(*rooms)

    def disconnect_sockets(self, close: bool = False) -> None:
        self.sockets.disconnect_sockets(close)

    def server_side_emit(self, event: str, *args: Any) -> None:
        self.sockets.server_side_emit(event, *args)

    async def server_side_emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        return await self.sockets.server_side_emit_with_ack(event, *args)

    async def server_count(self) -> int:
        """How many servers share the main namespace (1 without a cluster adapter)."""
        return await self.sockets.adapter.server_count()

    # ------------------------------------------------------------------ engine events

    def _on_engine_connection(self, session: Session) -> None:
        Client(self, session)

    def _on_engine_close(self, session: Session, reason: str) -> None:
        client = session.data
        if isinstance(client, Client):
            client.on_close(reason)

    # ------------------------------------------------------------------ running

    async def start(self, host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> None:
        # Adapters made before the loop ran (``Server(...)`` at import time) start now.
        for nsp in [*self._nsps.values(), *self._parent_nsps]:
            nsp.adapter.start()
        await self.engine.start(host, port, **kwargs)

    @property
    def port(self) -> int:
        return self.engine.port

    async def stop(self) -> None:
        """Disconnect every socket (``server shutting down``), close adapters and the engine."""
        for nsp in list(self._nsps.values()):
            for socket in list(nsp.sockets.values()):
                socket._on_close("server shutting down")
            nsp.adapter.close()
        for parent in self._parent_nsps:
            parent.adapter.close()  # a dynamic namespace's own adapter (cluster channels)
        await self.engine.stop("server shutting down")

    async def shutdown(self, timeout: float = 10.0) -> bool:
        """Graceful stop: no new connections or events, handlers in flight finish (for
        at most ``timeout`` seconds, their acks are sent), then ``stop()``.

        Clients see their transport close, not a server disconnect, so they reconnect by
        themselves (behind a load balancer: to another node) and, with connection state
        recovery, get their session back. True if every handler finished in time.
        """
        finished = await self.engine.drain(timeout)
        await self.stop()
        return finished

    async def serve(self, host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> None:
        await self.start(host, port, **kwargs)
        try:
            await asyncio.Future()
        finally:
            await self.stop()

    def asgi_app(self, other_app: Any = None) -> Any:
        """An ASGI application serving this server (and ``other_app`` for other paths)."""
        from engineio_core.asgi import EngineASGIApp

        return EngineASGIApp(self.engine, other_app)


