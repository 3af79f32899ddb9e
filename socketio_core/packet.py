"""Socket.IO v5 packet codec (the default JSON parser) with binary attachments. No I/O.

Encoding produces the Engine.IO messages of one packet: a text message, followed by one
binary message per attachment. Decoding is incremental, because a packet with
attachments arrives as several Engine.IO messages.

Strings are JavaScript strings: a lone UTF-16 surrogate (``"\\ud83d"`` in the JSON, half an
emoji) is decoded into the str as that code point and encoded back the way JSON.stringify
writes it (``\\ud83d``, lowercase hex), as socket.io does. orjson does the work; the exact
path below is taken only when orjson refuses.
"""

from __future__ import annotations

import enum
import json
import math
import re
from typing import Any, Protocol

import orjson

__all__ = [
    "RESERVED_EVENTS",
    "Decoder",
    "JsonDecoder",
    "JsonParser",
    "Packet",
    "PacketType",
    "Parser",
    "ProtocolError",
    "encode",
]

#: Event names a client may not send (the reference parser refuses them too).
RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)

DEFAULT_MAX_ATTACHMENTS = 10
_BINARY_TYPES = (bytes, bytearray, memoryview)
_DUMPS_OPTIONS = orjson.OPT_NON_STR_KEYS


class ProtocolError(ValueError):
    """The input is not a valid Socket.IO packet."""


# ---------------------------------------------------------------------- lone surrogates
#
# JavaScript strings are UTF-16 and may hold a lone surrogate (half an emoji); every browser's
# JSON.stringify writes one as an escape ("\ud83d") and socket.io accepts it and sends it back
# the same way. orjson refuses lone surrogates both ways, so it stays the fast path and the
# functions below are the exact path taken only when orjson refuses.

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# An escaped surrogate in JSON text: the only input the exact decoder is tried on.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
#: orjson's nesting limit when encoding; the exact encoder applies the same one.
_MAX_ENCODE_DEPTH = 254
_INT_MIN = -(2**63)
_UINT_MAX = 2**64 - 1


def _json_string(value: str) -> str:
    """A str as JSON.stringify writes the JavaScript string with the same code units."""
    if _LONE_SURROGATE.search(value) is None:
        return orjson.dumps(value).decode()
    # A high and a low surrogate next to each other are one character in JavaScript.
    value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    parts = ['"']
    pos = 0
    for match in _LONE_SURROGATE.finditer(value):
        parts.append(orjson.dumps(value[pos : match.start()]).decode()[1:-1])
        parts.append(f"\\u{ord(match.group()):04x}")  # lowercase hex, like JSON.stringify
        pos = match.end()
    parts.append(orjson.dumps(value[pos:]).decode()[1:])
    return "".join(parts)


def _dumps_exact(value: Any, default: Any, depth: int = 0) -> str:
    """orjson.dumps(value, default, OPT_NON_STR_KEYS), except that strings may hold lone
    surrogates. Everything but str, list, tuple and dict is left to orjson."""
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, list | tuple | dict):
        depth += 1
        if depth > _MAX_ENCODE_DEPTH:
            raise TypeError("Recursion limit reached")
        if isinstance(value, dict):
            items = []
            for key, item in value.items():
                if isinstance(key, str):
                    name = _json_string(key)
                else:  # orjson's conversion of a non-str key: '{"1":null}' -> '"1"'
                    name = orjson.dumps({key: None}, option=_DUMPS_OPTIONS).decode()[1:-6]
                items.append(f"{name}:{_dumps_exact(item, default, depth)}")
            return "{" + ",".join(items) + "}"
        return "[" + ",".join([_dumps_exact(item, default, depth) for item in value]) + "]"
    return orjson.dumps(value, default=default, option=_DUMPS_OPTIONS).decode()


def _exact_int(text: str) -> int | float:
    # orjson reads an integer outside the 64-bit ranges as a float
    if len(text) <= 21:
        number = int(text)
        if _INT_MIN <= number <= _UINT_MAX:
            return number
    return _exact_float(text)


def _exact_float(text: str) -> float:
    number = float(text)
    if number in (math.inf, -math.inf):
        raise ValueError("number is infinity when parsed as double")  # as orjson refuses it
    return number


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")  # NaN, Infinity: orjson refuses them


_EXACT_DECODER = json.JSONDecoder(
    parse_int=_exact_int, parse_float=_exact_float, parse_constant=_refuse_constant
)


def _loads(body: str) -> Any:
    """orjson.loads, and the json module for what orjson refuses only because of an escaped
    lone surrogate (the json module keeps it in the str, as JSON.parse does)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        if _SURROGATE_ESCAPE.search(body) is None:
            raise ProtocolError("invalid JSON payload") from None
    try:
        return _EXACT_DECODER.decode(body)
    except (ValueError, RecursionError):  # JSONDecodeError, our hooks, int digits limit
        raise ProtocolError("invalid JSON payload") from None


class PacketType(enum.IntEnum):
    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6

# Enum members as module constants: attribute access on an Enum class is slow on
# Python 3.11, and these are read once or more per packet.
_CONNECT = PacketType.CONNECT
_DISCONNECT = PacketType.DISCONNECT
_EVENT = PacketType.EVENT
_ACK = PacketType.ACK
_CONNECT_ERROR = PacketType.CONNECT_ERROR
_BINARY_EVENT = PacketType.BINARY_EVENT
_BINARY_ACK = PacketType.BINARY_ACK


_TYPE_BY_CHAR = {str(int(t)): t for t in PacketType}
_TYPE_CHARS = {t: str(int(t)) for t in PacketType}


class Packet:
    """A decoded Socket.IO packet. ``data`` is None when the packet carries no payload."""

    __slots__ = ("data", "id", "nsp", "type")

    def __init__(
        self, type: PacketType, data: Any = None, nsp: str = "/", id: int | None = None
    ) -> None:
        self.type = type
        self.data = data
        self.nsp = nsp
        self.id = id

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Packet)
            and (self.type, self.nsp, self.id, self.data)
            == (other.type, other.nsp, other.id, other.data)
        )

    def __repr__(self) -> str:
        return f"Packet({self.type.name}, nsp={self.nsp!r}, id={self.id!r}, data={self.data!r})"


class Decoder(Protocol):
    def add(self, data: str | bytes) -> Packet | None:
        """Feed one Engine.IO message; return a packet once it is complete."""
        ...


class Parser(Protocol):
    """A wire format for Socket.IO packets (JSON by default, msgpack as an option)."""

    def encode(self, packet: Packet) -> list[str | bytes]: ...

    def decoder(self) -> Decoder: ...


# ---------------------------------------------------------------------- encoding


def encode(packet: Packet) -> list[str | bytes]:
    """Encode a packet: a text message, then one binary message per attachment.

    EVENT and ACK packets whose data holds bytes, bytearray or memoryview (at any depth)
    become BINARY_EVENT / BINARY_ACK with placeholders, in one orjson pass.
    """
    ptype = packet.type
    if ptype is _ACK and packet.nsp == "/":
        # An ack's answer to the usual event: without bytes one orjson call does it, no
        # placeholder closure, no buffer list (~0.2 us of the echo round trip). Bytes, a
        # lone surrogate or no data (TypeError) take the general path below.
        try:
            body = orjson.dumps(packet.data, option=_DUMPS_OPTIONS).decode()
        except TypeError:
            pass
        else:
            return ["3" + body if packet.id is None else f"3{packet.id}{body}"]
    buffers: list[bytes] = []
    if packet.data is None:
        body = ""
    elif ptype is _EVENT or ptype is _ACK:

        def placeholder(obj: Any) -> Any:
            if isinstance(obj, _BINARY_TYPES):
                buffers.append(bytes(obj))
                return {"_placeholder": True, "num": len(buffers) - 1}
            raise TypeError(f"Type is not JSON serializable: {type(obj).__name__}")

        try:
            body = orjson.dumps(packet.data, default=placeholder, option=_DUMPS_OPTIONS).decode()
        except orjson.JSONEncodeError:
            # A lone surrogate, or data that cannot be encoded at all (raises again).
            buffers.clear()
            body = _dumps_exact(packet.data, placeholder)
        if buffers:
            ptype = _BINARY_EVENT if ptype is _EVENT else _BINARY_ACK
    else:
        try:
            body = orjson.dumps(packet.data, option=_DUMPS_OPTIONS).decode()
        except orjson.JSONEncodeError:
            body = _dumps_exact(packet.data, None)
    head = _TYPE_CHARS[ptype]
    if buffers:
        head = f"{head}{len(buffers)}-"
    if packet.nsp != "/":
        # Always followed by a comma, like the reference encoder ("1/admin,").
        head = f"{head}{packet.nsp},"
    if packet.id is not None:
        head = f"{head}{packet.id}"
    if buffers:
        return [head + body, *buffers]
    return [head + body]


# ---------------------------------------------------------------------- decoding


def _is_object(value: Any) -> bool:
    return isinstance(value, dict)


def payload_is_valid(ptype: PacketType, data: Any) -> bool:
    """The reference parser's validity rules for a packet's payload."""
    if ptype is _CONNECT:
        return _is_object(data)
    if ptype is _DISCONNECT:
        return data is None
    if ptype is _CONNECT_ERROR:
        return isinstance(data, str) or _is_object(data)
    if ptype is _EVENT or ptype is _BINARY_EVENT:
        if not isinstance(data, list) or not data:
            return False
        name = data[0]
        if isinstance(name, str):
            return name not in RESERVED_EVENTS
        return isinstance(name, int | float) and not isinstance(name, bool)
    return isinstance(data, list)  # ACK, BINARY_ACK


# type, attachments ("N-"), namespace (up to a comma), ack id; the JSON payload follows.
_HEADER = re.compile(r"([0-6])(?:(\d+)-)?(?:(/[^,]*),?)?(\d*)", re.ASCII)


def _header(text: str) -> tuple[str, str | None, str | None, str, int]:
    """(type, attachments, namespace, ack id digits, where the payload starts) of a packet.

    The usual packet, an event in "/" ("2", an ack id of at most 20 digits, then the JSON
    array), is read without the regular expression (~0.3 us of the echo round trip); the
    result is what ``_HEADER`` gives for it.
    """
    if text[:1] == "2":
        bracket = text.find("[", 1, 22)
        if bracket > 0:
            digits = text[1:bracket]
            if (digits.isdigit() and digits.isascii()) or not digits:
                return "2", None, None, digits, bracket
    match = _HEADER.match(text)
    if match is None:
        raise ProtocolError("empty packet" if not text else f"unknown packet type {text[0]!r}")
    type_char, count, nsp, digits = match.groups()
    return type_char, count, nsp, digits, match.end()


def decode_text(text: str, max_attachments: int = DEFAULT_MAX_ATTACHMENTS) -> tuple[Packet, int]:
    """Decode the text part of a packet; returns (packet, attachments still expected)."""
    type_char, count, nsp, digits, end = _header(text)
    ptype = _TYPE_BY_CHAR[type_char]
    attachments = 0
    if ptype is _BINARY_EVENT or ptype is _BINARY_ACK:
        if count is None:
            raise ProtocolError("illegal attachments")
        try:
            attachments = int(count)
        except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
            raise ProtocolError("illegal attachments") from None
        if attachments > max_attachments:
            raise ProtocolError("too many attachments")
    elif count is not None:
        raise ProtocolError("attachments on a packet that cannot have any")
    try:
        packet_id = int(digits) if digits else None
    except ValueError:  # more digits than int() converts
        raise ProtocolError("invalid packet id") from None
    body = text[end:]
    if body:
        data = _loads(body)
        if ptype is _EVENT and type(data) is list and data and type(data[0]) is str:
            # The usual packet, validated inline: an event with a string name.
            if data[0] in RESERVED_EVENTS:
                raise ProtocolError("invalid payload")
        # A literal ``null`` is a payload too, and no packet type accepts it.
        elif data is None or not payload_is_valid(ptype, data):
            raise ProtocolError("invalid payload")
    elif ptype is _CONNECT or ptype is _DISCONNECT:
        data = None
    else:
        # The reference parser lets "2" through with no data; the protocol requires one.
        raise ProtocolError("missing payload")
    return Packet(ptype, data, nsp or "/", packet_id), attachments


def _reconstruct(data: Any, buffers: list[bytes]) -> Any:
    """Replace the placeholders by their buffers, in place (the decoded JSON is ours).

    Iterative: the JSON may nest up to orjson's limit (1024), deeper than the recursion limit.
    """
    root = [data]
    stack: list[Any] = [root]
    while stack:
        container = stack.pop()
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, value in items:
            if isinstance(value, dict):
                if value.get("_placeholder") is True:
                    num = value.get("num")
                    if type(num) is int and 0 <= num < len(buffers):
                        container[key] = buffers[num]  # same keys: safe while iterating
                        continue
                    raise ProtocolError("illegal attachments")
                stack.append(value)
            elif isinstance(value, list):
                stack.append(value)
    return root[0]


class JsonDecoder:
    """Incremental decoder for the default parser."""

    __slots__ = ("_buffers", "_expected", "_max_attachments", "_pending")

    def __init__(self, max_attachments: int = DEFAULT_MAX_ATTACHMENTS) -> None:
        self._max_attachments = max_attachments
        self._pending: Packet | None = None
        self._expected = 0
        self._buffers: list[bytes] = []

    def add(self, data: str | bytes) -> Packet | None:
        if isinstance(data, str):
            if self._pending is not None:
                raise ProtocolError("got plaintext data when reconstructing a packet")
            packet, attachments = decode_text(data, self._max_attachments)
            if attachments == 0:
                ptype = packet.type
                if ptype is _BINARY_EVENT or ptype is _BINARY_ACK:
                    packet.data = _reconstruct(packet.data, [])
                return packet
            self._pending = packet
            self._expected = attachments
            self._buffers = []
            return None
        if self._pending is None:
            raise ProtocolError("got binary data when not reconstructing a packet")
        self._buffers.append(bytes(data))
        if len(self._buffers) < self._expected:
            return None
        packet, buffers = self._pending, self._buffers
        self._pending = None
        self._buffers = []
        packet.data = _reconstruct(packet.data, buffers)
        return packet


class JsonParser:
    """The default Socket.IO parser (``socket.io-parser``)."""

    __slots__ = ("max_attachments",)

    def __init__(self, max_attachments: int = DEFAULT_MAX_ATTACHMENTS) -> None:
        self.max_attachments = max_attachments

    def encode(self, packet: Packet) -> list[str | bytes]:
        return encode(packet)

    def decoder(self) -> JsonDecoder:
        return JsonDecoder(self.max_attachments)
