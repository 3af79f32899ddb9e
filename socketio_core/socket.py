"""A Socket.IO socket: one client's connection to one namespace."""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from engineio_core.server import HandlerResult, is_awaitable

from .adapter import (
    NO_FLAGS,
    RECOVERABLE_REASONS,
    BroadcastFlags,
    BroadcastOptions,
    SessionSnapshot,
)
from .broadcast import BroadcastOperator, Rooms, check_event_name, room_set
from .errors import AckTimeoutError, DisconnectedError
from .packet import Packet, PacketType

if TYPE_CHECKING:
    from engineio_core import Request

    from .client import Client
    from .namespace import Namespace

logger = logging.getLogger(__name__)

# Enum members as module constants: attribute access on an Enum class is slow on
# Python 3.11, and these are read once or more per packet.
_CONNECT = PacketType.CONNECT
_DISCONNECT = PacketType.DISCONNECT
_EVENT = PacketType.EVENT
_ACK = PacketType.ACK
_BINARY_EVENT = PacketType.BINARY_EVENT
_BINARY_ACK = PacketType.BINARY_ACK

__all__ = ["Handshake", "Socket"]

# Handler types. A handler is a plain function (called inline) or a coroutine function
# (run as a task of the connection); its errors are logged, never sent to the client.

#: A client event's handler (``socket.on("chat")``): gets the event's arguments (decoded
#: JSON values; bytes for binary attachments), plus ``ack=`` (an ``Ack``, None when the
#: client asked for none) if it declares that keyword. Otherwise what it returns (an
#: awaitable: what that gives) is the ack: None acks with no argument, a tuple with several.
EventHandler = Callable[..., object]
#: ``disconnecting`` / ``disconnect`` handlers: get the reason (Node's reasons).
DisconnectHandler = Callable[[str], HandlerResult]
#: ``error`` handlers: get the exception a packet middleware raised.
ErrorHandler = Callable[[Exception], HandlerResult]
#: ``on_any`` / ``on_any_outgoing``: get ``(event, *args)`` (and ``ack=`` if declared).
CatchAllHandler = Callable[..., HandlerResult]
#: ``socket.use``: gets ``[event, *args]``, may change it in place; raising drops the packet.
Middleware = Callable[[list[Any]], HandlerResult]
#: Any of the above, as stored.
Handler = Callable[..., Any]

_EventT = TypeVar("_EventT", bound=EventHandler)
_DisconnectT = TypeVar("_DisconnectT", bound=DisconnectHandler)
_ErrorT = TypeVar("_ErrorT", bound=ErrorHandler)
_CatchAllT = TypeVar("_CatchAllT", bound=CatchAllHandler)
_MiddlewareT = TypeVar("_MiddlewareT", bound=Middleware)

#: Events a socket emits on the server side, never sent by or to clients.
SOCKET_EVENTS = frozenset({"disconnect", "disconnecting", "error"})

_wants_ack_cache: dict[Any, bool] = {}


def wants_ack(handler: Handler) -> bool:
    """True if the handler takes an ``ack`` keyword: it then acks by itself."""
    key = getattr(handler, "__code__", handler)
    cached = _wants_ack_cache.get(key)
    if cached is None:
        try:
            cached = "ack" in inspect.signature(handler).parameters
        except (TypeError, ValueError):
            cached = False
        if len(_wants_ack_cache) < 10_000:
            _wants_ack_cache[key] = cached
    return cached


@dataclass(slots=True)
class Handshake:
    """What the client sent when it connected (Node's ``socket.handshake``)."""

    headers: dict[str, str]
    time: str
    address: str
    xdomain: bool
    secure: bool
    issued: int
    url: str
    query: dict[str, str]
    auth: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_request(cls, request: Request | None, auth: dict[str, Any]) -> Handshake:
        if request is None:
            return cls({}, formatdate(usegmt=True), "", False, False,
                       int(time.time() * 1000), "", {}, auth)
        address = request.remote_address[0] if request.remote_address else ""
        # The engine keeps the first request of the session anyway: share its dicts
        # rather than copying them for every namespace (memory per connection).
        return cls(
            headers=request.headers,
            time=formatdate(usegmt=True),
            address=address,
            xdomain="origin" in request.headers,
            secure=request.secure,
            issued=int(time.time() * 1000),
            url=request.url,
            query=request.query,
            auth=auth,
        )


def new_id() -> str:
    return secrets.token_urlsafe(15)


class Socket:
    """The server side of one client's connection to a namespace."""

    __slots__ = (
        "_acks",
        "_any",
        "_any_outgoing",
        "_handlers",
        "_middlewares",
        "adapter",
        "client",
        "connected",
        "data",
        "handshake",
        "id",
        "nsp",
        "pid",
        "recovered",
        "server",
    )

    def __init__(
        self,
        nsp: Namespace,
        client: Client,
        auth: dict[str, Any],
        previous: SessionSnapshot | None = None,
    ) -> None:
        self.nsp = nsp
        self.server = nsp.server
        self.adapter = nsp.adapter
        self.client = client
        self.handshake = Handshake.from_request(client.session.request, auth)
        self.connected = False
        self.recovered = previous is not None
        self._acks: dict[int, Callable[..., Any]] = {}
        self._handlers: dict[str, list[Handler]] | None = None
        self._any: list[Handler] | None = None
        self._any_outgoing: list[Handler] | None = None
        self._middlewares: list[Middleware] | None = None
        if previous is not None:
            self.id = previous.sid
            self.pid: str | None = previous.pid
            self.data: Any = previous.data
        else:
            self.id = new_id()
            self.pid = new_id() if self.server.recovery is not None else None
            self.data = {}  # free for the application, like Node's socket.data

    def __repr__(self) -> str:
        return f"<Socket {self.id} {self.nsp.name}>"

    # ------------------------------------------------------------------ handlers

    # The Literal overloads narrow the handler of the str ones; both return the handler
    # itself, so a str that holds "disconnect" only gets the looser check: safe, and
    # the reason for the overload-overlap ignores.
    @overload
    def on(  # type: ignore[overload-overlap]
        self, event: Literal["disconnect", "disconnecting"]
    ) -> Callable[[_DisconnectT], _DisconnectT]: ...
    @overload
    def on(
        self, event: Literal["disconnect", "disconnecting"], handler: _DisconnectT
    ) -> _DisconnectT: ...
    @overload
    def on(  # type: ignore[overload-overlap]
        self, event: Literal["error"]
    ) -> Callable[[_ErrorT], _ErrorT]: ...
    @overload
    def on(self, event: Literal["error"], handler: _ErrorT) -> _ErrorT: ...
    @overload
    def on(self, event: str) -> Callable[[_EventT], _EventT]: ...
    @overload
    def on(self, event: str, handler: _EventT) -> _EventT: ...

    def on(self, event: str, handler: Handler | None = None) -> Any:
        """Handle an event from the client, directly or as a decorator.

        The handler gets the event's arguments. If the client asked for an ack, the
        handler's return value is sent back (a tuple for several values), unless the
        handler takes an ``ack`` keyword argument and calls it itself. ``disconnecting``
        and ``disconnect`` handlers get the reason; ``error`` handlers get the exception a
        packet middleware raised.
        """

        def register(fn: Handler) -> Handler:
            if self._handlers is None:
                self._handlers = {}
            self._handlers.setdefault(event, []).append(fn)
            return fn

        return register(handler) if handler is not None else register

    def off(self, event: str, handler: Handler | None = None) -> None:
        if self._handlers is None or event not in self._handlers:
            return
        if handler is None:
            del self._handlers[event]
        else:
            handlers = self._handlers[event]
            if handler in handlers:
                handlers.remove(handler)

    def on_any(self, handler: _CatchAllT) -> _CatchAllT:
        """Called with (event, *args) for every incoming event, before its handlers.

        A catch-all that takes an ``ack`` keyword gets the event's ack (None if the client
        asked for none), e.g. to answer events no handler knows.
        """
        if self._any is None:
            self._any = []
        self._any.append(handler)
        return handler

    def prepend_any(self, handler: _CatchAllT) -> _CatchAllT:
        if self._any is None:
            self._any = []
        self._any.insert(0, handler)
        return handler

    def off_any(self, handler: Handler | None = None) -> None:
        if self._any is None:
            return
        if handler is None:
            self._any = None
        elif handler in self._any:
            self._any.remove(handler)

    def on_any_outgoing(self, handler: _CatchAllT) -> _CatchAllT:
        """Called with (event, *args) for every event sent to this socket."""
        if self._any_outgoing is None:
            self._any_outgoing = []
        self._any_outgoing.append(handler)
        return handler

    def off_any_outgoing(self, handler: Handler | None = None) -> None:
        if self._any_outgoing is None:
            return
        if handler is None:
            self._any_outgoing = None
        elif handler in self._any_outgoing:
            self._any_outgoing.remove(handler)

    def use(self, middleware: _MiddlewareT) -> _MiddlewareT:
        """Per-packet middleware: gets ``[event, *args]``, may change it in place.

        Raising drops the packet; the exception goes to the socket's ``error`` handlers.
        Coroutine middlewares are awaited.
        """
        if self._middlewares is None:
            self._middlewares = []
        self._middlewares.append(middleware)
        return middleware

    def _emit_reserved(self, event: str, *args: Any) -> None:
        if self._handlers is None:
            return
        for handler in list(self._handlers.get(event, ())):
            self.server.engine.call_handler(handler, *args)

    # ------------------------------------------------------------------ sending

    def emit(self, event: str, *args: Any, callback: Callable[..., Any] | None = None) -> None:
        """Send an event to this client. ``callback`` receives the client's ack arguments."""
        self._emit(event, args, NO_FLAGS, callback)

    def _emit(
        self,
        event: str,
        args: tuple[Any, ...],
        flags: BroadcastFlags,
        callback: Callable[..., Any] | None,
    ) -> None:
        check_event_name(event)
        if not self.connected:
            return
        packet = Packet(_EVENT, [event, *args], self.nsp.name)
        if callback is not None:
            packet.id = self.nsp.next_ack_id()
            self._acks[packet.id] = callback
        elif self.server.recovery is not None:
            # Through the adapter, so that the packet gets an offset and can be replayed.
            self.adapter.broadcast(packet, BroadcastOptions(frozenset((self.id,)), flags=flags))
            return
        if self._any_outgoing is not None:
            self._notify_outgoing(packet.data)
        self.client.write_packet(packet, flags.volatile)

    async def emit_with_ack(self, event: str, *args: Any, timeout: float | None = None) -> Any:
        """Send an event and wait for the client's ack.

        Returns the ack's argument (None if none, a tuple if several). Raises
        AckTimeoutError after ``timeout`` seconds, DisconnectedError if the socket goes away.
        """
        return await self._emit_with_ack(event, args, NO_FLAGS, timeout)

    async def _emit_with_ack(
        self, event: str, args: tuple[Any, ...], flags: BroadcastFlags, timeout: float | None
    ) -> Any:
        if not self.connected:
            raise DisconnectedError("socket is not connected")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        waiter = _AckWaiter(future)
        self._emit(event, args, flags, waiter)
        if timeout is None:
            return await future
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._acks = {k: v for k, v in self._acks.items() if v is not waiter}
            raise AckTimeoutError() from None

    def _notify_outgoing(self, data: list[Any]) -> None:
        for handler in list(self._any_outgoing or ()):
            self.server.engine.call_handler(handler, *data)

    def send(self, *args: Any) -> None:
        """Emit a ``message`` event."""
        self.emit("message", *args)

    @property
    def volatile(self) -> SocketEmitter:
        return SocketEmitter(self, BroadcastFlags(volatile=True))

    def compress(self, compress: bool) -> SocketEmitter:
        return SocketEmitter(self, BroadcastFlags(compress=compress))

    def timeout(self, seconds: float) -> SocketEmitter:
        return SocketEmitter(self, BroadcastFlags(timeout=seconds))

    # ------------------------------------------------------------------ broadcasting

    def to(self, *rooms: Rooms) -> BroadcastOperator:
        """Broadcast to these rooms, this socket excluded."""
        return self.broadcast.to(*rooms)

    in_ = to

    def except_(self, *rooms: Rooms) -> BroadcastOperator:
        return self.broadcast.except_(*rooms)

    @property
    def broadcast(self) -> BroadcastOperator:
        """Every socket of the namespace but this one."""
        return BroadcastOperator(self.adapter, BroadcastOptions(except_rooms=frozenset((self.id,))))

    # ------------------------------------------------------------------ rooms

    def join(self, *rooms: Rooms) -> None:
        self.adapter.add_all(self.id, room_set(rooms))

    def leave(self, *rooms: Rooms) -> None:
        for room in room_set(rooms):
            self.adapter.delete(self.id, room)

    @property
    def rooms(self) -> set[str]:
        return set(self.adapter.socket_rooms(self.id) or ())

    # ------------------------------------------------------------------ lifecycle

    def disconnect(self, close: bool = False) -> None:
        """Disconnect from this namespace; with ``close``, close the whole connection."""
        if not self.connected:
            return
        if close:
            self.client.disconnect_all()
            return
        self.client.write_packet(Packet(_DISCONNECT, None, self.nsp.name), False)
        self._on_close("server namespace disconnect")

    def _on_connect(self) -> None:
        self.connected = True
        self.join(self.id)
        data: dict[str, Any] = {"sid": self.id}
        if self.pid is not None:
            data["pid"] = self.pid
        self.client.write_packet(Packet(_CONNECT, data, self.nsp.name), False)

    def _on_close(self, reason: str) -> None:
        if not self.connected:
            return
        self._emit_reserved("disconnecting", reason)
        if self.server.recovery is not None and reason in RECOVERABLE_REASONS:
            self.adapter.persist_session(
                SessionSnapshot(self.id, self.pid or "", sorted(self.rooms), self.data)
            )
        self._cleanup()
        self.connected = False
        acks, self._acks = self._acks, {}
        for ack in acks.values():
            if isinstance(ack, _AckWaiter):
                ack.fail()
        self._emit_reserved("disconnect", reason)
        # Handlers are often closures over this socket (a reference cycle); no packet
        # can reach them any more, so drop them and let the socket be freed at once.
        self._handlers = self._any = self._any_outgoing = self._middlewares = None

    def _cleanup(self) -> None:
        self.adapter.delete_all(self.id)
        self.nsp._remove(self)
        self.client._remove(self)

    # ------------------------------------------------------------------ receiving

    def _on_packet(self, packet: Packet) -> None:
        ptype = packet.type
        if ptype is _EVENT or ptype is _BINARY_EVENT:
            self._on_event(packet)
        elif ptype is _ACK or ptype is _BINARY_ACK:
            # An ACK without id pops nothing (None is never a key): no check on this path.
            ack = self._acks.pop(packet.id, None)  # type: ignore[arg-type]
            if ack is not None:
                try:
                    ack(*packet.data)
                except Exception:
                    logger.exception("error in ack callback")
        elif ptype is _DISCONNECT:
            self._on_close("client namespace disconnect")

    def _on_event(self, packet: Packet) -> None:
        args: list[Any] = packet.data
        ack = Ack(self, packet.id) if packet.id is not None else None
        if self._any is None and self._middlewares is None:
            self._dispatch(args, ack)  # the usual case, without the checks below
            return
        if self._any is not None:
            for handler in list(self._any):
                if wants_ack(handler):
                    self._call_catch_all(partial(handler, ack=ack), args)
                else:
                    self._call_catch_all(handler, args)
        if self._middlewares is None:
            self._dispatch(args, ack)
        else:
            self._run_middlewares(args, ack)

    def _call_catch_all(self, handler: Handler, args: list[Any]) -> None:
        try:
            result = handler(*args)
        except Exception:
            logger.exception("error in catch-all handler %r", handler)
            return
        if is_awaitable(result):
            self.client.spawn_handler(self._await_handler(result, None))

    def _run_middlewares(self, args: list[Any], ack: Ack | None) -> None:
        middlewares = list(self._middlewares or ())
        for index, middleware in enumerate(middlewares):
            try:
                result = middleware(args)
            except Exception as exc:
                self._emit_reserved("error", exc)
                return
            if inspect.isawaitable(result):
                self.client.spawn_handler(
                    self._finish_middlewares(result, middlewares[index + 1:], args, ack)
                )
                return
        self._dispatch(args, ack)

    async def _finish_middlewares(
        self, pending: Any, rest: list[Middleware], args: list[Any], ack: Ack | None
    ) -> None:
        try:
            await pending
            for middleware in rest:
                result = middleware(args)
                if inspect.isawaitable(result):
                    await result
        except Exception as exc:
            self._emit_reserved("error", exc)
            return
        if self.connected:
            self._dispatch(args, ack)

    def _dispatch(self, args: list[Any], ack: Ack | None) -> None:
        event = args[0]
        handlers = self._handlers.get(event) if self._handlers is not None else None
        if not handlers:
            return
        params = args[1:]
        if len(handlers) == 1:
            self._call(handlers[0], params, ack)
            return
        for handler in list(handlers):
            self._call(handler, params, ack)

    def _call(self, handler: Handler, params: list[Any], ack: Ack | None) -> None:
        # A handler with an ``ack`` parameter acks by itself (it gets None when the client
        # asked for no ack); for the others the return value is the ack.
        explicit = wants_ack(handler)
        try:
            result = handler(*params, ack=ack) if explicit else handler(*params)
        except Exception:
            logger.exception("error in handler for %r", handler)
            return
        if is_awaitable(result):
            self.client.spawn_handler(self._await_handler(result, None if explicit else ack))
        elif ack is not None and not explicit:
            ack.send_result(result)

    async def _await_handler(self, awaitable: Any, ack: Ack | None) -> None:
        try:
            result = await awaitable
        except Exception:
            logger.exception("error in handler")
            return
        if ack is not None:
            ack.send_result(result)


class Ack:
    """Sends the ack of one received event, once. Call it with the ack's arguments."""

    __slots__ = ("_id", "_sent", "_socket")

    def __init__(self, socket: Socket, ack_id: int) -> None:
        self._socket = socket
        self._id = ack_id
        self._sent = False

    def __call__(self, *args: Any) -> None:
        self._send(list(args))

    def send_result(self, result: Any) -> None:
        """Ack with a handler's return value: None acks with no argument, a tuple with
        several."""
        if result is None:
            self._send([])
        elif type(result) is tuple:
            self._send(list(result))
        else:
            self._send([result])

    def _send(self, args: list[Any]) -> None:
        if self._sent:
            return
        self._sent = True
        socket = self._socket
        if socket.connected:
            socket.client.write_packet(Packet(_ACK, args, socket.nsp.name, self._id), False)


class SocketEmitter:
    """``socket.volatile``, ``socket.timeout(5)``...: emits with flags."""

    __slots__ = ("_flags", "_socket")

    def __init__(self, socket: Socket, flags: BroadcastFlags) -> None:
        self._socket = socket
        self._flags = flags

    @property
    def volatile(self) -> SocketEmitter:
        return SocketEmitter(self._socket, replace(self._flags, volatile=True))

    def compress(self, compress: bool) -> SocketEmitter:
        return SocketEmitter(self._socket, replace(self._flags, compress=compress))

    def timeout(self, seconds: float) -> SocketEmitter:
        return SocketEmitter(self._socket, replace(self._flags, timeout=seconds))

    def emit(self, event: str, *args: Any, callback: Callable[..., Any] | None = None) -> None:
        self._socket._emit(event, args, self._flags, callback)

    async def emit_with_ack(self, event: str, *args: Any) -> Any:
        return await self._socket._emit_with_ack(event, args, self._flags, self._flags.timeout)


class _AckWaiter:
    """The ack callback of ``emit_with_ack``: resolves a future, or fails it on disconnect."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future = future

    def __call__(self, *args: Any) -> None:
        if not self.future.done():
            self.future.set_result(args[0] if len(args) == 1 else (args or None))

    def fail(self) -> None:
        if not self.future.done():
            self.future.set_exception(DisconnectedError("socket disconnected"))

