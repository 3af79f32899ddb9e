"""Engine.IO codec: examples from the protocol document, round-trips, and garbage."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engineio_core.packet import (
    OutgoingPacket,
    Packet,
    PacketType,
    ProtocolError,
    decode_packet,
    decode_payload,
    encode_packet,
    encode_payload,
    iter_payload,
    websocket_frame,
)


def test_examples_from_the_protocol_document() -> None:
    assert encode_packet(Packet(PacketType.MESSAGE, "hello")) == "4hello"
    assert encode_packet(Packet(PacketType.PING, "probe")) == "2probe"
    assert encode_packet(Packet(PacketType.MESSAGE, b"\x01\x02\x03\x04")) == b"\x01\x02\x03\x04"
    assert encode_payload(
        [Packet(PacketType.MESSAGE, "hello"), Packet(PacketType.MESSAGE, b"\x01\x02\x03\x04")]
    ) == "4hello\x1ebAQIDBA=="
    assert decode_payload("4hello\x1ebAQIDBA==") == [
        Packet(PacketType.MESSAGE, "hello"),
        Packet(PacketType.MESSAGE, b"\x01\x02\x03\x04"),
    ]


@pytest.mark.parametrize("text", ["", "7", "9hello", "a", "b", "\x1e"])
def test_invalid_packets(text: str) -> None:
    with pytest.raises(ProtocolError):
        decode_packet(text)


@pytest.mark.parametrize("payload", ["", "4a\x1e", "4a\x1e9b", "b!!!", "bAQ=x"])
def test_invalid_payloads(payload: str) -> None:
    with pytest.raises(ProtocolError):
        decode_payload(payload)


def test_payload_packet_limit() -> None:
    with pytest.raises(ProtocolError):
        decode_payload("\x1e".join(["6"] * 5), max_packets=4)


def test_binary_only_for_messages() -> None:
    with pytest.raises(ProtocolError):
        encode_packet(Packet(PacketType.PING, b"x"))
    with pytest.raises(ProtocolError):
        OutgoingPacket(PacketType.PING, b"x")


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_websocket_frame_lengths(size: int) -> None:
    from websockets.frames import Frame, Opcode
    from websockets.streams import StreamReader

    payload = b"x" * size
    reader = StreamReader()
    reader.feed_data(websocket_frame(payload, binary=True))
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame = done.value
    assert frame.opcode is Opcode.BINARY and frame.fin and frame.data == payload


def test_outgoing_packet_caches_wire_forms() -> None:
    packet = OutgoingPacket.message("héllo")
    assert packet.polling_text == "4héllo"
    assert packet.websocket_frame == b"\x81\x074h\xc3\xa9llo"
    assert packet.websocket_frame is packet.websocket_frame
    assert OutgoingPacket.message(bytearray(b"\x00")).polling_text == "bAA=="


def test_packet_value_semantics() -> None:
    packet = Packet(PacketType.MESSAGE, "x")
    assert packet == Packet(PacketType.MESSAGE, "x") != Packet(PacketType.MESSAGE, b"x")
    assert packet != "4x"
    assert len({packet, Packet(PacketType.MESSAGE, "x")}) == 1
    assert repr(packet) == "Packet(MESSAGE, 'x')"


@pytest.mark.parametrize("frame", [b"\x00\x01", bytearray(b"\x00\x01"), memoryview(b"\x00\x01")])
def test_binary_frames_are_messages(frame: bytes | bytearray | memoryview) -> None:
    assert decode_packet(frame) == Packet(PacketType.MESSAGE, b"\x00\x01")


def test_binary_only_for_messages_in_payloads() -> None:
    with pytest.raises(ProtocolError):
        encode_payload([Packet(PacketType.PING, b"x")])


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("", [None]),
        ("4a", [Packet(PacketType.MESSAGE, "a")]),
        ("4a\x1ebAQ==\x1e2", [Packet(PacketType.MESSAGE, "a"),
                             Packet(PacketType.MESSAGE, b"\x01"), Packet(PacketType.PING)]),
        # Packets before the bad one are delivered, then None, then nothing more.
        ("4a\x1e9\x1e4b", [Packet(PacketType.MESSAGE, "a"), None]),
        ("b!!", [None]),
    ],
)
def test_iter_payload_stops_at_the_first_bad_packet(
    payload: str, expected: list[Packet | None]
) -> None:
    assert list(iter_payload(payload)) == expected


def test_outgoing_packet_wire_forms() -> None:
    long_text = OutgoingPacket.message("x" * 200)
    assert long_text.websocket_frame == websocket_frame(b"4" + b"x" * 200, binary=False)
    assert long_text.websocket_data == "4" + "x" * 200
    binary = OutgoingPacket.message(memoryview(b"\x01\x02"))
    assert binary.websocket_frame == b"\x82\x02\x01\x02"
    assert binary.websocket_data == b"\x01\x02"
    assert binary.polling_text == "bAQI="
    assert binary.polling_text is binary.polling_text  # encoded once
    ping = OutgoingPacket(PacketType.PING)
    assert (ping.polling_text, ping.websocket_data) == ("2", "2")
    assert ping.websocket_frame == b"\x81\x012"


text_packets = st.builds(
    Packet,
    st.sampled_from(list(PacketType)),
    st.text().filter(lambda s: "\x1e" not in s),
)
binary_packets = st.builds(Packet, st.just(PacketType.MESSAGE), st.binary())
packets = text_packets | binary_packets


@given(packets)
def test_packet_round_trip(packet: Packet) -> None:
    assert decode_packet(encode_packet(packet)) == packet


@given(st.lists(packets, min_size=1))
def test_payload_round_trip(items: list[Packet]) -> None:
    assert decode_payload(encode_payload(items)) == items


@given(st.text())
def test_garbage_text_only_raises_protocol_error(text: str) -> None:
    for decode in (decode_packet, decode_payload):
        with contextlib.suppress(ProtocolError):
            decode(text)


@given(st.binary())
def test_garbage_bytes_as_payload(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_payload(data.decode("utf-8", "replace"))
