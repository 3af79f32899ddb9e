"""Socket.IO msgpack parser, wire-compatible with npm ``socket.io-msgpack-parser`` 3.x.

Every packet is ONE binary Engine.IO message: a msgpack map with the keys ``type``,
``data``, ``nsp`` and ``id`` (``data`` and ``id`` left out when absent). Binary data is
native msgpack ``bin``, so there are no attachments: BINARY_EVENT / BINARY_ACK packets
go out as EVENT / ACK, and only the types 0 to 4 are accepted on input.

The npm package encodes with ``notepack.io``, whose encoding of JavaScript-only values
this module follows:

* ``undefined`` is fixext 1 of type 0 (``d4 00 00``): decoded as None in an array; a map
  entry whose value is undefined is left out (what ``JSON.stringify`` does too);
* an ArrayBuffer or typed array (what a browser sends) is ext 8/16/32 of type 0: decoded as
  bytes;
* a Date is fixext 8 of type 0 (``d7 00`` + int64 milliseconds): decoded as an aware UTC
  datetime, and a datetime is encoded that way (a naive one is taken as UTC);
* any other ext is decoded as the list ``[type, bytes]``.

A string holding a lone UTF-16 surrogate (which the JSON parser keeps) cannot be UTF-8: it is
encoded with U+FFFD in its place, as Node's Buffer and notepack.io (for strings longer than 32
code units; shorter ones it corrupts) do; invalid UTF-8 is decoded with U+FFFD, as
``Buffer.toString`` does.

Those forms differ only in the msgpack header (``c7 01 00 00`` is a one-byte ArrayBuffer,
``d4 00 00`` is undefined), which ``msgpack.unpackb`` does not report. So a message is
decoded by ``msgpack`` (C) when it holds no ext value and only string map keys, which is the
common case, and otherwise by the small exact decoder below. Both apply the same limits.

Differences from the npm decoder, on purpose: an EVENT must pass
:func:`socketio_core.packet.payload_is_valid` (a non-empty array whose first item is a
number or a non-reserved event name), map keys must be strings (integer keys are turned
into strings as JavaScript does, other keys are refused), containers may nest at most
``max_depth`` levels, a Date outside Python's datetime range and an ext of type -1 that is
not a valid msgpack timestamp are refused, and integers keep their precision beyond 2**53.

``msgpack`` is imported when a parser is created: ``pip install realtime-socketio[msgpack]``.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import re
import struct
from typing import Any

from .packet import Packet, PacketType, ProtocolError, payload_is_valid

__all__ = ["DEFAULT_MAX_DEPTH", "MsgPackDecoder", "MsgPackParser", "MsgpackParser"]

#: Default limit on container nesting in a message (the packet map itself is level 1).
DEFAULT_MAX_DEPTH = 100
#: The exact decoder recurses (two frames a level), so ``max_depth`` may not exceed this.
MAX_DEPTH_LIMIT = 256

_INSTALL_HINT = (
    "the msgpack parser needs the 'msgpack' package; install it with "
    "`pip install realtime-socketio[msgpack]` (or `pip install msgpack`)"
)

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_ONE_MS = _dt.timedelta(milliseconds=1)
_MAX_SAFE_INTEGER = 2**53 - 1  # integer keys up to this print the same in JavaScript
_WIRE_TYPE = {
    PacketType.CONNECT: 0,
    PacketType.DISCONNECT: 1,
    PacketType.EVENT: 2,
    PacketType.ACK: 3,
    PacketType.CONNECT_ERROR: 4,
    PacketType.BINARY_EVENT: 2,
    PacketType.BINARY_ACK: 3,
}
_PACKET_TYPES = (
    PacketType.CONNECT,
    PacketType.DISCONNECT,
    PacketType.EVENT,
    PacketType.ACK,
    PacketType.CONNECT_ERROR,
)
_FLOAT32 = struct.Struct(">f")
_FLOAT64 = struct.Struct(">d")
_INT64 = struct.Struct(">q")
_UNDEFINED: Any = object()  # notepack's undefined, while decoding
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
#: Bound on the surrogate fallback's recursion; msgpack refuses deeper data anyway (511).
_ENCODE_DEPTH_LIMIT = 512


def _load_msgpack() -> Any:
    try:
        import msgpack
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return msgpack


class _NeedsExactDecoding(Exception):
    """Raised from msgpack's hooks: the message holds an ext value."""


def _ext_hook(code: int, data: bytes) -> Any:
    raise _NeedsExactDecoding


def _map_key(key: Any) -> str:
    if type(key) is str:
        return key
    if type(key) is int and -_MAX_SAFE_INTEGER <= key <= _MAX_SAFE_INTEGER:
        return str(key)
    raise ProtocolError("map keys must be strings")


def _date(ms: int) -> _dt.datetime:
    try:
        return _EPOCH + ms * _ONE_MS
    except OverflowError:
        raise ProtocolError("date out of range") from None


class _ExactDecoder:
    """notepack.io's decoding, with the limits of this module. Recursion is bounded by
    ``max_depth`` (at most :data:`MAX_DEPTH_LIMIT`)."""

    __slots__ = ("buf", "max_depth", "pos")

    def __init__(self, buf: bytes, max_depth: int) -> None:
        self.buf = buf
        self.pos = 0
        self.max_depth = max_depth

    def decode(self) -> Any:
        try:
            value = self.value(1)
        except RecursionError:  # only with a deep caller stack: max_depth is bounded
            raise ProtocolError("data nested too deeply") from None
        if self.pos != len(self.buf):
            raise ProtocolError("trailing bytes after the msgpack value")
        return value

    def take(self, n: int) -> bytes:
        start = self.pos
        end = start + n
        if end > len(self.buf):
            raise ProtocolError("truncated msgpack data")
        self.pos = end
        return self.buf[start:end]

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def sint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big", signed=True)

    def value(self, depth: int) -> Any:
        b = self.take(1)[0]
        if b <= 0x7F:
            return b
        if b >= 0xE0:
            return b - 0x100
        if b <= 0x8F:
            return self.map(b & 0x0F, depth)
        if b <= 0x9F:
            return self.array(b & 0x0F, depth)
        if b <= 0xBF:
            return self.str(b & 0x1F)
        if b == 0xC0:
            return None
        if b == 0xC2:
            return False
        if b == 0xC3:
            return True
        if 0xC4 <= b <= 0xC6:  # bin 8/16/32
            return self.take(self.uint(1 << (b - 0xC4)))
        if 0xC7 <= b <= 0xC9:  # ext 8/16/32: type 0 is an ArrayBuffer
            length = self.uint(1 << (b - 0xC7))
            code = self.sint(1)
            data = self.take(length)
            return data if code == 0 else [code, data]
        if b == 0xCA:
            return _FLOAT32.unpack(self.take(4))[0]
        if b == 0xCB:
            return _FLOAT64.unpack(self.take(8))[0]
        if 0xCC <= b <= 0xCF:
            return self.uint(1 << (b - 0xCC))
        if 0xD0 <= b <= 0xD3:
            return self.sint(1 << (b - 0xD0))
        if 0xD4 <= b <= 0xD8:  # fixext 1/2/4/8/16
            size = 1 << (b - 0xD4)
            code = self.sint(1)
            if code == 0 and b == 0xD4:
                self.take(1)
                return _UNDEFINED
            if code == 0 and b == 0xD7:
                return _date(self.sint(8))
            return [code, self.take(size)]
        if 0xD9 <= b <= 0xDB:
            return self.str(self.uint(1 << (b - 0xD9)))
        if b == 0xDC or b == 0xDD:
            return self.array(self.uint(2 if b == 0xDC else 4), depth)
        if b == 0xDE or b == 0xDF:
            return self.map(self.uint(2 if b == 0xDE else 4), depth)
        raise ProtocolError("invalid msgpack data (0xc1)")

    def str(self, length: int) -> str:
        return self.take(length).decode("utf-8", "replace")

    def array(self, length: int, depth: int) -> list[Any]:
        if depth > self.max_depth:
            raise ProtocolError("data nested too deeply")
        if length > len(self.buf) - self.pos:
            raise ProtocolError("truncated msgpack data")
        out = []
        for _ in range(length):
            item = self.value(depth + 1)
            out.append(None if item is _UNDEFINED else item)
        return out

    def map(self, length: int, depth: int) -> dict[builtins.str, Any]:  # str: the method above
        if depth > self.max_depth:
            raise ProtocolError("data nested too deeply")
        if 2 * length > len(self.buf) - self.pos:
            raise ProtocolError("truncated msgpack data")
        out: dict[str, Any] = {}
        for _ in range(length):
            key = _map_key(self.value(depth + 1))
            item = self.value(depth + 1)
            if item is _UNDEFINED:
                out.pop(key, None)
            else:
                out[key] = item
        return out


def _utf8_string(value: str) -> str:
    """A str as UTF-8 can carry it: a surrogate pair becomes its character and a lone
    surrogate U+FFFD, as Node's Buffer (and every UTF-8 encoder of JavaScript) writes it."""
    return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _replace_lone_surrogates(value: Any, depth: int) -> Any:
    """A copy of packet data whose strings (map keys too) are valid UTF-8 text."""
    if isinstance(value, str):
        return value if _LONE_SURROGATE.search(value) is None else _utf8_string(value)
    if isinstance(value, list | tuple | dict):
        if depth <= 0:
            raise ValueError("data nested too deeply")  # msgpack's own limit is lower
        depth -= 1
        # Plain loops, not comprehensions: one frame a level (a comprehension is a second
        # one on Python 3.11), so the limit is reached before the interpreter's.
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                out[_replace_lone_surrogates(key, depth)] = _replace_lone_surrogates(item, depth)
            return out
        items = []
        for item in value:
            items.append(_replace_lone_surrogates(item, depth))
        return items
    return value


def _integer(value: Any) -> int | None:
    """A JavaScript integer (Number.isInteger): an int, or a float with an integral value."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def _to_packet(obj: Any) -> Packet:
    """Validate a decoded message the way the npm decoder does, plus payload_is_valid."""
    if type(obj) is not dict:
        raise ProtocolError("a msgpack packet must be a map")
    raw_type = _integer(obj.get("type"))
    if raw_type is None or not 0 <= raw_type <= 4:
        raise ProtocolError("invalid packet type")
    ptype = _PACKET_TYPES[raw_type]
    nsp = obj.get("nsp")
    if type(nsp) is not str:
        raise ProtocolError("invalid namespace")
    if "data" in obj:
        data = obj["data"]
        if data is None or not payload_is_valid(ptype, data):
            raise ProtocolError("invalid payload")
    elif ptype is PacketType.CONNECT or ptype is PacketType.DISCONNECT:
        data = None
    else:
        raise ProtocolError("invalid payload")
    packet_id = None
    if "id" in obj:
        packet_id = _integer(obj["id"])
        if packet_id is None:
            raise ProtocolError("invalid packet id")
    return Packet(ptype, data, nsp, packet_id)


class MsgPackParser:
    """The msgpack parser (``socket.io-msgpack-parser``); needs the ``msgpack`` package."""

    __slots__ = ("_msgpack", "_timestamp_type", "max_depth")

    def __init__(self, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        if not 1 <= max_depth <= MAX_DEPTH_LIMIT:
            raise ValueError(f"max_depth must be between 1 and {MAX_DEPTH_LIMIT}")
        self._msgpack = _load_msgpack()
        self._timestamp_type = self._msgpack.Timestamp
        self.max_depth = max_depth

    # ------------------------------------------------------------------ encoding

    def _default(self, obj: Any) -> Any:
        if isinstance(obj, _dt.datetime):
            if obj.tzinfo is None:
                obj = obj.replace(tzinfo=_dt.UTC)
            return self._msgpack.ExtType(0, _INT64.pack((obj - _EPOCH) // _ONE_MS))
        raise TypeError(f"Type is not msgpack serializable: {type(obj).__name__}")

    def encode(self, packet: Packet) -> list[str | bytes]:
        """One binary message. Raises TypeError when the data cannot be encoded."""
        obj: dict[str, Any] = {"type": _WIRE_TYPE[packet.type]}
        if packet.data is not None:
            obj["data"] = packet.data
        obj["nsp"] = packet.nsp
        if packet.id is not None:
            obj["id"] = packet.id
        try:
            try:
                return [self._msgpack.packb(obj, use_bin_type=True, default=self._default)]
            except UnicodeEncodeError:
                # A lone surrogate: the slow path, only then (see _replace_lone_surrogates).
                obj = _replace_lone_surrogates(obj, _ENCODE_DEPTH_LIMIT)
                return [self._msgpack.packb(obj, use_bin_type=True, default=self._default)]
        except (OverflowError, ValueError, RecursionError) as exc:  # int too big, nesting
            # (RecursionError: the surrogate fallback called from an already deep stack)
            raise TypeError(f"cannot encode packet data: {exc}") from exc

    # ------------------------------------------------------------------ decoding

    def decoder(self) -> MsgPackDecoder:
        return MsgPackDecoder(self)

    def decode(self, data: str | bytes | bytearray | memoryview) -> Packet:
        """Decode one message; raises ProtocolError when it is not a valid packet."""
        if isinstance(data, str):
            raise ProtocolError("got a text message; the msgpack parser only uses binary ones")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ProtocolError(f"unexpected message type {type(data).__name__}")
        return _to_packet(self._unpack(bytes(data)))

    def _unpack(self, data: bytes) -> Any:
        size = len(data)
        try:
            obj = self._msgpack.unpackb(
                data,
                raw=False,
                unicode_errors="replace",
                strict_map_key=False,
                ext_hook=_ext_hook,
                max_str_len=size,
                max_bin_len=size,
                max_array_len=size,
                max_map_len=size // 2,
                max_ext_len=size,
            )
        except _NeedsExactDecoding:
            return _ExactDecoder(data, self.max_depth).decode()
        except Exception as exc:  # malformed input: msgpack raises ValueError and friends
            raise ProtocolError(f"invalid msgpack data ({type(exc).__name__}: {exc})") from None
        if type(obj) is dict and not self._check(obj):
            return _ExactDecoder(data, self.max_depth).decode()
        return obj

    def _check(self, obj: dict[str, Any]) -> bool:
        """Enforce max_depth. False when the exact decoder must decide: a map key that is
        not a string, or a msgpack Timestamp (ext -1, which skips the ext hook)."""
        max_depth = self.max_depth
        timestamp = self._timestamp_type
        stack: list[tuple[Any, int]] = [(obj, 1)]
        push = stack.append
        while stack:
            container, depth = stack.pop()
            if depth > max_depth:
                raise ProtocolError("data nested too deeply")
            if type(container) is dict:
                for key, item in container.items():
                    if type(key) is not str:
                        return False
                    kind = type(item)
                    if kind is list or kind is dict:
                        push((item, depth + 1))
                    elif kind is timestamp:
                        return False
            else:
                for item in container:
                    kind = type(item)
                    if kind is list or kind is dict:
                        push((item, depth + 1))
                    elif kind is timestamp:
                        return False
        return True


class MsgPackDecoder:
    """Decoder of a connection: every message is a whole packet."""

    __slots__ = ("_parser",)

    def __init__(self, parser: MsgPackParser) -> None:
        self._parser = parser

    def add(self, data: str | bytes) -> Packet | None:
        return self._parser.decode(data)


MsgpackParser = MsgPackParser
