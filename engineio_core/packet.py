"""Engine.IO v4 packet and payload codec: pure functions, no I/O."""

from __future__ import annotations

import binascii
import enum
import struct
from collections.abc import Iterable, Iterator

__all__ = [
    "RECORD_SEPARATOR",
    "OutgoingPacket",
    "Packet",
    "PacketType",
    "ProtocolError",
    "decode_packet",
    "decode_payload",
    "encode_packet",
    "encode_payload",
    "iter_payload",
    "websocket_frame",
]

RECORD_SEPARATOR = "\x1e"


class ProtocolError(ValueError):
    """Raised for any input that is not valid Engine.IO v4."""


class PacketType(enum.IntEnum):
    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


# Attribute access on an Enum class is slow on Python 3.11; this one is read per message.
_MESSAGE = PacketType.MESSAGE
_DIGIT = {t: str(int(t)) for t in PacketType}


# Indexed by the ASCII code of the type digit, for a branch-free lookup on the hot path.
_TYPE_BY_CHAR: dict[str, PacketType] = {str(int(t)): t for t in PacketType}


class Packet:
    """One decoded Engine.IO packet. ``data`` is bytes only for binary messages."""

    __slots__ = ("data", "type")

    def __init__(self, type: PacketType, data: str | bytes = "") -> None:
        self.type = type
        self.data = data

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Packet) and other.type == self.type and other.data == self.data
        )

    def __hash__(self) -> int:
        return hash((self.type, self.data))

    def __repr__(self) -> str:
        return f"Packet({self.type.name}, {self.data!r})"


def encode_packet(packet: Packet) -> str | bytes:
    """Encode for a WebSocket frame: text packets as str, binary messages as raw bytes."""
    if isinstance(packet.data, bytes):
        if packet.type is not _MESSAGE:
            raise ProtocolError("only message packets can carry binary data")
        return packet.data
    return f"{_DIGIT[packet.type]}{packet.data}"


def decode_packet(data: str | bytes) -> Packet:
    """Decode one packet from a WebSocket frame (str: text frame, bytes: binary frame)."""
    if isinstance(data, bytes | bytearray | memoryview):
        return Packet(_MESSAGE, bytes(data))
    if not data:
        raise ProtocolError("empty packet")
    ptype = _TYPE_BY_CHAR.get(data[0])
    if ptype is None:
        raise ProtocolError(f"unknown packet type {data[0]!r}")
    return Packet(ptype, data[1:])


def _encode_for_polling(packet: Packet) -> str:
    if isinstance(packet.data, bytes):
        if packet.type is not _MESSAGE:
            raise ProtocolError("only message packets can carry binary data")
        return "b" + binascii.b2a_base64(packet.data, newline=False).decode("ascii")
    # A text packet holding the record separator cannot be escaped: like the reference
    # server we send it as is (Socket.IO's JSON never contains a raw \x1e).
    return f"{_DIGIT[packet.type]}{packet.data}"


def encode_payload(packets: Iterable[Packet]) -> str:
    """Encode packets for an HTTP long-polling response body."""
    return RECORD_SEPARATOR.join(_encode_for_polling(p) for p in packets)


def _decode_polling_packet(text: str) -> Packet:
    if text[:1] == "b":
        try:
            return Packet(_MESSAGE, binascii.a2b_base64(text[1:], strict_mode=True))
        except ValueError as exc:  # binascii.Error, or non-ASCII characters
            raise ProtocolError(f"invalid base64 in binary packet: {exc}") from None
    return decode_packet(text)


def iter_payload(payload: str) -> Iterator[Packet | None]:
    """Decode a long-polling body packet by packet; yields None at the first bad one.

    For callers that, like the reference server, act on the packets before an error.
    """
    if not payload:
        yield None
        return
    for part in payload.split(RECORD_SEPARATOR):
        try:
            yield _decode_polling_packet(part)
        except ProtocolError:
            yield None
            return


def decode_payload(payload: str, max_packets: int | None = None) -> list[Packet]:
    """Decode an HTTP long-polling request body into packets.

    Raises ProtocolError if any packet is invalid; nothing is returned in that case, so a
    caller never acts on half of a corrupt payload.
    """
    if not payload:
        raise ProtocolError("empty payload")
    parts = payload.split(RECORD_SEPARATOR)
    if max_packets is not None and len(parts) > max_packets:
        raise ProtocolError(f"payload has more than {max_packets} packets")
    return [_decode_polling_packet(part) for part in parts]


def websocket_frame(payload: bytes, *, binary: bool) -> bytes:
    """Build one final, unmasked WebSocket data frame (RFC 6455 section 5.2).

    Server frames are never masked, so the same bytes can be written to every recipient
    of a broadcast.
    """
    first = 0x82 if binary else 0x81
    n = len(payload)
    if n < 126:
        header = bytes((first, n))
    elif n < 65536:
        header = struct.pack("!BBH", first, 126, n)
    else:
        header = struct.pack("!BBQ", first, 127, n)
    return header + payload


# The first bytes of a final text frame carrying a message whose text (after the "4")
# encodes to n < 125 bytes: the frame header, then the packet type.
_MESSAGE_FRAME_HEADS = [bytes((0x81, n + 1)) + b"4" for n in range(125)]


class OutgoingPacket:
    """A packet to send, with its wire forms computed once and cached.

    A broadcast builds one OutgoingPacket and hands it to every recipient session: the
    polling text and the WebSocket frame are encoded at most once each, whatever the
    number of recipients.
    """

    __slots__ = ("_frame", "_text", "data", "type")

    def __init__(self, type: PacketType, data: str | bytes = "") -> None:
        if type is not _MESSAGE and isinstance(data, bytes):
            raise ProtocolError("only message packets can carry binary data")
        self.type = type
        self.data = data
        self._text: str | None = None
        self._frame: bytes | None = None

    @classmethod
    def message(cls, data: str | bytes | bytearray | memoryview) -> OutgoingPacket:
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        return cls(_MESSAGE, data)

    @property
    def polling_text(self) -> str:
        """The packet as it appears inside a long-polling payload."""
        text = self._text
        if text is None:
            text = self._text = _encode_for_polling(Packet(self.type, self.data))
        return text

    @property
    def websocket_frame(self) -> bytes:
        """The complete WebSocket frame carrying this packet."""
        frame = self._frame
        if frame is None:
            data = self.data
            if isinstance(data, bytes):
                frame = websocket_frame(data, binary=True)
            elif self.type is _MESSAGE:
                body = data.encode()
                if len(body) < 125:
                    # The usual small message: one encode and one concatenation, ~110 ns
                    # less than building the text "4..." first (measured).
                    frame = _MESSAGE_FRAME_HEADS[len(body)] + body
                else:
                    frame = websocket_frame(b"4" + body, binary=False)
            else:
                payload = f"{_DIGIT[self.type]}{data}".encode()
                frame = websocket_frame(payload, binary=False)
            self._frame = frame
        return frame

    @property
    def websocket_data(self) -> str | bytes:
        """The frame payload (for transports that frame it themselves: ASGI, deflate)."""
        data = self.data
        if isinstance(data, bytes):
            return data
        return f"{_DIGIT[self.type]}{data}"
