"""FrameReader: which frames take the fast path, and which go to the ``websockets`` Protocol.

That both give the same frames and leave the Protocol in the same state is fuzzed in
tests/fuzz/test_frame_reader_fuzz.py; here: the fast path is really taken for the frames
it exists for, and never for the others.
"""

from __future__ import annotations

import struct
from typing import Any

from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State

from engineio_core.frame_reader import FrameReader, frame_size

KEY = b"\x11\x22\x33\x44"


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0,
                 long_length: bool = False) -> bytes:
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    n = len(payload)
    if long_length:
        head = bytes((first, 0x80 | 127)) + struct.pack("!Q", n)
    elif n < 126:
        head = bytes((first, 0x80 | n))
    else:
        head = bytes((first, 0x80 | 126)) + struct.pack("!H", n)
    return head + KEY + bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))


class CountingProtocol(Protocol):
    """A Protocol that counts the bytes it is given."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(Side.SERVER, state=State.OPEN, **kwargs)
        self.fed = 0

    def receive_data(self, data: bytes | bytearray) -> None:
        self.fed += len(data)
        super().receive_data(data)


def new_reader(**kwargs: Any) -> tuple[FrameReader, CountingProtocol]:
    protocol = CountingProtocol(max_size=kwargs.pop("max_size", 1000), **kwargs)
    return FrameReader(protocol), protocol


def test_small_text_and_binary_frames_skip_the_protocol() -> None:
    reader, protocol = new_reader()
    data = (
        client_frame(0x1, b'42["echo",1]')
        + client_frame(0x2, b"\x00\x01")
        + client_frame(0x1, b"x" * 300)  # a 16-bit length
        + client_frame(0x1, b"")
    )
    frames = reader.receive(data)
    assert frames == [
        Frame(Opcode.TEXT, b'42["echo",1]'),
        Frame(Opcode.BINARY, b"\x00\x01"),
        Frame(Opcode.TEXT, b"x" * 300),
        Frame(Opcode.TEXT, b""),
    ]
    assert protocol.fed == 0


def test_unusual_frames_go_to_the_protocol_whole() -> None:
    reader, protocol = new_reader()
    ping = client_frame(0x9, b"p")
    fragment = client_frame(0x1, b"a", fin=False)
    continuation = client_frame(0x0, b"b")
    text = client_frame(0x1, b"t")
    frames = reader.receive(text + ping + text + fragment + text + continuation)
    assert [f.opcode for f in frames] == [Opcode.TEXT, Opcode.PING, Opcode.TEXT, Opcode.TEXT]
    # The ping and the fragment; the text after the fragment fails the connection
    # (a continuation was expected) and the rest is the Protocol's.
    assert protocol.fed == len(ping + fragment + text + continuation)
    assert protocol.state is State.CLOSING
    assert protocol.close_sent is not None and protocol.close_sent.code == 1002


def test_frames_cut_by_a_read_are_finished_by_the_protocol() -> None:
    reader, protocol = new_reader()
    payload = b'42["echo",{"a":1}]'
    text = client_frame(0x1, payload)
    assert reader.receive(text + text[:1]) == [Frame(Opcode.TEXT, payload)]
    assert protocol.fed == 1  # the header is incomplete: the Protocol holds it
    assert reader.receive(text[1:5]) == []
    assert reader.receive(text[5:] + text) == [Frame(Opcode.TEXT, payload)] * 2
    assert protocol.fed == len(text)  # the next frame took the fast path again


def test_reserved_bits_long_lengths_and_oversize_go_to_the_protocol() -> None:
    for data in (
        client_frame(0x1, b"x", rsv=4),
        client_frame(0x1, b"x", long_length=True),
        client_frame(0x2, b"x" * 1001),
        bytes((0x81, 0x01)) + b"x",  # not masked
    ):
        reader, protocol = new_reader()
        reader.receive(data)
        assert protocol.fed == len(data)


def test_everything_goes_to_the_protocol_with_an_extension() -> None:
    protocol = CountingProtocol(max_size=1000)
    protocol.extensions = [PerMessageDeflate(False, False, 15, 15)]
    reader = FrameReader(protocol)
    data = client_frame(0x1, b"plain")  # RSV1 clear: not compressed
    assert reader.receive(data) == [Frame(Opcode.TEXT, b"plain")]
    assert protocol.fed == len(data)


def test_frame_size() -> None:
    assert frame_size(client_frame(0x1, b"abc"), 0) == 2 + 4 + 3
    assert frame_size(client_frame(0x1, b"a" * 200), 0) == 4 + 4 + 200
    assert frame_size(client_frame(0x1, b"a", long_length=True), 0) == 10 + 4 + 1
    assert frame_size(bytes((0x81, 0x03)) + b"abc", 0) == 2 + 3  # unmasked
    assert frame_size(b"\x81", 0) == -1
    assert frame_size(bytes((0x81, 0xFE, 0x00)), 0) == -1
    assert frame_size(b"..." + client_frame(0x1, b"abc"), 3) == 9
