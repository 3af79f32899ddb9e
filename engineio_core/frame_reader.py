"""Client WebSocket frames in: a fast path in front of the ``websockets`` frame parser.

Nearly every frame a Socket.IO client sends is small, final, masked, without extension
bits, and arrives whole in one read. For those, ``FrameReader`` reads the header and
unmasks the payload itself: 0.9 us for a read holding one echo frame against 2.4 us in
``websockets``' generator parser, 4.1 against 16.5 us for eight frames in one read
(``benchmarks/micro/test_frame_reader.py``, this machine). Everything else goes to
the ``websockets.protocol.Protocol`` byte for byte: control frames, fragments, reserved
bits, oversize or unmasked frames, frames cut by a read, and every byte once the
connection is no longer OPEN. The output is the list ``Protocol.events_received()`` would
have returned for the same bytes, and the Protocol ends each call in the state it would
have reached alone (``tests/fuzz/test_frame_reader_fuzz.py`` checks both, differentially).

Why that holds: a frame the fast path takes changes nothing in a Protocol that is OPEN,
between frames and not inside a fragmented message (``Protocol.recv_frame`` only appends
it to the events), so the Protocol only has to be at a frame boundary whenever the fast
path looks at a frame. It is after a whole frame; after part of one, the reader counts the
bytes that frame still needs (``_owed``, or ``_head`` while even its header is incomplete)
and gives them to the Protocol before it looks at anything else.
"""

from __future__ import annotations

from typing import cast

from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, State

try:  # the C version, as websockets.frames picks it
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask

__all__ = ["FrameReader", "frame_size"]

_OPEN = State.OPEN
# First header byte of a final text / binary frame without reserved bits -> its opcode.
_FAST_OPCODES = {0x81: Opcode.TEXT, 0x82: Opcode.BINARY}
# Longest header: 2 bytes, an 8-byte extended length, a 4-byte masking key.
_MAX_HEADER = 14


def frame_size(data: bytes, pos: int) -> int:
    """Bytes of the frame that starts at ``data[pos]``, header included, as ``websockets``
    reads it on the server side; -1 while its header is incomplete."""
    avail = len(data) - pos
    if avail < 2:
        return -1
    second = data[pos + 1]
    length = second & 0x7F
    header = 2
    if length == 126:
        header = 4
        if avail < 4:
            return -1
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
    elif length == 127:
        header = 10
        if avail < 10:
            return -1
        length = int.from_bytes(data[pos + 2 : pos + 10], "big")
    if second & 0x80:
        header += 4  # the masking key
    return header + length


class FrameReader:
    """Parses the bytes a client sends into ``websockets`` frames; see the module doc."""

    __slots__ = ("_fast", "_head", "_limit", "_owed", "protocol")

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        # Extensions (permessage-deflate) transform frames, DEBUG logging logs each one, a
        # fragment size limit is one more rule: the Protocol then sees every frame.
        self._fast = (
            not protocol.extensions and not protocol.debug and protocol.max_fragment_size is None
        )
        limit = protocol.max_message_size
        self._limit = -1 if limit is None else limit  # -1: no limit
        # Bytes the Protocol still needs to finish the frame it has the start of.
        self._owed = 0
        # The start of a frame given to the Protocol before its header was complete.
        self._head = b""

    def receive(self, data: bytes) -> list[Frame]:
        """Parse ``data`` (any slice of the stream); return the frames it completed."""
        protocol = self.protocol
        if not self._fast or protocol.state is not _OPEN:
            protocol.receive_data(data)
            return _frames(protocol)
        frames: list[Frame] = []
        n = len(data)
        pos = 0
        if self._head or self._owed:
            pos = self._finish_partial(data, frames)
            if pos < 0:
                return frames
            if protocol.state is not _OPEN:
                frames += self._feed(data[pos:])  # the Protocol discards it
                return frames
        limit = self._limit
        while pos < n:
            opcode = _FAST_OPCODES.get(data[pos])
            second = data[pos + 1] if pos + 1 < n else 0
            # A final text or binary frame without reserved bits, masked (bit 0x80 of the
            # second byte), its length in the second byte or in the two after it.
            if opcode is not None and second & 0x80:
                length = second & 0x7F
                if length < 126:
                    start = pos + 6
                elif length == 126 and pos + 4 <= n:
                    length = data[pos + 2] << 8 | data[pos + 3]
                    start = pos + 8
                else:
                    length = start = -1  # an 8-byte length: not a small frame
                end = start + length
                if (
                    length >= 0
                    and end <= n
                    and (length <= limit or limit < 0)
                    and protocol.current_size is None  # not inside a fragmented message
                ):
                    # websockets' C speedup unmasks (the key: the 4 bytes before).
                    payload = apply_mask(data[start:end], data[start - 4 : start])
                    frames.append(Frame(opcode, payload))
                    pos = end
                    continue
            # Anything else: the Protocol parses this frame, or the part of it we have.
            size = frame_size(data, pos)
            end = pos + size
            if size < 0 or end > n:
                frames += self._feed(data[pos:] if pos else data)
                if size < 0:
                    self._head = data[pos:]
                else:
                    self._owed = end - n
                return frames
            frames += self._feed(data[pos:end])
            pos = end
            # Only the Protocol's frames change its state: a close frame, or a failure.
            if protocol.state is not _OPEN:
                if pos < n:
                    frames += self._feed(data[pos:])  # the Protocol discards it
                return frames
        return frames

    def _finish_partial(self, data: bytes, frames: list[Frame]) -> int:
        """Give the Protocol the bytes that end the frame it has the start of.

        Returns where the next frame starts in ``data``, or -1 when it is all used up.
        """
        head = self._head
        if head:
            # At most _MAX_HEADER more bytes complete any header.
            joined = head + data[:_MAX_HEADER]
            size = frame_size(joined, 0)
            if size < 0:  # still incomplete: so ``data`` was short, and is all in ``joined``
                self._head = joined
                frames += self._feed(data)
                return -1
            self._head = b""
            self._owed = size - len(head)
        owed = self._owed
        if len(data) <= owed:
            self._owed = owed - len(data)
            frames += self._feed(data)
            return -1
        self._owed = 0
        frames += self._feed(data[:owed])
        return owed

    def _feed(self, data: bytes) -> list[Frame]:
        protocol = self.protocol
        protocol.receive_data(data)
        return _frames(protocol)


def _frames(protocol: Protocol) -> list[Frame]:
    # A server-side Protocol past its handshake yields frames only; websockets types
    # events_received() for every side (requests and responses too).
    return cast(list[Frame], protocol.events_received())
