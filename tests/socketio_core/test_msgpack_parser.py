"""Tests for the msgpack parser (socketio_core.msgpack_parser).

Round trips, the notepack.io forms (undefined, ArrayBuffer, Date, other ext), validation,
limits, hypothesis garbage, agreement of the fast (msgpack C) and exact decoding paths, and
a differential run against npm ``socket.io-msgpack-parser`` 3.0.2 through
``tests/interop/sio_parser_oracle.mjs`` (one node process for the whole batch).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import struct
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socketio_core.msgpack_parser import (
    DEFAULT_MAX_DEPTH,
    MAX_DEPTH_LIMIT,
    MsgPackDecoder,
    MsgPackParser,
    _ExactDecoder,
)
from socketio_core.packet import (
    RESERVED_EVENTS,
    Packet,
    PacketType,
    ProtocolError,
    payload_is_valid,
)
from tests.socketio_core.test_packet import (
    UNDEFINED,
    ArrayBufferValue,
    decoded_to_wire,
    event_names,
    from_wire,
    json_leaf,
    keys,
    normalize,
    packet_to_wire,
    random_key,
    random_packet,
    random_string,
    random_value,
    run_parser_oracle,
    to_wire,
)

msgpack = pytest.importorskip("msgpack")

E = PacketType
UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
PARSER = MsgPackParser()


# ---------------------------------------------------------------- building raw msgpack


class Raw(bytes):
    """Already-encoded msgpack, inserted as is by :func:`enc`."""


class Pairs(list):
    """A msgpack map given as (key, value) pairs: any key type, duplicates, order kept."""


MISSING = object()


def _header(n: int, fix: int, small: int, big: int) -> bytes:
    if n < 16:
        return bytes([fix | n])
    if n < 0x10000:
        return bytes([small]) + n.to_bytes(2, "big")
    return bytes([big]) + n.to_bytes(4, "big")


def enc(value: Any) -> bytes:
    if isinstance(value, Raw):
        return bytes(value)
    if isinstance(value, Pairs):
        return _header(len(value), 0x80, 0xDE, 0xDF) + b"".join(enc(k) + enc(v) for k, v in value)
    if isinstance(value, dict):
        return enc(Pairs(value.items()))
    if isinstance(value, list):
        return _header(len(value), 0x90, 0xDC, 0xDD) + b"".join(enc(v) for v in value)
    return msgpack.packb(value, use_bin_type=True)


def packet_bytes(type: Any = 2, nsp: Any = "/", data: Any = MISSING, id: Any = MISSING,
                 **extra: Any) -> bytes:
    fields = Pairs([("type", type)])
    if data is not MISSING:
        fields.append(("data", data))
    if nsp is not MISSING:
        fields.append(("nsp", nsp))
    if id is not MISSING:
        fields.append(("id", id))
    fields.extend(extra.items())
    return enc(fields)


UNDEF = Raw(b"\xd4\x00\x00")  # notepack.io's undefined (fixext 1, type 0)


def array_buffer(data: bytes) -> Raw:
    """notepack.io's ArrayBuffer: ext 8/16/32 with type 0 (never fixext)."""
    n = len(data)
    if n < 0x100:
        return Raw(b"\xc7" + bytes([n]) + b"\x00" + data)
    if n < 0x10000:
        return Raw(b"\xc8" + n.to_bytes(2, "big") + b"\x00" + data)
    return Raw(b"\xc9" + n.to_bytes(4, "big") + b"\x00" + data)


def date(ms: int) -> Raw:
    """notepack.io's Date: fixext 8, type 0, int64 milliseconds."""
    return Raw(b"\xd7\x00" + struct.pack(">q", ms))


def fixext(code: int, data: bytes) -> Raw:
    prefix = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}[len(data)]
    return Raw(bytes([prefix]) + struct.pack(">b", code) + data)


def ext8(code: int, data: bytes) -> Raw:
    return Raw(b"\xc7" + bytes([len(data)]) + struct.pack(">b", code) + data)


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def decode(data: bytes) -> Packet:
    return PARSER.decoder().add(data)


# ---------------------------------------------------------------- encoding


def test_encode_matches_the_npm_layout() -> None:
    # {"type": 2, "data": ["hello", 1], "nsp": "/"}: one binary message, keys in this order.
    assert PARSER.encode(Packet(E.EVENT, ["hello", 1])) == [
        b"\x83\xa4type\x02\xa4data\x92\xa5hello\x01\xa3nsp\xa1/"
    ]
    assert PARSER.encode(Packet(E.ACK, [b"\x01"], "/admin", 456)) == [
        b"\x84\xa4type\x03\xa4data\x91\xc4\x01\x01\xa3nsp\xa6/admin\xa2id\xcd\x01\xc8"
    ]
    assert PARSER.encode(Packet(E.CONNECT, nsp="/admin")) == [b"\x82\xa4type\x00\xa3nsp\xa6/admin"]


@pytest.mark.parametrize(
    "packet",
    [
        Packet(E.CONNECT),
        Packet(E.CONNECT, {"token": "123"}, "/admin"),
        Packet(E.CONNECT, {"sid": "abc", "pid": None}),
        Packet(E.DISCONNECT, nsp="/admin"),
        Packet(E.EVENT, ["hello", 1]),
        Packet(E.EVENT, ["project:delete", 123], "/admin", 456),
        Packet(E.EVENT, [7, {"a": [b"\x00", b"", {"b": b"x" * 70000}]}, "x" * 300, -2.5, None]),
        Packet(E.ACK, [], "/admin", 456),
        Packet(E.ACK, [list(range(20)), {str(i): i for i in range(20)}], "/", 0),
        Packet(E.CONNECT_ERROR, {"message": "Not authorized", "data": {"code": 42}}),
        Packet(E.CONNECT_ERROR, "Not authorized", "/private"),
        Packet(E.EVENT, ["when", dt.datetime(2024, 2, 29, 12, 30, 1, 250000, tzinfo=UTC)]),
        Packet(E.EVENT, ["big", 2**64 - 1, -(2**63), 1.5, float("inf")], "/", 2**63),
        Packet(E.EVENT, ["neg-id"], "/", -1),
    ],
)
def test_round_trip(packet: Packet) -> None:
    [message] = PARSER.encode(packet)
    assert type(message) is bytes
    assert decode(message) == packet


def test_binary_types_are_sent_as_event_and_ack() -> None:
    for binary_type, plain in ((E.BINARY_EVENT, E.EVENT), (E.BINARY_ACK, E.ACK)):
        packet = Packet(binary_type, ["x", b"\x01"], "/", 3)
        [message] = PARSER.encode(packet)
        assert message == PARSER.encode(Packet(plain, ["x", b"\x01"], "/", 3))[0]
        assert decode(message) == Packet(plain, ["x", b"\x01"], "/", 3)


def test_bytes_likes_tuples_and_datetimes_are_encoded() -> None:
    naive = dt.datetime(2020, 1, 2, 3, 4, 5, 678999)
    paris = dt.datetime(2020, 1, 2, 4, 4, 5, 678000, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    [message] = PARSER.encode(
        Packet(E.EVENT, ["x", bytearray(b"a"), memoryview(b"b"), ("t", 1), naive, paris])
    )
    as_utc = dt.datetime(2020, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)  # milliseconds, UTC
    assert decode(message).data == ["x", b"a", b"b", ["t", 1], as_utc, as_utc]
    assert date((as_utc - EPOCH) // dt.timedelta(milliseconds=1)) in message


@pytest.mark.parametrize(
    "data",
    [
        ["x", object()],
        ["x", 2**64],
        ["x", -(2**63) - 1],
        ["x", {1j: 1}],
        ["x", nested(100_000)],
        ["x", dt.date(2020, 1, 1)],
    ],
    ids=["object", "too-big", "too-small", "complex-key", "too-deep", "date"],
)
def test_unencodable_data_raises_type_error(data: Any) -> None:
    with pytest.raises(TypeError):
        PARSER.encode(Packet(E.EVENT, data))


def test_lone_surrogates_are_sent_as_replacement_characters() -> None:
    # UTF-8 cannot carry a lone surrogate (issue 8, item 12: what the JSON parser keeps).
    # Node's Buffer writes U+FFFD for it, and so does notepack.io for strings longer than
    # 32 code units: these bytes are the npm encoder's for that string. (For shorter ones
    # notepack.io combines the surrogate with the next code unit, "\ud83d" -> U+1F400,
    # which we do not copy.) A pair held as two code points is the one character.
    long = "\ud83d" + "x" * 40
    [message] = PARSER.encode(Packet(E.EVENT, ["m", long]))
    assert b"\xd9\x2b\xef\xbf\xbd" + b"x" * 40 in message  # str 8, 43 bytes, U+FFFD, x * 40
    [message] = PARSER.encode(
        Packet(E.EVENT, ["m", "a\udc00b", {"\ud800": ["\ud83d\ude00"]}, ("\udfff",)], "/", 1)
    )
    assert decode(message).data == ["m", "a\ufffdb", {"\ufffd": ["\U0001f600"]}, ["\ufffd"]]
    assert decode(message).id == 1


# ---------------------------------------------------------------- notepack.io forms


def test_undefined() -> None:
    # In an array: None. As a map value: the entry is left out (data, id and nested maps).
    assert decode(packet_bytes(data=["a", UNDEF, [UNDEF]])).data == ["a", None, [None]]
    assert decode(packet_bytes(data=["a", Pairs([("k", UNDEF), ("j", 1)])])).data == [
        "a",
        {"j": 1},
    ]
    assert decode(packet_bytes(data=["a", Pairs([("k", 1), ("k", UNDEF)])])).data == ["a", {}]
    assert decode(packet_bytes(type=0, data=UNDEF, id=UNDEF)) == Packet(E.CONNECT)
    assert decode(packet_bytes(type=1, data=UNDEF, nsp="/a")) == Packet(E.DISCONNECT, nsp="/a")
    assert decode(packet_bytes(data=["a"], id=UNDEF)) == Packet(E.EVENT, ["a"])
    with pytest.raises(ProtocolError):
        decode(packet_bytes(data=UNDEF))  # EVENT without data
    with pytest.raises(ProtocolError):
        decode(packet_bytes(type=UNDEF, data=["a"]))


def test_array_buffers_are_bytes_and_not_confused_with_undefined_or_dates() -> None:
    data = [
        "a",
        array_buffer(b"\x00"),  # c7 01 00 00, while undefined is d4 00 00
        array_buffer(b"12345678"),  # ext 8 of 8 bytes, while a Date is fixext 8
        array_buffer(b""),
        array_buffer(b"y" * 300),
        array_buffer(b"z" * 70000),
        UNDEF,
        date(86_400_000),
    ]
    assert decode(packet_bytes(data=data)).data == [
        "a",
        b"\x00",
        b"12345678",
        b"",
        b"y" * 300,
        b"z" * 70000,
        None,
        dt.datetime(1970, 1, 2, tzinfo=UTC),
    ]


def test_dates() -> None:
    assert decode(packet_bytes(data=["a", date(-1)])).data == [
        "a",
        dt.datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
    ]
    for ms in (2**62, -(2**62), 253_402_300_800_000):  # the last one is year 10000
        with pytest.raises(ProtocolError):
            decode(packet_bytes(data=["a", date(ms)]))


def test_other_ext_values_are_type_and_bytes() -> None:
    data = [
        "a",
        fixext(0, b"ab"),
        fixext(0, b"abcd"),
        fixext(0, b"a" * 16),
        fixext(5, b"a"),
        fixext(5, b"abcdefgh"),
        ext8(-5, b"xyz"),
        fixext(-1, b"\x00\x00\x00\x01"),  # a msgpack timestamp: notepack.io does not know it
        Raw(b"\xd7\xff" + struct.pack(">II", 0, 5)),
    ]
    assert decode(packet_bytes(data=data)).data == [
        "a",
        [0, b"ab"],
        [0, b"abcd"],
        [0, b"a" * 16],
        [5, b"a"],
        [5, b"abcdefgh"],
        [-5, b"xyz"],
        [-1, b"\x00\x00\x00\x01"],
        [-1, b"\x00\x00\x00\x00\x00\x00\x00\x05"],
    ]


def test_numbers_and_strings() -> None:
    data = [
        "a",
        Raw(b"\xca" + struct.pack(">f", 1.5)),
        Raw(b"\xcf" + (2**64 - 1).to_bytes(8, "big")),
        Raw(b"\xd3" + (-(2**63)).to_bytes(8, "big", signed=True)),
        Raw(b"\xd0\x80"),
        Raw(b"\xa3\xff\xfeA"),  # invalid UTF-8: replaced, as Buffer.toString does
        Raw(b"\xa3\xed\xa0\x80"),  # an encoded surrogate
    ]
    assert decode(packet_bytes(data=data)).data == [
        "a", 1.5, 2**64 - 1, -(2**63), -128, "\ufffd\ufffdA", "\ufffd\ufffd\ufffd",
    ]


def test_map_keys() -> None:
    # Integer keys become strings, as JavaScript property names do.
    keys = Pairs([(1, "x"), (-2, "y"), (2**53 - 1, "z")])
    assert decode(packet_bytes(data=["a", keys])).data == [
        "a",
        {"1": "x", "-2": "y", str(2**53 - 1): "z"},
    ]
    assert decode(packet_bytes(data=["a", Pairs([(1, "x"), ("1", "y")])])).data == ["a", {"1": "y"}]
    for key in (True, None, 1.5, b"k", 2**53, [1], Raw(b"\x80"), UNDEF, date(0)):
        with pytest.raises(ProtocolError):
            decode(packet_bytes(data=["a", Pairs([(key, 1)])]))
    with pytest.raises(ProtocolError):
        decode(enc(Pairs([("type", 2), ("nsp", "/"), ("data", ["a"]), (True, 1)])))
    assert decode(enc(Pairs([("type", 2), ("nsp", "/"), ("data", ["a"]), (7, 1)]))) == Packet(
        E.EVENT, ["a"]
    )


def test_packet_fields_like_the_npm_decoder() -> None:
    # type and id may be integral floats (JavaScript has one number type); extra keys such
    # as the "options" socket.io-client sends are ignored; nsp is any string.
    assert decode(packet_bytes(type=2.0, data=["a"], id=3.0)) == Packet(E.EVENT, ["a"], "/", 3)
    assert decode(packet_bytes(data=["a"], options={"compress": True})) == Packet(E.EVENT, ["a"])
    assert decode(packet_bytes(data=["a"], nsp="")) == Packet(E.EVENT, ["a"], "")
    assert decode(packet_bytes(data=[1.5])) == Packet(E.EVENT, [1.5])
    assert decode(packet_bytes(type=4, data="nope")) == Packet(E.CONNECT_ERROR, "nope")
    assert decode(packet_bytes(type=0, data={"k": b"v"})) == Packet(E.CONNECT, {"k": b"v"})
    # the last duplicate wins
    assert decode(enc(Pairs([("type", 2), ("nsp", "/x"), ("nsp", "/"), ("data", ["a"])]))) == (
        Packet(E.EVENT, ["a"])
    )


# ---------------------------------------------------------------- errors

DEEP = 100_000

INVALID = {
    "empty": b"",
    "reserved-byte": b"\xc1",
    "truncated-map": packet_bytes(data=["a"])[:-1],
    "truncated-str": b"\x83\xa4type\x02\xa4data\x91\xa5ab",
    "truncated-array-header": b"\xdd\x00\x00",
    "huge-array-length": b"\xdd\xff\xff\xff\xff\xc0",
    "huge-map-length": b"\xdf\xff\xff\xff\xff\xc0",
    "huge-bin-length": b"\xc6\xff\xff\xff\xff\x00",
    "huge-ext-length": b"\xc9\xff\xff\xff\xff\x00",
    "trailing": packet_bytes(data=["a"]) + b"\xc0",
    "two-packets": packet_bytes(data=["a"]) * 2,
    "array": enc([2, "/", ["a"]]),
    "int": enc(2),
    "nil": enc(None),
    "undefined": bytes(UNDEF),
    "string": enc("2[\"a\"]"),
    "type-missing": enc({"nsp": "/", "data": ["a"]}),
    "type-nil": packet_bytes(type=None, data=["a"]),
    "type-5": packet_bytes(type=5, data=["a"]),
    "type-6": packet_bytes(type=6, data=["a"]),
    "type-7": packet_bytes(type=7, data=["a"]),
    "type-negative": packet_bytes(type=-1, data=["a"]),
    "type-float": packet_bytes(type=2.5, data=["a"]),
    "type-bool": packet_bytes(type=True, data=["a"]),
    "type-string": packet_bytes(type="2", data=["a"]),
    "nsp-missing": packet_bytes(nsp=MISSING, data=["a"]),
    "nsp-nil": packet_bytes(nsp=None, data=["a"]),
    "nsp-int": packet_bytes(nsp=1, data=["a"]),
    "nsp-bin": packet_bytes(nsp=b"/", data=["a"]),
    "connect-nil": packet_bytes(type=0, data=None),
    "connect-array": packet_bytes(type=0, data=[]),
    "connect-string": packet_bytes(type=0, data="x"),
    "disconnect-map": packet_bytes(type=1, data={}),
    "disconnect-nil": packet_bytes(type=1, data=None),
    "event-missing": packet_bytes(),
    "event-nil": packet_bytes(data=None),
    "event-map": packet_bytes(data={}),
    "event-empty": packet_bytes(data=[]),
    "event-name-nil": packet_bytes(data=[None]),
    "event-name-bool": packet_bytes(data=[True]),
    "event-name-array": packet_bytes(data=[["a"]]),
    "event-name-bin": packet_bytes(data=[b"a"]),
    **{f"event-reserved-{name}": packet_bytes(data=[name, 1]) for name in sorted(RESERVED_EVENTS)},
    "ack-missing": packet_bytes(type=3),
    "ack-map": packet_bytes(type=3, data={}),
    "ack-nil": packet_bytes(type=3, data=None),
    "connect-error-missing": packet_bytes(type=4),
    "connect-error-array": packet_bytes(type=4, data=[]),
    "connect-error-int": packet_bytes(type=4, data=1),
    "id-nil": packet_bytes(data=["a"], id=None),
    "id-float": packet_bytes(data=["a"], id=1.5),
    "id-string": packet_bytes(data=["a"], id="1"),
    "id-bool": packet_bytes(data=["a"], id=True),
    "id-inf": packet_bytes(data=["a"], id=float("inf")),
    "timestamp-bad-length": packet_bytes(data=["a", ext8(-1, b"abc")]),
    "timestamp-bad-nanoseconds": packet_bytes(
        data=["a", fixext(-1, struct.pack(">II", 0xFFFFFFFF, 0))]
    ),
    "date-out-of-range": packet_bytes(data=["a", date(2**62)]),
    "too-deep": packet_bytes(data=["a", nested(DEFAULT_MAX_DEPTH)]),
    "too-deep-with-ext": packet_bytes(data=["a", nested(DEFAULT_MAX_DEPTH, UNDEF)]),
    "too-deep-map": packet_bytes(data=["a", nested(DEFAULT_MAX_DEPTH - 2, {"k": {"k": 1}})]),
    "very-deep": b"\x91" * DEEP + b"\xc0",
    "very-deep-in-packet": packet_bytes(data=Raw(b"\x92\xa1a" + b"\x91" * DEEP + b"\xc0")),
    "very-deep-with-ext": packet_bytes(data=Raw(b"\x92\xa1a" + b"\x91" * DEEP + bytes(UNDEF))),
    "very-deep-maps": b"\x81\xa1k" * DEEP + b"\xc0",
}


@pytest.mark.parametrize("data", list(INVALID.values()), ids=list(INVALID))
def test_invalid_messages_raise_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(data)


@pytest.mark.parametrize("message", ["", "2[\"a\"]", 2, None, ["a"]], ids=repr)
def test_non_binary_messages_raise_protocol_error(message: Any) -> None:
    with pytest.raises(ProtocolError):
        PARSER.decoder().add(message)


def test_bytes_likes_are_accepted() -> None:
    data = packet_bytes(data=["a"])
    for message in (bytearray(data), memoryview(data)):
        assert PARSER.decoder().add(message) == Packet(E.EVENT, ["a"])


def test_depth_limit_is_the_same_on_both_paths() -> None:
    # The packet map is level 1, data level 2: DEFAULT_MAX_DEPTH - 2 more levels fit.
    fits = nested(DEFAULT_MAX_DEPTH - 2)
    assert decode(packet_bytes(data=["a", fits])).data == ["a", fits]
    assert decode(packet_bytes(data=["a", nested(DEFAULT_MAX_DEPTH - 2, UNDEF)])).data == [
        "a",
        nested(DEFAULT_MAX_DEPTH - 2, None),
    ]
    shallow = MsgPackParser(max_depth=4)
    assert shallow.decode(packet_bytes(data=["a", [[1]]])).data == ["a", [[1]]]
    for leaf in (1, UNDEF):
        with pytest.raises(ProtocolError, match="nested too deeply"):
            shallow.decode(packet_bytes(data=["a", [[[leaf]]]]))
    with pytest.raises(ProtocolError, match="nested too deeply"):
        shallow.decode(packet_bytes(data=["a", [{"k": {"k": 1}}]]))


@pytest.mark.parametrize("max_depth", [0, -1, MAX_DEPTH_LIMIT + 1])
def test_max_depth_is_bounded(max_depth: int) -> None:
    with pytest.raises(ValueError):
        MsgPackParser(max_depth=max_depth)


def test_deepest_allowed_setting_is_safe() -> None:
    parser = MsgPackParser(max_depth=MAX_DEPTH_LIMIT)
    fits = nested(MAX_DEPTH_LIMIT - 2, UNDEF)  # exact path, recursive
    assert parser.decode(packet_bytes(data=["a", fits])).data == [
        "a",
        nested(MAX_DEPTH_LIMIT - 2, None),
    ]
    with pytest.raises(ProtocolError):
        parser.decode(packet_bytes(data=["a", nested(MAX_DEPTH_LIMIT, UNDEF)]))


def test_exact_path_reads_every_scalar_form() -> None:
    # An ext value sends the whole message to the exact decoder: the same numbers as above.
    data = ["a", array_buffer(b"x"), Raw(b"\xca" + struct.pack(">f", 1.5)),
            Raw(b"\xcb" + struct.pack(">d", -0.25)), Raw(b"\xcd\x01\x00"), Raw(b"\xd1\xff\x00"),
            Raw(b"\xc2"), Raw(b"\xc3"), Raw(b"\xc0"), Raw(b"\xd9\x01s"), Raw(b"\xda\x00\x01t"),
            Raw(b"\xdb\x00\x00\x00\x01u"), Raw(b"\xc4\x01b"), Raw(b"\xff")]
    assert decode(packet_bytes(data=data)).data == [
        "a", b"x", 1.5, -0.25, 256, -256, False, True, None, "s", "t", "u", b"b", -1,
    ]
    with pytest.raises(ProtocolError, match="0xc1"):  # the one byte msgpack never uses
        decode(packet_bytes(data=["a", array_buffer(b"x"), Raw(b"\xc1")]))


def test_exact_path_containers_and_malformed_input() -> None:
    ab = array_buffer(b"x")  # any ext value: the exact decoder reads the message
    data = ["a", ab, Raw(b"\xdc\x00\x01\x01"), Raw(b"\xdd\x00\x00\x00\x01\x02"),
            Raw(b"\xde\x00\x01\xa1k\x03"), Raw(b"\xdf\x00\x00\x00\x01\xa1k\x04")]
    assert decode(packet_bytes(data=data)).data == ["a", b"x", [1], [2], {"k": 3}, {"k": 4}]
    for message, error in [
        (packet_bytes(data=["a", ab]) + b"\x00", "trailing bytes"),
        (packet_bytes(data=["a", ab])[:-1], "truncated"),  # the namespace's last byte
        (packet_bytes(data=["a", ab, Raw(b"\xdc\x00\x50")]), "truncated"),  # 80 items
        (packet_bytes(data=["a", ab, Raw(b"\xde\x00\x50")]), "truncated"),  # 80 pairs
    ]:
        with pytest.raises(ProtocolError, match=error):
            decode(message)
    with pytest.raises(ProtocolError, match="nested too deeply"):  # a map past max_depth
        MsgPackParser(max_depth=4).decode(packet_bytes(data=["a", [{"k": {"k": UNDEF}}]]))


def test_timestamp_without_other_ext_takes_the_exact_path() -> None:
    # msgpack reads ext -1 as a Timestamp without calling the ext hook: the fast path's
    # check sends the message to the exact decoder, in an array and in a map alike.
    ts = fixext(-1, b"\x00\x00\x00\x01")
    assert decode(packet_bytes(data=["a", ts])).data == ["a", [-1, b"\x00\x00\x00\x01"]]
    assert decode(packet_bytes(data=["a", {"t": ts}])).data == [
        "a", {"t": [-1, b"\x00\x00\x00\x01"]}
    ]


def test_deep_caller_stack_gives_a_protocol_error_not_a_recursion_error() -> None:
    # max_depth bounds the exact decoder's recursion, but a caller already deep in its own
    # stack can still hit the interpreter's limit: that is reported as bad input.
    message = packet_bytes(data=["a", nested(60, UNDEF)])  # exact path: ~120 frames
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(_stack_depth() + 40)
    try:
        with pytest.raises(ProtocolError, match="nested too deeply"):
            decode(message)
    finally:
        sys.setrecursionlimit(limit)


def _stack_depth() -> int:
    frame, depth = sys._getframe(1), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


def test_lone_surrogate_with_data_nested_too_deeply_is_a_type_error() -> None:
    # The surrogate makes msgpack fail first; the slow path then finds the nesting.
    with pytest.raises(TypeError, match="nested too deeply"):
        PARSER.encode(Packet(E.EVENT, ["\ud800", nested(600)]))
    # What msgpack itself accepts (it refuses past 511 levels) is sent, surrogate replaced.
    [message] = PARSER.encode(Packet(E.EVENT, ["\ud800", nested(505)]))
    assert msgpack.unpackb(message)["data"] == ["\ufffd", nested(505)]
    # From a caller already deep in its stack: still a TypeError, not a RecursionError.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(_stack_depth() + 100)
    try:
        with pytest.raises(TypeError):
            PARSER.encode(Packet(E.EVENT, ["\ud800", nested(300)]))
    finally:
        sys.setrecursionlimit(limit)


def test_decoder_and_parser_interface() -> None:
    first, second = PARSER.decoder(), PARSER.decoder()
    assert isinstance(first, MsgPackDecoder) and first is not second
    assert first.add(packet_bytes(data=["a"])) == Packet(E.EVENT, ["a"])


def test_missing_msgpack_gives_a_clear_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "msgpack", None)
    with pytest.raises(ImportError, match=r"pip install realtime-socketio\[msgpack\]"):
        MsgPackParser()


def test_module_imports_without_msgpack() -> None:
    code = (
        "import sys; sys.modules['msgpack'] = None\n"
        "import socketio_core.msgpack_parser as m\n"
        "try:\n    m.MsgPackParser()\nexcept ImportError as e:\n    print('ImportError', e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "ImportError" in done.stdout and "realtime-socketio[msgpack]" in done.stdout


# ---------------------------------------------------------------- hypothesis

binary_leaf = st.binary(max_size=20) | st.binary(max_size=20).map(bytearray)
datetime_leaf = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
msgpack_leaf = (
    json_leaf
    | st.floats(allow_nan=False)
    | binary_leaf
    | datetime_leaf
)
msgpack_values = st.recursive(
    msgpack_leaf,
    lambda children: st.lists(children, max_size=4)
    | st.tuples(children, children)
    | st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)
msgpack_objects = st.dictionaries(keys, msgpack_values, max_size=4)
any_namespace = st.just("/") | st.text(max_size=10)
any_ids = st.none() | st.integers(min_value=-(2**63), max_value=2**64 - 1)


@st.composite
def msgpack_packets(draw: st.DrawFn) -> Packet:
    ptype = draw(st.sampled_from([E.EVENT, E.ACK, E.CONNECT, E.DISCONNECT, E.CONNECT_ERROR,
                                  E.BINARY_EVENT, E.BINARY_ACK]))
    if ptype in (E.EVENT, E.BINARY_EVENT):
        data: Any = [draw(event_names), *draw(st.lists(msgpack_values, max_size=4))]
    elif ptype in (E.ACK, E.BINARY_ACK):
        data = draw(st.lists(msgpack_values, max_size=4))
    elif ptype is E.CONNECT:
        data = draw(st.none() | msgpack_objects)
    elif ptype is E.DISCONNECT:
        data = None
    else:
        data = draw(st.text(max_size=20) | msgpack_objects)
    return Packet(ptype, data, draw(any_namespace), draw(any_ids))


def expected_decoded(packet: Packet) -> Packet:
    ptype = {E.BINARY_EVENT: E.EVENT, E.BINARY_ACK: E.ACK}.get(packet.type, packet.type)
    return Packet(ptype, normalize(packet.data), packet.nsp, packet.id)


@given(msgpack_packets())
def test_round_trip_hypothesis(packet: Packet) -> None:
    [message] = PARSER.encode(packet)
    assert decode(message) == expected_decoded(packet)


def decode_or_error(parser: MsgPackParser, data: Any) -> Packet | None:
    try:
        packet = parser.decoder().add(data)
    except ProtocolError:
        return None
    assert isinstance(packet, Packet)
    return packet


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_garbage_bytes_raise_only_protocol_error(data: bytes) -> None:
    decode_or_error(PARSER, data)


@settings(max_examples=100)
@given(st.text(max_size=20))
def test_text_is_always_refused(text: str) -> None:
    assert decode_or_error(PARSER, text) is None


field_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.floats() | st.text(max_size=5)
    | st.binary(max_size=5) | st.sampled_from([*RESERVED_EVENTS, "/", "/admin", "ev"])
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=17)),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=3) | st.integers(-3, 3), children, max_size=3),
    max_leaves=8,
)
field_names = st.sampled_from(["type", "nsp", "data", "id", "options", "x"])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(field_names, st.integers(-2, 8) | field_values, max_size=5))
def test_structured_garbage_raises_only_protocol_error(fields: dict[str, Any]) -> None:
    decode_or_error(PARSER, msgpack.packb(fields, use_bin_type=True))


@settings(max_examples=200)
@given(msgpack_packets(), st.data())
def test_mutated_packets_raise_only_protocol_error(packet: Packet, data: st.DataObject) -> None:
    [message] = PARSER.encode(packet)
    buf = bytearray(message)
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, max(len(buf) - 1, 0)))
        if action == "flip" and buf:
            buf[at] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del buf[at:]
        else:
            buf[at:at] = data.draw(st.binary(min_size=1, max_size=4))
    decode_or_error(PARSER, bytes(buf))


def both_paths(data: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> tuple[Any, Any]:
    def run(fn: Any) -> Any:
        try:
            return ("ok", fn())
        except ProtocolError:
            return ("error", None)

    parser = MsgPackParser(max_depth=max_depth)
    return run(lambda: parser._unpack(data)), run(lambda: _ExactDecoder(data, max_depth).decode())


plain_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=10) | st.binary(max_size=10),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=4) | st.integers(-(2**60), 2**60), children, max_size=3),
    max_leaves=15,
)


@settings(max_examples=200)
@given(plain_values, st.integers(1, 6))
def test_fast_and_exact_paths_agree(value: Any, max_depth: int) -> None:
    data = msgpack.packb({"v": value}, use_bin_type=True)  # no ext: the fast path is taken
    fast, exact = both_paths(data, max_depth)
    assert repr(fast) == repr(exact)  # repr: NaN != NaN


@settings(max_examples=300)
@given(st.binary(max_size=40))
def test_fast_and_exact_paths_agree_on_garbage(tail: bytes) -> None:
    fast, exact = both_paths(b"\x81\xa1v" + tail)
    if fast[0] == "error" and exact[0] == "ok":
        # The only input msgpack refuses and notepack.io accepts: an ext of type -1 that
        # is not a valid msgpack timestamp; the exact decoder reports it as [-1, bytes].
        assert b"\xff" in tail
    else:
        assert repr(fast) == repr(exact)  # repr: NaN != NaN


# ---------------------------------------------------------------- differential (npm)


def random_date(rng: random.Random) -> dt.datetime:
    return EPOCH + dt.timedelta(milliseconds=rng.randrange(-(10**13), 10**13))


def random_array_buffer(rng: random.Random) -> ArrayBufferValue:
    return ArrayBufferValue(rng.randbytes(rng.choice([0, 1, 2, 4, 8, 16, 300])))


def npm_value_leaf(rng: random.Random) -> Any:
    kind = rng.randrange(5)
    if kind == 0:
        return random_date(rng)
    if kind == 1:
        return random_array_buffer(rng)
    if kind == 2:
        return UNDEFINED
    if kind == 3:
        return rng.choice([0.0, 1.0, -3.0, 2.0**40])  # integral floats: ints in notepack
    return {str(rng.randrange(100)): random_string(rng)}  # integer-like keys


HAND_PICKED_FOR_NPM = [
    Packet(E.EVENT, ["zero", ArrayBufferValue(b"\x00"), UNDEFINED, ArrayBufferValue(b"1" * 8),
                     EPOCH + dt.timedelta(milliseconds=8)]),
    Packet(E.EVENT, ["undef", {"a": UNDEFINED, "b": [UNDEFINED]}], "/", UNDEFINED),
    Packet(E.CONNECT, UNDEFINED, "/admin"),
    Packet(E.EVENT, ["sizes", "s" * 40, "s" * 300, "s" * 70000, list(range(20)),
                     {f"k{i}": i for i in range(20)}, b"b" * 300, b"b" * 70000]),
    Packet(E.EVENT, ["numbers", 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**53,
                     -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**53)]),
    Packet(E.ACK, [ArrayBufferValue(b"x" * 70000)], "/", 2**32),
]


@pytest.fixture(scope="module")
def msgpack_oracle() -> dict[str, Any]:
    rng = random.Random(5050)
    npm_batch = list(HAND_PICKED_FOR_NPM)
    npm_batch += [random_packet(rng, extra_leaves=(npm_value_leaf,)) for _ in range(120)]
    # Ours -> npm: no integral floats, no integer-like keys (see the byte-for-byte test).
    our_batch = [random_packet(rng, extra_leaves=(random_date,)) for _ in range(120)]
    our_batch += [
        Packet(E.CONNECT, nsp="/admin"),
        Packet(E.EVENT, ["hello", 1]),
        Packet(E.ACK, [b"\x00", EPOCH], "/admin", 456),
        Packet(E.CONNECT_ERROR, {"message": "x" * 300}, "/private"),
    ]
    edge_keys = list(NPM_ACCEPTS_WE_REJECT) + list(BOTH_ACCEPT_DIFFERENTLY) + list(SAME_OUTCOME)
    edge_bytes = {**NPM_ACCEPTS_WE_REJECT, **BOTH_ACCEPT_DIFFERENTLY, **SAME_OUTCOME}
    fuzz = [random_field_map(rng) for _ in range(200)]
    requests: list[dict[str, Any]] = []
    requests += [{"op": "msgpack_encode", "packet": npm_packet_to_wire(p)} for p in npm_batch]
    requests += [{"op": "msgpack_encode", "packet": packet_to_wire(p)} for p in our_batch]
    requests += [
        {"op": "msgpack_decode", "b64": b64(PARSER.encode(p)[0])} for p in our_batch
    ]
    requests += [
        {"op": "msgpack_decode", "b64": b64(edge_bytes[k][0]),
         "brief": k in NPM_ACCEPTS_WE_REJECT}
        for k in edge_keys
    ]
    requests += [{"op": "msgpack_decode", "b64": b64(data)} for data in fuzz]
    responses = iter(run_parser_oracle(requests))

    def take(n: int) -> list[dict[str, Any]]:
        return [next(responses) for _ in range(n)]

    return {
        "npm_batch": npm_batch,
        "npm_encoded": take(len(npm_batch)),
        "our_batch": our_batch,
        "npm_encoded_ours": take(len(our_batch)),
        "npm_decoded_ours": take(len(our_batch)),
        "edge_keys": edge_keys,
        "edge_bytes": edge_bytes,
        "edge": take(len(edge_keys)),
        "fuzz": fuzz,
        "fuzz_results": take(len(fuzz)),
    }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def npm_packet_to_wire(packet: Packet) -> dict[str, Any]:
    """Like packet_to_wire, but data / id may be UNDEFINED (sent as undefined)."""
    out: dict[str, Any] = {"type": int(packet.type)}
    if packet.data is not None:
        out["data"] = to_wire(packet.data)
    out["nsp"] = packet.nsp
    if packet.id is not None:
        out["id"] = to_wire(packet.id)
    return out


def ours_to_wire(data: bytes) -> dict[str, Any] | None:
    try:
        packet = decode(data)
    except ProtocolError:
        return None
    return decoded_to_wire(packet)


def test_differential_npm_encoded_packets_decode_the_same(msgpack_oracle: dict[str, Any]) -> None:
    problems = []
    for packet, response in zip(
        msgpack_oracle["npm_batch"], msgpack_oracle["npm_encoded"], strict=True
    ):
        assert response["ok"] and response["decoded"]["ok"], (packet, response)
        data = base64.b64decode(response["out"])
        ours = ours_to_wire(data)
        if ours != response["decoded"]["packet"]:
            problems.append((packet, ours, response["decoded"]["packet"]))
    assert not problems, problems[:2]


def test_differential_our_packets_decode_the_same_in_npm(msgpack_oracle: dict[str, Any]) -> None:
    for packet, response in zip(
        msgpack_oracle["our_batch"], msgpack_oracle["npm_decoded_ours"], strict=True
    ):
        assert response["ok"], (packet, response)
        assert response["packet"] == decoded_to_wire(expected_decoded(packet)), packet


def test_differential_our_encoding_is_byte_for_byte_npm(msgpack_oracle: dict[str, Any]) -> None:
    # Same key order (type, data, nsp, id), and no integral float (notepack.io writes those
    # as integers) nor integer-like key (JavaScript moves those first) in the batch.
    mismatches = []
    for packet, response in zip(
        msgpack_oracle["our_batch"], msgpack_oracle["npm_encoded_ours"], strict=True
    ):
        assert response["ok"], response
        ours = PARSER.encode(packet)[0]
        if ours != base64.b64decode(response["out"]):
            mismatches.append((packet, ours.hex(), base64.b64decode(response["out"]).hex()))
    assert not mismatches, mismatches[:2]


# Edge cases: name -> (message, why). Where the npm decoder and ours differ on purpose,
# every entry is checked to still differ.
NPM_ACCEPTS_WE_REJECT = {
    "event-empty": (packet_bytes(data=[]), "EVENT [] : npm only wants an array"),
    "event-name-nil": (packet_bytes(data=[None]), "the event name must be a string or number"),
    "event-name-map": (packet_bytes(data=[{}]), "the event name must be a string or number"),
    "event-reserved": (packet_bytes(data=["connect"]), "reserved event names are refused"),
    "event-reserved-2": (packet_bytes(data=["removeListener", 1]), "reserved event name"),
    "key-bool": (packet_bytes(data=["a", Pairs([(True, 1)])]), "npm makes the key 'true'"),
    "key-nil": (packet_bytes(data=["a", Pairs([(None, 1)])]), "npm makes the key 'null'"),
    "key-float": (packet_bytes(data=["a", Pairs([(1.5, 1)])]), "npm makes the key '1.5'"),
    "key-bin": (packet_bytes(data=["a", Pairs([(b"k", 1)])]), "npm makes the key 'k'"),
    "key-huge-int": (packet_bytes(data=["a", Pairs([(2**60, 1)])]), "beyond 2**53"),
    "key-top-level-bool": (
        enc(Pairs([("type", 2), ("nsp", "/"), ("data", ["a"]), (True, 1)])),
        "a non-string key anywhere, even in the packet map",
    ),
    "timestamp-bad-length": (
        packet_bytes(data=["a", ext8(-1, b"abc")]),
        "ext -1 that msgpack cannot read as a timestamp; notepack.io gives [-1, bytes]",
    ),
    "date-year-10000": (
        packet_bytes(data=["a", date(253_402_300_800_000)]),
        "a Date beyond Python's datetime range (year 9999)",
    ),
    "too-deep": (
        packet_bytes(data=["a", nested(DEFAULT_MAX_DEPTH)]),
        f"more than max_depth ({DEFAULT_MAX_DEPTH}) levels",
    ),
    "very-deep": (
        packet_bytes(data=Raw(b"\x92\xa1a" + b"\x91" * 3000 + b"\xc0")),
        "3000 levels: notepack.io recurses that deep",
    ),
}
BOTH_ACCEPT_DIFFERENTLY = {
    "id-above-2**53": (
        packet_bytes(data=["a"], id=2**53 + 1),
        "notepack.io reads uint64 into a double and loses the last bit; we keep it",
    ),
}
SAME_OUTCOME = {
    name: (INVALID[name], "")
    for name in [
        "empty", "reserved-byte", "truncated-map", "truncated-str", "trailing", "two-packets",
        "array", "int", "nil", "undefined", "string", "type-missing", "type-nil", "type-5",
        "type-6", "type-negative", "type-float", "type-bool", "type-string", "nsp-missing",
        "nsp-nil", "nsp-int", "nsp-bin", "connect-nil", "connect-array", "connect-string",
        "disconnect-map", "disconnect-nil", "event-missing", "event-nil", "event-map",
        "ack-missing", "ack-map", "ack-nil", "connect-error-missing", "connect-error-array",
        "connect-error-int", "id-nil", "id-float", "id-string", "id-bool", "id-inf",
        "huge-array-length", "huge-map-length", "huge-bin-length",
    ]
} | {
    "undefined-forms": (
        packet_bytes(data=["a", UNDEF, Pairs([("k", UNDEF), ("j", 2)])], id=UNDEF), ""),
    "connect-undefined": (packet_bytes(type=0, data=UNDEF), ""),
    "disconnect-undefined": (packet_bytes(type=1, data=UNDEF, nsp="/x"), ""),
    "array-buffers": (packet_bytes(data=["a", array_buffer(b"\x00"), array_buffer(b"x" * 8),
                                         array_buffer(b"")]), ""),
    "dates": (packet_bytes(data=["a", date(0), date(-1), date(1_700_000_000_123)]), ""),
    "ext-others": (packet_bytes(data=["a", fixext(0, b"ab"), fixext(0, b"a" * 16),
                                      fixext(3, b"a"), ext8(-7, b"xyz"), fixext(-1, b"abcd")]),
                   ""),
    "float32": (packet_bytes(data=["a", Raw(b"\xca" + struct.pack(">f", 0.1))]), ""),
    "invalid-utf8": (packet_bytes(data=["a", Raw(b"\xa6\xff\xfeA\xc0\x80\xf4")]), ""),
    "int-keys": (packet_bytes(data=["a", Pairs([(1, "x"), (-2, "y")])]), ""),
    "int-key-top-level": (enc(Pairs([("type", 2), ("nsp", "/"), ("data", ["a"]), (7, 1)])), ""),
    "type-and-id-floats": (packet_bytes(type=2.0, data=["a"], id=3.0), ""),
    "negative-id": (packet_bytes(data=["a"], id=-5), ""),
    "options": (packet_bytes(data=["a"], options={"compress": True}), ""),
    "duplicate-keys": (enc(Pairs([("type", 4), ("nsp", "/"), ("data", [1]), ("data", "x")])), ""),
    "empty-nsp": (packet_bytes(data=[1], nsp=""), ""),
    "number-event-names": (packet_bytes(data=[0.5]), ""),
    "connect-error-string": (packet_bytes(type=4, data="no"), ""),
    "str16-bin16-array16-map16": (
        packet_bytes(data=["a", "s" * 300, b"b" * 300, list(range(17)),
                           {f"k{i}": i for i in range(17)}]),
        "",
    ),
}

# Plausible values of each field, valid and not.
FUZZ_VALUES: dict[str, list[Any]] = {
    "type": [0, 1, 2, 3, 4, 5, 6, -1, 2.0, 2.5, "2", None, True],
    "nsp": ["/", "/admin", "", None, 1, b"/"],
    "id": [0, 7, 2**32, -1, 1.5, 3.0, None, "1", True],
    "options": [{"compress": True}],
    "x": [1],
}
EVENT_NAMES = ["ev", "connect", "disconnecting", 1, 2.5, None, True, [], {}, b"x", "\u00e9"]


def random_data(rng: random.Random) -> Any:
    return rng.choice(
        [
            [rng.choice(EVENT_NAMES), random_value(rng, 2)],
            [rng.choice(EVENT_NAMES)],
            [random_value(rng, 2) for _ in range(rng.randrange(3))],
            [],
            {},
            {random_key(rng): random_value(rng, 2)},
            random_string(rng),
            None,
            5,
        ]
    )


def valid_data(rng: random.Random, ptype: int) -> Any:
    if ptype == 0:
        return rng.choice([MISSING, {random_key(rng): random_value(rng, 2)}])
    if ptype == 1:
        return MISSING
    if ptype == 2:
        return [rng.choice(["ev", 1, 2.5]), *(random_value(rng, 2) for _ in range(2))]
    if ptype == 3:
        return [random_value(rng, 2) for _ in range(rng.randrange(3))]
    return rng.choice([random_string(rng), {"message": random_string(rng)}])


def random_field_map(rng: random.Random) -> bytes:
    """A valid packet map, then (most of the time) one or two fields changed or dropped."""
    ptype = rng.randrange(5)
    fields: dict[str, Any] = {"type": ptype, "nsp": rng.choice(["/", "/admin"]),
                              "data": valid_data(rng, ptype)}
    if ptype in (2, 3) and rng.random() < 0.3:
        fields["id"] = rng.randrange(1000)
    for _ in range(rng.choice([0, 1, 1, 2])):
        name = rng.choice(["type", "nsp", "data", "data", "id", "options", "x"])
        action = rng.random()
        if action < 0.15:
            fields[name] = MISSING
        elif action < 0.2:
            fields[name] = UNDEF
        elif name == "data":
            fields[name] = random_data(rng)
        else:
            fields[name] = rng.choice(FUZZ_VALUES[name])
    pairs = Pairs((k, v) for k, v in fields.items() if v is not MISSING)
    rng.shuffle(pairs)
    return enc(pairs)


def compare_outcome(ours: dict[str, Any] | None, npm: dict[str, Any]) -> str:
    if ours is None and not npm["ok"]:
        return "both reject"
    if ours is None:
        return "npm accepts, we reject"
    if not npm["ok"]:
        return "we accept, npm rejects"
    return "same" if ours == npm.get("packet", ours) else "different"


def test_differential_edge_cases(msgpack_oracle: dict[str, Any]) -> None:
    problems = []
    for name, response in zip(msgpack_oracle["edge_keys"], msgpack_oracle["edge"], strict=True):
        data, why = msgpack_oracle["edge_bytes"][name]
        outcome = compare_outcome(ours_to_wire(data), response)
        if name in NPM_ACCEPTS_WE_REJECT:
            expected = {"npm accepts, we reject"}
        elif name in BOTH_ACCEPT_DIFFERENTLY:
            expected = {"different"}
        else:
            expected = {"both reject", "same"}
        if outcome not in expected:
            problems.append((name, outcome, why, ours_to_wire(data), response))
    assert not problems, problems[:4]


def test_differential_random_field_maps(msgpack_oracle: dict[str, Any]) -> None:
    problems = []
    outcomes: dict[str, int] = {}
    for data, response in zip(msgpack_oracle["fuzz"], msgpack_oracle["fuzz_results"], strict=True):
        outcome = compare_outcome(ours_to_wire(data), response)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome in ("both reject", "same"):
            continue
        if outcome == "npm accepts, we reject":
            # Only our stricter EVENT rule (payload_is_valid) may explain it.
            packet = response["packet"]
            if packet["type"] == 2 and not payload_is_valid(E.EVENT, from_wire(packet["data"])):
                continue
        problems.append((data.hex(), outcome, ours_to_wire(data), response))
    assert not problems, problems[:4]
    # The batch exercises both sides.
    assert outcomes.get("same", 0) >= 40 and outcomes.get("both reject", 0) >= 40, outcomes


def test_oracle_marker_round_trip_sanity() -> None:
    # Guards the helpers the differential tests rely on.
    assert to_wire([b"\x01", {"k": dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)}]) == [
        {"$b64": "AQ=="},
        {"k": {"$date": 1000}},
    ]
    assert from_wire(json.loads('[{"$b64":"AQ=="},{"a":{"$b64":""}}]')) == [b"\x01", {"a": b""}]
