"""Redis adapter: Socket.IO servers (ours and Node's) sharing rooms and broadcasts as one fleet.

``create_adapter(redis)`` speaks the wire format of npm ``@socket.io/redis-adapter`` 8.3.0
(``createAdapter``), so Node socket.io servers with that adapter, our servers and Redis
emitters (``socketio_core.redis_emitter`` or npm ``@socket.io/redis-emitter``) serve one set
of clients::

    import redis.asyncio as redis
    from socketio_core import Server
    from socketio_core.redis_adapter import create_adapter

    adapter = create_adapter(redis.Redis.from_url("redis://127.0.0.1:6379"))
    io = Server(adapter=adapter)
    await adapter.ready()            # optional: raises if Redis cannot be reached

Encoding: notepack.io 3's bytes. Messages go through ``msgpack.packb`` (C) and only those
it refuses (datetimes, lone surrogates) or that may hold a float are re-encoded by the exact,
much slower encoder of ``redis_emitter``. The one difference left is invisible to peers: a
dict whose keys look like array indices keeps Python's key order (JavaScript objects order
such keys themselves, so every Node peer decodes the same object).

Channels, per namespace ``nsp`` (Node's layout): broadcasts on ``<key>#<nsp>#`` or
``<key>#<nsp>#<room>#`` (exactly one room), msgpack ``[uid, packet, opts]``, received with
PSUBSCRIBE ``<key>#<nsp>#*``; requests on ``<key>-request#<nsp>#`` (JSON, msgpack for
broadcasts with acks); responses on ``<key>-response#<nsp>#`` and
``<key>-response#<nsp>#<uid>#``. One subscriber connection per ``create_adapter`` call
serves every namespace.

A broadcast is delivered to local sockets at once and handed to one publisher task that
sends queued messages in order, pipelined, on one connection. Redis being away never
blocks nor fails a local delivery: publishes are dropped (bounded queue), counted in
``factory.stats`` (``published``, ``publish_errors``, ``dropped``, ``received``,
``reconnects``) and logged once per outage; the subscriber reconnects with backoff
(0.1 s doubling to 5 s, with jitter) and subscribes again. Requests to other nodes
(``fetch_sockets``, ``all_rooms``, ``server_count``, acks) raise ``RedisAdapterError`` or
``AckTimeoutError`` within ``requests_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import logging
import random
import secrets
import string
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from .adapter import BroadcastFlags, BroadcastOptions, InMemoryAdapter
from .errors import AckTimeoutError
from .packet import JsonParser, Packet, PacketType, _loads
from .redis_emitter import _MAX_DEPTH, _fix_surrogates, _iso, _MsgpackEncoder, _to_json
from .socket import Handshake

if TYPE_CHECKING:
    from .namespace import Namespace
    from .socket import Socket

__all__ = [
    "RedisAdapter",
    "RedisAdapterError",
    "RedisAdapterFactory",
    "RemoteSocket",
    "create_adapter",
]

logger = logging.getLogger(__name__)

# RequestType of @socket.io/redis-adapter (lib/index.ts), in enum order.
_SOCKETS = 0
_ALL_ROOMS = 1
_REMOTE_JOIN = 2
_REMOTE_LEAVE = 3
_REMOTE_DISCONNECT = 4
_REMOTE_FETCH = 5
_SERVER_SIDE_EMIT = 6
_BROADCAST = 7
_BROADCAST_CLIENT_COUNT = 8
_BROADCAST_ACK = 9

_EVENT = PacketType.EVENT
_UID_CHARS = string.ascii_letters + string.digits  # uid2's alphabet
#: Messages, and their bytes, waiting for the publisher; beyond either, new ones are dropped
#: and counted (``stats.dropped``) rather than held while Redis is slow or away.
MAX_PUBLISH_QUEUE = 100_000
MAX_PUBLISH_BYTES = 64 * 1024 * 1024
_PUBLISH_BATCH = 256
_BACKOFF_START = 0.1
_BACKOFF_MAX = 5.0
_READ_POLL = 0.5  # seconds a subscriber read waits, so that subscription changes go out


class RedisAdapterError(ConnectionError):
    """A request to the other nodes could not be made or was not answered in time."""


def _uid() -> str:
    """Like npm uid2(6): the classic adapter's node and request ids."""
    return "".join(secrets.choice(_UID_CHARS) for _ in range(6))


def _channel(text: str) -> bytes:
    if text.isascii():
        return text.encode()
    return _fix_surrogates(text).encode()  # what Node's Buffer.from() writes for a lone half


def _backoff(delay: float) -> float:
    return min(_BACKOFF_MAX, delay * 2)


def _jitter(delay: float) -> float:
    return delay * (0.5 + random.random() / 2)  # jitter only, not for security


def _js_flags(flags: BroadcastFlags, with_timeout: bool = False) -> dict[str, Any]:
    # Node's operator sets only the flags asked for; ours keeps defaults, so only what
    # differs from them is sent (the common case, no flag at all, is byte-identical).
    out: dict[str, Any] = {}
    if flags.volatile:
        out["volatile"] = True
    if not flags.compress:
        out["compress"] = False
    if with_timeout and flags.timeout is not None:
        out["timeout"] = int(flags.timeout * 1000)
    return out


def _rooms(value: Any) -> frozenset[str]:
    if not isinstance(value, list):
        return frozenset()
    # A Node room may be a number; here rooms are str.
    return frozenset(r if isinstance(r, str) else _to_json(r) for r in value
                     if isinstance(r, str | int | float) and not isinstance(r, bool))


def _selector(value: Any) -> BroadcastOptions:
    if not isinstance(value, dict):
        return BroadcastOptions()
    return BroadcastOptions(rooms=_rooms(value.get("rooms")),
                            except_rooms=_rooms(value.get("except")))


def _selector_json(opts: BroadcastOptions) -> str:
    return f'{{"rooms":{_to_json(list(opts.rooms))},"except":{_to_json(list(opts.except_rooms))}}}'


def _handshake(socket: Socket) -> dict[str, Any]:
    handshake = socket.handshake
    out = {f.name: getattr(handshake, f.name) for f in fields(handshake)}
    out["headers"] = dict(out["headers"])
    out["query"] = dict(out["query"])
    return out


class _Stats:
    __slots__ = ("dropped", "publish_errors", "published", "received", "reconnects")

    def __init__(self) -> None:
        self.published = 0  # messages Redis took
        self.publish_errors = 0  # messages lost to a Redis error or to an outage
        self.dropped = 0  # messages refused because the queue was full
        self.received = 0  # messages read by the subscriber
        self.reconnects = 0  # subscriber connections made after the first

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class RedisAdapterFactory:
    """What ``create_adapter`` returns: give it to ``Server(adapter=...)``.

    It owns the Redis side shared by the namespaces: one subscriber connection and one
    publisher task. ``await factory.ready()`` waits until every namespace is subscribed
    (or raises ``RedisAdapterError``); ``await factory.aclose()`` releases everything.
    """

    __slots__ = (
        "_channels",
        "_closed",
        "_exact",
        "_loop",
        "_outage",
        "_packb",
        "_patterns",
        "_pending_confirms",
        "_publish_wake",
        "_publisher",
        "_queue",
        "_queued_bytes",
        "_ready",
        "_redis",
        "_retry_at",
        "_sub_client",
        "_sub_dirty",
        "_sub_error",
        "_subscriber",
        "key",
        "publish_on_specific_response_channel",
        "requests_timeout",
        "stats",
    )

    def __init__(
        self,
        redis: Any,
        key: str,
        requests_timeout: float,
        publish_on_specific_response_channel: bool,
    ) -> None:
        if not callable(getattr(redis, "publish", None)) or not callable(
            getattr(redis, "pubsub", None)
        ):
            raise TypeError("create_adapter needs a redis.asyncio client (redis.asyncio.Redis)")
        import redis as redis_package

        if isinstance(redis, redis_package.Redis):
            raise TypeError("create_adapter needs a redis.asyncio client, not redis.Redis")
        self._redis = redis
        self.key = key
        self.requests_timeout = requests_timeout
        self.publish_on_specific_response_channel = publish_on_specific_response_channel
        self._exact = _MsgpackEncoder()
        import msgpack

        self._packb = msgpack.packb
        self.stats = _Stats()
        # channel -> adapters (several servers of one process may share a factory)
        self._channels: dict[bytes, list[RedisAdapter]] = {}
        self._patterns: dict[bytes, list[RedisAdapter]] = {}
        self._queue: deque[tuple[bytes, bytes]] = deque()
        self._queued_bytes = 0
        self._publish_wake: asyncio.Event | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._subscriber: asyncio.Task[None] | None = None
        self._sub_client = _binary_client(redis)
        self._sub_dirty = True
        self._pending_confirms = 0
        self._ready: asyncio.Event | None = None
        self._sub_error: BaseException | None = None
        self._outage = False
        self._retry_at = 0.0
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def __call__(self, nsp: Namespace) -> RedisAdapter:
        return RedisAdapter(nsp, self)

    def encode(self, message: Any) -> bytes:
        """msgpack as notepack.io 3 writes it (see the module docstring for the fast path)."""
        try:
            data: bytes = self._packb(message, use_bin_type=True)
        except (TypeError, ValueError, OverflowError):
            # datetime, lone surrogates, ...: the exact encoder knows them or says why not.
            return self._exact.encode(message)
        if b"\xcb" in data:
            # Maybe a float64: notepack packs an integral number as an integer.
            return self._exact.encode(message)
        return data

    # ------------------------------------------------------------------ registration

    def _register(self, adapter: RedisAdapter) -> None:
        self._channels.setdefault(_channel(adapter.request_channel), []).append(adapter)
        self._channels.setdefault(_channel(adapter.response_channel), []).append(adapter)
        self._channels.setdefault(_channel(adapter.specific_response_channel), []).append(
            adapter
        )
        self._patterns.setdefault(_channel(adapter.channel + "*"), []).append(adapter)
        self._sub_dirty = True
        if self._ready is not None:
            self._ready.clear()
        self._start()

    def _unregister(self, adapter: RedisAdapter) -> None:
        for table in (self._channels, self._patterns):
            for name in list(table):
                users = table[name]
                if adapter in users:
                    users.remove(adapter)
                if not users:
                    del table[name]
        self._sub_dirty = True
        if not self._channels:
            # The last namespace is gone (``Server.stop()``): the subscriber stops, the
            # publisher sends what is queued (the last disconnects, say), then stops too.
            if self._subscriber is not None:
                self._subscriber.cancel()
                self._subscriber = None
            if self._publish_wake is not None:
                self._publish_wake.set()

    def _start(self) -> None:
        if self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # started by ready() or the first publish, inside a loop
        self._loop = loop
        if self._ready is None:
            self._ready = asyncio.Event()
            self._publish_wake = asyncio.Event()
        if self._channels and (self._subscriber is None or self._subscriber.done()):
            self._subscriber = loop.create_task(self._run_subscriber(), name="redis-adapter-sub")
        if self._publisher is None or self._publisher.done():
            self._publisher = loop.create_task(self._run_publisher(), name="redis-adapter-pub")

    @property
    def healthy(self) -> bool:
        """Subscribed to every channel right now: False before the first subscription,
        during a Redis outage (until resubscribed) and after ``aclose``. For readiness
        probes; it never waits."""
        return not self._closed and self._ready is not None and self._ready.is_set()

    async def ready(self, timeout: float | None = None) -> None:
        """Wait until the subscriptions of every namespace created so far are active.

        Raises ``RedisAdapterError`` when that takes longer than ``timeout`` (default:
        ``requests_timeout``), with the last Redis error as the cause.
        """
        self._start()
        if self._ready is None:
            raise RedisAdapterError("the Redis adapter is closed")
        try:
            await asyncio.wait_for(self._ready.wait(), timeout or self.requests_timeout)
        except TimeoutError:
            raise RedisAdapterError(
                f"Redis adapter not subscribed after {timeout or self.requests_timeout}s: "
                f"{self._sub_error!r}"
            ) from self._sub_error

    async def aclose(self, flush_timeout: float = 0.0) -> None:
        """Stop the subscriber and the publisher. What is still queued is sent first if
        the server was stopped (its namespaces closed) and Redis takes it within
        ``flush_timeout`` seconds; the rest is not sent."""
        publisher = self._publisher
        if flush_timeout > 0 and publisher is not None and not self._channels:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(publisher), flush_timeout)
        self._closed = True
        for task in (self._subscriber, self._publisher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._sub_client is not self._redis:  # never close the caller's client
            with contextlib.suppress(Exception):
                await self._sub_client.aclose()

    # ------------------------------------------------------------------ publishing

    def publish(self, channel: str, message: bytes | str) -> bool:
        """Queue a message for Redis; never waits. False when it was dropped."""
        if self._closed:
            return False
        if self._publisher is None:
            self._start()
        data = message.encode() if isinstance(message, str) else message
        if (len(self._queue) >= MAX_PUBLISH_QUEUE
                or self._queued_bytes + len(data) > MAX_PUBLISH_BYTES):
            self.stats.dropped += 1
            if not self._outage:
                self._outage = True
                logger.warning("Redis publish queue full (%d messages, %d bytes): dropping "
                               "messages to other nodes", len(self._queue), self._queued_bytes)
            return False
        self._queued_bytes += len(data)
        self._queue.append((_channel(channel), data))
        if self._publish_wake is not None:
            self._publish_wake.set()
        return True

    async def _run_publisher(self) -> None:
        assert self._publish_wake is not None
        wake = self._publish_wake
        queue = self._queue
        delay = _BACKOFF_START
        loop = asyncio.get_running_loop()
        while True:
            await wake.wait()
            wake.clear()
            if not queue and not self._channels:
                self._publisher = None
                return
            while queue:
                batch = [queue.popleft() for _ in range(min(len(queue), _PUBLISH_BATCH))]
                self._queued_bytes -= sum(len(data) for _, data in batch)
                if self._outage and loop.time() < self._retry_at:
                    # Fail fast while Redis is away: no waiting, no growing queue.
                    self.stats.publish_errors += len(batch)
                    continue
                try:
                    pipe = self._redis.pipeline(transaction=False)
                    for channel, data in batch:
                        pipe.publish(channel, data)
                    await pipe.execute()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.stats.publish_errors += len(batch)
                    if not self._outage:
                        self._outage = True
                        logger.error("Redis publish failed (%r): messages to other nodes are "
                                     "dropped until Redis is back", exc)
                    self._retry_at = loop.time() + _jitter(delay)
                    delay = _backoff(delay)
                    continue
                self.stats.published += len(batch)
                delay = _BACKOFF_START
                if self._outage:
                    self._outage = False
                    logger.warning("Redis publish works again (%d messages lost in all)",
                                   self.stats.publish_errors + self.stats.dropped)
            if not self._channels:
                self._publisher = None
                return

    # ------------------------------------------------------------------ subscribing

    async def _run_subscriber(self) -> None:
        delay = _BACKOFF_START
        connected_once = False
        outage = False
        while not self._closed:
            pubsub = self._sub_client.pubsub(ignore_subscribe_messages=False)
            try:
                self._sub_dirty = True
                subscribed: set[bytes] = set()
                patterns: set[bytes] = set()
                self._pending_confirms = 0
                while True:
                    if self._sub_dirty:
                        self._sub_dirty = False
                        await self._sync_subscriptions(pubsub, subscribed, patterns)
                        if self._pending_confirms <= 0 and self._ready is not None:
                            self._ready.set()
                    message = await pubsub.get_message(timeout=_READ_POLL)
                    if message is None:
                        continue
                    if not connected_once or outage:
                        if outage:
                            logger.warning("Redis subscriber connected again")
                            self.stats.reconnects += 1
                        connected_once = True
                        outage = False
                        delay = _BACKOFF_START
                    self._on_message(message)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                if self._sub_client is not self._redis:
                    with contextlib.suppress(Exception):
                        await self._sub_client.connection_pool.disconnect()
                raise
            except Exception as exc:
                self._sub_error = exc
                if self._ready is not None:
                    self._ready.clear()
                if not outage:
                    outage = True
                    logger.error("Redis subscriber lost (%r): reconnecting with backoff", exc)
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            await asyncio.sleep(_jitter(delay))
            delay = _backoff(delay)

    async def _sync_subscriptions(
        self, pubsub: Any, subscribed: set[bytes], patterns: set[bytes]
    ) -> None:
        want = set(self._channels)
        want_patterns = set(self._patterns)
        new = sorted(want - subscribed)
        new_patterns = sorted(want_patterns - patterns)
        if new:
            self._pending_confirms += len(new)
            await pubsub.subscribe(*new)
        if new_patterns:
            self._pending_confirms += len(new_patterns)
            await pubsub.psubscribe(*new_patterns)
        gone = sorted(subscribed - want)
        gone_patterns = sorted(patterns - want_patterns)
        if gone:
            await pubsub.unsubscribe(*gone)
        if gone_patterns:
            await pubsub.punsubscribe(*gone_patterns)
        subscribed.clear()
        subscribed.update(want)
        patterns.clear()
        patterns.update(want_patterns)

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind in (b"subscribe", "subscribe", b"psubscribe", "psubscribe"):
            self._pending_confirms -= 1
            if self._pending_confirms <= 0 and not self._sub_dirty and self._ready is not None:
                self._ready.set()
            return
        data = message.get("data")
        if not isinstance(data, bytes):
            return
        self.stats.received += 1
        try:
            if kind in ("pmessage", b"pmessage"):
                for adapter in list(self._patterns.get(message["pattern"], ())):
                    adapter._on_broadcast(message["channel"], data)
            elif kind in ("message", b"message"):
                for adapter in list(self._channels.get(message["channel"], ())):
                    adapter._on_channel_message(message["channel"], data)
        except Exception:
            # One bad message must not stop the subscriber.
            logger.exception("error handling a Redis adapter message")

    async def numsub(self, channel: str) -> int:
        """PUBSUB NUMSUB: how many servers listen on this request channel."""
        try:
            result = await asyncio.wait_for(
                self._redis.pubsub_numsub(_channel(channel)), self.requests_timeout
            )
        except TimeoutError:
            raise RedisAdapterError("timeout reached while waiting for PUBSUB NUMSUB") from None
        except Exception as exc:
            raise RedisAdapterError(f"Redis unavailable: {exc!r}") from exc
        return int(result[0][1]) if result else 0


def _binary_client(redis: Any) -> Any:
    """A client of the same server whose replies are bytes (msgpack must not be decoded)."""
    pool = getattr(redis, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if pool is None or kwargs is None:
        return redis
    from redis.asyncio import ConnectionPool, Redis

    kwargs = {**kwargs, "decode_responses": False}
    return Redis(connection_pool=ConnectionPool(connection_class=pool.connection_class,
                                                max_connections=4, **kwargs))


@dataclass(slots=True)
class _Request:
    type: int
    future: asyncio.Future[Any]
    expected: int
    count: int = 1  # answers so far; this node counts as one, like Node
    items: list[Any] | None = None


def _remote_handshake(value: Any) -> Handshake:
    """Node's handshake object as ours, so local and remote sockets read alike."""
    value = value if isinstance(value, dict) else {}

    def get(name: str, kind: type, default: Any) -> Any:
        item = value.get(name)
        return item if isinstance(item, kind) else default

    return Handshake(
        headers=get("headers", dict, {}), time=get("time", str, ""),
        address=get("address", str, ""), xdomain=bool(value.get("xdomain")),
        secure=bool(value.get("secure")), issued=get("issued", int, 0),
        url=get("url", str, ""), query=get("query", dict, {}), auth=get("auth", dict, {}),
    )


class RemoteSocket:
    """A socket of another node, as ``fetch_sockets`` returns it (Node's ``RemoteSocket``):
    ``id``, ``handshake`` (a ``Handshake``, like a local socket's), ``rooms``, ``data``;
    ``emit``, ``join``, ``leave`` and ``disconnect`` act through the cluster."""

    __slots__ = ("_adapter", "data", "handshake", "id", "rooms")

    def __init__(self, adapter: InMemoryAdapter, details: dict[str, Any]) -> None:
        self._adapter = adapter
        self.id: str = details.get("id", "")
        self.handshake = _remote_handshake(details.get("handshake"))
        self.rooms: set[str] = set(details.get("rooms") or ())
        self.data: Any = details.get("data")

    def __repr__(self) -> str:
        return f"<RemoteSocket {self.id}>"

    def _only_me(self) -> BroadcastOptions:
        return BroadcastOptions(rooms=frozenset((self.id,)))

    def emit(self, event: str, *args: Any) -> None:
        packet = Packet(_EVENT, [event, *args], self._adapter.nsp.name)
        self._adapter.broadcast(packet, self._only_me())

    def join(self, *rooms: str) -> None:
        self._adapter.add_sockets(self._only_me(), rooms)

    def leave(self, *rooms: str) -> None:
        self._adapter.del_sockets(self._only_me(), rooms)

    def disconnect(self, close: bool = False) -> None:
        self._adapter.disconnect_sockets(self._only_me(), close)


class FactoryAdapter(InMemoryAdapter):
    """What every Redis adapter of one namespace shares: its factory (which owns the Redis
    connections), the requests it waits answers for, and starting and stopping."""

    def __init__(self, nsp: Namespace, factory: Any, uid: str) -> None:
        super().__init__(nsp)
        self.uid = uid
        self.factory = factory
        self._requests: dict[str, _Request] = {}
        self._ack_requests: dict[str, tuple[Callable[[int], None], Callable[[Any], None]]] = {}
        self._closed = False
        # With the JSON parser a Date reaches clients as Node's JSON.stringify writes it;
        # other parsers (msgpack) carry the datetime itself, as Node's carry a Date.
        self._dates_as_text = isinstance(nsp.server.parser, JsonParser)

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
            self.factory._unregister(self)


class RedisAdapter(FactoryAdapter):
    """The in-memory adapter of one namespace, plus the messages to the other nodes."""

    factory: RedisAdapterFactory

    def __init__(self, nsp: Namespace, factory: RedisAdapterFactory) -> None:
        super().__init__(nsp, factory, _uid())
        key = factory.key
        name = nsp.name
        self.channel = f"{key}#{name}#"
        self.request_channel = f"{key}-request#{name}#"
        self.response_channel = f"{key}-response#{name}#"
        self.specific_response_channel = f"{self.response_channel}{self.uid}#"
        self._channel_bytes = _channel(self.channel)
        # msgpack of [uid, ...]: fixarray of 3, then uid as a fixstr of 6.
        self._own_prefix = b"\x93\xa6" + self.uid.encode()
        self._response_bytes = _channel(self.response_channel)
        factory._register(self)

    # ------------------------------------------------------------------ outgoing

    def _publish_json(self, channel: str, text: str) -> bool:
        return self.factory.publish(channel, text)

    def broadcast(self, packet: Packet, opts: BroadcastOptions) -> None:
        if not opts.flags.local:
            self._publish_broadcast(packet, opts)
        super().broadcast(packet, opts)

    def _publish_broadcast(self, packet: Packet, opts: BroadcastOptions) -> None:
        raw_opts = {"rooms": list(opts.rooms), "except": list(opts.except_rooms),
                    "flags": _js_flags(opts.flags)}
        message = [self.uid, {"type": int(packet.type), "data": packet.data, "nsp": self.nsp.name},
                   raw_opts]
        try:
            data = self.factory.encode(message)
        except (TypeError, ValueError, OverflowError):
            # Local sockets still get it; the other nodes cannot.
            logger.exception("broadcast not sent to other nodes: cannot encode it")
            return
        channel = self.channel
        if len(opts.rooms) == 1:
            channel += next(iter(opts.rooms)) + "#"
        self.factory.publish(channel, data)

    def broadcast_with_ack(
        self,
        packet: Packet,
        opts: BroadcastOptions,
        client_count: Callable[[int], None],
        on_ack: Callable[[Any], None],
    ) -> None:
        if not opts.flags.local:
            request_id = _uid()
            raw_opts = {"rooms": list(opts.rooms), "except": list(opts.except_rooms),
                        "flags": _js_flags(opts.flags, with_timeout=True)}
            try:
                data = self.factory.encode({
                    "uid": self.uid, "requestId": request_id, "type": _BROADCAST,
                    "packet": {"type": int(packet.type), "data": packet.data,
                               "nsp": self.nsp.name},
                    "opts": raw_opts,
                })
            except (TypeError, ValueError, OverflowError):
                logger.exception("broadcast not sent to other nodes: cannot encode it")
            else:
                self._ack_requests[request_id] = (client_count, on_ack)
                self.factory.publish(self.request_channel, data)
                # No way to know when every remote client answered: forget after the delay.
                delay = opts.flags.timeout or self.factory.requests_timeout
                asyncio.get_running_loop().call_later(
                    delay, self._ack_requests.pop, request_id, None
                )
        super().broadcast_with_ack(packet, opts, client_count, on_ack)

    def add_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        super().add_sockets(opts, rooms)
        if not opts.flags.local:
            self._publish_json(self.request_channel, (
                f'{{"uid":"{self.uid}","type":{_REMOTE_JOIN},"opts":{_selector_json(opts)},'
                f'"rooms":{_to_json(rooms)}}}'))

    def del_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        super().del_sockets(opts, rooms)
        if not opts.flags.local:
            self._publish_json(self.request_channel, (
                f'{{"uid":"{self.uid}","type":{_REMOTE_LEAVE},"opts":{_selector_json(opts)},'
                f'"rooms":{_to_json(rooms)}}}'))

    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        if not opts.flags.local:
            # Published first: a local disconnect may end the namespace's last socket.
            self._publish_json(self.request_channel, (
                f'{{"uid":"{self.uid}","type":{_REMOTE_DISCONNECT},'
                f'"opts":{_selector_json(opts)},"close":{_to_json(bool(close))}}}'))
        super().disconnect_sockets(opts, close)

    def server_side_emit(self, args: list[Any]) -> None:
        self._publish_json(self.request_channel, (
            f'{{"uid":"{self.uid}","type":{_SERVER_SIDE_EMIT},"data":{_to_json(args)}}}'))

    async def server_side_emit_with_ack(self, args: list[Any]) -> list[Any]:
        """The answers of the other nodes' handlers (one per node)."""
        expected = await self.server_count() - 1
        if expected <= 0:
            return []
        request_id = _uid()
        request = _Request(_SERVER_SIDE_EMIT, asyncio.get_running_loop().create_future(),
                           expected, count=0, items=[])
        return await self._request(request_id, request, (
            f'{{"uid":"{self.uid}","requestId":"{request_id}","type":{_SERVER_SIDE_EMIT},'
            f'"data":{_to_json(args)}}}'), "serverSideEmit", ack_timeout=True)

    async def server_count(self) -> int:
        return await self.factory.numsub(self.request_channel)

    @property
    def requests_timeout(self) -> float:
        """Bound on waits for other nodes (``emit_with_ack`` without ``timeout`` included)."""
        return self.factory.requests_timeout

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[Any]:
        local: list[Any] = await super().fetch_sockets(opts)
        if opts.flags.local:
            return local
        expected = await self.server_count()
        if expected <= 1:
            return local
        request_id = _uid()
        request = _Request(_REMOTE_FETCH, asyncio.get_running_loop().create_future(),
                           expected, items=[])
        remote = await self._request(request_id, request, (
            f'{{"uid":"{self.uid}","requestId":"{request_id}","type":{_REMOTE_FETCH},'
            f'"opts":{_selector_json(opts)}}}'), "fetchSockets")
        return local + [RemoteSocket(self, item) for item in remote if isinstance(item, dict)]

    async def all_rooms(self) -> set[str]:
        """Every room of the namespace, on every node."""
        rooms = set(self.rooms)
        expected = await self.server_count()
        if expected <= 1:
            return rooms
        request_id = _uid()
        request = _Request(_ALL_ROOMS, asyncio.get_running_loop().create_future(), expected,
                           items=[])
        remote = await self._request(request_id, request, (
            f'{{"uid":"{self.uid}","requestId":"{request_id}","type":{_ALL_ROOMS}}}'),
            "allRooms")
        rooms.update(r for r in remote if isinstance(r, str))
        return rooms

    async def _request(
        self, request_id: str, request: _Request, text: str, what: str, ack_timeout: bool = False
    ) -> list[Any]:
        self._requests[request_id] = request
        try:
            if not self.factory.publish(self.request_channel, text):
                raise RedisAdapterError(f"{what} request not sent: Redis is unavailable")
            try:
                return await asyncio.wait_for(asyncio.shield(request.future),
                                              self.factory.requests_timeout)
            except TimeoutError:
                items = list(request.items or ())
                if ack_timeout:
                    raise AckTimeoutError(
                        f"timeout reached: only {len(items)} responses received out of "
                        f"{request.expected}", responses=items) from None
                raise RedisAdapterError(
                    f"timeout reached while waiting for {what} response") from None
        finally:
            self._requests.pop(request_id, None)

    # ------------------------------------------------------------------ incoming

    def _on_broadcast(self, channel: bytes, data: bytes) -> None:
        prefix = self._channel_bytes
        if not channel.startswith(prefix):
            return
        room = channel[len(prefix):-1]
        # Node drops a room broadcast before decoding when no local socket is in the room.
        if room and room.decode("utf-8", "replace") not in self.rooms:
            return
        if data.startswith(self._own_prefix):
            return  # our own broadcast, echoed: not worth decoding
        try:
            message = self._decode(data)
            uid, packet, raw_opts = message
        except Exception:
            logger.debug("ignoring a malformed broadcast")
            return
        if uid == self.uid or not isinstance(packet, dict) or not isinstance(raw_opts, dict):
            return
        if packet.get("nsp", "/") != self.nsp.name:
            return
        args = packet.get("data")
        if not isinstance(args, list):
            return
        raw_flags = raw_opts.get("flags")
        flags = raw_flags if isinstance(raw_flags, dict) else {}
        opts = BroadcastOptions(
            rooms=_rooms(raw_opts.get("rooms")),
            except_rooms=_rooms(raw_opts.get("except")),
            flags=BroadcastFlags(volatile=bool(flags.get("volatile")),
                                 compress=flags.get("compress") is not False),
        )
        try:
            kind = PacketType(packet.get("type", 2))
        except ValueError:
            return
        # The same encode-once path as a local broadcast; never published again.
        InMemoryAdapter.broadcast(self, Packet(kind, args, self.nsp.name), opts)

    def _decode(self, data: bytes) -> Any:
        first = data[:1]
        if first in (b"{", b"["):
            return _loads(data.decode("utf-8", "surrogateescape"))
        return _unpack(data, self._dates_as_text)

    def _on_channel_message(self, channel: bytes, data: bytes) -> None:
        try:
            message = self._decode(data)
        except Exception:
            logger.debug("ignoring a malformed request or response")
            return
        if not isinstance(message, dict):
            return
        if channel.startswith(self._response_bytes):
            self._on_response(message)
        else:
            self._on_request(message)

    def _publish_response(self, request: dict[str, Any], response: str | bytes) -> None:
        channel = self.response_channel
        if self.factory.publish_on_specific_response_channel:
            channel = f"{channel}{request.get('uid')}#"
        self.factory.publish(channel, response)

    def _on_request(self, request: dict[str, Any]) -> None:
        kind = request.get("type")
        request_id = request.get("requestId")
        mine = request.get("uid") == self.uid
        sockets = self.nsp.sockets
        if kind == _SOCKETS:
            if request_id in self._requests:
                return
            ids = InMemoryAdapter.sockets(self, _rooms(request.get("rooms")))
            self._publish_response(request, f'{{"requestId":{_to_json(request_id)},'
                                            f'"sockets":{_to_json(sorted(ids))}}}')
        elif kind == _ALL_ROOMS:
            if request_id in self._requests:
                return
            self._publish_response(request, f'{{"requestId":{_to_json(request_id)},'
                                            f'"rooms":{_to_json(list(self.rooms))}}}')
        elif kind in (_REMOTE_JOIN, _REMOTE_LEAVE, _REMOTE_DISCONNECT):
            if "opts" in request:
                if mine:
                    return  # applied locally when it was sent
                opts = _selector(request["opts"])
                if kind == _REMOTE_JOIN:
                    InMemoryAdapter.add_sockets(self, opts, _rooms(request.get("rooms")))
                elif kind == _REMOTE_LEAVE:
                    InMemoryAdapter.del_sockets(self, opts, _rooms(request.get("rooms")))
                else:
                    InMemoryAdapter.disconnect_sockets(self, opts, bool(request.get("close")))
                return
            # The legacy form (adapters before 7): one socket, answered.
            sid = request.get("sid")
            socket = sockets.get(sid) if isinstance(sid, str) else None
            if socket is None:
                return
            if kind == _REMOTE_JOIN:
                socket.join(str(request.get("room")))
            elif kind == _REMOTE_LEAVE:
                socket.leave(str(request.get("room")))
            else:
                socket.disconnect(bool(request.get("close")))
            self._publish_response(request, f'{{"requestId":{_to_json(request_id)}}}')
        elif kind == _REMOTE_FETCH:
            if request_id in self._requests:
                return
            found: list[Socket] = []
            self._apply(_selector(request.get("opts")), found.append)
            items = [{"id": s.id, "handshake": _handshake(s), "rooms": list(s.rooms),
                      "data": s.data} for s in found]
            try:
                text = _to_json(items)
            except (TypeError, ValueError):
                logger.exception("fetch_sockets: socket data cannot be sent as JSON")
                text = "[]"
            self._publish_response(request, f'{{"requestId":{_to_json(request_id)},'
                                            f'"sockets":{text}}}')
        elif kind == _SERVER_SIDE_EMIT:
            if mine:
                return
            data = request.get("data")
            if not isinstance(data, list) or not data or not isinstance(data[0], str):
                return
            ack: Callable[[Any], None] | None = None
            if request_id is not None:
                answered = False

                def ack(arg: Any = None) -> None:
                    nonlocal answered
                    if answered:
                        return
                    answered = True
                    # Always the common channel, as Node does.
                    self.factory.publish(self.response_channel, (
                        f'{{"type":{_SERVER_SIDE_EMIT},"requestId":{_to_json(request_id)},'
                        f'"data":{_to_json(arg)}}}'))

            self.nsp._on_server_side_emit(data[0], data[1:], ack)
        elif kind == _BROADCAST:
            if request_id in self._ack_requests:
                return
            packet = request.get("packet")
            if not isinstance(packet, dict) or not isinstance(packet.get("data"), list):
                return
            opts = _selector(request.get("opts"))

            def on_count(count: int) -> None:
                self._publish_response(request, (
                    f'{{"type":{_BROADCAST_CLIENT_COUNT},"requestId":{_to_json(request_id)},'
                    f'"clientCount":{count}}}'))

            def on_ack(*args: Any) -> None:
                try:
                    data = self.factory.encode({
                        "type": _BROADCAST_ACK, "requestId": request_id,
                        "packet": args[0] if args else None})
                except (TypeError, ValueError, OverflowError):
                    logger.exception("broadcast ack not sent: cannot encode it")
                    return
                self._publish_response(request, data)

            InMemoryAdapter.broadcast_with_ack(
                self, Packet(_EVENT, packet["data"], self.nsp.name), opts, on_count, on_ack)

    def _on_response(self, response: dict[str, Any]) -> None:
        request_id = response.get("requestId")
        if not isinstance(request_id, str):
            return
        acks = self._ack_requests.get(request_id)
        if acks is not None:
            kind = response.get("type")
            if kind == _BROADCAST_CLIENT_COUNT and isinstance(response.get("clientCount"), int):
                acks[0](response["clientCount"])
            elif kind == _BROADCAST_ACK:
                acks[1](response.get("packet"))
            return
        request = self._requests.get(request_id)
        if request is None or request.future.done():
            return
        assert request.items is not None
        if request.type == _SERVER_SIDE_EMIT:
            request.items.append(response.get("data"))
            request.count += 1
        elif request.type == _REMOTE_FETCH:
            request.count += 1
            if isinstance(response.get("sockets"), list):
                request.items.extend(response["sockets"])
        elif request.type == _ALL_ROOMS:
            request.count += 1
            if isinstance(response.get("rooms"), list):
                request.items.extend(response["rooms"])
        if request.count >= request.expected:
            request.future.set_result(request.items)


# msgpack timestamp extensions (type -1): fixext 4, fixext 8, ext 8 of 12 bytes.
_TIMESTAMP_MARKERS = (b"\xd6\xff", b"\xd7\xff", b"\xc7\x0c\xff")


def _unpack(data: bytes, dates_as_text: bool) -> Any:
    import msgpack

    # timestamp=3: a JavaScript Date (msgpack timestamp) becomes a datetime.
    value = msgpack.unpackb(data, raw=False, strict_map_key=False, timestamp=3)
    if dates_as_text and any(marker in data for marker in _TIMESTAMP_MARKERS):
        value = _dates_as_text(value, 0)
    return value


def _dates_as_text(value: Any, depth: int) -> Any:
    """Dates as a Node server's JSON parser writes them (``Date.prototype.toJSON``)."""
    if isinstance(value, _dt.datetime):
        return _iso(value)
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, list):
        return [_dates_as_text(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {k: _dates_as_text(item, depth + 1) for k, item in value.items()}
    return value


def create_adapter(
    redis: Any,
    *,
    key: str = "socket.io",
    requests_timeout: float = 5.0,
    publish_on_specific_response_channel: bool = False,
) -> RedisAdapterFactory:
    """An adapter factory for ``Server(adapter=...)``, like npm ``createAdapter``.

    ``redis`` is a ``redis.asyncio.Redis`` client used to publish; the adapter opens its own
    subscriber connection to the same server. ``key`` prefixes every channel (the same on
    every node and emitter). ``requests_timeout`` (seconds) bounds the requests to other
    nodes (``fetch_sockets``, ``all_rooms``, ``server_side_emit_with_ack``).
    """
    return RedisAdapterFactory(redis, key, requests_timeout, publish_on_specific_response_channel)


def __getattr__(name: str) -> Any:
    # create_sharded_adapter lives in _redis_sharded, which builds on this module (through
    # _cluster): imported on first use, so that importing either one first is no cycle.
    if name == "create_sharded_adapter":
        from ._redis_sharded import create_sharded_adapter

        return create_sharded_adapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
