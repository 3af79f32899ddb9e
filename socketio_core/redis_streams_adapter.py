"""Redis Streams adapter: nodes share broadcasts through one Redis stream, with recovery.

``create_adapter(redis)`` speaks the format of npm ``@socket.io/redis-streams-adapter``
0.3.1, so Node socket.io servers with that adapter and our servers serve one set of
clients::

    import redis.asyncio as redis
    from socketio_core import Server
    from socketio_core.redis_streams_adapter import create_adapter

    adapter = create_adapter(redis.Redis.from_url("redis://127.0.0.1:6379"))
    io = Server(adapter=adapter, connection_state_recovery=True)
    await adapter.ready()

Wire format (``lib/adapter.ts`` of the npm package, ``ClusterAdapter`` of socket.io-adapter):

* durable messages (broadcasts without ack, sockets join/leave/disconnect) are appended with
  ``XADD <stream> MAXLEN ~ <max_len> * uid <uid> nsp <nsp> type <n> data <data>``; ``data``
  is ``JSON.stringify``-compatible text, or base64 of msgpack when it holds binary. Every
  node reads the stream with ``XREAD BLOCK`` on its own connection.
* ephemeral messages (broadcasts with acks, server-side emits, fetch sockets) are msgpack
  ClusterMessages PUBLISHed on ``<channel_prefix>#<nsp>#``; responses on
  ``<channel_prefix>#<nsp>#<requester uid>#``. ``server_count`` is ``PUBSUB NUMSUB`` of the
  public channel.

Local delivery: without recovery, a broadcast reaches local sockets at once, whatever
Redis does; the receiving nodes deliver it on the same encode-once path.

Connection state recovery: the stream is the log. A broadcast's offset (what the client
reports when it reconnects) is its stream entry id, so with recovery on, a replayable
broadcast (an event, no ack, not volatile) reaches local sockets when this node's reader
reads it back from the stream, like every other node's: every socket gets entries in stream
order, so the offset a client reports covers everything before it. (Node delivers its own
broadcasts when ``XADD`` answers, out of stream order with the others: a client can then
get an entry twice after a recovery.) While Redis or the reader is away, replayable
broadcasts are delivered at once, without an offset or without waiting for the reader.
Everything else is delivered locally at once. A disconnected session is stored as Node
stores it (``SET <session_key_prefix><pid> base64(msgpack {sid, pid, rooms, data}) PX``)
and restored on any node (``MULTI GET DEL``, then ``XRANGE`` from the offset); the replay
stops where the reader stands when the socket joins its rooms, so no entry is both
replayed and delivered live, and none falls between.

Beyond Node: the session of a *connected* socket is also kept in Redis (written 50 ms
after it connects or its rooms change, its expiry pushed back in the background to
max_disconnection_duration + min(30 s, half of it)), so that its client recovers on another
node even when this node dies without saying so (``kill -9``). ``socket.data`` is saved as
it was at the last write. A client that comes back while its old socket still looks
connected gets the session: on the same node the old socket is disconnected ("server
namespace disconnect"); another node, seeing the old socket go later, leaves the session
alone (a Lua compare-and-set). A socket that leaves for good (client or server namespace
disconnect) has its key deleted.

Not supported: ``streamCount`` > 1, sharded pub/sub, ``onlyPlaintext``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._cluster import (
    BROADCAST,
    DISCONNECT_SOCKETS,
    MAY_CONTAIN_BINARY,
    SOCKETS_JOIN,
    SOCKETS_LEAVE,
    ClusterAdapter,
    has_binary,
    js_opts,
)
from .adapter import BroadcastFlags, BroadcastOptions, InMemoryAdapter, SessionSnapshot
from .packet import Packet, PacketType, _loads
from .redis_adapter import (
    _BACKOFF_START,
    MAX_PUBLISH_BYTES,
    MAX_PUBLISH_QUEUE,
    RedisAdapterError,
    RedisAdapterFactory,
    _backoff,
    _channel,
    _jitter,
    _rooms,
    _selector,
    _unpack,
)
from .redis_emitter import _to_json

if TYPE_CHECKING:
    from .namespace import Namespace

__all__ = ["RedisStreamsAdapter", "RedisStreamsAdapterFactory", "create_adapter"]

logger = logging.getLogger(__name__)

# Messages every node applies in stream order (XADD); the others go through pub/sub.
_DURABLE = frozenset({SOCKETS_JOIN, SOCKETS_LEAVE, DISCONNECT_SOCKETS})
_EVENT = PacketType.EVENT
_OFFSET = re.compile(r"^[0-9]+-[0-9]+$")
_BATCH = 256
_XRANGE_COUNT = 1000
_XRANGE_MAX_CALLS = 100  # like Node: a stream growing faster than we read must end somewhere
_LIVE_DEBOUNCE = 0.05  # seconds: room changes of a burst of joins make one write
_LIVE_REFRESH_MAX = 30.0
_QUERY_CONNECTIONS = 8
# SET the session unless the key holds something else than what this node wrote last.
_PERSIST_UNLESS_TAKEN = """
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[3] then
  return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return false
"""
_BINARY_DEPTH = 64  # how deep _fields looks for binary (deeper: JSON, which refuses it)

OffsetCallback = Callable[[Any], None]


def _entry_id(value: Any) -> tuple[int, int]:
    ms, _, seq = _text(value).partition("-")
    return int(ms), int(seq or 0)


def _query_client(redis: Any, block_time: float | None = None) -> Any:
    """A client of the same server with bytes replies, and a pool that makes callers wait
    rather than fail when a burst of reconnecting clients restores sessions at once. With
    ``block_time`` (the reader's): a socket timeout that a blocked XREAD does not hit."""
    pool = getattr(redis, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if pool is None or kwargs is None:
        return redis
    from redis.asyncio import BlockingConnectionPool, Redis

    kwargs = {**kwargs, "decode_responses": False}
    if block_time is not None:
        # Never shorter than a blocked XREAD: redis-py 8 gives every client a 5 s socket
        # timeout by default, the length of the default block, and the reader would fail
        # (and /readyz flap) every time the stream was idle.
        kwargs["socket_timeout"] = max(kwargs.get("socket_timeout") or 0.0, block_time + 1.0)
    return Redis(connection_pool=BlockingConnectionPool(
        connection_class=pool.connection_class, max_connections=_QUERY_CONNECTIONS, **kwargs))


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)



def _command_size(args: tuple[Any, ...]) -> int:
    """The payload bytes of a queued command (stream fields count too)."""
    size = 0
    for arg in args:
        if isinstance(arg, bytes | str):
            size += len(arg)
        elif isinstance(arg, dict):
            size += sum(len(v) for v in arg.values() if isinstance(v, bytes | str))
    return size

class RedisStreamsAdapterFactory(RedisAdapterFactory):
    """What ``create_adapter`` returns: give it to ``Server(adapter=...)``.

    Reuses the classic adapter's subscriber (pub/sub for requests and responses) and adds a
    stream reader and one ordered command writer (``XADD``, ``PUBLISH``, session keys),
    pipelined on the caller's client. ``await ready()``, ``await aclose()``, ``stats``.
    """

    def __init__(
        self,
        redis: Any,
        *,
        stream_name: str,
        max_len: int,
        read_count: int,
        block_time: float,
        channel_prefix: str,
        session_key_prefix: str,
        requests_timeout: float,
    ) -> None:
        super().__init__(redis, channel_prefix, requests_timeout, False)
        self.stream_name = stream_name
        self.max_len = max_len
        self.read_count = read_count
        self.block_time = block_time
        self.channel_prefix = channel_prefix
        self.session_key_prefix = session_key_prefix
        self._commands: deque[tuple[str, tuple[Any, ...], OffsetCallback | None]] = deque()
        self._by_nsp: dict[str, list[RedisStreamsAdapter]] = {}
        self._read_client = _query_client(redis, block_time)
        self._query_client = _query_client(redis)
        # Id of the last stream entry the reader dispatched: restores line up with it.
        self.last_read: tuple[int, int] = (0, 0)
        self.reading = False  # the reader is connected (else local replays don't wait for it)
        self._reader: asyncio.Task[None] | None = None
        self._reader_ready: asyncio.Event | None = None
        self._refresher: asyncio.Task[None] | None = None

    # Another kind of adapter on the base factory's Redis plumbing, not a RedisAdapter.
    def __call__(self, nsp: Namespace) -> RedisStreamsAdapter:  # type: ignore[override]
        return RedisStreamsAdapter(nsp, self)

    # ------------------------------------------------------------------ registration

    def _register(self, adapter: Any) -> None:
        self._channels.setdefault(_channel(adapter.public_channel), []).append(adapter)
        self._channels.setdefault(_channel(adapter.private_channel), []).append(adapter)
        self._by_nsp.setdefault(adapter.nsp.name, []).append(adapter)
        self._sub_dirty = True
        if self._ready is not None:
            self._ready.clear()
        self._start()

    def _unregister(self, adapter: Any) -> None:
        users = self._by_nsp.get(adapter.nsp.name)
        if users is not None and adapter in users:
            users.remove(adapter)
            if not users:
                del self._by_nsp[adapter.nsp.name]
        super()._unregister(adapter)
        if not self._channels:
            for task in (self._reader, self._refresher):
                if task is not None:
                    task.cancel()
            self._reader = self._refresher = None

    def _start(self) -> None:
        super()._start()
        if self._closed or self._loop is None or not self._channels:
            return
        if self._reader_ready is None:
            self._reader_ready = asyncio.Event()
        if self._reader is None or self._reader.done():
            self._reader = self._loop.create_task(self._run_reader(), name="redis-streams-read")
        if self._refresher is None or self._refresher.done():
            self._refresher = self._loop.create_task(self._run_refresher(),
                                                     name="redis-streams-live")

    @property
    def healthy(self) -> bool:
        """Subscribed and reading the stream right now (see the base class)."""
        return super().healthy and self.reading

    async def ready(self, timeout: float | None = None) -> None:
        """Wait until subscribed and the stream reader knows where it starts reading."""
        await super().ready(timeout)
        assert self._reader_ready is not None
        try:
            await asyncio.wait_for(self._reader_ready.wait(), timeout or self.requests_timeout)
        except TimeoutError:
            raise RedisAdapterError("Redis stream reader not started") from None

    async def aclose(self, flush_timeout: float = 0.0) -> None:
        for task in (self._reader, self._refresher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await super().aclose(flush_timeout)
        for client in (self._read_client, self._query_client):
            if client is not self._redis:
                with contextlib.suppress(Exception):
                    await client.aclose()

    # ------------------------------------------------------------------ writing

    def command(self, op: str, *args: Any, callback: OffsetCallback | None = None) -> bool:
        """Queue a Redis command, sent in order, pipelined; ``callback`` gets its result
        (None if it failed). Never waits. False (callback not called) if dropped."""
        if self._closed:
            return False
        if self._publisher is None:
            self._start()
        size = _command_size(args)
        if (len(self._commands) >= MAX_PUBLISH_QUEUE
                or self._queued_bytes + size > MAX_PUBLISH_BYTES):
            # Bounded like the classic adapter's queue: in messages and in bytes.
            self.stats.dropped += 1
            return False
        self._queued_bytes += size
        self._commands.append((op, args, callback))
        if self._publish_wake is not None:
            self._publish_wake.set()
        return True

    def publish(self, channel: str, message: bytes | str) -> bool:
        data = message.encode() if isinstance(message, str) else message
        return self.command("publish", _channel(channel), data)

    async def _run_publisher(self) -> None:
        assert self._publish_wake is not None
        wake = self._publish_wake
        queue = self._commands
        delay = _BACKOFF_START
        loop = asyncio.get_running_loop()
        while True:
            await wake.wait()
            wake.clear()
            if not queue and not self._channels:
                self._publisher = None
                return
            while queue:
                batch = [queue.popleft() for _ in range(min(len(queue), _BATCH))]
                self._queued_bytes -= sum(_command_size(args) for _, args, _ in batch)
                results: list[Any]
                if self._outage and loop.time() < self._retry_at:
                    self.stats.publish_errors += len(batch)
                    results = [None] * len(batch)
                else:
                    try:
                        pipe = self._redis.pipeline(transaction=False)
                        for op, args, _ in batch:
                            if op == "xadd":
                                pipe.xadd(args[0], args[1], maxlen=self.max_len,
                                          approximate=True)
                            elif op == "set":
                                pipe.set(args[0], args[1], px=args[2])
                            else:
                                getattr(pipe, op)(*args)
                        results = await pipe.execute(raise_on_error=False)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        self.stats.publish_errors += len(batch)
                        if not self._outage:
                            self._outage = True
                            logger.error("Redis write failed (%r): messages to other nodes are "
                                         "dropped until Redis is back", exc)
                        self._retry_at = loop.time() + _jitter(delay)
                        delay = _backoff(delay)
                        results = [None] * len(batch)
                    else:
                        self.stats.published += len(batch)
                        delay = _BACKOFF_START
                        if self._outage:
                            self._outage = False
                            logger.warning("Redis writes work again")
                for (_, _, callback), result in zip(batch, results, strict=True):
                    if isinstance(result, Exception):
                        result = None
                    if callback is not None:
                        try:
                            callback(result)
                        except Exception:
                            logger.exception("error after a Redis write")
            if not self._channels:
                self._publisher = None
                return

    # ------------------------------------------------------------------ reading

    async def _run_reader(self) -> None:
        # Unlike Node ("$" on the first XREAD), start after the stream's last entry as seen
        # before ready() returns: nothing added after ready() is missed.
        assert self._reader_ready is not None
        client = self._read_client
        stream = self.stream_name
        last: bytes | None = None
        delay = _BACKOFF_START
        outage = False
        block = max(1, int(self.block_time * 1000))
        while not self._closed:
            try:
                if last is None:
                    newest = await client.xrevrange(stream, "+", "-", count=1)
                    last = newest[0][0] if newest else b"0-0"
                    self.last_read = _entry_id(last)
                    self._reader_ready.set()
                self.reading = True
                response = await client.xread({stream: last}, count=self.read_count,
                                              block=block)
                if outage:
                    outage = False
                    self.stats.reconnects += 1
                    logger.warning("Redis stream reader connected again")
                delay = _BACKOFF_START
                for _, entries in response or ():
                    for entry_id, fields in entries:
                        last = entry_id
                        self.last_read = _entry_id(entry_id)
                        self.stats.received += 1
                        self._dispatch(entry_id, fields)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.reading = False
                self._flush_pending()
                if not outage:
                    outage = True
                    logger.error("Redis stream reader lost (%r): reconnecting", exc)
                await asyncio.sleep(_jitter(delay))
                delay = _backoff(delay)

    def _flush_pending(self) -> None:
        for users in self._by_nsp.values():
            for adapter in users:
                adapter._flush_pending()

    def _dispatch(self, entry_id: Any, fields: dict[Any, Any]) -> None:
        nsp = fields.get(b"nsp")
        if nsp is None:
            return
        for adapter in list(self._by_nsp.get(_text(nsp), ())):
            try:
                adapter._on_entry(_text(entry_id), fields)
            except Exception:
                logger.exception("error handling a Redis stream entry")

    async def _run_refresher(self) -> None:
        """Keep the sessions of connected sockets alive in Redis (see the module docstring)."""
        while True:
            adapters = [a for users in self._by_nsp.values() for a in users]
            interval = min((a._live_refresh for a in adapters if a._live_refresh), default=None)
            await asyncio.sleep(interval or _LIVE_REFRESH_MAX)
            for adapter in adapters:
                adapter._refresh_live()


class RedisStreamsAdapter(ClusterAdapter):
    """The in-memory adapter of one namespace, plus the stream shared with other nodes."""

    factory: RedisStreamsAdapterFactory
    # As this adapter has always done: unnamed request errors, and fetch_sockets bounded by
    # requests_timeout whatever the broadcast's timeout flag.
    _NAMED_REQUEST_ERRORS = False
    _FETCH_TIMEOUT_FROM_FLAGS = False

    def __init__(self, nsp: Namespace, factory: RedisStreamsAdapterFactory) -> None:
        super().__init__(nsp, factory)
        self.stream_name = factory.stream_name
        self.public_channel = self._common_channel
        self.private_channel = self._response_channel
        # Live sessions (beyond Node): sid -> pid written to Redis; sids to (re)write.
        self._live: dict[str, tuple[str, str]] = {}  # sid -> (pid, value written)
        self._live_dirty: set[str] = set()
        self._live_flush: asyncio.TimerHandle | None = None
        self._persisted: set[str] = set()  # pids whose session was just saved on disconnect
        self._live_refresh: float | None = None
        # Our replayable broadcasts, written, waiting for the reader to reach them (by id);
        # and the ids the reader reached before the write's answer came back.
        self._pending: dict[str, tuple[Packet, BroadcastOptions]] = {}
        self._read_ahead: set[str] = set()
        # Ids delivered without waiting for the reader (it was away): it skips them.
        self._delivered: set[str] = set()
        if self.recovery is not None:
            self._session_ms = max(1, int(self.recovery.max_disconnection_duration * 1000))
            self._live_refresh = min(_LIVE_REFRESH_MAX,
                                     max(0.5, self.recovery.max_disconnection_duration / 2))
        factory._register(self)

    # ------------------------------------------------------------------ encoding

    def _fields(self, kind: int, data: Any) -> dict[str, Any] | None:
        """A message as the npm adapter writes it in the stream (lib/adapter.ts encode)."""
        try:
            if kind in MAY_CONTAIN_BINARY and has_binary(data, _BINARY_DEPTH):
                text = base64.b64encode(self.factory.encode(data)).decode()
            else:
                text = _to_json(data)
        except (TypeError, ValueError, OverflowError):
            logger.exception("message not sent to other nodes: cannot encode it")
            return None
        return {"uid": self.uid, "nsp": self.nsp.name, "type": str(kind), "data": text}

    def _decode_data(self, raw: Any) -> Any:
        if isinstance(raw, bytes):
            if raw.startswith(b"{"):
                return _loads(raw.decode("utf-8", "surrogateescape"))
            return _unpack(base64.b64decode(raw), self._dates_as_text)
        if raw.startswith("{"):
            return _loads(raw)
        return _unpack(base64.b64decode(raw), self._dates_as_text)

    def _xadd(self, kind: int, data: Any, callback: OffsetCallback | None = None) -> bool:
        fields = self._fields(kind, data)
        if fields is None:
            return False
        return self.factory.command("xadd", self.stream_name, fields, callback=callback)

    def _publish_ephemeral(self, channel: str, message: dict[str, Any]) -> bool:
        message["uid"] = self.uid
        message["nsp"] = self.nsp.name
        try:
            data = self.factory.encode(message)
        except (TypeError, ValueError, OverflowError):
            logger.exception("message not sent to other nodes: cannot encode it")
            return False
        return self.factory.publish(channel, data)

    def _send(self, message_type: int, data: dict[str, Any]) -> bool:
        if message_type in _DURABLE or (message_type == BROADCAST and "requestId" not in data):
            return self._xadd(message_type, data)
        return self._publish_ephemeral(self.public_channel, {"type": message_type, "data": data})

    def _respond(self, requester: Any, message_type: int, data: dict[str, Any]) -> None:
        self._publish_ephemeral(f"{self.public_channel}{requester!s}#",
                                {"type": message_type, "data": data})

    # ------------------------------------------------------------------ outgoing

    def broadcast(self, packet: Packet, opts: BroadcastOptions) -> None:
        if opts.flags.local:
            InMemoryAdapter.broadcast(self, packet, opts)
            return
        data = {"packet": {"type": int(packet.type), "data": packet.data},
                "opts": js_opts(opts)}
        replayable = (self.recovery is not None and packet.type is _EVENT
                      and packet.id is None and not opts.flags.volatile)
        if not replayable:
            self._xadd(BROADCAST, data)
            InMemoryAdapter.broadcast(self, packet, opts)
            return

        def written(offset: Any) -> None:
            if offset is None:
                # Redis away: delivered anyway, without an offset it cannot be replayed.
                InMemoryAdapter.broadcast(self, packet, opts)
                return
            text = _text(offset)
            if text in self._read_ahead:
                self._read_ahead.discard(text)  # the reader delivered it already
                return
            packet.data.append(text)
            if not self.factory.reading:
                # No reader to wait for: deliver now rather than hold it.
                self._mark_delivered(text)
                InMemoryAdapter.broadcast(self, packet, opts)
                return
            self._pending[text] = (packet, opts)

        if not self._xadd(BROADCAST, data, written):
            InMemoryAdapter.broadcast(self, packet, opts)

    def _flush_pending(self) -> None:
        """The reader is away: deliver what waited for it (order across nodes may suffer,
        delivery does not)."""
        pending, self._pending = self._pending, {}
        for entry_id, (packet, opts) in pending.items():
            self._mark_delivered(entry_id)
            InMemoryAdapter.broadcast(self, packet, opts)

    def _mark_delivered(self, entry_id: str) -> None:
        if len(self._delivered) > MAX_PUBLISH_QUEUE:
            self._delivered.clear()  # bounded: a reader away that long reads from scratch
        self._delivered.add(entry_id)

    def _store(self, packet: Packet, opts: BroadcastOptions) -> None:
        """The stream is the log: nothing is kept in memory."""

    def close(self) -> None:
        if not self._closed and self._live_flush is not None:
            self._live_flush.cancel()
        super().close()

    # ------------------------------------------------------------------ incoming

    def _on_entry(self, entry_id: str, fields: dict[bytes, Any]) -> None:
        """A stream entry of this namespace (Node's onRawMessage + ClusterAdapter.onMessage)."""
        mine = _text(fields.get(b"uid", b"")) == self.uid
        if mine:
            if self.recovery is None or fields.get(b"type") != b"3":
                return  # ours, applied locally already
            pending = self._pending.pop(entry_id, None)
            if pending is not None:
                InMemoryAdapter.broadcast(self, *pending)
                return
            if entry_id in self._delivered:
                self._delivered.discard(entry_id)
                return
        try:
            kind = int(_text(fields.get(b"type", b"")))
            raw = fields.get(b"data")
            data = self._decode_data(raw) if raw else None
        except Exception:
            logger.debug("ignoring a malformed stream entry %s", entry_id)
            return
        if not isinstance(data, dict):
            return
        if kind == BROADCAST and "requestId" not in data:
            packet = data.get("packet")
            raw_opts = data.get("opts")
            if not isinstance(packet, dict) or not isinstance(raw_opts, dict):
                return
            args = packet.get("data")
            if not isinstance(args, list):
                return
            raw_flags = raw_opts.get("flags")
            flags = raw_flags if isinstance(raw_flags, dict) else {}
            opts = BroadcastOptions(
                rooms=_rooms(raw_opts.get("rooms")), except_rooms=_rooms(raw_opts.get("except")),
                flags=BroadcastFlags(volatile=bool(flags.get("volatile")),
                                     compress=flags.get("compress") is not False))
            try:
                ptype = PacketType(packet.get("type", 2))
            except ValueError:
                return
            # Node's addOffsetIfNecessary: the entry id is the offset.
            if (self.recovery is not None and ptype is _EVENT and "id" not in packet
                    and "volatile" not in flags):
                args.append(entry_id)
                if mine:
                    # Read back before XADD's answer: delivered from the entry, here.
                    if len(self._read_ahead) > MAX_PUBLISH_QUEUE:
                        self._read_ahead.clear()
                    self._read_ahead.add(entry_id)
            elif mine:
                return  # not replayable: delivered when it was sent
            # The encode-once path of a local broadcast, never published again.
            InMemoryAdapter.broadcast(self, Packet(ptype, args, self.nsp.name), opts)
        elif kind in _DURABLE:
            self._on_request(_text(fields.get(b"uid", b"")), kind, data)

    def _on_channel_message(self, channel: bytes, data: bytes) -> None:
        """An ephemeral message or a response on the pub/sub channels (msgpack)."""
        try:
            message = _unpack(data, self._dates_as_text)
        except Exception:
            logger.debug("ignoring a malformed pub/sub message")
            return
        if not isinstance(message, dict) or message.get("uid") == self.uid:
            return
        if message.get("nsp") != self.nsp.name:
            return
        body = message.get("data")
        if not isinstance(body, dict):
            return
        kind = message.get("type")
        if kind in _DURABLE or (kind == BROADCAST and "requestId" not in body):
            return  # those come through the stream
        self._on_cluster_message(message)

    def _on_broadcast(self, sender: Any, data: dict[str, Any]) -> None:
        """A broadcast with an ack (pub/sub); the others are stream entries (``_on_entry``)."""
        packet = data.get("packet")
        if not isinstance(packet, dict) or not isinstance(packet.get("data"), list):
            return
        self._on_broadcast_with_ack(sender, data.get("requestId"), packet["data"],
                                    _selector(data.get("opts")))

    # ------------------------------------------------------------------ recovery

    def _session_key(self, pid: str) -> str:
        return self.factory.session_key_prefix + pid

    def _encode_session(self, sid: str, pid: str, rooms: list[str], data: Any) -> str | None:
        try:
            raw = self.factory.encode({"sid": sid, "pid": pid, "rooms": rooms, "data": data})
        except (TypeError, ValueError, OverflowError):
            logger.exception("session %s not saved: its data cannot be encoded", sid)
            return None
        return base64.b64encode(raw).decode()

    def persist_session(self, snapshot: SessionSnapshot) -> None:
        if self.recovery is None:
            return
        value = self._encode_session(snapshot.sid, snapshot.pid, snapshot.rooms, snapshot.data)
        if value is None:
            return
        self._persisted.add(snapshot.sid)
        key = self._session_key(snapshot.pid)
        live = self._live.get(snapshot.sid)
        if live is None:
            self.factory.command("set", key, value, self._session_ms)
            return
        # The key holds what we wrote while the socket lived, unless another node restored
        # the session meanwhile (its client came back there before we saw it go): then
        # that node owns it and our stale snapshot must not replace its.
        self.factory.command("eval", _PERSIST_UNLESS_TAKEN, 1, key, value, self._session_ms,
                             live[1])

    async def restore_session(self, pid: str, offset: str) -> SessionSnapshot | None:
        """Node's restoreSession, plus a hand-over with live delivery: every missed entry is
        in the snapshot or comes live, exactly once (see ``_missed``)."""
        if self.recovery is None or not _OFFSET.match(offset):
            return None
        client = self.factory._query_client
        pipe = client.pipeline(transaction=True)
        pipe.get(self._session_key(pid))
        pipe.delete(self._session_key(pid))
        raw_session, _ = await pipe.execute()
        found = await client.xrange(self.stream_name, offset, offset)
        if not raw_session or not found:
            return None
        session = _unpack(base64.b64decode(raw_session), self._dates_as_text)
        if not isinstance(session, dict):
            return None
        rooms = [r for r in session.get("rooms") or () if isinstance(r, str)]
        snapshot = SessionSnapshot(str(session.get("sid", "")), pid, rooms, session.get("data"))
        old = self.nsp.sockets.get(snapshot.sid)
        if old is not None:
            # A live session of this node, whose client came back before we saw it leave:
            # the old socket is dead, it must not share its id with the new one.
            old.disconnect()
        snapshot.missed_packets = await self._missed(client, offset, set(rooms))
        return snapshot

    async def _missed(self, client: Any, offset: str, rooms: set[str]) -> list[list[Any]]:
        # Replayable entries reach connected sockets in stream order, from the reader
        # (ours too). Node reads the stream to its end and lets live delivery start when
        # it may: entries read and also delivered live arrive twice, entries added in
        # between never. Here the replay stops where the reader stands when the socket
        # joins its rooms (no await in between); later entries come live.
        found: list[tuple[tuple[int, int], list[Any]]] = []
        cursor = _entry_id(offset)
        name = self.nsp.name.encode()
        end = "+"
        for _ in range(_XRANGE_MAX_CALLS):
            entries = await client.xrange(self.stream_name, f"({cursor[0]}-{cursor[1]}", end,
                                          count=_XRANGE_COUNT)
            for entry_id, fields in entries:
                cursor = _entry_id(entry_id)
                if fields.get(b"nsp") != name or fields.get(b"type") != b"3":
                    continue
                args = self._replayable(fields.get(b"data") or b"", rooms)
                if args is not None:
                    args.append(_text(entry_id))
                    found.append((cursor, args))
            if len(entries) == _XRANGE_COUNT:
                continue
            if end != "+":
                cursor = max(cursor, _entry_id(end))  # even if that entry was trimmed
            # Live delivery got further than what was read: read up to there (bounded).
            target = self.factory.last_read
            if target <= cursor:
                break
            end = f"{target[0]}-{target[1]}"
        last_read = self.factory.last_read
        return [args for at, args in found if at <= last_read]

    def _replayable(self, raw: bytes, rooms: set[str]) -> list[Any] | None:
        """The event of a stream entry for a session in ``rooms``, if it is to be replayed."""
        try:
            data = self._decode_data(raw)
        except Exception:
            return None
        if not isinstance(data, dict) or "requestId" in data:
            return None
        packet, raw_opts = data.get("packet"), data.get("opts")
        if not isinstance(packet, dict) or not isinstance(raw_opts, dict):
            return None
        raw_flags = raw_opts.get("flags")
        flags = raw_flags if isinstance(raw_flags, dict) else {}
        args = packet.get("data")
        if (packet.get("type", 2) != 2 or "id" in packet or "volatile" in flags
                or not isinstance(args, list)):
            return None
        return args if _includes(rooms, raw_opts) else None

    # -------------------------------------------------- live sessions (beyond Node)

    def add_all(self, sid: str, rooms: Iterable[str]) -> None:
        super().add_all(sid, rooms)
        if self.recovery is not None:
            self._mark_live(sid)

    def delete(self, sid: str, room: str) -> None:
        super().delete(sid, room)
        if self.recovery is not None and sid in self.sids:
            self._mark_live(sid)

    def delete_all(self, sid: str) -> None:
        super().delete_all(sid)
        self._live_dirty.discard(sid)
        live = self._live.pop(sid, None)
        pid = live[0] if live is not None else None
        if sid in self._persisted:
            self._persisted.discard(sid)  # saved for recovery by persist_session
        elif pid is not None:
            # Gone for good (the client left, or was disconnected by the server).
            self.factory.command("delete", self._session_key(pid))

    def _mark_live(self, sid: str) -> None:
        self._live_dirty.add(sid)
        if self._live_flush is None:
            loop = asyncio.get_running_loop()
            self._live_flush = loop.call_later(_LIVE_DEBOUNCE, self._flush_live)

    def _flush_live(self) -> None:
        self._live_flush = None
        dirty, self._live_dirty = self._live_dirty, set()
        ttl = self._live_ttl()
        for sid in dirty:
            socket = self.nsp.sockets.get(sid)
            rooms = self.sids.get(sid)
            if socket is None or rooms is None or not socket.pid:
                continue
            value = self._encode_session(sid, socket.pid, sorted(rooms), socket.data)
            if value is not None:
                self._live[sid] = (socket.pid, value)
                self.factory.command("set", self._session_key(socket.pid), value, ttl)

    def _live_ttl(self) -> int:
        # Outlives a crash by max_disconnection_duration at least: refreshed every
        # _live_refresh seconds while this node runs.
        return self._session_ms + int((self._live_refresh or 0) * 1000) + 1000

    def _refresh_live(self) -> None:
        if not self._live:
            return
        ttl = self._live_ttl()
        for pid, _ in list(self._live.values()):
            self.factory.command("pexpire", self._session_key(pid), ttl)


def _includes(rooms: set[str], raw_opts: dict[str, Any]) -> bool:
    targets = _rooms(raw_opts.get("rooms"))
    excluded = _rooms(raw_opts.get("except"))
    return (not targets or not rooms.isdisjoint(targets)) and rooms.isdisjoint(excluded)


def create_adapter(
    redis: Any,
    *,
    stream_name: str = "socket.io",
    max_len: int = 10_000,
    read_count: int = 100,
    block_time: float = 5.0,
    channel_prefix: str = "socket.io",
    session_key_prefix: str = "sio:session:",
    requests_timeout: float = 5.0,
) -> RedisStreamsAdapterFactory:
    """An adapter factory for ``Server(adapter=...)``, like npm ``createAdapter`` of
    ``@socket.io/redis-streams-adapter`` (one stream; times in seconds)."""
    return RedisStreamsAdapterFactory(
        redis, stream_name=stream_name, max_len=max_len, read_count=read_count,
        block_time=block_time, channel_prefix=channel_prefix,
        session_key_prefix=session_key_prefix, requests_timeout=requests_timeout)
