"""Emit to a Socket.IO fleet through Redis without a server, like npm ``@socket.io/redis-emitter``.

``Emitter(redis)`` publishes the messages that ``@socket.io/redis-emitter`` 5.1.0 publishes,
byte for byte, so every node running ``@socket.io/redis-adapter`` 8.x (Node or ours) acts on
them::

    emitter = Emitter(redis.asyncio.Redis())
    await emitter.to("room1").except_("room2").emit("hello", {"a": 1}, b"\\x01")
    await emitter.of("/admin").sockets_join("vip")
    await emitter.server_side_emit("reload", "config")

Wire formats (the npm package's, kept exactly):

* broadcasts: msgpack (notepack.io 3) of ``["emitter", {type: 2, data: [event, *args], nsp},
  {rooms: [...], flags: {...}, except: [...]}]`` on ``<key>#<nsp>#``, or on
  ``<key>#<nsp>#<room>#`` when exactly one room is targeted;
* ``sockets_join`` / ``sockets_leave`` / ``disconnect_sockets`` / ``server_side_emit``: JSON
  (as ``JSON.stringify`` writes it) on ``<key>-request#<nsp>#``.

Values are encoded as a JavaScript peer would see them: an integer-valued float is an integer
(``2.0`` is packed as ``2``), integer-like keys of a dict come first in ascending order (a
JavaScript object orders them so), ``bytes`` are msgpack ``bin`` in broadcasts and Node's
``Buffer.toJSON`` form ``{"type": "Buffer", "data": [...]}`` in JSON requests, a ``datetime``
is a msgpack timestamp (a JSON ISO string in requests; a naive one is taken as UTC), a lone
UTF-16 surrogate becomes U+FFFD in msgpack and ``\\udxxx`` in JSON.

Where notepack.io corrupts a value silently, this module does not copy it: an integer-valued
float beyond the 64-bit range is packed as a float64 (notepack wraps it modulo 2**64), and a
Python ``int`` outside the 64-bit range is refused (``OverflowError``).

``msgpack`` is imported when an emitter is created without a custom parser:
``pip install realtime-socketio[msgpack]``.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import json
import logging
import math
import re
from collections.abc import Iterable
from typing import Any, Protocol

__all__ = ["RESERVED_EVENTS", "Emitter", "EmitterOperator", "Parser"]

logger = logging.getLogger(__name__)

#: Event names ``emit`` refuses, those of ``@socket.io/redis-emitter``.
RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)
#: ``server_side_emit`` refuses these too: a Node server emits a server-side event on the
#: namespace's own EventEmitter, where "connection" or "newListener" would reach handlers that
#: expect a socket (Node's emitter checks nothing here; Node's ``Namespace.serverSideEmit``
#: refuses "connect", "connection" and "new_namespace").
SERVER_SIDE_RESERVED_EVENTS = RESERVED_EVENTS | {"connection", "new_namespace"}

_UID = "emitter"
_EVENT = 2  # socket.io-parser PacketType.EVENT
# RequestType of @socket.io/redis-adapter (the emitter's copy of the enum).
_REMOTE_JOIN = 2
_REMOTE_LEAVE = 3
_REMOTE_DISCONNECT = 4
_SERVER_SIDE_EMIT = 6

_INSTALL_HINT = (
    "the Redis emitter encodes broadcasts with msgpack; install it with "
    "`pip install realtime-socketio[redis]` (or `pip install msgpack`), or pass parser="
)
_MAX_DEPTH = 100  # containers nested deeper are refused (a cycle would recurse forever)
_UINT64_END = 2**64
_INT64_MIN = -(2**63)
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
# JavaScript orders the own keys of an object that are array indices (0 .. 2**32 - 2,
# canonical decimal) first, ascending; everything else after, in insertion order.
_INDEX_KEY = re.compile(r"0|[1-9][0-9]{0,9}")
_MAX_INDEX = 2**32 - 2
_SURROGATE = re.compile("[\ud800-\udfff]")


class Parser(Protocol):
    """What ``parser=`` must offer: the npm option's ``encode`` (for broadcasts only)."""

    def encode(self, msg: Any) -> bytes | str: ...


class _Publisher(Protocol):
    # redis.asyncio.Redis and RedisCluster both fit.
    async def publish(self, channel: bytes, message: bytes) -> int: ...


Rooms = str | Iterable[str]


# --------------------------------------------------------------------------- values


def _room_list(rooms: tuple[Rooms, ...]) -> list[str]:
    """``("a", ["b", "c"])`` -> ``["a", "b", "c"]``, in order, duplicates kept."""
    out: list[str] = []
    for item in rooms:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, (bytes, bytearray, memoryview)):
            raise TypeError("a room is a str, not bytes")
        else:
            for room in item:
                if not isinstance(room, str):
                    raise TypeError(f"a room is a str, not {type(room).__name__}")
                out.append(room)
    return out


def _fix_surrogates(text: str) -> str:
    # A pair of surrogates is one character in JavaScript: join pairs, then replace the lone
    # ones with U+FFFD, as Buffer.byteLength / buf.write do when notepack packs a string.
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _js_keys(
    value: dict[Any, Any], depth: int, convert: Any, fix_keys: bool = False
) -> dict[str, Any]:
    """A dict as the JavaScript object it stands for: string keys, JavaScript key order.

    ``fix_keys``: lone surrogates in keys become U+FFFD (for msgpack; JSON escapes them).
    """
    out: dict[str, Any] = {}
    index_keys = False
    for key, item in value.items():
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            raise TypeError(f"object keys must be str (or int), not {type(key).__name__}")
        name = key if isinstance(key, str) else str(key)
        if fix_keys and not name.isascii() and _SURROGATE.search(name):
            name = _fix_surrogates(name)
        if not index_keys and _INDEX_KEY.fullmatch(name) and int(name) <= _MAX_INDEX:
            index_keys = True
        # Like a JavaScript object: a repeated key keeps its first place and its last value.
        out[name] = convert(item, depth)
    if not index_keys:
        return out
    indexed = sorted(
        (k for k in out if _INDEX_KEY.fullmatch(k) and int(k) <= _MAX_INDEX), key=int
    )
    ordered = {k: out[k] for k in indexed}
    for k, item in out.items():
        if k not in ordered:
            ordered[k] = item
    return ordered


def _aware(value: _dt.datetime) -> _dt.datetime:
    return value.replace(tzinfo=_dt.UTC) if value.tzinfo is None else value


def _unsupported(value: Any) -> TypeError:
    if callable(value):
        return TypeError("Acknowledgements are not supported (a function cannot be sent)")
    return TypeError(f"cannot encode a value of type {type(value).__name__}")


class _MsgpackEncoder:
    """notepack.io 3 ``encode`` on top of the ``msgpack`` package."""

    __slots__ = ("_msgpack", "_timestamp")

    def __init__(self) -> None:
        try:
            import msgpack
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(_INSTALL_HINT) from exc
        self._msgpack = msgpack
        self._timestamp = msgpack.Timestamp

    def encode(self, msg: Any) -> bytes:
        return self._msgpack.packb(self._js(msg, 0), use_bin_type=True)

    def _js(self, value: Any, depth: int) -> Any:
        # Turns ``value`` into what msgpack packs the way notepack packs the same JS value.
        if value is None or value is True or value is False:
            return value
        if isinstance(value, str):
            if value.isascii() or not _SURROGATE.search(value):
                return value
            return _fix_surrogates(value)
        if isinstance(value, int):
            if not _INT64_MIN <= value < _UINT64_END:
                raise OverflowError(f"integer out of the 64-bit msgpack range: {value}")
            return int(value)
        if isinstance(value, float):
            # notepack: an integral finite number takes the smallest integer format.
            if value.is_integer() and _INT64_MIN <= value < _UINT64_END:
                return int(value)
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            return value
        if depth >= _MAX_DEPTH:
            raise ValueError(f"value nested deeper than {_MAX_DEPTH} levels")
        if isinstance(value, (list, tuple)):
            return [self._js(item, depth + 1) for item in value]
        if isinstance(value, dict):
            return _js_keys(value, depth + 1, self._js, fix_keys=True)
        if isinstance(value, _dt.datetime):
            delta = _aware(value) - _EPOCH
            seconds = delta.days * 86400 + delta.seconds
            return self._timestamp(seconds, delta.microseconds * 1000)
        raise _unsupported(value)


def _js_number(value: float) -> str:
    """``Number.prototype.toString()`` of a finite float (what JSON.stringify writes)."""
    if value == 0:
        return "0"  # -0 too
    sign = "-" if value < 0 else ""
    text = repr(abs(value))  # the shortest round-trip digits, as JavaScript picks them
    mantissa, _, exp = text.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    point = len(whole) + int(exp or 0)  # decimal point after this many digits
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    k, n = len(digits), point
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * -n + digits
    else:
        e = n - 1
        out = (digits if k == 1 else digits[0] + "." + digits[1:]) + (
            f"e+{e}" if e >= 0 else f"e-{-e}"
        )
    return sign + out


def _json_string(text: str) -> str:
    if _SURROGATE.search(text):
        # Keep real pairs as characters; JSON.stringify escapes lone surrogates in lowercase.
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
        out = json.dumps(text, ensure_ascii=False)
        return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", out)
    return json.dumps(text, ensure_ascii=False)


def _iso(value: _dt.datetime) -> str:
    # Date.prototype.toJSON: UTC, milliseconds, "Z".
    t = _aware(value).astimezone(_dt.UTC)
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
        f".{t.microsecond // 1000:03d}Z"
    )


def _to_json(value: Any, depth: int = 0) -> str:
    """``JSON.stringify`` of the JavaScript value a Python value stands for."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, int):
        return str(int(value))  # exact digits (a JavaScript number could not hold more)
    if isinstance(value, float):
        return _js_number(value) if math.isfinite(value) else "null"
    if depth >= _MAX_DEPTH:
        raise ValueError(f"value nested deeper than {_MAX_DEPTH} levels")
    if isinstance(value, (bytes, bytearray, memoryview)):
        # What a Node Buffer becomes in JSON: the adapter's requests cannot carry binary.
        return '{"type":"Buffer","data":[' + ",".join(map(str, bytes(value))) + "]}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_to_json(item, depth + 1) for item in value) + "]"
    if isinstance(value, dict):
        items = _js_keys(value, depth + 1, lambda item, _depth: item)
        return (
            "{"
            + ",".join(
                f"{_json_string(k)}:{_to_json(item, depth + 1)}" for k, item in items.items()
            )
            + "}"
        )
    if isinstance(value, _dt.datetime):
        return _json_string(_iso(value))
    raise _unsupported(value)


def _check_args(args: tuple[Any, ...]) -> None:
    for arg in args:
        if callable(arg):
            raise TypeError(
                "Acknowledgements are not supported: an emitter cannot receive answers"
            )


# --------------------------------------------------------------------------- API


def _refuse_sync_client(client: Any) -> None:
    # A synchronous client would publish, then fail on ``await``: refuse it up front.
    try:
        import redis
    except ImportError:  # pragma: no cover - the [redis] extra: then not a redis client
        return
    sync_types = tuple(
        t for t in (getattr(redis, "Redis", None), getattr(redis, "RedisCluster", None)) if t
    )
    if sync_types and isinstance(client, sync_types):
        raise TypeError(
            "Emitter needs a redis.asyncio client (redis.asyncio.Redis), not redis.Redis"
        )


class _Target:
    # What Node's emitter shares between Emitter and BroadcastOperator.
    __slots__ = ("broadcast_channel", "nsp", "parser", "redis", "request_channel")

    def __init__(self, redis: _Publisher, key: str, nsp: str, parser: Parser) -> None:
        self.redis = redis
        self.nsp = nsp
        self.parser = parser
        self.broadcast_channel = f"{key}#{nsp}#"
        self.request_channel = f"{key}-request#{nsp}#"

    async def publish(self, channel: str, message: bytes | str) -> int:
        # Channels and payloads go as UTF-8 bytes whatever the client's encoding setting.
        data = message.encode() if isinstance(message, str) else message
        logger.debug("publishing %d bytes to %s", len(data), channel)
        # No retry and no queue: a Redis error reaches the caller, who knows what a lost
        # message costs.
        if not channel.isascii() and _SURROGATE.search(channel):
            channel = _fix_surrogates(channel)  # as Node's Buffer.from() does
        result = self.redis.publish(channel.encode(), data)
        if not inspect.isawaitable(result):
            raise TypeError("Emitter needs a redis.asyncio client, not a synchronous one")
        return int(await result)


class EmitterOperator:
    """Rooms, excluded rooms and flags of an emit; every method returns a new operator."""

    __slots__ = ("_except", "_flags", "_rooms", "_target")

    def __init__(
        self,
        target: _Target,
        rooms: tuple[str, ...] = (),
        except_rooms: tuple[str, ...] = (),
        flags: dict[str, bool] | None = None,
    ) -> None:
        self._target = target
        self._rooms = rooms  # insertion order, no duplicates: a JavaScript Set
        self._except = except_rooms
        self._flags = flags or {}

    def to(self, *rooms: Rooms) -> EmitterOperator:
        """Only the sockets in these rooms (``to("a", "b")`` or ``to(["a", "b"])``)."""
        merged = tuple(dict.fromkeys((*self._rooms, *_room_list(rooms))))
        return EmitterOperator(self._target, merged, self._except, self._flags)

    in_ = to

    def except_(self, *rooms: Rooms) -> EmitterOperator:
        """Not the sockets in these rooms."""
        merged = tuple(dict.fromkeys((*self._except, *_room_list(rooms))))
        return EmitterOperator(self._target, self._rooms, merged, self._flags)

    @property
    def volatile(self) -> EmitterOperator:
        """The event may be dropped for sockets that cannot take it right now."""
        # dict merge keeps a key's first place, like Object.assign: the flags' byte order.
        return EmitterOperator(
            self._target, self._rooms, self._except, {**self._flags, "volatile": True}
        )

    def compress(self, compress: bool) -> EmitterOperator:
        """Sets the ``compress`` flag the receiving servers pass on to their transports."""
        return EmitterOperator(
            self._target, self._rooms, self._except, {**self._flags, "compress": bool(compress)}
        )

    async def emit(self, event: str, *args: Any) -> int:
        """Broadcast an event to the targeted sockets of every server.

        Returns once Redis took it, with PUBLISH's answer: how many subscribers (servers,
        not sockets) got it. A Redis error is raised to the caller; nothing is queued.
        """
        if not isinstance(event, str):
            raise TypeError("event name must be a str")
        if event in RESERVED_EVENTS:
            raise ValueError(f'"{event}" is a reserved event name')
        _check_args(args)
        target = self._target
        packet = {"type": _EVENT, "data": [event, *args], "nsp": target.nsp}
        opts = {"rooms": list(self._rooms), "flags": self._flags, "except": list(self._except)}
        message = target.parser.encode([_UID, packet, opts])
        channel = target.broadcast_channel
        if len(self._rooms) == 1:
            channel += self._rooms[0] + "#"
        return await target.publish(channel, message)

    def _selector(self) -> str:
        return f'{{"rooms":{_to_json(list(self._rooms))},"except":{_to_json(list(self._except))}}}'

    async def sockets_join(self, *rooms: Rooms) -> int:
        """The targeted sockets, on every server, join these rooms."""
        return await self._room_request(_REMOTE_JOIN, rooms)

    async def sockets_leave(self, *rooms: Rooms) -> int:
        """The targeted sockets, on every server, leave these rooms."""
        return await self._room_request(_REMOTE_LEAVE, rooms)

    async def _room_request(self, kind: int, rooms: tuple[Rooms, ...]) -> int:
        names = _to_json(_room_list(rooms))
        request = f'{{"type":{kind},"opts":{self._selector()},"rooms":{names}}}'
        return await self._target.publish(self._target.request_channel, request)

    async def disconnect_sockets(self, close: bool = False) -> int:
        """The targeted sockets are disconnected; with ``close``, their connection is closed."""
        request = (
            f'{{"type":{_REMOTE_DISCONNECT},"opts":{self._selector()},'
            f'"close":{_to_json(bool(close))}}}'
        )
        return await self._target.publish(self._target.request_channel, request)


class Emitter:
    """Publishes to the Socket.IO servers sharing a Redis (``@socket.io/redis-emitter``).

    ``redis`` is a ``redis.asyncio`` client (``Redis`` or ``RedisCluster``); only its
    ``publish`` is used. ``key`` is the adapters' ``key`` option. ``parser`` replaces the
    msgpack encoding of broadcasts (an object with ``encode(msg) -> bytes``), like the npm
    option: every server must then decode with the same parser. Requests are JSON whatever
    the parser.
    """

    __slots__ = ("_key", "_operator", "_parser", "_redis", "_target")

    def __init__(
        self, redis: Any, *, key: str = "socket.io", parser: Parser | None = None, nsp: str = "/"
    ) -> None:
        if not callable(getattr(redis, "publish", None)):
            raise TypeError("Emitter needs a redis.asyncio client (an object with publish())")
        _refuse_sync_client(redis)
        if not isinstance(key, str) or not isinstance(nsp, str):
            raise TypeError("key and nsp must be str")
        if not nsp.startswith("/"):
            nsp = "/" + nsp
        self._redis = redis
        self._key = key
        self._parser: Parser = parser if parser is not None else _MsgpackEncoder()
        self._target = _Target(redis, key, nsp, self._parser)
        self._operator = EmitterOperator(self._target)

    @property
    def nsp(self) -> str:
        return self._target.nsp

    def of(self, nsp: str) -> Emitter:
        """An emitter for namespace ``nsp`` (a missing leading "/" is added)."""
        return Emitter(self._redis, key=self._key, parser=self._parser, nsp=nsp)

    def to(self, *rooms: Rooms) -> EmitterOperator:
        return self._operator.to(*rooms)

    in_ = to

    def except_(self, *rooms: Rooms) -> EmitterOperator:
        return self._operator.except_(*rooms)

    @property
    def volatile(self) -> EmitterOperator:
        return self._operator.volatile

    def compress(self, compress: bool) -> EmitterOperator:
        return self._operator.compress(compress)

    async def emit(self, event: str, *args: Any) -> int:
        """Broadcast to every socket of the namespace; see :meth:`EmitterOperator.emit`."""
        return await self._operator.emit(event, *args)

    async def sockets_join(self, *rooms: Rooms) -> int:
        return await self._operator.sockets_join(*rooms)

    async def sockets_leave(self, *rooms: Rooms) -> int:
        return await self._operator.sockets_leave(*rooms)

    async def disconnect_sockets(self, close: bool = False) -> int:
        return await self._operator.disconnect_sockets(close)

    async def server_side_emit(self, event: str, *args: Any) -> int:
        """Send an event to the servers themselves (``io.on(event, handler)`` on each node).

        No acknowledgements: a callable argument is refused, as Node's emitter does.
        Arguments travel as JSON (``bytes`` as Node's ``Buffer.toJSON`` form).
        """
        if not isinstance(event, str):
            raise TypeError("event name must be a str")
        if event in SERVER_SIDE_RESERVED_EVENTS:
            raise ValueError(f'"{event}" is a reserved event name')
        _check_args(args)
        data = _to_json([event, *args])
        request = f'{{"uid":"{_UID}","type":{_SERVER_SIDE_EMIT},"data":{data}}}'
        return await self._target.publish(self._target.request_channel, request)
