"""Tests for the default Socket.IO parser (socketio_core.packet).

Examples from the protocol document, binary attachments, every decoder error, hypothesis
round trips and garbage, and a differential run against the npm ``socket.io-parser``
(through ``tests/interop/sio_parser_oracle.mjs``, one node process for the whole batch).

The helpers in the "oracle" section are shared with test_msgpack_parser.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socketio_core.packet import (
    RESERVED_EVENTS,
    JsonDecoder,
    JsonParser,
    Packet,
    PacketType,
    ProtocolError,
    encode,
)

INTEROP_DIR = Path(__file__).resolve().parents[1] / "interop"
NODE_MODULES = INTEROP_DIR / "node_modules"
ORACLE = INTEROP_DIR / "sio_parser_oracle.mjs"
ORACLE_TIMEOUT = 60.0

E = PacketType


def decode_all(messages: list[str | bytes], decoder: JsonDecoder | None = None) -> list[Packet]:
    """Feed messages to one decoder; the packets it completed."""
    decoder = decoder or JsonDecoder()
    out = []
    for message in messages:
        packet = decoder.add(message)
        if packet is not None:
            out.append(packet)
    return out


def decode_one(messages: list[str | bytes], max_attachments: int = 10) -> Packet:
    decoder = JsonDecoder(max_attachments)
    for message in messages[:-1]:
        assert decoder.add(message) is None
    packet = decoder.add(messages[-1])
    assert packet is not None
    return packet


# ---------------------------------------------------------------- protocol examples

PH0 = '{"_placeholder":true,"num":0}'

# (packet to encode, encoded messages, packet the decoder returns)
PROTOCOL_EXAMPLES = [
    pytest.param(Packet(E.CONNECT), ["0"], None, id="connect-main"),
    pytest.param(Packet(E.CONNECT, nsp="/admin"), ["0/admin,"], None, id="connect-admin"),
    pytest.param(
        Packet(E.CONNECT, {"token": "123"}, "/admin"),
        ['0/admin,{"token":"123"}'],
        None,
        id="connect-admin-auth",
    ),
    pytest.param(
        Packet(E.CONNECT, {"sid": "oSO0OpakMV_3jnilAAAA"}),
        ['0{"sid":"oSO0OpakMV_3jnilAAAA"}'],
        None,
        id="connect-reply",
    ),
    pytest.param(Packet(E.DISCONNECT, nsp="/admin"), ["1/admin,"], None, id="disconnect"),
    pytest.param(Packet(E.DISCONNECT), ["1"], None, id="disconnect-main"),
    pytest.param(Packet(E.EVENT, ["hello", 1]), ['2["hello",1]'], None, id="event"),
    pytest.param(
        Packet(E.EVENT, ["project:delete", 123], "/admin", 456),
        ['2/admin,456["project:delete",123]'],
        None,
        id="event-ack-id",
    ),
    pytest.param(Packet(E.ACK, [], "/admin", 456), ["3/admin,456[]"], None, id="ack"),
    pytest.param(
        Packet(E.CONNECT_ERROR, {"message": "Not authorized"}),
        ['4{"message":"Not authorized"}'],
        None,
        id="connect-error",
    ),
    pytest.param(
        Packet(E.EVENT, ["hello", b"\x01\x02\x03"]),
        [f'51-["hello",{PH0}]', b"\x01\x02\x03"],
        Packet(E.BINARY_EVENT, ["hello", b"\x01\x02\x03"]),
        id="binary-event",
    ),
    pytest.param(
        Packet(E.ACK, [b"\x01\x02\x03"], "/admin", 456),
        [f"61-/admin,456[{PH0}]", b"\x01\x02\x03"],
        Packet(E.BINARY_ACK, [b"\x01\x02\x03"], "/admin", 456),
        id="binary-ack",
    ),
]


@pytest.mark.parametrize(("packet", "messages", "decoded"), PROTOCOL_EXAMPLES)
def test_protocol_examples(packet: Packet, messages: list[str | bytes], decoded: Any) -> None:
    assert encode(packet) == messages
    assert JsonParser().encode(packet) == messages
    assert decode_one(messages) == (decoded or packet)


def test_decoder_accepts_namespace_without_trailing_comma() -> None:
    assert decode_one(["0/admin"]) == Packet(E.CONNECT, nsp="/admin")
    assert decode_one(["1/admin"]) == Packet(E.DISCONNECT, nsp="/admin")


def test_parser_decoder_is_fresh() -> None:
    parser = JsonParser(max_attachments=2)
    first, second = parser.decoder(), parser.decoder()
    assert first is not second
    assert first.add(f'51-["a",{PH0}]') is None
    assert second.add('2["b"]') == Packet(E.EVENT, ["b"])  # independent state
    assert first.add(b"x") == Packet(E.BINARY_EVENT, ["a", b"x"])
    with pytest.raises(ProtocolError, match="too many attachments"):
        parser.decoder().add("53-[]")


# ---------------------------------------------------------------- binary attachments


def test_nested_binary_is_numbered_in_order() -> None:
    data = [
        "upload",
        {"a": [b"zero", bytearray(b"one")], "b": {"c": memoryview(b"two")}, "d": None},
        b"three",
        [[b""]],
    ]
    text, *attachments = encode(Packet(E.EVENT, data, "/files", 7))
    assert text == (
        '55-/files,7["upload",{"a":[{"_placeholder":true,"num":0},'
        '{"_placeholder":true,"num":1}],"b":{"c":{"_placeholder":true,"num":2}},"d":null},'
        '{"_placeholder":true,"num":3},[[{"_placeholder":true,"num":4}]]]'
    )
    assert attachments == [b"zero", b"one", b"two", b"three", b""]
    assert all(type(a) is bytes for a in attachments)
    decoded = decode_one([text, *attachments])
    assert decoded.type is E.BINARY_EVENT
    assert decoded.data == [
        "upload",
        {"a": [b"zero", b"one"], "b": {"c": b"two"}, "d": None},
        b"three",
        [[b""]],
    ]


def test_binary_ack_and_shared_placeholders() -> None:
    # The same placeholder may be referenced twice; buffers may be bytearray/memoryview.
    text = (
        '62-/x,1[{"_placeholder":true,"num":1},{"_placeholder":true,"num":1},'
        '{"_placeholder":true,"num":0}]'
    )
    decoded = decode_one([text, bytearray(b"a"), memoryview(b"b")])
    assert decoded == Packet(E.BINARY_ACK, [b"b", b"b", b"a"], "/x", 1)


def test_placeholder_like_data_in_text_packet_is_left_alone() -> None:
    text = f'2["a",{PH0}]'
    assert decode_one([text]).data == ["a", {"_placeholder": True, "num": 0}]


def test_binary_outside_event_and_ack_is_not_encodable() -> None:
    with pytest.raises(TypeError):
        encode(Packet(E.CONNECT, {"key": b"x"}))


def test_deep_binary_payload_decodes_without_recursion_error() -> None:
    depth = 1000  # orjson accepts up to 1024 levels, deeper than Python's recursion limit
    text = "61-" + "[" * depth + PH0 + "]" * depth
    packet = decode_one([text, b"x"])
    inner = packet.data
    for _ in range(depth - 1):
        inner = inner[0]
    assert inner == [b"x"]


def test_decoder_recovers_after_complete_binary_packet() -> None:
    decoder = JsonDecoder()
    assert decoder.add(f'51-["a",{PH0}]') is None
    assert decoder.add(b"1") == Packet(E.BINARY_EVENT, ["a", b"1"])
    assert decoder.add('2["b"]') == Packet(E.EVENT, ["b"])
    with pytest.raises(ProtocolError):
        decoder.add(b"stray")


# ---------------------------------------------------------------- decoder errors

DEEP = 100_000

INVALID = [
    # packet type
    [""],
    ["7"],
    ["9[]"],
    ["a"],
    [" 2[\"a\"]"],
    ["\u0662[\"a\"]"],  # ARABIC-INDIC DIGIT TWO
    # attachments count
    ['5-["a"]'],
    ['5a-["a"]'],
    ['51["a"]'],
    ["5"],
    ["6"],
    ['5\u0661-["a"]'],  # non-ASCII digit
    ['511-["a"]'],  # more than the default 10
    ['5' + "9" * 30 + '-["a"]'],
    ["5" + "1" * 5000 + '-["a"]'],  # more digits than int() converts
    ["5" + "0" * 5000 + '1-["a"]'],
    ['51.0-["a"]'],
    # placeholders
    ['51-["a",{"_placeholder":true,"num":1}]', b"x"],
    ['51-["a",{"_placeholder":true,"num":-1}]', b"x"],
    ['51-["a",{"_placeholder":true,"num":"0"}]', b"x"],
    ['51-["a",{"_placeholder":true,"num":0.0}]', b"x"],
    ['51-["a",{"_placeholder":true,"num":true}]', b"x"],
    ['51-["a",{"_placeholder":true}]', b"x"],
    [f'50-["a",{PH0}]'],
    [f'62-[{PH0},{{"_placeholder":true,"num":2}}]', b"x", b"y"],
    # binary when not reconstructing, text while reconstructing
    [b"x"],
    [bytearray(b"x")],
    [f'51-["a",{PH0}]', '2["b"]'],
    [f'52-["a",{PH0}]', b"x", "2[\"b\"]"],
    # JSON
    ['2["a"'],
    ['2["a"]x'],
    ["2{"],
    ["2[\"a\",]"],
    ["2[NaN]"],
    ["2[1e400]"],
    ['2["\\x"]'],
    ["2[\"a\"]\x00"],
    ["2" + "1" * 5000 + '["a"]'],  # ack id with more digits than int() converts
    # payloads invalid for their type
    ["0[]"],
    ['0"x"'],
    ["0 1"],
    ["1{}"],
    ["1[]"],
    ['1"x"'],
    ["1/admin,{}"],
    ["2{}"],
    ["2[]"],
    ["2[{}]"],
    ["2[true]"],
    ["2[null]"],
    ["2[[\"a\"]]"],
    ['2"a"'],
    ["21.5"],
    ["3{}"],
    ['3"a"'],
    ["4[]"],
    ["41"],
    ["4true"],
    ['51-{"a":1}'],
    [f"61-{PH0}"],
    # reserved event names, text and binary
    *([f'2["{name}"]'] for name in sorted(RESERVED_EVENTS)),
    *([f'2/admin,1["{name}",1]'] for name in sorted(RESERVED_EVENTS)),
    *([f'51-["{name}",{PH0}]', b"x"] for name in sorted(RESERVED_EVENTS)),
    # a literal null payload is refused by every type
    ["0null"],
    ["1null"],
    ["2null"],
    ["3null"],
    ["4null"],
    ["51-null"],
    ["61-null"],
    ["0/admin,null"],
    # a payload is required by EVENT, ACK and CONNECT_ERROR
    ["2"],
    ["3"],
    ["4"],
    ["212"],
    ["2/admin,"],
    ["2/admin,12"],
    ['2/admin["a"]'],
    ["3/admin,456"],
    ["51-"],
    # an attachment count on a type that has no attachments
    ['21-["a"]'],
    ['01-{}'],
    # deep nesting
    ["2" + "[" * DEEP],
    ["3" + "[" * DEEP + "]" * DEEP],
    ["3" + "[" * 2000 + "]" * 2000],
    ['4{"a":' * DEEP],
    ["51-" + "[" * DEEP],
]


def _case_id(messages: list[Any]) -> str:
    text = repr(messages)
    return text if len(text) <= 60 else text[:57] + "..."


@pytest.mark.parametrize("messages", INVALID, ids=_case_id)
def test_invalid_input_raises_protocol_error(messages: list[str | bytes]) -> None:
    decoder = JsonDecoder()
    with pytest.raises(ProtocolError):
        for message in messages:
            decoder.add(message)


def test_max_attachments_is_configurable() -> None:
    text = "63-[" + ",".join(f'{{"_placeholder":true,"num":{i}}}' for i in range(3)) + "]"
    with pytest.raises(ProtocolError):
        JsonDecoder(max_attachments=2).add(text)
    assert decode_all([text, b"a", b"b", b"c"], JsonDecoder(max_attachments=3)) == [
        Packet(E.BINARY_ACK, [b"a", b"b", b"c"])
    ]
    assert decode_all(['511-["a"]', *([b""] * 11)], JsonDecoder(max_attachments=11)) == [
        Packet(E.BINARY_EVENT, ["a"])
    ]


def test_protocol_error_is_a_value_error() -> None:
    assert issubclass(ProtocolError, ValueError)


# ---------------------------------------------------------------- lone surrogates
#
# Issue 8, item 12: a browser's JSON.stringify writes half an emoji as an escape; socket.io
# keeps it and writes it back the same way. The expected texts are what the npm encoder
# (socket.io-parser 4.x, JSON.stringify) produces for the same packets, byte for byte; the
# differential tests below check them against the installed package too.

SURROGATE_PACKETS = [
    Packet(E.EVENT, ["m", "\ud83d"]),
    Packet(E.EVENT, ["m", "a\udc00b"]),
    Packet(E.EVENT, ["m", "\U0001f600"]),  # a valid pair (one character): sent raw
    Packet(E.EVENT, ["m", "\udc00\ud83d", {"\ud83d": "\udfff"}, "\ud83d" + "x" * 40], "/a", 7),
    Packet(E.EVENT, ["m", "\ud83d", b"\x00\x01"], "/", 3),
    Packet(E.ACK, ["\udbff", {"k": [b"\xff"]}], "/", 9),
    Packet(E.CONNECT_ERROR, {"message": "\ud800"}),
    Packet(E.CONNECT, {"token": "\udfff"}, "/admin"),
]
SURROGATE_WIRE = [
    ['2["m","\\ud83d"]'],
    ['2["m","a\\udc00b"]'],
    ['2["m","\U0001f600"]'],
    ['2/a,7["m","\\udc00\\ud83d",{"\\ud83d":"\\udfff"},"\\ud83d' + "x" * 40 + '"]'],
    ['51-3["m","\\ud83d",{"_placeholder":true,"num":0}]', b"\x00\x01"],
    ['61-9["\\udbff",{"k":[{"_placeholder":true,"num":0}]}]', b"\xff"],
    ['4{"message":"\\ud800"}'],
    ['0/admin,{"token":"\\udfff"}'],
]


@pytest.mark.parametrize(
    ("packet", "wire"), list(zip(SURROGATE_PACKETS, SURROGATE_WIRE, strict=True)), ids=repr
)
def test_lone_surrogates_are_encoded_and_decoded_like_node(
    packet: Packet, wire: list[str | bytes]
) -> None:
    assert encode(packet) == wire
    assert all(m.isascii() for m in wire if isinstance(m, str) and "\U0001f600" not in m)
    assert decode_one(wire) == expected_decoded(packet)
    # and what we decoded is sent back unchanged (Node's echo)
    echo = decode_one(wire)
    echo.type = {E.BINARY_EVENT: E.EVENT, E.BINARY_ACK: E.ACK}.get(echo.type, echo.type)
    assert encode(echo) == wire


def test_surrogate_pair_held_as_two_code_points_is_one_character() -> None:
    # A Python str may hold a pair as two code points; in JavaScript that is the emoji.
    assert encode(Packet(E.EVENT, ["m", "\ud83d\ude00x\ud83d"])) == ['2["m","\U0001f600x\\ud83d"]']


def test_uppercase_surrogate_escape_is_accepted() -> None:
    assert decode_one(['2["\\uD83D","\\uDE00"]']).data == ["\ud83d", "\ude00"]


def test_fallback_keeps_refusing_what_orjson_refuses() -> None:
    # The exact decoder is used only after orjson refused; it must not accept more.
    for body in ['2["\\ud83d",NaN]', '2["\\ud83d",Infinity]', '2["\\ud83d",1e400]',
                 '2["\\ud83d",]', '2["\\ud83d"]x', '2["\\ud83d\x01"]', '2["\\ud83d"'
                 , '2["\\ud83d",' + "[" * 5000 + "]" * 5000 + "]"]:
        with pytest.raises(ProtocolError):
            JsonDecoder().add(body)
    # and reads numbers as orjson does: integers beyond 64 bits become floats
    data = decode_one(['2["\\ud83d",18446744073709551615,18446744073709551616,-0,1.5e3]']).data
    assert data == ["\ud83d", 2**64 - 1, 1.8446744073709552e19, 0, 1500.0]
    assert type(data[2]) is float
    # also when the integer has more digits than any 64-bit one
    data = decode_one(['2["\\ud83d",1234567890123456789012,-1234567890123456789012]']).data
    assert data == ["\ud83d", 1.2345678901234568e21, -1.2345678901234568e21]


def test_surrogate_fallback_converts_non_str_keys_as_orjson_does() -> None:
    packet = Packet(E.EVENT, ["m", {1: "\ud83d", "k": [True]}])
    assert encode(packet) == ['2["m",{"1":"\\ud83d","k":[true]}]']
    assert orjson.dumps({1: "x"}, option=orjson.OPT_NON_STR_KEYS) == b'{"1":"x"}'


def test_unencodable_data_still_raises_type_error_with_surrogates() -> None:
    with pytest.raises(TypeError):
        encode(Packet(E.EVENT, ["\ud83d", object()]))
    with pytest.raises(TypeError):
        encode(Packet(E.EVENT, ["\ud83d", 2**64]))
    deep: Any = "\ud83d"
    for _ in range(300):
        deep = [deep]
    with pytest.raises(TypeError):
        encode(Packet(E.EVENT, ["m", deep]))


# ---------------------------------------------------------------- hypothesis

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
binary_leaf = st.binary(max_size=20) | st.binary(max_size=20).map(bytearray) | st.binary(
    max_size=20
).map(memoryview)
keys = st.text(max_size=8).filter(lambda k: k != "_placeholder")


def json_values(leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaf,
        lambda children: st.lists(children, max_size=4)
        | st.dictionaries(keys, children, max_size=4),
        max_leaves=12,
    )


json_data = json_values(json_leaf)
data_with_binary = json_values(json_leaf | binary_leaf)
event_names = (
    st.text(max_size=12).filter(lambda s: s not in RESERVED_EVENTS)
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
)
json_objects = st.dictionaries(keys, json_data, max_size=4)
namespaces = st.just("/") | st.text(max_size=10).filter(lambda s: "," not in s).map(
    lambda s: "/" + s
)
ack_ids = st.none() | st.integers(min_value=0, max_value=2**64)


@st.composite
def packets(draw: st.DrawFn) -> Packet:
    ptype = draw(
        st.sampled_from([E.EVENT, E.ACK, E.CONNECT, E.DISCONNECT, E.CONNECT_ERROR])
    )
    if ptype is E.EVENT:
        data: Any = [draw(event_names), *draw(st.lists(data_with_binary, max_size=4))]
    elif ptype is E.ACK:
        data = draw(st.lists(data_with_binary, max_size=4))
    elif ptype is E.CONNECT:
        data = draw(st.none() | json_objects)
    elif ptype is E.DISCONNECT:
        data = None
    else:
        data = draw(st.text(max_size=20) | json_objects)
    return Packet(ptype, data, draw(namespaces), draw(ack_ids))


def normalize(value: Any) -> Any:
    """What the decoder gives back for encoded data: bytes-likes become bytes."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, list | tuple):
        return [normalize(v) for v in value]
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    return value


def has_binary(value: Any) -> bool:
    if isinstance(value, bytes | bytearray | memoryview):
        return True
    if isinstance(value, list | tuple):
        return any(has_binary(v) for v in value)
    if isinstance(value, dict):
        return any(has_binary(v) for v in value.values())
    return False


def expected_decoded(packet: Packet) -> Packet:
    ptype = packet.type
    if ptype in (E.EVENT, E.ACK) and has_binary(packet.data):
        ptype = E.BINARY_EVENT if ptype is E.EVENT else E.BINARY_ACK
    return Packet(ptype, normalize(packet.data), packet.nsp, packet.id)


@given(packets())
def test_round_trip(packet: Packet) -> None:
    messages = encode(packet)
    assert isinstance(messages[0], str)
    assert all(type(m) is bytes for m in messages[1:])
    assert decode_one(messages, max_attachments=len(messages)) == expected_decoded(packet)


TOKENS = [*"0123456789-/,[]{}\":_ .e\\", '"_placeholder"', "true", "false", "null", '"num"',
          '"connect"', '"a"', "\u00e9", "\ud83d\ude00"]
protocolish_text = st.lists(st.sampled_from(TOKENS), max_size=30).map("".join)
messages_strategy = st.lists(
    st.text(max_size=40) | protocolish_text | st.binary(max_size=10), min_size=1, max_size=5
)


def feed_expecting_only_protocol_errors(messages: list[str | bytes]) -> None:
    decoder = JsonDecoder()
    for message in messages:
        try:
            packet = decoder.add(message)
        except ProtocolError:
            return
        assert packet is None or isinstance(packet, Packet)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(messages_strategy)
def test_garbage_raises_only_protocol_error(messages: list[str | bytes]) -> None:
    feed_expecting_only_protocol_errors(messages)


@settings(max_examples=200)
@given(
    st.integers(min_value=1, max_value=3),
    st.lists(st.sampled_from(['{"_placeholder":true,"num":', "0", "1", "2", "-1", "}", ",",
                              '"x"', "[", "]", "true", '"_placeholder"', ":"]), max_size=20),
    st.lists(st.binary(max_size=4) | st.text(max_size=4), max_size=4),
)
def test_binary_garbage_raises_only_protocol_error(
    count: int, body: list[str], rest: list[str | bytes]
) -> None:
    feed_expecting_only_protocol_errors([f'5{count}-["ev",' + "".join(body), *rest])


@given(st.sampled_from("[{"), st.integers(min_value=1000, max_value=200_000), st.sampled_from(
    ["2", "3", "4", "0", "51-", "2/admin,1"]))
@settings(max_examples=20, deadline=None)
def test_deep_nesting_never_raises_recursion_error(open_char: str, depth: int, head: str) -> None:
    opener = "[" if open_char == "[" else '{"a":'
    feed_expecting_only_protocol_errors([head + opener * depth])


# ---------------------------------------------------------------- oracle (npm) helpers


class ArrayBufferValue:
    """Test input for the oracle: a JavaScript ArrayBuffer (notepack.io ext type 0)."""

    def __init__(self, data: bytes) -> None:
        self.data = data


UNDEFINED = object()  # test input for the oracle: JavaScript undefined


def b64(data: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


def datetime_ms(value: dt.datetime) -> int:
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return (value - epoch) // dt.timedelta(milliseconds=1)


def to_wire(value: Any) -> Any:
    """Python value -> the oracle's JSON with markers (see sio_parser_oracle.mjs)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$b64": b64(value)}
    if isinstance(value, ArrayBufferValue):
        return {"$ab": b64(value.data)}
    if value is UNDEFINED:
        return {"$undef": True}
    if isinstance(value, dt.datetime):
        return {"$date": datetime_ms(value)}
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    return value


def from_wire(value: Any) -> Any:
    """The oracle's JSON with markers -> Python values (binary -> bytes)."""
    if isinstance(value, list):
        return [from_wire(v) for v in value]
    if isinstance(value, dict):
        if list(value) == ["$b64"]:
            return base64.b64decode(value["$b64"])
        return {k: from_wire(v) for k, v in value.items()}
    return value


def packet_to_wire(packet: Packet) -> dict[str, Any]:
    """A packet as the oracle describes packets, in the key order of the msgpack encoding."""
    out: dict[str, Any] = {"type": int(packet.type)}
    if packet.data is not None:
        out["data"] = to_wire(packet.data)
    out["nsp"] = packet.nsp
    if packet.id is not None:
        out["id"] = packet.id
    return out


def decoded_to_wire(packet: Packet) -> dict[str, Any]:
    """Our decoded packet, comparable with a packet the npm decoder reports."""
    ptype = {E.BINARY_EVENT: E.EVENT, E.BINARY_ACK: E.ACK}.get(packet.type, packet.type)
    out: dict[str, Any] = {"type": int(ptype), "nsp": packet.nsp}
    if packet.id is not None:
        out["id"] = packet.id
    if packet.data is not None:
        out["data"] = to_wire(packet.data)
    return out


def find_node_package(name: str) -> Path | None:
    """Where an npm package is installed under tests/interop/node_modules (hoisted, or
    nested under socket.io / socket.io-client / socket.io-msgpack-parser)."""
    for parent in ("", "socket.io", "socket.io-client", "socket.io-msgpack-parser"):
        base = NODE_MODULES / parent / "node_modules" if parent else NODE_MODULES
        candidate = base / name
        if (candidate / "package.json").is_file():
            return candidate
    return None


def require_oracle(*packages: str) -> dict[str, Path]:
    """Skip (or fail with INTEROP_REQUIRED=1) unless node and the packages are installed."""
    problem = None
    found: dict[str, Path] = {}
    if shutil.which("node") is None:
        problem = "`node` is not on PATH"
    else:
        for name in packages:
            path = find_node_package(name)
            if path is None:
                problem = f"npm package {name!r} is not installed under {NODE_MODULES}"
                break
            found[name] = path
    if problem is None:
        return found
    message = (
        f"differential parser tests need Node.js and tests/interop/node_modules: {problem}. "
        "Install them with `cd tests/interop && npm ci`."
    )
    if os.environ.get("INTEROP_REQUIRED", "") not in ("", "0"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def run_parser_oracle(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run every request through ONE node process; one response per request."""
    packages = require_oracle("socket.io-parser", "socket.io-msgpack-parser")
    argv = [
        "node",
        str(ORACLE),
        "--socket-io-parser",
        str(packages["socket.io-parser"]),
        "--socket-io-msgpack-parser",
        str(packages["socket.io-msgpack-parser"]),
    ]
    stdin = "".join(json.dumps(r, ensure_ascii=True) + "\n" for r in requests)
    done = subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=ORACLE_TIMEOUT,
        cwd=INTEROP_DIR,
        check=False,
    )
    # Not splitlines(): JSON.stringify leaves U+2028 / U+2029 unescaped.
    lines = [line for line in done.stdout.split("\n") if line]
    assert done.returncode == 0 and len(lines) == len(requests), (
        f"oracle failed (exit {done.returncode}, {len(lines)} lines for {len(requests)} "
        f"requests)\nstderr: {done.stderr[-3000:]}"
    )
    responses = [json.loads(line) for line in lines]
    broken = [r for r in responses if "oracleError" in r]
    assert not broken, broken[:3]
    return responses


# ---------------------------------------------------------------- random batches

SAMPLE_STRINGS = [
    "",
    "a",
    "hello world",
    "caf\u00e9",
    "\u4e2d\u6587",
    "\U0001f600 emoji",
    'quote " and \\ backslash',
    "ctl \x00\x01\x1f\x7f \n\r\t\b\f",
    "\u2028\u2029",
    "/slash,comma",
    "x" * 40,
    "y" * 300,
]


def random_string(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(SAMPLE_STRINGS)
    alphabet = "abcXYZ019 _-/,:[]{}\"\\\u00e9\u4e2d\U0001f600\x00\n"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))


def random_key(rng: random.Random) -> str:
    # Not integer-like (JavaScript orders those first) and not "_placeholder".
    return "k" + random_string(rng)[:6]


def random_number(rng: random.Random) -> int | float:
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randrange(-40, 200)
    if kind == 1:
        return rng.randrange(-(2**53), 2**53)
    if kind == 2:
        return rng.randrange(-(2**31), 2**32)
    # Non-integral floats print the same in JavaScript and orjson (integral ones do not:
    # JSON.stringify(1.0) is "1").
    return rng.choice([0.5, -2.25, 3.14159, 1e-7, 123456.789, 2.5e-3, -1.5e-300, 1.7e308 / 3])


def random_value(
    rng: random.Random,
    depth: int = 0,
    *,
    binary: bool = True,
    extra_leaves: tuple[Any, ...] = (),
) -> Any:
    kinds = ["null", "bool", "number", "string", "string"]
    if binary:
        kinds.append("binary")
    if extra_leaves:
        kinds.append("extra")
    if depth < 4:
        kinds += ["list", "dict"]
    kind = rng.choice(kinds)
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "number":
        return random_number(rng)
    if kind == "string":
        return random_string(rng)
    if kind == "binary":
        size = rng.choice([0, 1, 3, 8, 40, 300])
        return rng.choice([bytes, bytearray])(rng.randbytes(size))
    if kind == "extra":
        return rng.choice(extra_leaves)(rng)
    if kind == "list":
        return [
            random_value(rng, depth + 1, binary=binary, extra_leaves=extra_leaves)
            for _ in range(rng.randrange(5))
        ]
    return {
        random_key(rng): random_value(rng, depth + 1, binary=binary, extra_leaves=extra_leaves)
        for _ in range(rng.randrange(5))
    }


def random_packet(
    rng: random.Random, *, binary: bool = True, extra_leaves: tuple[Any, ...] = ()
) -> Packet:
    ptype = rng.choice([E.EVENT, E.EVENT, E.ACK, E.CONNECT, E.DISCONNECT, E.CONNECT_ERROR])
    nsp = rng.choice(["/", "/", "/admin", "/a/b", "/caf\u00e9", "/x-y_z.1"])
    packet_id = rng.choice([None, None, 0, 1, 456, 2**31, 2**53 - 1])

    def value() -> Any:
        return random_value(rng, 1, binary=binary, extra_leaves=extra_leaves)

    if ptype is E.EVENT:
        name: Any = rng.choice(["message", "chat:send", "caf\u00e9", "", "x" * 50, 42, 1.5])
        data: Any = [name, *(value() for _ in range(rng.randrange(4)))]
    elif ptype is E.ACK:
        data = [value() for _ in range(rng.randrange(4))]
    elif ptype is E.CONNECT:
        data = rng.choice([None, {random_key(rng): random_value(rng, 1, binary=False)}])
    elif ptype is E.DISCONNECT:
        data = None
    else:
        data = rng.choice([random_string(rng), {"message": random_string(rng)}])
    if ptype not in (E.EVENT, E.ACK):
        packet_id = None
    return Packet(ptype, data, nsp, packet_id)


# ---------------------------------------------------------------- differential (npm)

# Where the npm decoder and ours disagree on purpose: input -> reason. Every entry is
# checked to still differ, so the list stays true.
NPM_ACCEPTS_WE_REJECT = {
    ("",): "an empty message: Number('') is 0, so npm decodes CONNECT to '/'",
    (" ",): "whitespace as packet type: Number(' ') is 0, so npm decodes CONNECT",
    ("2",): "EVENT without payload: the protocol requires an array",
    ("3",): "ACK without payload",
    ("4",): "CONNECT_ERROR without payload",
    ("212",): "EVENT with an id and no payload",
    ("2/admin,",): "EVENT with a namespace and no payload",
    ('2/admin["a"]',): "without a comma npm takes the whole rest as the namespace, no payload",
    ("3/admin,456",): "ACK with an id and no payload",
    ("41",): "npm reads '1' as an id, leaving a CONNECT_ERROR without payload",
    ("0 ",): "npm reads ' ' as an id (Number(' ') == 0)",
    ("2[1e400]",): "JSON.parse reads 1e400 as Infinity; orjson refuses it",
    ('2["\\ud83d",1e400]',): "Infinity, on the lone-surrogate path too",
    ("3" + "[" * 2000 + "]" * 2000,): "nesting deeper than orjson's 1024 levels",
    ("2" + "1" * 5000 + '["a"]',): "a 5000-digit ack id: npm makes it Infinity",
    ('51.0-["a"]', "b64:eA=="): "attachment count '1.0': npm accepts Number('1.0') == 1",
    ('5 1-["a"]', "b64:eA=="): "attachment count ' 1': npm accepts Number(' 1') == 1",
    ('51-["a",{"_placeholder":true,"num":0.0}]', "b64:eA=="): (
        "placeholder num 0.0: JavaScript has one number type, we want an int"
    ),
}
WE_ACCEPT_NPM_REJECTS = {
    ('50-["a"]',): "a binary packet with 0 attachments: npm wants at least one",
}
BOTH_ACCEPT_DIFFERENTLY = {
    ('2 ["a"]',): "npm reads ' ' as the ack id 0; we skip the whitespace before the JSON",
}
SAME_OUTCOME = [
    ["7"],
    ["a"],
    ["\u0662"],
    ['5-["a"]'],
    ['511-["a"]'],
    ['51["a"]'],
    ["6"],
    ["5" + "1" * 5000 + '-["a"]'],
    ['51-["a",{"_placeholder":true,"num":1}]', "b64:eA=="],
    ['51-["a",{"_placeholder":true,"num":-1}]', "b64:eA=="],
    ['51-["a",{"_placeholder":true,"num":"0"}]', "b64:eA=="],
    ['51-["a",{"_placeholder":true,"num":true}]', "b64:eA=="],
    ["b64:eA=="],
    [f"51-[\"a\",{PH0}]", '2["b"]'],
    ['2["a"'],
    ['2["a"]x'],
    ["2[NaN]"],
    ["0[]"],
    ['0"x"'],
    ["1{}"],
    ["1/admin,{}"],
    ["2{}"],
    ["2[]"],
    ["2[{}]"],
    ["2[true]"],
    ["2[null]"],
    ['2"a"'],
    ["3{}"],
    ["4[]"],
    ["4true"],
    *([f'2["{name}"]'] for name in sorted(RESERVED_EVENTS)),
    [f'51-["connect",{PH0}]', "b64:eA=="],
    ["0null"],
    ["1null"],
    ["2null"],
    ["3null"],
    ["4null"],
    ["51-null"],
    ["2" + "[" * 5000],
    # lone surrogate escapes: JSON.parse keeps them, so do we (issue 8, item 12)
    ['2["\\ud800"]'],
    ['2["a\\udc00b","\\uD83D","\\ud83d\\ude00",{"\\udfff":"\\udbff"}]'],
    ['51-["\\udfff",{"_placeholder":true,"num":0}]', "b64:eA=="],
    ['2["\\ud83d",NaN]'],
    ['2["\\ud83d"'],
    # accepted by both, with the same result
    ["0/admin"],
    ["01"],
    ['2["a"]  '],
    ["2[1]"],
    ["2[1.5]"],
    ['4"error"'],
    ['2007["a"]'],
    ['501-["a"]', "b64:eA=="],
    ['51-["a"]', "b64:eA=="],
    [f'51-["a",{PH0}]'],  # pending
    [f'52-["a",{PH0},{{"_placeholder":true,"num":1}}]', "b64:eA=="],  # pending
    ['51-["a",{"_placeholder":false,"num":9}]', "b64:eA=="],
]


def _message(value: str) -> str | bytes:
    return base64.b64decode(value[4:]) if value.startswith("b64:") else value


def our_outcome(messages: list[str | bytes]) -> dict[str, Any]:
    decoder = JsonDecoder()
    packets = []
    for message in messages:
        try:
            packet = decoder.add(message)
        except ProtocolError as exc:
            return {"ok": False, "error": str(exc)}
        if packet is not None:
            packets.append(decoded_to_wire(packet))
    return {"ok": True, "packets": packets}


def npm_outcome(response: dict[str, Any]) -> dict[str, Any]:
    if not response["ok"]:
        return {"ok": False, "error": response["error"]}
    return {"ok": True, "packets": response.get("packets")}


@pytest.fixture(scope="module")
def json_oracle() -> dict[str, Any]:
    """One node run: the npm encoder on a batch of packets, the npm decoder on every
    malformed / edge case."""
    rng = random.Random(20240501)
    batch = [*(p.values[0] for p in PROTOCOL_EXAMPLES), *SURROGATE_PACKETS]
    batch += [random_packet(rng) for _ in range(200)]
    cases = [
        *(list(k) for k in NPM_ACCEPTS_WE_REJECT),
        *(list(k) for k in WE_ACCEPT_NPM_REJECTS),
        *(list(k) for k in BOTH_ACCEPT_DIFFERENTLY),
        *SAME_OUTCOME,
    ]
    requests: list[dict[str, Any]] = [
        {"op": "json_encode", "packet": packet_to_wire(p)} for p in batch
    ]
    # Packets are not needed (and may nest too deep for json.loads) where we reject.
    requests += [
        {
            "op": "json_decode",
            "messages": [to_wire(_message(m)) for m in case],
            "brief": tuple(case) in NPM_ACCEPTS_WE_REJECT,
        }
        for case in cases
    ]
    responses = run_parser_oracle(requests)
    return {
        "batch": batch,
        "encoded": responses[: len(batch)],
        "cases": cases,
        "decoded": responses[len(batch) :],
    }


def test_differential_encoder_matches_npm_byte_for_byte(json_oracle: dict[str, Any]) -> None:
    mismatches = []
    for packet, response in zip(json_oracle["batch"], json_oracle["encoded"], strict=True):
        assert response["ok"], response
        ours = encode(packet)
        theirs = [
            part if isinstance(part, str) else from_wire(part) for part in response["out"]
        ]
        if ours != theirs:
            mismatches.append((packet, ours, theirs))
    assert not mismatches, mismatches[:3]


def test_differential_npm_encoded_packets_decode_the_same(json_oracle: dict[str, Any]) -> None:
    for packet, response in zip(json_oracle["batch"], json_oracle["encoded"], strict=True):
        messages = [part if isinstance(part, str) else from_wire(part) for part in response["out"]]
        assert decode_one(messages) == expected_decoded(packet), messages


def test_differential_malformed_input(json_oracle: dict[str, Any]) -> None:
    problems = []
    for case, response in zip(json_oracle["cases"], json_oracle["decoded"], strict=True):
        key = tuple(case)
        ours = our_outcome([_message(m) for m in case])
        theirs = npm_outcome(response)
        if key in NPM_ACCEPTS_WE_REJECT:
            expected_kind = "npm accepts, we reject"
            consistent = theirs["ok"] and not ours["ok"]
        elif key in WE_ACCEPT_NPM_REJECTS:
            expected_kind = "we accept, npm rejects"
            consistent = ours["ok"] and not theirs["ok"]
        elif key in BOTH_ACCEPT_DIFFERENTLY:
            expected_kind = "both accept, different packets"
            consistent = ours["ok"] and theirs["ok"] and ours != theirs
        else:
            expected_kind = "same outcome"
            consistent = ours["ok"] == theirs["ok"] and (not ours["ok"] or ours == theirs)
        if not consistent:
            problems.append({"case": _case_id(case), "expected": expected_kind,
                             "ours": ours, "npm": theirs})
    assert not problems, json.dumps(problems, indent=1)[:4000]
