"""ClusterAdapter protocol of socket.io-adapter (cluster-adapter.ts), shared by the Redis adapters.

The sharded pub/sub adapter (``_redis_sharded``) and the Redis Streams adapter
(``redis_streams_adapter``) speak the same messages (``MessageType`` 3..12) and handle
requests and responses alike; they differ only in how a message reaches the other nodes
(SPUBLISH channels, or the stream plus PUBLISH) and in how it is encoded. Subclasses of
``ClusterAdapter`` supply ``_send`` (a message to every node) and ``_respond`` (an answer to
one node), and call ``_on_cluster_message`` with what they receive.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .adapter import BroadcastOptions, InMemoryAdapter
from .errors import AckTimeoutError
from .packet import Packet, PacketType
from .redis_adapter import (
    FactoryAdapter,
    RedisAdapterError,
    RemoteSocket,
    _handshake,
    _js_flags,
    _Request,
    _rooms,
    _selector,
)

if TYPE_CHECKING:
    from .namespace import Namespace
    from .socket import Socket

logger = logging.getLogger(__name__)

# MessageType of socket.io-adapter's cluster-adapter.ts.
BROADCAST = 3
SOCKETS_JOIN = 4
SOCKETS_LEAVE = 5
DISCONNECT_SOCKETS = 6
FETCH_SOCKETS = 7
FETCH_SOCKETS_RESPONSE = 8
SERVER_SIDE_EMIT = 9
SERVER_SIDE_EMIT_RESPONSE = 10
BROADCAST_CLIENT_COUNT = 11
BROADCAST_ACK = 12
RESPONSES = frozenset({FETCH_SOCKETS_RESPONSE, SERVER_SIDE_EMIT_RESPONSE,
                       BROADCAST_CLIENT_COUNT, BROADCAST_ACK})
# The types whose data may hold binary, which Node's adapters then encode as msgpack.
MAY_CONTAIN_BINARY = frozenset({BROADCAST, BROADCAST_ACK, FETCH_SOCKETS_RESPONSE,
                                SERVER_SIDE_EMIT, SERVER_SIDE_EMIT_RESPONSE})
_EVENT = PacketType.EVENT


def random_id() -> str:
    """ClusterAdapter's randomId(): node and request ids, 8 random bytes in hex."""
    return secrets.token_hex(8)


def has_binary(value: Any, max_depth: int = 100, depth: int = 0) -> bool:
    """Whether ``value`` holds bytes (not looked for deeper than ``max_depth``)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return True
    if depth > max_depth:
        return False  # the encoder refuses it anyway
    if isinstance(value, list | tuple):
        return any(has_binary(item, max_depth, depth + 1) for item in value)
    if isinstance(value, dict):
        return any(has_binary(item, max_depth, depth + 1) for item in value.values())
    return False


def js_opts(opts: BroadcastOptions, with_timeout: bool = False) -> dict[str, Any]:
    """BroadcastOptions as ClusterAdapter encodes them."""
    return {"rooms": list(opts.rooms), "except": list(opts.except_rooms),
            "flags": _js_flags(opts.flags, with_timeout)}


class ClusterAdapter(FactoryAdapter):
    """The in-memory adapter of one namespace, plus ClusterAdapter requests to other nodes.

    ``factory`` is a ``RedisAdapterFactory`` (``channel_prefix``, ``requests_timeout``,
    ``numsub``, ``_start``, ``_unregister``, ``_subscriber``). Every node listens on the
    namespace's common channel ``<prefix>#<nsp>#`` (``server_count`` counts them) and on its
    own response channel ``<prefix>#<nsp>#<uid>#``.
    """

    # Kept as each adapter had them: the request's name in its errors, and whether
    # fetch_sockets honours the broadcast's timeout flag (Node's cluster adapter does).
    _NAMED_REQUEST_ERRORS = True
    _FETCH_TIMEOUT_FROM_FLAGS = True

    def __init__(self, nsp: Namespace, factory: Any) -> None:
        super().__init__(nsp, factory, random_id())
        self._common_channel = f"{factory.channel_prefix}#{nsp.name}#"
        self._response_channel = f"{self._common_channel}{self.uid}#"

    # ------------------------------------------------------------------ transport hooks

    def _send(self, message_type: int, data: dict[str, Any]) -> bool:
        """Send a message to every other node; False if it was not sent."""
        raise NotImplementedError

    def _respond(self, requester: Any, message_type: int, data: dict[str, Any]) -> None:
        """Send a response to the node ``requester`` (its uid)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ outgoing

    def broadcast(self, packet: Packet, opts: BroadcastOptions) -> None:
        if not opts.flags.local:
            # No "nsp" in the packet: Node encodes it before its local broadcast adds one.
            self._send(BROADCAST, {"packet": {"type": int(packet.type), "data": packet.data},
                                   "opts": js_opts(opts)})
        super().broadcast(packet, opts)

    def broadcast_with_ack(
        self,
        packet: Packet,
        opts: BroadcastOptions,
        client_count: Callable[[int], None],
        on_ack: Callable[[Any], None],
    ) -> None:
        if not opts.flags.local:
            request_id = random_id()
            self._ack_requests[request_id] = (client_count, on_ack)
            self._send(BROADCAST, {
                "packet": {"type": int(packet.type), "data": packet.data},
                "requestId": request_id, "opts": js_opts(opts, with_timeout=True)})
            # No way to know when every remote client answered: forget after the delay.
            delay = opts.flags.timeout or self.factory.requests_timeout
            asyncio.get_running_loop().call_later(delay, self._ack_requests.pop, request_id, None)
        super().broadcast_with_ack(packet, opts, client_count, on_ack)

    def add_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        if not opts.flags.local:
            self._send(SOCKETS_JOIN, {"opts": js_opts(opts), "rooms": rooms})
        super().add_sockets(opts, rooms)

    def del_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        if not opts.flags.local:
            self._send(SOCKETS_LEAVE, {"opts": js_opts(opts), "rooms": rooms})
        super().del_sockets(opts, rooms)

    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        if not opts.flags.local:
            self._send(DISCONNECT_SOCKETS, {"opts": js_opts(opts), "close": bool(close)})
        super().disconnect_sockets(opts, close)

    def server_side_emit(self, args: list[Any]) -> None:
        self._send(SERVER_SIDE_EMIT, {"packet": list(args)})

    async def server_side_emit_with_ack(self, args: list[Any]) -> list[Any]:
        """The answers of the other nodes' handlers (one per node)."""
        expected = await self.server_count() - 1
        if expected <= 0:
            return []
        request_id = random_id()
        return await self._request(
            request_id, SERVER_SIDE_EMIT, expected, {"requestId": request_id, "packet": list(args)},
            "serverSideEmit", self.factory.requests_timeout, ack_timeout=True)

    async def server_count(self) -> int:
        # self.factory is each subclass's own factory class (typed Any in FactoryAdapter).
        return await self.factory.numsub(self._common_channel)  # type: ignore[no-any-return]

    @property
    def requests_timeout(self) -> float:
        """Bound on waits for other nodes (``emit_with_ack`` without ``timeout`` included)."""
        return self.factory.requests_timeout  # type: ignore[no-any-return]  # as above

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[Any]:
        local: list[Any] = await super().fetch_sockets(opts)
        if opts.flags.local:
            return local
        expected = await self.server_count() - 1
        if expected <= 0:
            return local
        request_id = random_id()
        timeout = self.factory.requests_timeout
        if self._FETCH_TIMEOUT_FROM_FLAGS:
            timeout = opts.flags.timeout or timeout
        remote = await self._request(
            request_id, FETCH_SOCKETS, expected, {"opts": js_opts(opts), "requestId": request_id},
            "fetchSockets", timeout)
        return local + [RemoteSocket(self, item)
                        for item in remote if isinstance(item, dict)]

    async def _request(
        self, request_id: str, kind: int, expected: int, data: dict[str, Any], what: str,
        timeout: float, ack_timeout: bool = False,
    ) -> list[Any]:
        request = _Request(kind, asyncio.get_running_loop().create_future(), expected,
                           count=0, items=[])
        prefix = f"{what} " if self._NAMED_REQUEST_ERRORS else ""
        self._requests[request_id] = request
        try:
            if not self._send(kind, data):
                raise RedisAdapterError(f"{prefix}request not sent: Redis is unavailable")
            try:
                return await asyncio.wait_for(asyncio.shield(request.future), timeout)
            except TimeoutError:
                items = list(request.items or ())
                message = (f"timeout reached: only {request.count} responses received out of "
                           f"{request.expected}")
                if ack_timeout:
                    raise AckTimeoutError(message, responses=items) from None
                if self._NAMED_REQUEST_ERRORS:
                    message = f"{what}: {message}"
                raise RedisAdapterError(message) from None
        finally:
            self._requests.pop(request_id, None)

    # ------------------------------------------------------------------ incoming

    def _on_cluster_message(self, message: dict[str, Any]) -> None:
        """A message of another node (ClusterAdapter.onMessage); ``data`` is a dict."""
        sender = message.get("uid")
        if sender == self.uid or message.get("nsp") != self.nsp.name:
            return
        self._on_request(sender, message.get("type"), message["data"])

    def _on_request(self, sender: Any, kind: Any, data: dict[str, Any]) -> None:
        if kind == BROADCAST:
            self._on_broadcast(sender, data)
        elif kind == SOCKETS_JOIN:
            InMemoryAdapter.add_sockets(self, _selector(data.get("opts")),
                                        _rooms(data.get("rooms")))
        elif kind == SOCKETS_LEAVE:
            InMemoryAdapter.del_sockets(self, _selector(data.get("opts")),
                                        _rooms(data.get("rooms")))
        elif kind == DISCONNECT_SOCKETS:
            InMemoryAdapter.disconnect_sockets(self, _selector(data.get("opts")),
                                               bool(data.get("close")))
        elif kind == FETCH_SOCKETS:
            found: list[Socket] = []
            self._apply(_selector(data.get("opts")), found.append)
            self._respond(sender, FETCH_SOCKETS_RESPONSE, {
                "requestId": data.get("requestId"),
                "sockets": [{"id": s.id, "handshake": _handshake(s), "rooms": list(s.rooms),
                             "data": s.data} for s in found]})
        elif kind == SERVER_SIDE_EMIT:
            self._on_server_side_emit(sender, data)
        elif kind in RESPONSES:
            # Node may send a response on the common channel too; its onMessage() accepts it.
            self._on_response(kind, data)

    def _on_broadcast(self, sender: Any, data: dict[str, Any]) -> None:
        """A BROADCAST message of another node."""
        raise NotImplementedError

    def _on_broadcast_with_ack(
        self, sender: Any, request_id: Any, args: list[Any], opts: BroadcastOptions
    ) -> None:
        def on_count(count: int) -> None:
            self._respond(sender, BROADCAST_CLIENT_COUNT,
                          {"requestId": request_id, "clientCount": count})

        def on_ack(*args: Any) -> None:
            self._respond(sender, BROADCAST_ACK,
                          {"requestId": request_id, "packet": args[0] if args else None})

        InMemoryAdapter.broadcast_with_ack(
            self, Packet(_EVENT, args, self.nsp.name), opts, on_count, on_ack)

    def _on_server_side_emit(self, sender: Any, data: dict[str, Any]) -> None:
        args = data.get("packet")
        if not isinstance(args, list) or not args or not isinstance(args[0], str):
            return
        request_id = data.get("requestId")
        ack: Callable[[Any], None] | None = None
        if request_id is not None:
            answered = False

            def ack(arg: Any = None) -> None:
                nonlocal answered
                if answered:
                    return
                answered = True
                self._respond(sender, SERVER_SIDE_EMIT_RESPONSE,
                              {"requestId": request_id, "packet": arg})

        self.nsp._on_server_side_emit(args[0], args[1:], ack)

    def _on_response(self, kind: Any, data: dict[str, Any]) -> None:
        request_id = data.get("requestId")
        if not isinstance(request_id, str):
            return
        acks = self._ack_requests.get(request_id)
        if acks is not None:
            if kind == BROADCAST_CLIENT_COUNT and isinstance(data.get("clientCount"), int):
                acks[0](data["clientCount"])
            elif kind == BROADCAST_ACK:
                acks[1](data.get("packet"))
            return
        request = self._requests.get(request_id)
        if request is None or request.future.done():
            return
        assert request.items is not None
        if kind == FETCH_SOCKETS_RESPONSE and request.type == FETCH_SOCKETS:
            if isinstance(data.get("sockets"), list):
                request.items.extend(data["sockets"])
        elif kind == SERVER_SIDE_EMIT_RESPONSE and request.type == SERVER_SIDE_EMIT:
            request.items.append(data.get("packet"))
        else:
            return
        request.count += 1
        if request.count >= request.expected:
            request.future.set_result(request.items)
