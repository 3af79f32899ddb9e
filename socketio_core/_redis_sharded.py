"""Sharded Redis adapter (Redis 7 sharded pub/sub), npm ``createShardedAdapter``'s wire format.

Import it from ``socketio_core.redis_adapter`` (``create_sharded_adapter``): this module
subclasses that one's factory (which loads it on first use of that name) and the
ClusterAdapter protocol of ``socketio_core._cluster``.

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
from typing import TYPE_CHECKING, Any

import orjson

from ._cluster import BROADCAST, MAY_CONTAIN_BINARY, ClusterAdapter, has_binary
from .adapter import BroadcastFlags, BroadcastOptions, InMemoryAdapter
from .packet import Packet, PacketType, _loads
from .redis_adapter import RedisAdapterError, RedisAdapterFactory, _channel, _rooms, _unpack
from .redis_emitter import _to_json

if TYPE_CHECKING:
    from .namespace import Namespace

__all__ = ["ShardedRedisAdapter", "ShardedRedisAdapterFactory", "create_sharded_adapter"]

logger = logging.getLogger(__name__)

SUBSCRIPTION_MODES = ("static", "dynamic", "dynamic-private")
_SOCKET_ID_LENGTH = 20  # Node's looksLikeASocketId()
_BIN_MARKERS = (b"\xc4", b"\xc5", b"\xc6")  # msgpack bin 8/16/32
# What orjson writes as JSON.stringify would; the rest (datetimes, str subclasses such as
# enums, dataclasses) is refused and goes to the exact encoder.
_ORJSON_STRICT = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
                  | orjson.OPT_PASSTHROUGH_DATACLASS)


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
    # The base's channel table holds this factory's own adapters: the base methods that
    # call its entries are overridden here, the others only count and remove them.
    _channels: dict[bytes, list[ShardedRedisAdapter]]  # type: ignore[assignment]

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

    # Another kind of adapter on the base factory's Redis plumbing, not a RedisAdapter.
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
        users.append(adapter)
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
        users.remove(adapter)
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
                adapter._on_raw_message(channel, data)
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


class ShardedRedisAdapter(ClusterAdapter):
    """The in-memory adapter of one namespace, plus ClusterAdapter messages to the others."""

    factory: ShardedRedisAdapterFactory

    def __init__(self, nsp: Namespace, factory: ShardedRedisAdapterFactory) -> None:
        super().__init__(nsp, factory)
        self.mode = factory.subscription_mode
        self.channel = self._common_channel
        self.response_channel = self._response_channel
        self._response_bytes = _channel(self.response_channel)
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
        if message_type == BROADCAST and "requestId" not in data:
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
        if (message["type"] in MAY_CONTAIN_BINARY
                and (packed is None or any(m in packed for m in _BIN_MARKERS))
                and has_binary(message.get("data"))):
            return self.factory.encode(message)
        if packed is not None and b"\xcb" not in packed:
            try:
                return orjson.dumps(message, option=_ORJSON_STRICT)
            except TypeError:
                pass  # an int key, a str subclass, ...
        return _to_json(message)

    def _send(self, message_type: int, data: dict[str, Any]) -> bool:
        message = {"type": message_type, "data": data, "uid": self.uid, "nsp": self.nsp.name}
        try:
            encoded = self._encode(message)
        except (TypeError, ValueError, OverflowError):
            logger.exception("message to other nodes not sent: cannot encode it")
            return False
        return self.factory.publish(self._publish_channel(message_type, data), encoded)

    def _respond(self, requester: Any, message_type: int, data: dict[str, Any]) -> None:
        if not isinstance(requester, str):
            return
        message = {"type": message_type, "data": data, "uid": self.uid, "nsp": self.nsp.name}
        try:
            encoded = self._encode(message)
        except (TypeError, ValueError, OverflowError):
            logger.exception("response to another node not sent: cannot encode it")
            return
        self.factory.publish(f"{self.channel}{requester}#", encoded)

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
            self._on_response(message.get("type"), message["data"])
        else:
            self._on_cluster_message(message)

    def _on_broadcast(self, sender: Any, data: dict[str, Any]) -> None:
        packet = data.get("packet")
        if not isinstance(packet, dict) or not isinstance(packet.get("data"), list):
            return
        raw_opts = data.get("opts")
        if not isinstance(raw_opts, dict):
            raw_opts = {}
        raw_flags = raw_opts.get("flags")
        flags = raw_flags if isinstance(raw_flags, dict) else {}
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
        self._on_broadcast_with_ack(sender, request_id, packet["data"], opts)


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
