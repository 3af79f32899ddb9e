"""Socket.IO packet codec: ours (``socketio_core.packet``) beside ``socketio.packet.Packet``.

Both sides run their default JSON (orjson for ours, the standard library's json for
python-socketio, which is what it uses unless the application swaps ``Packet.json``).
"""

from __future__ import annotations

import pytest

from socketio_core.packet import JsonDecoder, Packet, PacketType, encode

from .payloads import (
    BINARY_ARGS,
    BINARY_TEXT,
    BLOB,
    EVENT_TEXT,
    EVENT_WITH_ACK_TEXT,
    PAYLOAD,
    SMALL_BLOB,
)


def _theirs():
    from socketio import packet

    return packet


@pytest.mark.benchmark(group="sio-encode-event")
def test_sio_encode_event(benchmark, impl):
    if impl == "ours":
        result = benchmark(lambda: encode(Packet(PacketType.EVENT, ["msg", PAYLOAD], "/")))
        assert result == [EVENT_TEXT]
    else:
        packet = _theirs()
        result = benchmark(
            lambda: packet.Packet(packet.EVENT, data=["msg", PAYLOAD], namespace="/").encode()
        )
        assert result == EVENT_TEXT


@pytest.mark.benchmark(group="sio-decode-event")
def test_sio_decode_event(benchmark, impl):
    if impl == "ours":
        decoder = JsonDecoder()
        result = benchmark(lambda: decoder.add(EVENT_WITH_ACK_TEXT))
        assert (result.id, result.data) == (12, ["msg", PAYLOAD])
    else:
        packet = _theirs()
        result = benchmark(lambda: packet.Packet(encoded_packet=EVENT_WITH_ACK_TEXT))
        assert (result.id, result.data) == (12, ["msg", PAYLOAD])


@pytest.mark.benchmark(group="sio-encode-ack")
def test_sio_encode_ack(benchmark, impl):
    expected = "312[" + EVENT_TEXT[len('2["msg",'):]
    if impl == "ours":
        result = benchmark(lambda: encode(Packet(PacketType.ACK, [PAYLOAD], "/", 12)))
        assert result == [expected]
    else:
        packet = _theirs()
        result = benchmark(
            lambda: packet.Packet(packet.ACK, data=[PAYLOAD], namespace="/", id=12).encode()
        )
        assert result == expected


@pytest.mark.benchmark(group="sio-encode-binary")
def test_sio_encode_binary(benchmark, impl):
    if impl == "ours":
        result = benchmark(lambda: encode(Packet(PacketType.EVENT, list(BINARY_ARGS), "/")))
    else:
        packet = _theirs()
        result = benchmark(
            lambda: packet.Packet(packet.EVENT, data=list(BINARY_ARGS), namespace="/").encode()
        )
    assert result == [BINARY_TEXT, BLOB, SMALL_BLOB]


@pytest.mark.benchmark(group="sio-decode-binary")
def test_sio_decode_binary(benchmark, impl):
    if impl == "ours":
        decoder = JsonDecoder()

        def decode():
            decoder.add(BINARY_TEXT)
            decoder.add(BLOB)
            return decoder.add(SMALL_BLOB)

        result = benchmark(decode)
    else:
        packet = _theirs()

        def decode():
            pkt = packet.Packet(encoded_packet=BINARY_TEXT)
            pkt.add_attachment(BLOB)
            pkt.add_attachment(SMALL_BLOB)
            return pkt

        result = benchmark(decode)
    assert result.data == BINARY_ARGS
