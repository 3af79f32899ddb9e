"""Sharded Redis adapter (Redis 7 sharded pub/sub), npm ``createShardedAdapter``'s wire format.

Import it from ``socketio_core.redis_adapter`` (``create_sharded_adapter``): this module
subclasses that one's factory, which re-exports it on its last line.

``create_sharded_adapter(redis)`` speaks the protocol of ``createShardedAdapter`` from npm
``@socket.io/redis-adapter`` 8.3.0 (``lib/sharded-adapter.ts``, on top of socket.io-adapter's
``ClusterAdapter``), so our servers and Node socket.io servers with that adapter serve one set
of clients::

    import redis.asyncio as redis
    from socketio_core import Server
    from socketio_core.redis_adapter import create_sharded_adapter

    adapter = create_sharded_adapter(redis.Redis.from_url("redis://127.0.0.1:6379"))
    io = Server(adapter=adapter)

It needs Redis 7 or later (``SPUBLISH``/``SSUBSCRIBE``). Channels, per namespace ``nsp``:
``<prefix>#<nsp>#`` (every node subscribes: requests, and broadcasts that are not sent on a
room's channel), ``<prefix>#<nsp>#<uid>#`` (this node's responses) and, in the ``dynamic``
modes, ``<prefix>#<nsp>#<room>#`` for a broadcast to exactly one room, subscribed only while
this node has a local member in that room, so a node reads only the room broadcasts it has
recipients for. ``dynamic`` leaves socket-id rooms on the common channel (a room "looks like
a socket id" when it is 20 characters long, as in Node); ``dynamic-private`` gives them
channels too; ``static`` sends every broadcast on the common channel.

Messages are ``{"type", "data", "uid", "nsp"}`` (``ClusterAdapter``'s ``MessageType``):
JSON text, or notepack msgpack when a broadcast, an ack, an answer or a server-side event
carries binary, as Node writes them. ``server_count()`` is ``PUBSUB SHARDNUMSUB`` of the
common channel. The publisher queue, the reconnecting subscriber, ``stats``, ``ready()`` and
``aclose()`` are those of ``socketio_core.redis_adapter`` (see its docstring).

Differences from the classic adapter: ``all_rooms()`` is this node's rooms only (the cluster
protocol has no such request; Node's sharded adapter has no ``allRooms``); Redis emitters
(``redis_emitter``, npm ``@socket.io/redis-emitter``) publish on the classic channels and do
not reach it, as with Node; and a room's channel is subscribed a moment (a Redis round trip
or two) after its first local member joins (``await ready()`` waits for it): a broadcast
another node sends to the room before then does not reach that member (Node alike).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import orjson

from .adapter import BroadcastFlags, BroadcastOptions, InMemoryAdapter
from .errors import AckTimeoutError
from .packet import JsonParser, Packet, PacketType, _loads
from .redis_adapter import (
    RedisAdapterError,
    RedisAdapterFactory,
    RemoteSocket,
    _channel,
    _handshake,
    _js_flags,
    _Request,
    _rooms,
    _selector,
    _unpack,
)
from .redis_emitter import _to_json

if TYPE_CHECKING:
    from .namespace import Namespace
    from .socket import Socket

__all__ = ["ShardedRedisAdapter", "ShardedRedisAdapterFactory", "create_sharded_adapter"]

logger = logging.getLogger(__name__)

# MessageType of socket.io-adapter's cluster-adapter.ts.
_BROADCAST = 3
_SOCKETS_JOIN = 4
_SOCKETS_LEAVE = 5
_DISCONNECT_SOCKETS = 6
_FETCH_SOCKETS = 7
_FETCH_SOCKETS_RESPONSE = 8
_SERVER_SIDE_EMIT = 9
_SERVER_SIDE_EMIT_RESPONSE = 10
_BROADCAST_CLIENT_COUNT = 11
_BROADCAST_ACK = 12
# The types Node sends as msgpack when their data holds binary (sharded-adapter.ts encode()).
_MAY_CONTAIN_BINARY = frozenset({_BROADCAST, _BROADCAST_ACK, _FETCH_SOCKETS_RESPONSE,
                                 _SERVER_SIDE_EMIT, _SERVER_SIDE_EMIT_RESPONSE})
_RESPONSES = frozenset({_FETCH_SOCKETS_RESPONSE, _SERVER_SIDE_EMIT_RESPONSE,
                        _BROADCAST_CLIENT_COUNT, _BROADCAST_ACK})
SUBSCRIPTION_MODES = ("static", "dynamic", "dynamic-private")
_SOCKET_ID_LENGTH = 20  # Node's looksLikeASocketId()
_MAX_DEPTH = 100
_EVENT = PacketType.EVENT
_BIN_MARKERS = (b"\xc4", b"\xc5", b"\xc6")  # msgpack bin 8/16/32
# What orjson writes as JSON.stringify would; the rest (datetimes, str subclasses such as
# enums, dataclasses) is refused and goes to the exact encoder.
_ORJSON_STRICT = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
                  | orjson.OPT_PASSTHROUGH_DATACLASS)


def _random_id() -> str:
    """ClusterAdapter's node and request ids: 8 random bytes in hex."""
    return secrets.token_hex(8)


def _has_binary(value: Any, depth: int = 0) -> bool:
    if isinstance(value, bytes | bytearray | memoryview):
        return True
    if depth > _MAX_DEPTH:
        return False  # the encoder refuses it anyway
    if isinstance(value, list | tuple):
        return any(_has_binary(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return any(_has_binary(item, depth + 1) for item in value.values())
    return False


class _SpublishPipeline:
    """A pipeline whose ``publish`` is SPUBLISH: what the shared publisher task calls."""

    __slots__ = ("_pipe",)

    def __init__(self, pipe: Any) -> None:
        self._pipe = pipe

    def publish(self, channel: bytes, data: bytes) -> None:
        self._pipe.execute_command("SPUBLISH", channel, data)

    async def execute(self) -> Any:
        return await self._pipe.execute()


class _ShardedPublishing:
    """The caller's client, except that its pipelines publish with SPUBLISH.

    The classic adapter's publisher task (bounded queue, batching, outage handling) is reused
    as it is; only the command it sends differs.
    """

    __slots__ = ("_client",)

    def __init__(self, client: Any) -> None:
        self._client = client

    def pipeline(self, transaction: bool = True) -> _SpublishPipeline:
        return _SpublishPipeline(self._client.pipeline(transaction=transaction))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class ShardedRedisAdapterFactory(RedisAdapterFactory):
    """What ``create_sharded_adapter`` returns: give it to ``Server(adapter=...)``.

    One subscriber connection (SSUBSCRIBE) and one publisher task (SPUBLISH) serve every
    namespace; ``ready()``, ``aclose()`` and ``stats`` are as for ``create_adapter``.
    """

    __slots__ = ("channel_prefix", "subscription_mode")

    def __init__(
        self, redis: Any, channel_prefix: str, subscription_mode: str, requests_timeout: float
    ) -> None:
        if subscription_mode not in SUBSCRIPTION_MODES:
            raise ValueError(f"subscription_mode must be one of {SUBSCRIPTION_MODES}, "
                             f"not {subscription_mode!r}")
        try:
            super().__init__(redis, channel_prefix, requests_timeout, False)
        except TypeError as exc:
            raise TypeError(str(exc).replace("create_adapter", "create_sharded_adapter")) from None
        self.channel_prefix = channel_prefix
        self.subscription_mode = subscription_mode
        client = self._redis
        self._redis = _ShardedPublishing(client)
        if self._sub_client is client:
            # The base never closes its client when it subscribes with the caller's own.
            self._sub_client = self._redis

    def __call__(self, nsp: Namespace) -> ShardedRedisAdapter:  # type: ignore[override]
        return ShardedRedisAdapter(nsp, self)

    # ------------------------------------------------------------------ subscriptions

    def _register(self, adapter: Any) -> None:
        self._add_channel(adapter, adapter.channel)
        self._add_channel(adapter, adapter.response_channel)
        self._start()

    def _add_channel(self, adapter: ShardedRedisAdapter, channel: str) -> None:
        name = _channel(channel)
        users = self._channels.setdefault(name, [])
        if adapter in users:
            return
        users.append(adapter)  # type: ignore[arg-type]
        if len(users) == 1:
            wake = (self._ready is not None and self._ready.is_set()
                         and name != adapter._response_bytes
                         and adapter._response_bytes in self._channels)
            self._sub_dirty = True
            if self._ready is not None:
                self._ready.clear()
            if wake:
                # The subscriber sees new channels between reads (a 0.5 s poll): an empty
                # message on this node's own response channel, subscribed since ready() was
                # set, ends the read now, so a room's channel follows its first join at once.
                self.publish(adapter.response_channel, b"")

    def _remove_channel(self, adapter: ShardedRedisAdapter, channel: str) -> None:
        name = _channel(channel)
        users = self._channels.get(name)
        if users is None or adapter not in users:
            return
        users.remove(adapter)  # type: ignore[arg-type]
        if not users:
            del self._channels[name]
            self._sub_dirty = True

    async def _sync_subscriptions(
        self, pubsub: Any, subscribed: set[bytes], patterns: set[bytes]
    ) -> None:
        want = set(self._channels)
        # One channel per command, as Node does: in a cluster each may live on another slot.
        for name in sorted(want - subscribed):
            self._pending_confirms += 1
            await pubsub.ssubscribe(name)
        for name in sorted(subscribed - want):
            await pubsub.sunsubscribe(name)
        subscribed.clear()
        subscribed.update(want)

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind in (b"ssubscribe", "ssubscribe"):
            # Never below 0: redis-py may subscribe again by itself after a reconnection,
            # and those confirmations must not count for subscriptions asked later.
            self._pending_confirms = max(0, self._pending_confirms - 1)
            if self._pending_confirms <= 0 and not self._sub_dirty and self._ready is not None:
                self._ready.set()
            return
        if kind not in (b"smessage", "smessage"):
            return
        data = message.get("data")
        if not isinstance(data, bytes) or not data:
            return
        self.stats.received += 1
        channel = message["channel"]
        try:
            for adapter in list(self._channels.get(channel, ())):
                adapter._on_raw_message(channel, data)  # type: ignore[attr-defined]
        except Exception:
            # One bad message must not stop the subscriber.
            logger.exception("error handling a sharded Redis adapter message")

    async def numsub(self, channel: str) -> int:
        """PUBSUB SHARDNUMSUB: how many servers listen on this namespace's channel."""
        try:
            result = await asyncio.wait_for(
                self._redis.execute_command("PUBSUB", "SHARDNUMSUB", _channel(channel)),
                self.requests_timeout,
            )
        except TimeoutError:
            raise RedisAdapterError(
                "timeout reached while waiting for PUBSUB SHARDNUMSUB") from None
        except Exception as exc:
            raise RedisAdapterError(f"Redis unavailable: {exc!r}") from exc
        # [channel, count] (RESP2) or {channel: count}, depending on the client's parser.
        if isinstance(result, dict):
            return int(next(iter(result.values()), 0))
        if isinstance(result, list | tuple) and result:
            last = result[-1]
            return int(last[1] if isinstance(last, list | tuple) else last)
        return 0


class ShardedRedisAdapter(InMemoryAdapter):
    """The in-memory adapter of one namespace, plus ClusterAdapter messages to the others."""

    def __init__(self, nsp: Namespace, factory: ShardedRedisAdapterFactory) -> None:
        super().__init__(nsp)
        self.uid = _random_id()
        self.factory = factory
        self.mode = factory.subscription_mode
        self.channel = f"{factory.channel_prefix}#{nsp.name}#"
        self.response_channel = f"{self.channel}{self.uid}#"
        self._response_bytes = _channel(self.response_channel)
        self._requests: dict[str, _Request] = {}
        self._ack_requests: dict[str, tuple[Callable[[int], None], Callable[[Any], None]]] = {}
        self._closed = False
        # With the JSON parser a Date reaches clients as Node's JSON.stringify writes it.
        self._dates_as_text = isinstance(nsp.server.parser, JsonParser)
        self._packb = factory._packb
        if self.mode != "static":
            self.on("create-room", self._on_create_room)
            self.on("delete-room", self._on_delete_room)
        factory._register(self)

    # ------------------------------------------------------------------ room channels

    def _separate_channel(self, room: str) -> bool:
        # Node's shouldUseASeparateNamespace(): a room is private when it is a socket's id.
        return self.mode == "dynamic-private" or (self.mode == "dynamic" and room not in self.sids)

    def _room_channel(self, room: str) -> str:
        return f"{self.channel}{room}#"

    def _on_create_room(self, room: str) -> None:
        if self._separate_channel(room) and not self._closed:
            self.factory._add_channel(self, self._room_channel(room))

    def _on_delete_room(self, room: str) -> None:
        # Unconditional: a socket's own room may be reported after its id left ``sids``;
        # removing a channel that was never added does nothing.
        self.factory._remove_channel(self, self._room_channel(room))

    def _publish_channel(self, message_type: int, data: dict[str, Any]) -> str:
        # Node's computeChannel(): a broadcast with an ack stays on the common channel, as
        # the number of answers expected is counted over every node.
        if message_type == _BROADCAST and "requestId" not in data:
            rooms = data["opts"]["rooms"]
            if len(rooms) == 1 and (
                self.mode == "dynamic-private"
                or (self.mode == "dynamic" and len(rooms[0]) != _SOCKET_ID_LENGTH)
            ):
                return self._room_channel(rooms[0])
        return self.channel

    # ------------------------------------------------------------------ encoding

    def _encode(self, message: dict[str, Any]) -> bytes | str:
        """Node's bytes: msgpack when the data holds binary, else JSON.stringify's text."""
        # msgpack.packb (C) tells cheaply what the message may hold: no bin marker, no
        # binary; no float64 marker, no float (JSON.stringify writes 1.0 as 1, orjson not).
        # A marker byte inside a string only sends the message down the exact, slow path.
        try:
            packed: bytes | None = self._packb(message, use_bin_type=True)
        except (TypeError, ValueError, OverflowError):
            packed = None  # a datetime, a lone surrogate, ...: the exact encoders decide
        if (message["type"] in _MAY_CONTAIN_BINARY
                and (packed is None or any(m in packed for m in _BIN_MARKERS))
                and _has_binary(message.get("data"))):
            return self.factory.encode(message)
        if packed is not None and b"\xcb" not in packed:
            try:
                return orjson.dumps(message, option=_ORJSON_STRICT)
            except TypeError:
                pass  # an int key, a str subclass, ...
        return _to_json(message)

    def _publish(self, message_type: int, data: dict[str, Any]) -> bool:
        message = {"type": message_type, "data": data, "uid": self.uid, "nsp": self.nsp.name}
        try:
            encoded = self._encode(message)
        except (TypeError, ValueError, OverflowError):
            logger.exception("message to other nodes not sent: cannot encode it")
            return False
        return self.factory.publish(self._publish_channel(message_type, data), encoded)

    def _publish_response(self, requester: Any, message_type: int, data: dict[str, Any]) -> None:
        if not isinstance(requester, str):
            return
        message = {"type": message_type, "data": data, "uid": self.uid, "nsp": self.nsp.name}
        try:
            encoded = self._encode(message)
        except (TypeError, ValueError, OverflowError):
            logger.exception("response to another node not sent: cannot encode it")
            return
        self.factory.publish(f"{self.channel}{requester}#", encoded)

    @staticmethod
    def _opts(opts: BroadcastOptions, with_timeout: bool = False) -> dict[str, Any]:
        return {"rooms": list(opts.rooms), "except": list(opts.except_rooms),
                "flags": _js_flags(opts.flags, with_timeout)}

    # ------------------------------------------------------------------ outgoing

    def broadcast(self, packet: Packet, opts: BroadcastOptions) -> None:
        if not opts.flags.local:
            # No "nsp" in the packet: Node encodes it before its local broadcast adds one.
            self._publish(_BROADCAST, {"packet": {"type": int(packet.type), "data": packet.data},
                                       "opts": self._opts(opts)})
        super().broadcast(packet, opts)

    def broadcast_with_ack(
        self,
        packet: Packet,
        opts: BroadcastOptions,
        client_count: Callable[[int], None],
        on_ack: Callable[[Any], None],
    ) -> None:
        if not opts.flags.local:
            request_id = _random_id()
            self._ack_requests[request_id] = (client_count, on_ack)
            self._publish(_BROADCAST, {
                "packet": {"type": int(packet.type), "data": packet.data},
                "requestId": request_id, "opts": self._opts(opts, with_timeout=True)})
            # No way to know when every remote client answered: forget after the delay.
            delay = opts.flags.timeout or self.factory.requests_timeout
            asyncio.get_running_loop().call_later(delay, self._ack_requests.pop, request_id, None)
        super().broadcast_with_ack(packet, opts, client_count, on_ack)

    def add_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        if not opts.flags.local:
            self._publish(_SOCKETS_JOIN, {"opts": self._opts(opts), "rooms": rooms})
        super().add_sockets(opts, rooms)

    def del_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        if not opts.flags.local:
            self._publish(_SOCKETS_LEAVE, {"opts": self._opts(opts), "rooms": rooms})
        super().del_sockets(opts, rooms)

    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        if not opts.flags.local:
            self._publish(_DISCONNECT_SOCKETS, {"opts": self._opts(opts), "close": bool(close)})
        super().disconnect_sockets(opts, close)

    def server_side_emit(self, args: list[Any]) -> None:
        self._publish(_SERVER_SIDE_EMIT, {"packet": args})

    async def server_side_emit_with_ack(self, args: list[Any]) -> list[Any]:
        """The answers of the other nodes' handlers (one per node)."""
        expected = await self.server_count() - 1
        if expected <= 0:
            return []
        request_id = _random_id()
        request = _Request(_SERVER_SIDE_EMIT, asyncio.get_running_loop().create_future(),
                           expected, count=0, items=[])
        return await self._request(request_id, request, {"requestId": request_id, "packet": args},
                                   "serverSideEmit", self.factory.requests_timeout, True)

    async def server_count(self) -> int:
        return await self.factory.numsub(self.channel)

    @property
    def requests_timeout(self) -> float:
        """Bound on waits for other nodes (``emit_with_ack`` without ``timeout`` included)."""
        return self.factory.requests_timeout

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[Any]:
        local: list[Any] = await super().fetch_sockets(opts)
        if opts.flags.local:
            return local
        expected = await self.server_count() - 1
        if expected <= 0:
            return local
        request_id = _random_id()
        request = _Request(_FETCH_SOCKETS, asyncio.get_running_loop().create_future(),
                           expected, count=0, items=[])
        remote = await self._request(
            request_id, request, {"opts": self._opts(opts), "requestId": request_id},
            "fetchSockets", opts.flags.timeout or self.factory.requests_timeout)
        return local + [RemoteSocket(self, item)  # type: ignore[arg-type]
                        for item in remote if isinstance(item, dict)]

    async def _request(
        self, request_id: str, request: _Request, data: dict[str, Any], what: str,
        timeout: float, ack_timeout: bool = False,
    ) -> list[Any]:
        kind = _FETCH_SOCKETS if request.type == _FETCH_SOCKETS else _SERVER_SIDE_EMIT
        self._requests[request_id] = request
        try:
            if not self._publish(kind, data):
                raise RedisAdapterError(f"{what} request not sent: Redis is unavailable")
            try:
                return await asyncio.wait_for(asyncio.shield(request.future), timeout)
            except TimeoutError:
                items = list(request.items or ())
                message = (f"timeout reached: only {request.count} responses received out of "
                           f"{request.expected}")
                if ack_timeout:
                    raise AckTimeoutError(message, responses=items) from None
                raise RedisAdapterError(f"{what}: {message}") from None
        finally:
            self._requests.pop(request_id, None)

    def start(self) -> None:
        self.factory._start()

    def add_all(self, sid: str, rooms: Iterable[str]) -> None:
        # Under ASGI nothing calls start(): the first connection starts the Redis side.
        if self.factory._subscriber is None:
            self.factory._start()
        super().add_all(sid, rooms)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.factory._unregister(self)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ incoming

    def _on_raw_message(self, channel: bytes, data: bytes) -> None:
        try:
            if data[:1] == b"{":
                message = _loads(data.decode("utf-8", "surrogateescape"))
            else:
                message = _unpack(data, self._dates_as_text)
        except Exception:
            logger.debug("ignoring a malformed message")
            return
        if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
            return
        if channel == self._response_bytes:
            self._on_response(message)
        else:
            self._on_message(message)

    def _on_message(self, message: dict[str, Any]) -> None:
        sender = message.get("uid")
        if sender == self.uid or message.get("nsp") != self.nsp.name:
            return
        kind = message.get("type")
        data: dict[str, Any] = message["data"]
        if kind == _BROADCAST:
            self._on_broadcast(sender, data)
        elif kind == _SOCKETS_JOIN:
            InMemoryAdapter.add_sockets(self, _selector(data.get("opts")),
                                        _rooms(data.get("rooms")))
        elif kind == _SOCKETS_LEAVE:
            InMemoryAdapter.del_sockets(self, _selector(data.get("opts")),
                                        _rooms(data.get("rooms")))
        elif kind == _DISCONNECT_SOCKETS:
            InMemoryAdapter.disconnect_sockets(self, _selector(data.get("opts")),
                                               bool(data.get("close")))
        elif kind == _FETCH_SOCKETS:
            found: list[Socket] = []
            self._apply(_selector(data.get("opts")), found.append)
            self._publish_response(sender, _FETCH_SOCKETS_RESPONSE, {
                "requestId": data.get("requestId"),
                "sockets": [{"id": s.id, "handshake": _handshake(s), "rooms": list(s.rooms),
                             "data": s.data} for s in found]})
        elif kind == _SERVER_SIDE_EMIT:
            self._on_server_side_emit(sender, data)
        elif kind in _RESPONSES:
            # Node may send a response on the common channel too; its onMessage() accepts it.
            self._on_response(message)

    def _on_broadcast(self, sender: Any, data: dict[str, Any]) -> None:
        packet = data.get("packet")
        if not isinstance(packet, dict) or not isinstance(packet.get("data"), list):
            return
        raw_opts = data.get("opts") if isinstance(data.get("opts"), dict) else {}
        flags = raw_opts.get("flags") if isinstance(raw_opts.get("flags"), dict) else {}
        opts = BroadcastOptions(
            rooms=_rooms(raw_opts.get("rooms")), except_rooms=_rooms(raw_opts.get("except")),
            flags=BroadcastFlags(volatile=bool(flags.get("volatile")),
                                 compress=flags.get("compress") is not False))
        request_id = data.get("requestId")
        if request_id is None:
            try:
                kind = PacketType(packet.get("type", 2))
            except ValueError:
                return
            # The same encode-once path as a local broadcast; never published again.
            InMemoryAdapter.broadcast(self, Packet(kind, packet["data"], self.nsp.name), opts)
            return

        def on_count(count: int) -> None:
            self._publish_response(sender, _BROADCAST_CLIENT_COUNT,
                                   {"requestId": request_id, "clientCount": count})

        def on_ack(*args: Any) -> None:
            self._publish_response(sender, _BROADCAST_ACK,
                                   {"requestId": request_id, "packet": args[0] if args else None})

        InMemoryAdapter.broadcast_with_ack(
            self, Packet(_EVENT, packet["data"], self.nsp.name), opts, on_count, on_ack)

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
                self._publish_response(sender, _SERVER_SIDE_EMIT_RESPONSE,
                                       {"requestId": request_id, "packet": arg})

        self.nsp._on_server_side_emit(args[0], args[1:], ack)

    def _on_response(self, message: dict[str, Any]) -> None:
        data: dict[str, Any] = message["data"]
        request_id = data.get("requestId")
        if not isinstance(request_id, str):
            return
        kind = message.get("type")
        acks = self._ack_requests.get(request_id)
        if acks is not None:
            if kind == _BROADCAST_CLIENT_COUNT and isinstance(data.get("clientCount"), int):
                acks[0](data["clientCount"])
            elif kind == _BROADCAST_ACK:
                acks[1](data.get("packet"))
            return
        request = self._requests.get(request_id)
        if request is None or request.future.done():
            return
        assert request.items is not None
        if kind == _FETCH_SOCKETS_RESPONSE and request.type == _FETCH_SOCKETS:
            if isinstance(data.get("sockets"), list):
                request.items.extend(data["sockets"])
        elif kind == _SERVER_SIDE_EMIT_RESPONSE and request.type == _SERVER_SIDE_EMIT:
            request.items.append(data.get("packet"))
        else:
            return
        request.count += 1
        if request.count >= request.expected:
            request.future.set_result(request.items)


def create_sharded_adapter(
    redis: Any,
    *,
    channel_prefix: str = "socket.io",
    subscription_mode: str = "dynamic",
    requests_timeout: float = 5.0,
) -> ShardedRedisAdapterFactory:
    """An adapter factory for ``Server(adapter=...)``, like npm ``createShardedAdapter``.

    ``redis`` is a ``redis.asyncio.Redis`` client of a Redis 7+ server, used to publish; the
    adapter opens its own subscriber connection to the same server. ``channel_prefix`` starts
    every channel (the same on every node). ``subscription_mode``: ``"static"`` (one channel
    per namespace), ``"dynamic"`` (default: also one channel per public room, subscribed
    while this node has members in it) or ``"dynamic-private"`` (socket-id rooms too).
    ``requests_timeout`` (seconds; Node's is a fixed 5 s) bounds ``fetch_sockets`` and
    ``server_side_emit_with_ack``.
    """
    return ShardedRedisAdapterFactory(redis, channel_prefix, subscription_mode, requests_timeout)
