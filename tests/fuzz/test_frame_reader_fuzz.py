"""Differential fuzzing of ``engineio_core.frame_reader.FrameReader`` against ``websockets``.

The same client bytes go to a bare ``websockets`` Protocol (server side, OPEN) and to a
FrameReader in front of another: a stream of frames, mostly the small final masked data
frames the fast path takes, mixed with pings, pongs, close frames (valid or not),
fragmented messages, reserved bits and opcodes, unmasked frames, non-minimal and 8-byte
lengths, oversize frames and random bytes, then cut at arbitrary points (several frames
per chunk, frames and headers split across chunks). After every chunk both sides must
agree on:

* the frames returned (opcode, payload, FIN and RSV bits);
* the Protocol's state: connection state, close frames received and sent, the parser's
  exception (type and message), the size of a fragmented message in progress, the bytes
  it holds, the bytes it has to send (pongs, close frames, end of stream);
* where the parser is suspended (the chain of generators and their line numbers): the
  FrameReader leaves the Protocol at exactly the point of the stream it would have reached;
* and the reader's own bookkeeping: it believes the Protocol is between two frames exactly
  when it is (a reader that lost its place could take bytes inside a frame for a header).

At the end, the end of the stream is fed to both, which tells where each parser stood.

Example count: ``FUZZ_EXAMPLES`` (tests/fuzz/support.py).
"""

from __future__ import annotations

import itertools
import struct
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from websockets.frames import Close
from websockets.protocol import Protocol, Side, State

from engineio_core.frame_reader import FrameReader

from .support import fuzz

MAX_SIZES = [None, 0, 1, 125, 126, 200, 65535, 70000]


def encode_frame(
    opcode: int,
    payload: bytes,
    *,
    key: bytes | None,
    fin: bool = True,
    rsv: int = 0,
    length_form: int = 0,
) -> bytes:
    """A client frame as written on the wire. ``length_form``: 0 the shortest length
    encoding, 2 the two-byte one, 8 the eight-byte one (both legal for any length);
    ``key`` None: unmasked."""
    n = len(payload)
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0x0F)
    mask_bit = 0x80 if key is not None else 0
    if length_form == 8 or n >= 65536:
        head = bytes((first, mask_bit | 127)) + struct.pack("!Q", n)
    elif length_form == 2 or n >= 126:
        head = bytes((first, mask_bit | 126)) + struct.pack("!H", n)
    else:
        head = bytes((first, mask_bit | n))
    if key is None:
        return head + payload
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


payloads = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.integers(120, 260).map(lambda n: b"x" * n),  # around the 125 / 126 length forms
)
close_payloads = st.one_of(
    st.just(b""),
    st.tuples(st.sampled_from([1000, 1001, 1005, 1006, 1011, 3000, 4999, 999]),
              st.text(max_size=10))
    .map(lambda cr: struct.pack("!H", cr[0]) + cr[1].encode("utf-8", "surrogatepass")),
    st.binary(max_size=6),  # one byte, or a reason that is not UTF-8
)
keys = st.binary(min_size=4, max_size=4)
length_forms = st.sampled_from([0, 0, 0, 0, 0, 0, 2, 8])


@st.composite
def data_frames(draw: st.DrawFn) -> bytes:
    """The usual frame: final, masked, text or binary."""
    return encode_frame(
        draw(st.sampled_from([0x1, 0x2])), draw(payloads), key=draw(keys),
        length_form=draw(length_forms),
    )


@st.composite
def odd_frames(draw: st.DrawFn) -> bytes:
    """Anything else a client may send, legal or not."""
    kind = draw(st.sampled_from(
        ["ping", "pong", "close", "fragmented", "any", "unmasked", "garbage", "big"]
    ))
    key = draw(keys)
    if kind in ("ping", "pong"):
        body = draw(st.binary(max_size=130))  # above 125: too long for a control frame
        return encode_frame(0x9 if kind == "ping" else 0xA, body, key=key)
    if kind == "close":
        return encode_frame(0x8, draw(close_payloads), key=key)
    if kind == "fragmented":
        parts = draw(st.lists(payloads, min_size=1, max_size=3))
        opcode = draw(st.sampled_from([0x1, 0x2]))
        out = []
        for i, part in enumerate(parts):
            out.append(encode_frame(0x0 if i else opcode, part, key=draw(keys),
                                    fin=i == len(parts) - 1))
            if draw(st.integers(0, 3)) == 0:  # a control frame between fragments
                out.append(encode_frame(0x9, b"p", key=draw(keys)))
        return b"".join(out)
    if kind == "any":  # any opcode (reserved ones too), FIN, RSV bits, length form
        return encode_frame(
            draw(st.integers(0, 15)), draw(payloads), key=key, fin=draw(st.booleans()),
            rsv=draw(st.integers(0, 7)), length_form=draw(length_forms),
        )
    if kind == "unmasked":
        return encode_frame(draw(st.sampled_from([0x1, 0x2, 0x9])), draw(payloads), key=None)
    if kind == "big":
        return encode_frame(0x2, b"b" * draw(st.sampled_from([65535, 65536, 70001])), key=key)
    return draw(st.binary(min_size=1, max_size=20))


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], Any]:
    frames = draw(st.lists(
        st.one_of(data_frames(), data_frames(), data_frames(), odd_frames()), max_size=12
    ))
    stream = b"".join(frames)
    cuts = sorted(set(draw(st.lists(st.integers(0, len(stream)), max_size=10))))
    bounds = [0, *cuts, len(stream)]
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    return chunks, draw(st.sampled_from(MAX_SIZES))


def suspension(protocol: Protocol) -> list[tuple[str, int]]:
    """Where the parser generator waits: each generator of the ``yield from`` chain."""
    chain = []
    gen: Any = protocol.parser
    while gen is not None:
        frame = gen.gi_frame
        chain.append((gen.gi_code.co_name, frame.f_lineno if frame is not None else -1))
        gen = gen.gi_yieldfrom
    return chain


def at_frame_boundary(protocol: Protocol) -> bool:
    """The parser waits for the first byte of a frame (not inside Frame.parse)."""
    return [name for name, _ in suspension(protocol)] == ["parse", "at_eof"]


def snapshot(protocol: Protocol) -> dict[str, Any]:
    exc = protocol.parser_exc
    return {
        "state": protocol.state,
        "close_rcvd": protocol.close_rcvd,
        "close_sent": protocol.close_sent,
        "close_rcvd_then_sent": protocol.close_rcvd_then_sent,
        "parser_exc": None if exc is None else (type(exc), str(exc)),
        "current_size": protocol.current_size,
        "buffer": bytes(protocol.reader.buffer),
        "eof": protocol.reader.eof,
        "to_send": protocol.data_to_send(),
        "parser_at": suspension(protocol),
    }


def check_same(chunks: list[bytes], max_size: int | None) -> None:
    alone = Protocol(Side.SERVER, state=State.OPEN, max_size=max_size)
    reader = FrameReader(Protocol(Side.SERVER, state=State.OPEN, max_size=max_size))
    for i, chunk in enumerate(chunks):
        alone.receive_data(chunk)
        expected = alone.events_received()
        got = reader.receive(chunk)
        assert got == expected, f"chunk {i}: frames differ"
        assert snapshot(reader.protocol) == snapshot(alone), f"chunk {i}: state differs"
        if alone.state is State.OPEN:
            # The reader's own account of the stream: it believes the Protocol is between
            # frames exactly when it is (else it would read a frame from the wrong offset).
            between = reader._owed == 0 and not reader._head
            assert between == at_frame_boundary(alone), f"chunk {i}: reader lost its place"
    if not alone.reader.eof:
        alone.receive_eof()
        reader.protocol.receive_eof()
        assert snapshot(reader.protocol) == snapshot(alone), "at the end of the stream"


def masked(opcode: int, payload: bytes, **kw: Any) -> bytes:
    return encode_frame(opcode, payload, key=b"\x01\x02\x03\x04", **kw)


TEXT = masked(0x1, b'42["echo","hi"]')


@fuzz
@given(streams())
# A few cases worth having every run, whatever hypothesis draws.
@example(([TEXT * 3], 1000))
@example(([TEXT[:1], TEXT[1:3], TEXT[3:] + TEXT], 1000))  # header cut twice
@example(([TEXT + TEXT[:7], TEXT[7:]], 1000))  # payload cut after the key
@example(([TEXT + masked(0x9, b"p") + TEXT], 1000))  # a ping between
@example(([masked(0x1, b"a", fin=False) + TEXT + masked(0x0, b"b")], 1000))
@example(([TEXT + masked(0x8, struct.pack("!H", 1000)) + TEXT], 1000))
@example(([TEXT + masked(0x1, b"x" * 300, length_form=2)[:5]], 200))  # oversize, cut
@example(([TEXT[:1] + b"", b"", TEXT[1:]], None))
@example(([masked(0x1, b"x", rsv=4) + TEXT], 1000))
@example(([TEXT + encode_frame(0x1, b"x", key=None) + TEXT], 1000))
@example(([masked(0x2, b"y" * 200, length_form=8)[:9], b"\x00" * 300], None))
def test_frame_reader_matches_websockets(case: tuple[list[bytes], int | None]) -> None:
    chunks, max_size = case
    check_same(chunks, max_size)


def test_close_frame_payload_is_parsed_the_same() -> None:
    # The close frame's payload parse (Close.parse) is the Protocol's: same close code.
    chunks = [TEXT + masked(0x8, Close(4000, "bye").serialize())]
    check_same(chunks, 1000)
