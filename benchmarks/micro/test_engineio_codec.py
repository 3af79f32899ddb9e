"""Engine.IO packet codec: ours (``engineio_core.packet``) beside ``engineio.packet.Packet``."""

from __future__ import annotations

import pytest

from engineio_core.packet import (
    Packet,
    PacketType,
    decode_packet,
    decode_payload,
    encode_packet,
    encode_payload,
)

from .payloads import BLOB, EIO_TEXT, EVENT_TEXT, POLLING_PACKETS


def _theirs():
    from engineio import packet, payload

    return packet, payload


@pytest.mark.benchmark(group="eio-encode-text")
def test_eio_encode_text(benchmark, impl):
    if impl == "ours":
        result = benchmark(lambda: encode_packet(Packet(PacketType.MESSAGE, EVENT_TEXT)))
    else:
        packet, _ = _theirs()
        result = benchmark(lambda: packet.Packet(packet.MESSAGE, EVENT_TEXT).encode())
    assert result == EIO_TEXT


@pytest.mark.benchmark(group="eio-decode-text")
def test_eio_decode_text(benchmark, impl):
    if impl == "ours":
        result = benchmark(lambda: decode_packet(EIO_TEXT).data)
    else:
        packet, _ = _theirs()
        result = benchmark(lambda: packet.Packet(encoded_packet=EIO_TEXT).data)
    assert result == EVENT_TEXT


@pytest.mark.benchmark(group="eio-encode-binary")
def test_eio_encode_binary(benchmark, impl):
    if impl == "ours":
        result = benchmark(lambda: encode_packet(Packet(PacketType.MESSAGE, BLOB)))
    else:
        packet, _ = _theirs()
        result = benchmark(lambda: packet.Packet(packet.MESSAGE, BLOB).encode())
    assert result == BLOB


@pytest.mark.benchmark(group="eio-decode-binary")
def test_eio_decode_binary(benchmark, impl):
    if impl == "ours":
        result = benchmark(lambda: decode_packet(BLOB).data)
    else:
        packet, _ = _theirs()
        result = benchmark(lambda: packet.Packet(encoded_packet=BLOB).data)
    assert result == BLOB


def _polling_packets(module_packet, message_type):
    return [
        module_packet(message_type, BLOB if i % 4 == 3 else EVENT_TEXT)
        for i in range(POLLING_PACKETS)
    ]


@pytest.mark.benchmark(group="eio-encode-polling-payload")
def test_eio_encode_polling_payload(benchmark, impl):
    if impl == "ours":
        packets = _polling_packets(Packet, PacketType.MESSAGE)
        result = benchmark(lambda: encode_payload(packets))
    else:
        packet, payload = _theirs()
        # Packets are built inside: python-engineio caches the encoding in the packet.
        result = benchmark(
            lambda: payload.Payload(_polling_packets(packet.Packet, packet.MESSAGE)).encode()
        )
    assert result.count("\x1e") == POLLING_PACKETS - 1


@pytest.mark.benchmark(group="eio-decode-polling-payload")
def test_eio_decode_polling_payload(benchmark, impl):
    body = encode_payload(_polling_packets(Packet, PacketType.MESSAGE))
    if impl == "ours":
        result = benchmark(lambda: len(decode_payload(body)))
    else:
        _, payload = _theirs()
        result = benchmark(lambda: len(payload.Payload(encoded_payload=body).packets))
    assert result == POLLING_PACKETS
