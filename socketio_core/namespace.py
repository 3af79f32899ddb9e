"""Namespaces: a set of sockets with their own middlewares, handlers and rooms."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from engineio_core.server import HandlerResult

from .broadcast import BroadcastOperator, Rooms
from .errors import ConnectRefused
from .packet import RESERVED_EVENTS, Packet, PacketType
from .socket import Socket

if TYPE_CHECKING:
    from .client import Client
    from .server import Server

logger = logging.getLogger(__name__)

__all__ = ["SERVER_SIDE_RESERVED_EVENTS", "Namespace", "ParentNamespace"]

#: Names that are never server-side events: the namespace's own events and the reserved
#: event names of the protocol (Node refuses "connect", "connection", "new_namespace").
SERVER_SIDE_RESERVED_EVENTS = RESERVED_EVENTS | {"connection", "new_namespace"}

# Handler types (plain functions are called inline, coroutine functions run as tasks).
#: ``use()``: gets the socket before it connects; raise ConnectRefused to refuse it.
ConnectMiddleware = Callable[[Socket], HandlerResult]
#: ``on("connection")``: gets each new socket.
ConnectionHandler = Callable[[Socket], HandlerResult]
#: ``on("new_namespace")`` (main namespace): gets each namespace created on demand.
NewNamespaceHandler = Callable[["Namespace"], HandlerResult]
#: ``on(name)`` for other names: gets the arguments of another node's ``server_side_emit``;
#: what it returns (an awaitable: what that gives) is the ack when one was asked.
ServerSideEventHandler = Callable[..., object]
#: Any of the above, as stored.
Handler = Callable[..., Any]

_ConnectionT = TypeVar("_ConnectionT", bound=ConnectionHandler)
_NewNamespaceT = TypeVar("_NewNamespaceT", bound=NewNamespaceHandler)
_ServerSideEventT = TypeVar("_ServerSideEventT", bound=ServerSideEventHandler)
_ConnectMiddlewareT = TypeVar("_ConnectMiddlewareT", bound=ConnectMiddleware)


class Namespace:
    """``server.of("/chat")``: sockets, middlewares, rooms and broadcasts of one namespace."""

    def __init__(self, server: Server, name: str) -> None:
        self.server = server
        self.name = name
        self.sockets: dict[str, Socket] = {}
        self._middlewares: list[ConnectMiddleware] = []
        self._handlers: dict[str, list[Handler]] = {}
        self._ack_ids = itertools.count()
        self.adapter = server.adapter_factory(self)
        self._all = BroadcastOperator(self.adapter)

    def __repr__(self) -> str:
        return f"<Namespace {self.name}>"

    def next_ack_id(self) -> int:
        return next(self._ack_ids)

    # ------------------------------------------------------------------ registration

    def use(self, middleware: _ConnectMiddlewareT) -> _ConnectMiddlewareT:
        """Connection middleware: ``fn(socket)``, sync or async.

        Raise ConnectRefused(message, data) to refuse; the client gets CONNECT_ERROR with
        that message and data. Any other exception refuses with "Server error" (and is
        logged), so internals never reach the client.
        """
        self._middlewares.append(middleware)
        return middleware

    # As Socket.on: the Literal overloads narrow the str ones, which return the handler
    # too, so the overlap is safe (hence the ignores).
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

    def on(self, event: str, handler: Handler | None = None) -> Any:
        """``connection`` handlers get each new socket; usable as a decorator.

        Any other name that is not reserved is a server-side event: its handlers receive
        the arguments of ``server_side_emit`` calls made on other nodes (or by emitters).
        """

        def register(fn: Handler) -> Handler:
            self._handlers.setdefault(event, []).append(fn)
            return fn

        return register(handler) if handler is not None else register

    def _emit_reserved(self, event: str, *args: Any) -> None:
        for handler in list(self._handlers.get(event, ())):
            self.server.engine.call_handler(handler, *args)

    def _on_server_side_emit(
        self, event: str, args: list[Any], ack: Callable[[Any], None] | None = None
    ) -> None:
        """A server-side event from another node; ``ack`` gets the first handler's answer."""
        if event in SERVER_SIDE_RESERVED_EVENTS:
            return
        handlers = list(self._handlers.get(event, ()))
        for index, handler in enumerate(handlers):
            if ack is None or index > 0:
                self.server.engine.call_handler(handler, *args)
                continue
            try:
                result = handler(*args)
            except Exception:
                logger.exception("error in server-side event handler %r", handler)
                continue
            if inspect.isawaitable(result):
                self.server.engine.spawn(self._answer(result, ack))
            else:
                ack(result)

    @staticmethod
    async def _answer(result: Any, ack: Callable[[Any], None]) -> None:
        ack(await result)

    # ------------------------------------------------------------------ connecting

    def _add(self, client: Client, auth: dict[str, Any]) -> None:
        """A client asked to connect; ``_on_joined`` is called once it is in."""
        recovery = self.server.recovery
        pid, offset = auth.get("pid"), auth.get("offset")
        if recovery is not None and isinstance(pid, str) and isinstance(offset, str):
            client.spawn_handler(self._add_recovering(client, auth, pid, offset))
            return
        self._run_middlewares(client, Socket(self, client, auth))

    async def _add_recovering(
        self, client: Client, auth: dict[str, Any], pid: str, offset: str
    ) -> None:
        try:
            previous = await self.adapter.restore_session(pid, offset)
        except Exception:
            logger.exception("could not restore session")
            previous = None
        socket = Socket(self, client, auth, previous)
        recovery = self.server.recovery
        if previous is not None and recovery is not None and recovery.skip_middlewares:
            if client.is_open:
                self._do_connect(client, socket, previous.rooms, previous.missed_packets)
            return
        self._run_middlewares(client, socket, previous.rooms if previous else None,
                              previous.missed_packets if previous else None)

    def _run_middlewares(
        self,
        client: Client,
        socket: Socket,
        rooms: list[str] | None = None,
        missed: list[list[Any]] | None = None,
    ) -> None:
        middlewares = list(self._middlewares)
        for index, middleware in enumerate(middlewares):
            try:
                result = middleware(socket)
            except Exception as exc:
                self._refuse(client, exc)
                return
            if inspect.isawaitable(result):
                client.spawn_handler(
                    self._finish_middlewares(client, socket, result, middlewares[index + 1:],
                                             rooms, missed)
                )
                return
        if client.is_open:
            self._do_connect(client, socket, rooms, missed)

    async def _finish_middlewares(
        self,
        client: Client,
        socket: Socket,
        pending: Any,
        rest: list[ConnectMiddleware],
        rooms: list[str] | None,
        missed: list[list[Any]] | None,
    ) -> None:
        try:
            await pending
            for middleware in rest:
                result = middleware(socket)
                if inspect.isawaitable(result):
                    await result
        except Exception as exc:
            self._refuse(client, exc)
            return
        if client.is_open:
            self._do_connect(client, socket, rooms, missed)

    def _refuse(self, client: Client, exc: Exception) -> None:
        if isinstance(exc, ConnectRefused):
            data: dict[str, Any] = {"message": exc.message}
            if exc.data is not None:
                data["data"] = exc.data
        else:
            logger.error("connection middleware failed", exc_info=exc)
            data = {"message": "Server error"}
        client.write_packet(Packet(PacketType.CONNECT_ERROR, data, self.name), False)
        client.on_connect_refused()

    def _do_connect(
        self,
        client: Client,
        socket: Socket,
        rooms: list[str] | None,
        missed: list[list[Any]] | None,
    ) -> None:
        if self.name in client.nsps:  # a second CONNECT raced the first
            return
        self.sockets[socket.id] = socket
        client._add(socket)
        if rooms:
            socket.join(rooms)
        socket._on_connect()
        for data in missed or ():
            client.write_packet(Packet(PacketType.EVENT, data, self.name), False)
        self._emit_reserved("connection", socket)

    def _remove(self, socket: Socket) -> None:
        self.sockets.pop(socket.id, None)
        self.server._on_socket_removed(self)

    # ------------------------------------------------------------------ broadcasting

    def to(self, *rooms: Rooms) -> BroadcastOperator:
        return self._all.to(*rooms)

    in_ = to

    def except_(self, *rooms: Rooms) -> BroadcastOperator:
        return self._all.except_(*rooms)

    @property
    def volatile(self) -> BroadcastOperator:
        return self._all.volatile

    @property
    def local(self) -> BroadcastOperator:
        return self._all.local

    def compress(self, compress: bool) -> BroadcastOperator:
        return self._all.compress(compress)

    def timeout(self, seconds: float) -> BroadcastOperator:
        return self._all.timeout(seconds)

    def emit(self, event: str, *args: Any) -> None:
        """Send an event to every socket of the namespace."""
        self._all.emit(event, *args)

    def send(self, *args: Any) -> None:
        self._all.emit("message", *args)

    async def emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        return await self._all.emit_with_ack(event, *args)

    async def fetch_sockets(self) -> list[Socket]:
        return await self._all.fetch_sockets()

    def sockets_join(self, *rooms: Rooms) -> None:
        self._all.sockets_join(*rooms)

    def sockets_leave(self, *rooms: Rooms) -> None:
        self._all.sockets_leave(*rooms)

    def disconnect_sockets(self, close: bool = False) -> None:
        self._all.disconnect_sockets(close)

    def server_side_emit(self, event: str, *args: Any) -> None:
        """Send an event to the other nodes of the cluster (none with the memory adapter)."""
        _check_server_side_event(event)
        self.adapter.server_side_emit([event, *args])

    async def server_side_emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        """Send an event to the other nodes and return their handlers' answers (one per
        node). Raises AckTimeoutError (with the partial list) after the adapter's
        ``requests_timeout``."""
        _check_server_side_event(event)
        return await self.adapter.server_side_emit_with_ack([event, *args])


def _check_server_side_event(event: str) -> None:
    if not isinstance(event, str):
        raise TypeError("event name must be a string")
    if event in SERVER_SIDE_RESERVED_EVENTS:
        raise ValueError(f'"{event}" is a reserved event name')


NamespaceMatcher = re.Pattern[str] | Callable[[str, dict[str, Any]], Any]


class ParentNamespace(Namespace):
    """A dynamic namespace: ``server.of(re.compile(r"^/room-\\d+$"))``.

    Each matching name becomes a child namespace that shares the parent's middlewares
    and connection handlers; broadcasting on the parent reaches every child.
    """

    _counter = itertools.count()

    def __init__(self, server: Server, matcher: NamespaceMatcher) -> None:
        super().__init__(server, f"/_{next(self._counter)}")
        self.matcher = matcher
        self.children: set[Namespace] = set()

    async def matches(self, name: str, auth: dict[str, Any]) -> bool:
        matcher = self.matcher
        if isinstance(matcher, re.Pattern):
            return matcher.search(name) is not None
        result = matcher(name, auth)
        if inspect.isawaitable(result):
            result = await result
        return bool(result)

    def create_child(self, name: str) -> Namespace:
        child = Namespace(self.server, name)
        child._middlewares = self._middlewares  # shared: later use() calls apply too
        child._handlers = self._handlers
        self.children.add(child)
        return child

    def _children_operator(self) -> ChildrenOperator:
        return ChildrenOperator([child._all for child in list(self.children)])

    # A parent broadcasts to all its children (Node's ParentNamespace): its operators are
    # ChildrenOperators, not the BroadcastOperator a Namespace returns, hence the ignores.
    def to(self, *rooms: Rooms) -> ChildrenOperator:  # type: ignore[override]
        return self._children_operator().to(*rooms)

    in_ = to  # type: ignore[assignment]  # see to()

    def except_(self, *rooms: Rooms) -> ChildrenOperator:  # type: ignore[override]
        return self._children_operator().except_(*rooms)

    @property
    def volatile(self) -> ChildrenOperator:  # type: ignore[override]
        return self._children_operator().volatile

    def timeout(self, seconds: float) -> ChildrenOperator:  # type: ignore[override]
        return self._children_operator().timeout(seconds)

    def emit(self, event: str, *args: Any) -> None:
        self._children_operator().emit(event, *args)

    async def emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        return await self._children_operator().emit_with_ack(event, *args)

    async def fetch_sockets(self) -> list[Socket]:
        return await self._children_operator().fetch_sockets()

    def sockets_join(self, *rooms: Rooms) -> None:
        self._children_operator().sockets_join(*rooms)

    def sockets_leave(self, *rooms: Rooms) -> None:
        self._children_operator().sockets_leave(*rooms)

    def disconnect_sockets(self, close: bool = False) -> None:
        self._children_operator().disconnect_sockets(close)


class ChildrenOperator:
    """The same broadcast applied to every child of a dynamic namespace."""

    __slots__ = ("_operators",)

    def __init__(self, operators: list[BroadcastOperator]) -> None:
        self._operators = operators

    def to(self, *rooms: Rooms) -> ChildrenOperator:
        return ChildrenOperator([op.to(*rooms) for op in self._operators])

    in_ = to

    def except_(self, *rooms: Rooms) -> ChildrenOperator:
        return ChildrenOperator([op.except_(*rooms) for op in self._operators])

    @property
    def volatile(self) -> ChildrenOperator:
        return ChildrenOperator([op.volatile for op in self._operators])

    def timeout(self, seconds: float) -> ChildrenOperator:
        return ChildrenOperator([op.timeout(seconds) for op in self._operators])

    def emit(self, event: str, *args: Any) -> None:
        for op in self._operators:
            op.emit(event, *args)

    async def emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        results = await asyncio.gather(*(op.emit_with_ack(event, *args) for op in self._operators))
        return [response for result in results for response in result]

    async def fetch_sockets(self) -> list[Socket]:
        found: list[Socket] = []
        for op in self._operators:
            found.extend(await op.fetch_sockets())
        return found

    def sockets_join(self, *rooms: Rooms) -> None:
        for op in self._operators:
            op.sockets_join(*rooms)

    def sockets_leave(self, *rooms: Rooms) -> None:
        for op in self._operators:
            op.sockets_leave(*rooms)

    def disconnect_sockets(self, close: bool = False) -> None:
        for op in self._operators:
            op.disconnect_sockets(close)
