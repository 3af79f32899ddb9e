"""Fuzzing the codecs: the Socket.IO JSON parser (with attachments), the msgpack parser and
the Engine.IO packet / payload codec.

Two kinds of properties:

* round trips: ``decode(encode(x)) == x`` for every packet type, with arbitrary JSON-able
  data holding JavaScript strings (lone surrogates included) and binary, also as a stream
  of packets through one incremental decoder;
* garbage in: random and mutated input never raises anything but the codec's
  ``ProtocolError`` (a ``ValueError``), which the server turns into a closed connection.

And the exact (lone-surrogate) paths of the JSON parser are checked against orjson, so the
fallback neither accepts nor writes anything orjson would not, surrogates apart.

Example count: ``FUZZ_EXAMPLES`` (tests/fuzz/support.py).
"""

from __future__ import annotations

import base64
import contextlib
import math
import re
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engineio_core import packet as eio
from socketio_core import packet as sio
from socketio_core.packet import RESERVED_EVENTS, JsonDecoder, Packet, PacketType, encode

from .support import fuzz

E = PacketType
msgpack = pytest.importorskip("msgpack")
from socketio_core.msgpack_parser import MsgPackParser  # noqa: E402 (needs msgpack)

MSGPACK = MsgPackParser()

# ---------------------------------------------------------------- strategies

#: Characters a JavaScript string may hold: any code point, lone surrogates included, with
#: the ones JSON escapes or treats specially drawn more often.
js_chars = (
    st.characters(codec=None)
    | st.characters(categories=["Cs"])
    | st.sampled_from(list('"\\/\x00\x1f\x7f\u2028\u2029\ufeff\x1e'))
)
js_text = st.text(js_chars, max_size=24)
keys = js_text.filter(lambda k: k != "_placeholder")  # the placeholder key is reserved
json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | js_text
)
binary_leaf = (
    st.binary(max_size=24)
    | st.binary(max_size=24).map(bytearray)
    | st.binary(max_size=24).map(memoryview)
)


def values(leaf: st.SearchStrategy[Any], max_leaves: int = 20) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaf,
        lambda children: st.lists(children, max_size=5)
        | st.tuples(children, children)
        | st.dictionaries(keys, children, max_size=5),
        max_leaves=max_leaves,
    )


json_data = values(json_leaf)
binary_data = values(json_leaf | binary_leaf)
small_binary_data = values(json_leaf | binary_leaf, max_leaves=6)
event_names = (
    js_text.filter(lambda s: s not in RESERVED_EVENTS)
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
)
namespaces = st.just("/") | st.text(max_size=12).filter(lambda s: "," not in s).map(
    lambda s: "/" + s
)
ack_ids = st.none() | st.integers(min_value=0, max_value=2**64)


@st.composite
def packets(draw: st.DrawFn, data: st.SearchStrategy[Any] = binary_data) -> Packet:
    """Any packet the server may encode (BINARY_* come from EVENT/ACK holding bytes)."""
    ptype = draw(st.sampled_from([E.EVENT, E.ACK, E.CONNECT, E.DISCONNECT, E.CONNECT_ERROR]))
    packet_id = None
    if ptype is E.EVENT:
        payload: Any = [draw(event_names), *draw(st.lists(data, max_size=5))]
        packet_id = draw(ack_ids)
    elif ptype is E.ACK:
        payload = draw(st.lists(data, max_size=5))
        packet_id = draw(st.integers(min_value=0, max_value=2**64))
    elif ptype is E.CONNECT:
        payload = draw(st.none() | st.dictionaries(keys, json_data, max_size=5))
    elif ptype is E.DISCONNECT:
        payload = None
    else:
        payload = draw(js_text | st.dictionaries(keys, json_data, max_size=5))
    return Packet(ptype, payload, draw(namespaces), packet_id)


def js_string(value: str) -> str:
    """The str as JavaScript sees it: a high and a low surrogate side by side are one
    character (what a round trip through JSON gives back)."""
    return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def utf8_string(value: str) -> str:
    """The str after UTF-8 (msgpack): lone surrogates become U+FFFD."""
    return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def normalize(value: Any, text: Any = js_string) -> Any:
    if isinstance(value, str):
        return text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, list | tuple):
        return [normalize(v, text) for v in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out[text(k)] = normalize(v, text)
        return out
    return value


def has_binary(value: Any) -> bool:
    if isinstance(value, bytes | bytearray | memoryview):
        return True
    if isinstance(value, list | tuple):
        return any(has_binary(v) for v in value)
    if isinstance(value, dict):
        return any(has_binary(v) for v in value.values())
    return False


def expected_json(packet: Packet) -> Packet:
    ptype = packet.type
    if ptype in (E.EVENT, E.ACK) and has_binary(packet.data):
        ptype = E.BINARY_EVENT if ptype is E.EVENT else E.BINARY_ACK
    return Packet(ptype, normalize(packet.data), packet.nsp, packet.id)


# ---------------------------------------------------------------- JSON parser: round trips


@fuzz
@given(packets())
def test_json_round_trip(packet: Packet) -> None:
    messages = encode(packet)
    assert isinstance(messages[0], str)
    assert all(type(m) is bytes for m in messages[1:])
    # The text is valid UTF-8 (a WebSocket text frame) whatever the strings held.
    messages[0].encode("utf-8")
    decoder = JsonDecoder(max_attachments=len(messages))
    for message in messages[:-1]:
        assert decoder.add(message) is None
    decoded = decoder.add(messages[-1])
    assert decoded == expected_json(packet)


@fuzz
@given(st.lists(packets(small_binary_data), min_size=1, max_size=6))
def test_json_stream_of_packets_through_one_decoder(batch: list[Packet]) -> None:
    decoder = JsonDecoder(max_attachments=1000)
    out = []
    for packet in batch:
        for message in encode(packet):
            decoded = decoder.add(message)
            if decoded is not None:
                out.append(decoded)
    assert out == [expected_json(p) for p in batch]


@fuzz
@given(json_data)
def test_exact_encoder_writes_what_orjson_writes(data: Any) -> None:
    """Surrogates apart, the fallback encoder is byte-for-byte orjson."""
    clean = normalize(data, utf8_string)  # no surrogate left: orjson accepts it
    expected = orjson.dumps(clean, option=orjson.OPT_NON_STR_KEYS).decode()
    assert sio._dumps_exact(clean, None) == expected


@fuzz
@given(json_data)
def test_surrogates_are_escaped_like_json_stringify(data: Any) -> None:
    text = sio._dumps_exact(data, None)
    text.encode("utf-8")  # no lone surrogate written raw
    for escape in re.findall(r"(?<!\\)(?:\\\\)*\\u(d[89a-f][0-9a-f]{2})", text, re.I):
        assert escape == escape.lower()  # JSON.stringify writes lowercase hex
    assert sio._loads(text) == normalize(data)


# ---------------------------------------------------------------- JSON parser: garbage

TOKENS = [*"0123456789-+.eE/,[]{}\":_ \t\n\\", '"_placeholder"', "true", "false", "null",
          '"num"', '"connect"', '"a"', "\u00e9", "\U0001f600", "\\ud83d", "\\uDE00",
          "\\udc00", "\\u0041", "\\u00", "NaN", "Infinity", "1e400", "18446744073709551616",
          "\\\\", '\\"', "\x00", "\x1e"]
json_soup = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)
json_texts = json_soup | js_text | json_data.map(lambda d: sio._dumps_exact(d, None))


def _unescape_surrogates(text: str) -> str:
    # Escapes scanned left to right, so an escaped backslash is never half of one.
    return re.sub(r"(\\\\)|\\u[dD][89a-fA-F][0-9a-fA-F]{2}",
                  lambda m: m.group(1) or "\\u0041", text)


@fuzz
@given(json_texts)
def test_exact_decoder_accepts_only_what_orjson_accepts(text: str) -> None:
    """The fallback decoder reads what orjson reads the same way, and accepts more only
    where orjson refused a lone surrogate escape."""
    try:
        expected: Any = ("ok", orjson.loads(text))
    except orjson.JSONDecodeError:
        expected = ("error", None)
    try:
        got: Any = ("ok", sio._EXACT_DECODER.decode(text))
    except (ValueError, RecursionError):
        got = ("error", None)
    if expected[0] == "ok":
        assert got[0] == "ok"
        assert repr(got[1]) == repr(expected[1])
    elif got[0] == "ok":
        orjson.loads(_unescape_surrogates(text))  # refused only for a surrogate


def mutations(base: str) -> st.SearchStrategy[str]:
    """A valid message with characters flipped, cut or inserted."""

    @st.composite
    def mutate(draw: st.DrawFn) -> str:
        chars = list(base)
        for _ in range(draw(st.integers(1, 4))):
            action = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
            at = draw(st.integers(0, len(chars)))
            if action == "flip" and at < len(chars):
                chars[at] = draw(st.sampled_from(TOKENS) | js_chars)
            elif action == "cut":
                del chars[at:]
            elif action == "delete" and at < len(chars):
                del chars[at]
            else:
                chars[at:at] = [draw(st.sampled_from(TOKENS))]
        return "".join(chars)

    return mutate()


@st.composite
def garbage_messages(draw: st.DrawFn) -> list[str | bytes]:
    """Sequences of messages: encodings of real packets, mutated, reordered, mixed with
    random text and binary."""
    out: list[str | bytes] = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 4))
        if kind == 0:
            out.append(draw(js_text | json_soup))
        elif kind == 1:
            out.append(draw(st.binary(max_size=16)))
        else:
            messages = encode(draw(packets()))
            text = messages[0]
            assert isinstance(text, str)
            if kind >= 3:
                text = draw(mutations(text))
            rest = messages[1:]
            if rest and draw(st.booleans()):
                rest = draw(st.permutations(rest))[: draw(st.integers(0, len(rest)))]
            out += [text, *rest]
    return out


def valid(packet: Packet) -> bool:
    if packet.data is None:  # no payload: only CONNECT and DISCONNECT
        return packet.type in (E.CONNECT, E.DISCONNECT)
    return sio.payload_is_valid(packet.type, packet.data)


def feed(messages: list[str | bytes], max_attachments: int = 10) -> None:
    decoder = JsonDecoder(max_attachments)
    for message in messages:
        try:
            packet = decoder.add(message)
        except sio.ProtocolError:
            return  # the server closes the connection: nothing else is fed
        assert packet is None or isinstance(packet, Packet)
        if packet is not None:
            assert valid(packet)
            # whatever was accepted can be sent back
            ptype = {E.BINARY_EVENT: E.EVENT, E.BINARY_ACK: E.ACK}.get(packet.type, packet.type)
            encode(Packet(ptype, packet.data, packet.nsp, packet.id))


@fuzz
@given(garbage_messages(), st.integers(0, 12))
def test_json_garbage_raises_only_protocol_error(
    messages: list[str | bytes], max_attachments: int
) -> None:
    feed(messages, max_attachments)


@fuzz
@given(
    st.sampled_from(["5", "6", "51-", "52-", "51-/a,", "5" + "9" * 30 + "-", "61-7", "2", "3"]),
    st.lists(st.sampled_from(['{"_placeholder":true,"num":', "0", "1", "2", "-1", "0.0", "}",
                              ",", '"x"', "[", "]", "true", '"_placeholder"', ":", "null",
                              '"\\ud83d"', "{", '"num"']), max_size=24),
    st.lists(st.binary(max_size=4) | st.text(max_size=4), max_size=4),
)
def test_json_attachment_garbage_raises_only_protocol_error(
    head: str, body: list[str], rest: list[str | bytes]
) -> None:
    feed([head + '["ev",' + "".join(body), *rest])


# ---------------------------------------------------------------- msgpack parser

msgpack_leaf = json_leaf | st.binary(max_size=24)
msgpack_data = values(msgpack_leaf)


@st.composite
def msgpack_packets(draw: st.DrawFn) -> Packet:
    ptype = draw(st.sampled_from([E.EVENT, E.ACK, E.CONNECT, E.DISCONNECT, E.CONNECT_ERROR]))
    packet_id = None
    if ptype is E.EVENT:
        payload: Any = [draw(event_names), *draw(st.lists(msgpack_data, max_size=5))]
        packet_id = draw(st.none() | st.integers(0, 2**63))
    elif ptype is E.ACK:
        payload = draw(st.lists(msgpack_data, max_size=5))
        packet_id = draw(st.integers(0, 2**63))
    elif ptype is E.CONNECT:
        payload = draw(st.none() | st.dictionaries(keys, msgpack_data, max_size=5))
    elif ptype is E.DISCONNECT:
        payload = None
    else:
        payload = draw(js_text | st.dictionaries(keys, msgpack_data, max_size=5))
    return Packet(ptype, payload, draw(namespaces), packet_id)


@fuzz
@given(msgpack_packets())
def test_msgpack_round_trip(packet: Packet) -> None:
    [message] = MSGPACK.encode(packet)
    decoded = MSGPACK.decoder().add(message)
    expected_data = normalize(packet.data, utf8_string)
    assert decoded == Packet(packet.type, expected_data, packet.nsp, packet.id)


@st.composite
def mutated_msgpack(draw: st.DrawFn) -> bytes:
    [message] = MSGPACK.encode(draw(msgpack_packets()))
    buf = bytearray(message)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(0, len(buf)))
        if action == "flip" and at < len(buf):
            buf[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del buf[at:]
        else:
            buf[at:at] = draw(st.binary(min_size=1, max_size=9))
    return bytes(buf)


msgpack_bytes = (
    st.binary(max_size=64)
    | mutated_msgpack()
    # structurally valid maps with wrong fields, ext values, deep nesting
    | st.dictionaries(st.sampled_from(["type", "nsp", "data", "id", "x"]),
                      msgpack_data | st.integers(-9, 9), max_size=5).map(
        # surrogatepass: a lone surrogate among the values is garbage to send, not a crash
        lambda d: msgpack.packb(d, use_bin_type=True, unicode_errors="surrogatepass"))
    | st.integers(1, 400).map(lambda n: b"\x81\xa4data" + b"\x91" * n + b"\xc0")
)


@fuzz
@given(msgpack_bytes | js_text)
def test_msgpack_garbage_raises_only_protocol_error(data: bytes | str) -> None:
    try:
        packet = MSGPACK.decoder().add(data)
    except sio.ProtocolError:
        return
    assert isinstance(packet, Packet)
    assert valid(packet)
    MSGPACK.encode(packet)  # what was accepted can be sent back


@fuzz
@given(binary_data)
def test_msgpack_encode_raises_only_type_error(data: Any) -> None:
    with contextlib.suppress(TypeError):
        MSGPACK.encode(Packet(E.EVENT, ["x", data]))


# ---------------------------------------------------------------- Engine.IO codec

eio_text = st.text(st.characters(codec="utf-8"), max_size=40)  # what a text frame can hold
eio_packets = st.builds(
    eio.Packet, st.sampled_from(list(eio.PacketType)), eio_text
) | st.builds(lambda b: eio.Packet(eio.PacketType.MESSAGE, b), st.binary(max_size=40))


@fuzz
@given(eio_packets)
def test_eio_packet_round_trip(packet: eio.Packet) -> None:
    assert eio.decode_packet(eio.encode_packet(packet)) == packet
    out = eio.OutgoingPacket(packet.type, packet.data)
    assert out.websocket_data == eio.encode_packet(packet)
    frame = out.websocket_frame
    # parse the frame back: FIN + opcode, unmasked length, payload
    assert frame[0] == (0x82 if isinstance(packet.data, bytes) else 0x81)
    n = frame[1]
    start = 2 if n < 126 else 4 if n == 126 else 10
    if n >= 126:
        n = int.from_bytes(frame[2:start], "big")
    payload = frame[start:]
    assert len(payload) == n
    data: str | bytes = payload if isinstance(packet.data, bytes) else payload.decode()
    assert eio.decode_packet(data) == packet


@fuzz
@given(st.lists(eio_packets.filter(
    lambda p: isinstance(p.data, bytes) or eio.RECORD_SEPARATOR not in p.data), min_size=1,
    max_size=10))
def test_eio_payload_round_trip(batch: list[eio.Packet]) -> None:
    payload = eio.encode_payload(batch)
    assert payload == eio.RECORD_SEPARATOR.join(
        eio.OutgoingPacket(p.type, p.data).polling_text for p in batch)
    assert eio.decode_payload(payload) == batch
    assert list(eio.iter_payload(payload)) == batch


EIO_TOKENS = ["0", "1", "2", "3", "4", "5", "6", "7", "b", "bAA==", "b!", "probe", "\x1e",
              "\x1e\x1e", "=", "A", "/", "+", "é", "\U0001f600", "", " ", "40", '42["a"]']
eio_garbage = st.lists(st.sampled_from(EIO_TOKENS), max_size=30).map("".join) | eio_text


@fuzz
@given(eio_garbage, st.none() | st.integers(1, 20))
def test_eio_payload_garbage_raises_only_protocol_error(
    payload: str, max_packets: int | None
) -> None:
    try:
        packets_ = eio.decode_payload(payload, max_packets)
    except eio.ProtocolError:
        packets_ = None
    streamed = list(eio.iter_payload(payload))  # never raises: None at the first bad packet
    if packets_ is not None:
        assert streamed == packets_
        if max_packets is not None:
            assert len(packets_) <= max_packets
    else:
        assert None in streamed or (max_packets is not None and len(streamed) > max_packets)


@fuzz
@given(eio_garbage | st.binary(max_size=30))
def test_eio_packet_garbage_raises_only_protocol_error(data: str | bytes) -> None:
    try:
        packet = eio.decode_packet(data)
    except eio.ProtocolError:
        return
    assert isinstance(packet, eio.Packet)


@fuzz
@given(st.binary(max_size=60))
def test_eio_binary_polling_packet_is_base64(data: bytes) -> None:
    text = "b" + base64.b64encode(data).decode()
    assert eio.decode_payload(text) == [eio.Packet(eio.PacketType.MESSAGE, data)]
    # and corrupt base64 is a ProtocolError, never binascii.Error
    for bad in (text + "=", text + "!", text[:-1] + "\u00e9"):
        with contextlib.suppress(eio.ProtocolError):
            eio.decode_payload(bad)


def test_math_inf_is_refused_on_the_exact_path_too() -> None:
    assert math.isinf(float("1e400"))
    with pytest.raises(sio.ProtocolError):
        JsonDecoder().add('2["\\ud83d",1e400]')
