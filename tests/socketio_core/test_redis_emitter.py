"""The Redis emitter against npm ``@socket.io/redis-emitter`` 5.1.0 and a Node fleet.

* golden bytes: the same calls made with the npm emitter
  (``tests/interop/redis_emitter_golden.mjs``) and with ours publish the same channels and
  the same bytes, captured with PSUBSCRIBE;
* interop: a Node socket.io 4.8.4 server with ``@socket.io/redis-adapter`` 8.3.0 and real
  ``socket.io-client`` 4.8.4 clients (``tests/interop/redis_emitter_fleet.mjs``) act on what
  our emitter publishes.

Needs Redis on 127.0.0.1:6379 (shared: every test has its own key prefix and creates no key)
and ``npm ci`` in ``tests/interop``. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import math
import os
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from socketio_core.redis_emitter import Emitter, EmitterOperator

from ..interop_support import NODE_MODULES, NodeProcess, require_node, run_node, spawn_node

msgpack = pytest.importorskip("msgpack")
redis_asyncio = pytest.importorskip("redis.asyncio")

pytestmark = pytest.mark.timeout(90)

REDIS_URL = "redis://127.0.0.1:6379/0"
WAIT = 15.0  # seconds: bound on every wait for a message or a line
UTC = dt.UTC


# --------------------------------------------------------------------- fixtures


def require_redis_peers() -> None:
    require_node()
    for pkg in ("@socket.io/redis-emitter", "@socket.io/redis-adapter", "redis"):
        if not (NODE_MODULES / pkg / "package.json").is_file():
            problem = f"{NODE_MODULES / pkg} is missing: run `npm ci` in tests/interop"
            if os.environ.get("INTEROP_REQUIRED", "") not in ("", "0"):
                pytest.fail(problem, pytrace=False)
            pytest.skip(problem)


@pytest.fixture
async def redis() -> AsyncIterator[Any]:
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except OSError:
        await client.aclose()
        pytest.skip("no Redis on 127.0.0.1:6379")
    yield client
    await client.aclose()


@pytest.fixture
def key() -> str:
    """The adapters' key: unique, so that parallel runs on the shared Redis never meet."""
    return f"test-emitter-{uuid.uuid4().hex}"


class Capture:
    """Every message published on channels starting with ``prefix`` (PSUBSCRIBE)."""

    def __init__(self, redis: Any, prefix: str) -> None:
        self._pubsub = redis.pubsub()
        self._pattern = prefix + "*"

    async def start(self) -> None:
        await self._pubsub.psubscribe(self._pattern)
        # The confirmation arrives before any message published after it.
        message = await self._pubsub.get_message(timeout=WAIT)
        assert message is not None and message["type"] == "psubscribe", message

    async def take(self, count: int) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while len(out) < count:
            remaining = deadline - loop.time()
            assert remaining > 0, f"got {len(out)} of {count} messages: {out}"
            message = await self._pubsub.get_message(timeout=min(remaining, 1.0))
            if message is not None and message["type"] == "pmessage":
                out.append((message["channel"], message["data"]))
        return out

    async def quiet(self) -> list[tuple[bytes, bytes]]:
        """Messages published so far and not taken (nothing waits for more)."""
        out = []
        while (message := await self._pubsub.get_message(timeout=0.2)) is not None:
            if message["type"] == "pmessage":
                out.append((message["channel"], message["data"]))
        return out

    async def close(self) -> None:
        await self._pubsub.punsubscribe()
        await self._pubsub.aclose()


@pytest.fixture
async def capture(redis: Any, key: str) -> AsyncIterator[Capture]:
    cap = Capture(redis, key)
    await cap.start()
    yield cap
    await cap.close()


# ------------------------------------------------------------ values for Node


class AB(bytes):
    """Bytes that the Node side builds as an ArrayBuffer."""


class U8(bytes):
    """Bytes that the Node side builds as a Uint8Array."""


def tag(value: Any) -> Any:
    """A Python value as ``tests/interop/redis_values.mjs`` rebuilds it in Node."""
    if isinstance(value, (bytes, bytearray)):
        name = "$ab" if isinstance(value, AB) else "$u8" if isinstance(value, U8) else "$bin"
        return {name: base64.b64encode(bytes(value)).decode()}
    if isinstance(value, float) and (not math.isfinite(value) or (value == 0 and
                                                                 math.copysign(1, value) < 0)):
        return {"$num": "-0" if value == 0 else str(value).replace("inf", "Infinity")
                .replace("nan", "NaN")}
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        delta = aware - dt.datetime(1970, 1, 1, tzinfo=UTC)
        return {"$date": delta // dt.timedelta(milliseconds=1)}
    if callable(value):
        return {"$fn": 1}
    if isinstance(value, (list, tuple)):
        return [tag(v) for v in value]
    if isinstance(value, dict):
        return {str(k): tag(v) for k, v in value.items()}
    return value


def untag(value: Any) -> Any:
    """What a Node script reported, binary back as bytes."""
    if isinstance(value, list):
        return [untag(v) for v in value]
    if isinstance(value, dict):
        if list(value) == ["$bin"]:
            return base64.b64decode(value["$bin"])
        return {k: untag(v) for k, v in value.items()}
    return value


# A case: the chain of operators, then the call, as (name, *args) tuples.
Case = tuple[list[tuple[Any, ...]], tuple[Any, ...]]


def case(*chain: tuple[Any, ...], call: tuple[Any, ...]) -> Case:
    return list(chain), call


def apply_chain(emitter: Emitter, chain: list[tuple[Any, ...]]) -> Emitter | EmitterOperator:
    target: Any = emitter
    for op, *args in chain:
        if op == "volatile":
            target = target.volatile
        else:
            target = getattr(target, {"in": "in_", "except": "except_"}.get(op, op))(*args)
    return target


async def python_call(emitter: Emitter, c: Case) -> None:
    chain, (method, *args) = c
    target: Any = apply_chain(emitter, chain)
    name = {
        "emit": "emit", "socketsJoin": "sockets_join", "socketsLeave": "sockets_leave",
        "disconnectSockets": "disconnect_sockets", "serverSideEmit": "server_side_emit",
    }[method]
    await getattr(target, name)(*args)


def node_publish(key: str, cases: list[Case]) -> list[str | None]:
    """Make the calls with the npm emitter; returns each call's error message (or None)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cases.json"
        path.write_text(json.dumps([
            {"chain": [tag(list(step)) for step in chain], "call": tag(list(call))}
            for chain, call in cases
        ]))
        result = run_node("redis_emitter_golden.mjs", REDIS_URL, key, str(path))
    assert result.get("ok") and result["_returncode"] == 0, result
    return [r["error"] for r in result["results"]]


async def assert_same_bytes(capture: Capture, redis: Any, key: str, cases: list[Case]) -> None:
    errors = await asyncio.to_thread(node_publish, key, cases)
    assert errors == [None] * len(cases), errors
    expected = await capture.take(len(cases))
    emitter = Emitter(redis, key=key)
    for c in cases:
        await python_call(emitter, c)
    got = await capture.take(len(cases))
    for c, (exp_channel, exp_data), (channel, data) in zip(cases, expected, got, strict=True):
        assert channel == exp_channel, (str(c)[:300], channel, exp_channel)
        if data != exp_data:
            at = next((i for i, (a, b) in enumerate(zip(data, exp_data, strict=False)) if a != b),
                      min(len(data), len(exp_data)))
            window = slice(max(0, at - 16), at + 16)
            raise AssertionError(
                f"{str(c)[:300]}: bytes differ at {at} (lengths {len(exp_data)} node, "
                f"{len(data)} python)\n node   {exp_data[window].hex(' ')}\n"
                f" python {data[window].hex(' ')}"
            )
    assert await capture.quiet() == []


# --------------------------------------------------------------- golden bytes

NUMBERS = [
    0, 1, -1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**53 - 1, 2**53, 2**63,
    -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**53) + 1, -(2**63),
    1.5, -1.5, 0.1, -0.0, 2.0, -2.0, 1e19, -1e18, 2.0**63, -(2.0**63), 1e-320, 123456.789,
    math.nan, math.inf, -math.inf, 5e-324, True, False, None,
]
STRINGS = [
    "", "a" * 31, "a" * 32, "a" * 33, "é" * 20, "€" * 100, "😀" * 10, "x" * 300,
    "y" * 70_000, 'ctl \n\t\x00 "q" \\ \x7f \u2028', "a" * 40 + "\ud800" + "b",
    "é" * 40 + "\udfff",
]
NESTED = {
    "b": 1, "a": {"c": [1, {"d": None}], "e": []}, "10": 2, "2": 3, "-1": 4, "01": 5,
    "4294967294": 6, "4294967295": 7, "0": {"z": 1, "5": 2}, "": "empty key",
}
BINARY = [b"", b"\x00\x01\xff", bytes(range(256)) * 2, bytes(70_000), AB(b"abc"), U8(b"xyz"),
          {"file": b"\x01" * 40, "list": [b"a", {"deep": b"b"}]}]
DATES = [
    dt.datetime(2000, 6, 13, tzinfo=UTC), dt.datetime(2021, 1, 1, 0, 0, 0, 123_000, tzinfo=UTC),
    dt.datetime(1960, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC), dt.datetime(1969, 12, 31, 23, 59, 59,
                                                                       999_000, tzinfo=UTC),
    dt.datetime(2106, 2, 7, 6, 28, 15, tzinfo=UTC), dt.datetime(2106, 2, 7, 6, 28, 16, tzinfo=UTC),
    dt.datetime(2500, 1, 1, 0, 0, 0, 1000, tzinfo=UTC), dt.datetime(1970, 1, 1, tzinfo=UTC),
    dt.datetime(999, 12, 31, 23, 59, 59, 7000, tzinfo=UTC), dt.datetime(1, 1, 1, tzinfo=UTC),
    dt.datetime(2020, 5, 5, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    dt.datetime(2020, 5, 5, 12, 0, 0, 250_000),  # naive: taken as UTC
]

BROADCASTS: list[Case] = [
    case(call=("emit", "hello", "world")),
    case(("to", "room1"), call=("emit", "hello", "world")),
    case(("to", "a"), ("to", ["b", "c"]), ("to", "a"), call=("emit", "many rooms", 1)),
    case(("in", "x"), ("except", "y"), ("except", ["z", "w", "y"]), ("volatile",),
         ("compress", False), call=("emit", "flags", {"k": "v"})),
    case(("compress", True), ("volatile",), call=("emit", "order of flags")),
    case(("volatile",), ("compress", True), ("compress", False), call=("emit", "flags again")),
    case(("except", "only-except"), call=("emit", "except only")),
    case(("of", "admin"), ("to", "r"), call=("emit", "namespace without slash")),
    case(("of", "/chat"), ("except", "a"), call=("emit", "namespace")),
    case(("of", "/chat"), call=("emit", "no args")),
    case(("to", "салон#1 ✓"), call=("emit", "événement", "unicode room")),
    # notepack corrupts lone surrogates in strings of 32 UTF-16 units or less: longer here.
    case(("to", "r" * 40 + "\ud800"), call=("emit", "lone surrogate in a room")),
    case(call=("emit", "numbers", *NUMBERS)),
    case(call=("emit", "strings", *STRINGS)),
    case(call=("emit", "nested", NESTED, [list(range(20)), {str(i): i for i in range(16)},
                                          {f"k{i}": i for i in range(16)}, {}, []])),
    case(("to", "bin"), call=("emit", "binary", *BINARY)),
    case(call=("emit", "dates", *DATES)),
    case(call=("emit", "big array", list(range(70_000)))),
]

REQUESTS: list[Case] = [
    case(call=("socketsJoin", "room")),
    case(("to", "a"), ("except", ["b", "c"]), call=("socketsJoin", ["x", "y", "x"])),
    case(("of", "/chat"), ("in", "a"), call=("socketsLeave", "a")),
    case(("except", "é"), call=("socketsLeave", ["1", "2"])),
    case(call=("disconnectSockets",)),
    case(("to", "kick"), call=("disconnectSockets", True)),
    case(("to", "kick"), ("volatile",), call=("disconnectSockets", False)),
    case(call=("serverSideEmit", "ping")),
    case(("of", "chat"), call=("serverSideEmit", "hello", "world", 1)),
    case(call=("serverSideEmit", "values", 0.1, 1.5, 1e21, 1e-7, 0.000001, 123456789.123, -0.0,
               2.0, 1e16, 2**53 - 1, -(2**31), math.nan, math.inf, 5e-324,
               1.7976931348623157e308, True, False, None)),
    case(call=("serverSideEmit", "strings", *STRINGS[:8], STRINGS[9], "\ud800", "a\udc00b",
               "😀\ud83d")),
    case(call=("serverSideEmit", "nested", NESTED, [[], {}, {"a": [1, {"b": None}]}],
               {"lone \ud800 key": 1, "pair 😀 key": 2})),
    case(call=("serverSideEmit", "binary", b"\x00\x01\xff", {"f": b"xy"})),
    case(call=("serverSideEmit", "dates", *DATES)),
]


async def test_broadcasts_are_byte_identical(capture: Capture, redis: Any, key: str) -> None:
    require_redis_peers()
    await assert_same_bytes(capture, redis, key, BROADCASTS)


async def test_requests_are_byte_identical(capture: Capture, redis: Any, key: str) -> None:
    require_redis_peers()
    await assert_same_bytes(capture, redis, key, REQUESTS)


async def test_refusals_match_node(capture: Capture, redis: Any, key: str) -> None:
    """Reserved names and acknowledgements: refused by both, nothing published."""
    require_redis_peers()
    reserved = ["connect", "connect_error", "disconnect", "disconnecting", "newListener",
                "removeListener"]
    cases = [case(call=("emit", name, 1)) for name in reserved]
    cases.append(case(("to", "r"), call=("emit", "disconnect")))
    cases.append(case(call=("serverSideEmit", "x", 1, lambda: None)))
    errors = await asyncio.to_thread(node_publish, key, cases)
    assert errors[:7] == [f'"{n}" is a reserved event name' for n in [*reserved, "disconnect"]]
    assert errors[7] == "Acknowledgements are not supported"
    emitter = Emitter(redis, key=key)
    for c, error in zip(cases, errors, strict=True):
        with pytest.raises((ValueError, TypeError)) as info:
            await python_call(emitter, c)
        assert str(info.value).startswith(error)
    assert await capture.quiet() == []


async def test_where_notepack_corrupts_we_do_not(capture: Capture, redis: Any, key: str) -> None:
    """notepack.io packs an integral number >= 2**64 as uint64 modulo 2**64; we keep the value
    (float64), and refuse a Python int that no 64-bit msgpack integer can hold."""
    require_redis_peers()
    big = [1e20, 1.7976931348623157e308, -1e20]
    errors = await asyncio.to_thread(node_publish, key, [case(call=("emit", "big", *big))])
    assert errors == [None]
    [(_, node_data)] = await capture.take(1)
    node_args = msgpack.unpackb(node_data)[1]["data"][1:]
    assert node_args != big  # what Node's servers would get from Node's emitter
    emitter = Emitter(redis, key=key)
    await emitter.emit("big", *big)
    [(_, data)] = await capture.take(1)
    assert msgpack.unpackb(data)[1]["data"][1:] == big
    with pytest.raises(OverflowError):
        await emitter.emit("big", 2**64)
    with pytest.raises(OverflowError):
        await emitter.emit("big", -(2**63) - 1)
    assert await capture.quiet() == []


# ------------------------------------------------------------- pure behaviour


class FakeRedis:
    """Records PUBLISH calls (for the tests that need no Node)."""

    def __init__(self) -> None:
        self.published: list[tuple[bytes, bytes]] = []

    async def publish(self, channel: bytes, message: bytes) -> int:
        self.published.append((channel, message))
        return 1


async def test_operators_are_immutable() -> None:
    fake = FakeRedis()
    emitter = Emitter(fake, key="k")
    room_a = emitter.to("a")
    both = room_a.to("b")
    volatile = both.volatile
    await emitter.emit("e")
    await room_a.emit("e")
    await both.emit("e")
    await volatile.emit("e")
    opts = [msgpack.unpackb(data)[2] for _, data in fake.published]
    assert [ch for ch, _ in fake.published] == [b"k#/#", b"k#/#a#", b"k#/#", b"k#/#"]
    assert opts == [
        {"rooms": [], "flags": {}, "except": []},
        {"rooms": ["a"], "flags": {}, "except": []},
        {"rooms": ["a", "b"], "flags": {}, "except": []},
        {"rooms": ["a", "b"], "flags": {"volatile": True}, "except": []},
    ]
    assert emitter.of("x").nsp == "/x" and emitter.nsp == "/"


async def test_bad_input_is_refused_before_publishing() -> None:
    fake = FakeRedis()
    emitter = Emitter(fake)
    with pytest.raises(TypeError):
        await emitter.emit(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Acknowledgements are not supported"):
        await emitter.emit("e", lambda: None)
    with pytest.raises(TypeError, match="Acknowledgements are not supported"):
        await emitter.emit("e", {"nested": print})
    with pytest.raises(TypeError, match="cannot encode a value of type set"):
        await emitter.emit("e", {1, 2})
    with pytest.raises(TypeError, match="object keys"):
        await emitter.emit("e", {(1, 2): 1})
    with pytest.raises(TypeError, match="room"):
        emitter.to(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reserved"):
        await emitter.server_side_emit("connection")
    with pytest.raises(ValueError, match="nested deeper"):
        nested: list[Any] = []
        for _ in range(200):
            nested = [nested]
        await emitter.emit("e", nested)
    assert fake.published == []


async def test_custom_parser_and_string_payloads() -> None:
    fake = FakeRedis()
    await Emitter(fake, parser=json_parser()).to("r").emit("e", 1)
    assert fake.published == [(
        b"socket.io#/#r#",
        b'["emitter", {"type": 2, "data": ["e", 1], "nsp": "/"}, '
        b'{"rooms": ["r"], "flags": {}, "except": []}]',
    )]


# ----------------------------------------------------------------- Node fleet

#: The fleet's clients: socket.io-client 4.8.4 in the fleet's process, both transports.
CLIENTS = [
    {"name": "A", "nsp": "/", "rooms": ["r1", "r2"], "transport": "websocket"},
    {"name": "B", "nsp": "/", "rooms": ["r2"], "transport": "polling"},
    {"name": "C", "nsp": "/", "rooms": [], "transport": "websocket"},
    {"name": "D", "nsp": "/admin", "rooms": ["r1"], "transport": "websocket"},
]


class Fleet:
    """``tests/interop/redis_emitter_fleet.mjs``: what its server and clients report."""

    def __init__(self, proc: NodeProcess, emitter: Emitter) -> None:
        self.proc = proc
        self.emitter = emitter
        self.ids: dict[str, str] = {}
        self.connected = {c["name"] for c in CLIENTS}
        self.lines: list[dict[str, Any]] = []  # everything but events and fences, in order
        self._fences = 0

    async def _next(self, deadline: float) -> dict[str, Any]:
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            line = await asyncio.to_thread(self.proc.readline, max(0.0, remaining))
        except TimeoutError:
            raise AssertionError(
                f"the fleet reported nothing more within {WAIT}s; so far {self.lines}\n"
                f"stderr: {self.proc.stderr_tail()}"
            ) from None
        assert line is not None, f"the fleet exited; stderr: {self.proc.stderr_tail()}"
        item = json.loads(line)
        if item["kind"] == "disconnect":
            self.connected.discard(item["client"])
        return item

    async def start(self) -> None:
        deadline = asyncio.get_running_loop().time() + WAIT
        item = await self._next(deadline)
        assert item["kind"] == "ready", item
        self.ids = item["ids"]

    async def settle(self) -> dict[str, list[list[Any]]]:
        """Fence every namespace, wait until each connected client has its fence: the events
        each client got before it (``[event, *args]``, binary as bytes), in order."""
        self._fences += 1
        fence = self._fences
        for nsp in {c["nsp"] for c in CLIENTS}:
            await self.emitter.of(nsp).emit("fence", fence)
        events: dict[str, list[list[Any]]] = {c["name"]: [] for c in CLIENTS}
        fenced: set[str] = set()
        deadline = asyncio.get_running_loop().time() + WAIT
        while not self.connected <= fenced:
            item = await self._next(deadline)
            if item["kind"] != "event":
                self.lines.append(item)
            elif item["event"] == "fence" and item["args"] == [fence]:
                fenced.add(item["client"])
            else:
                events[item["client"]].append([item["event"], *untag(item["args"])])
        return events

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first reported line (already seen or next) that matches."""
        for item in self.lines:
            if predicate(item):
                return item
        deadline = asyncio.get_running_loop().time() + WAIT
        while True:
            item = await self._next(deadline)
            self.lines.append(item)
            if predicate(item):
                return item


@contextlib.contextmanager
def _fleet_process(key: str) -> Iterator[NodeProcess]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clients.json"
        path.write_text(json.dumps(CLIENTS))
        with spawn_node("redis_emitter_fleet.mjs", REDIS_URL, key, str(path)) as proc:
            yield proc


@pytest.fixture
async def fleet(redis: Any, key: str) -> AsyncIterator[Fleet]:
    require_redis_peers()
    with _fleet_process(key) as proc:
        f = Fleet(proc, Emitter(redis, key=key))
        await f.start()
        yield f


async def test_fleet_receives_broadcasts(fleet: Fleet) -> None:
    emitter, ids = fleet.emitter, fleet.ids
    blob = bytes(range(256)) * 4
    assert await emitter.emit("all", 1, "two", {"three": [3.5, None]}) == 1  # one server
    await emitter.to("r1").emit("to r1")
    await emitter.to("r1", "r2").except_("r1").emit("r1 or r2, not r1")
    await emitter.except_("r2").emit("not r2")
    await emitter.in_(ids["A"]).emit("to a socket id")
    await emitter.to("nobody").emit("to an empty room")
    await emitter.of("/admin").emit("admin", b"\x00\x01")
    await emitter.of("admin").to("r1").emit("admin r1")
    await emitter.to("r2").compress(False).emit("compress false")
    await emitter.emit("binary", blob, {"nested": [b"abc", {"deep": b""}]}, "text")
    await emitter.emit("numbers", 2**53 - 1, -(2**31), 1.5, 2.0, -0.0, 0.1, 1e300, True)
    await emitter.to("r1").to("r1").except_(["x", "y"]).emit("chained", {"k": "é😀"})
    events = await fleet.settle()
    binary = ["binary", blob, {"nested": [b"abc", {"deep": b""}]}, "text"]
    numbers = ["numbers", 2**53 - 1, -(2**31), 1.5, 2, 0, 0.1, 1e300, True]
    chained = ["chained", {"k": "é😀"}]
    assert events["A"] == [
        ["all", 1, "two", {"three": [3.5, None]}], ["to r1"], ["to a socket id"],
        ["compress false"], binary, numbers, chained,
    ]
    assert events["B"] == [
        ["all", 1, "two", {"three": [3.5, None]}], ["r1 or r2, not r1"], ["compress false"],
        binary, numbers,
    ]
    assert events["C"] == [["all", 1, "two", {"three": [3.5, None]}], ["not r2"], binary, numbers]
    assert events["D"] == [["admin", b"\x00\x01"], ["admin r1"]]
    # Volatile: Node drops the packet for a socket whose transport is busy (a WebSocket send in
    # flight, no pending poll), which no client can be forced into; each socket gets it at
    # most once, and the flag's bytes are proven by the golden tests.
    await emitter.to("r2").volatile.emit("volatile")
    events = await fleet.settle()
    assert events["A"] in ([], [["volatile"]]) and events["B"] in ([], [["volatile"]])
    assert events["C"] == [] and events["D"] == []
    assert fleet.lines == []


async def test_fleet_sockets_join_leave_and_server_side_emit(fleet: Fleet) -> None:
    emitter = fleet.emitter
    await emitter.sockets_join("j1")
    await emitter.to("r2").sockets_join(["j2", "j3"])
    await emitter.except_("r1").sockets_leave("r2")
    await emitter.of("/admin").to("r1").sockets_join("adm-j")
    await emitter.to("j1").except_("j3").sockets_leave("j1")  # C only
    await emitter.server_side_emit("report")
    await emitter.of("/admin").server_side_emit("report")
    await emitter.to("j2").emit("via j2")
    await emitter.server_side_emit("sse", 1, "x", {"k": [True, None], "2": 0.5}, b"\x01\x02")
    await emitter.of("/admin").server_side_emit("sse", "admin", 2.0)
    with pytest.raises(TypeError, match="Acknowledgements are not supported"):
        await emitter.server_side_emit("sse", "with ack", lambda answer: None)
    events = await fleet.settle()
    assert events == {"A": [["via j2"]], "B": [["via j2"]], "C": [], "D": []}
    assert fleet.lines == [
        {"kind": "rooms", "nsp": "/",
         "rooms": {"A": ["j1", "j2", "j3", "r1", "r2"], "B": ["j1", "j2", "j3"], "C": []}},
        {"kind": "rooms", "nsp": "/admin", "rooms": {"D": ["adm-j", "r1"]}},
        # JSON: bytes arrive in Node's Buffer.toJSON form, as from Node's emitter.
        {"kind": "sse", "nsp": "/",
         "args": [1, "x", {"2": 0.5, "k": [True, None]}, {"type": "Buffer", "data": [1, 2]}]},
        {"kind": "sse", "nsp": "/admin", "args": ["admin", 2]},
    ]


async def test_fleet_disconnect_sockets(fleet: Fleet) -> None:
    emitter = fleet.emitter
    await emitter.to("r2").except_("r1").disconnect_sockets()  # B
    await emitter.of("/admin").disconnect_sockets(close=True)  # D, and its connection
    for name in ("B", "D"):
        item = await fleet.wait_for(
            lambda line, name=name: line["kind"] == "disconnect" and line["client"] == name
        )
        assert item["reason"] == "io server disconnect"
    # close=True: the server closed D's connection itself; B's client closed its own.
    closes = {}
    for name in ("B", "D"):
        item = await fleet.wait_for(
            lambda line, name=name: line["kind"] == "conn-close" and line["client"] == name
        )
        closes[name] = item["reason"]
    assert closes["D"] == "forced close" and closes["B"] != "forced close", closes
    events = await fleet.settle()
    assert events == {"A": [], "B": [], "C": [], "D": []}
    await emitter.emit("still here")
    events = await fleet.settle()
    assert events == {"A": [["still here"]], "B": [], "C": [["still here"]], "D": []}
    await emitter.disconnect_sockets()
    for name in ("A", "C"):
        item = await fleet.wait_for(
            lambda line, name=name: line["kind"] == "disconnect" and line["client"] == name
        )
        assert item["reason"] == "io server disconnect"
    assert fleet.connected == set()


def test_a_synchronous_client_is_refused() -> None:
    import redis as redis_sync

    with pytest.raises(TypeError, match=r"redis\.asyncio"):
        Emitter(redis_sync.Redis())
    with pytest.raises(TypeError, match="publish"):
        Emitter(object())


async def test_a_client_that_does_not_await_is_refused() -> None:
    class Sync:
        def publish(self, channel: bytes, message: bytes) -> int:
            return 0

    with pytest.raises(TypeError, match="synchronous"):
        await Emitter(Sync()).emit("e")


def test_without_msgpack_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "msgpack", None)  # makes ``import msgpack`` fail
    with pytest.raises(ImportError, match=r"realtime-socketio\[redis\]"):
        Emitter(FakeRedis())
    Emitter(FakeRedis(), parser=json_parser())  # a custom parser needs no msgpack


def json_parser() -> Any:
    class JsonParser:
        def encode(self, msg: Any) -> str:
            return json.dumps(msg)

    return JsonParser()


async def test_namespace_names() -> None:
    fake = FakeRedis()
    assert Emitter(fake, nsp="chat").nsp == "/chat"
    assert Emitter(fake).of("").nsp == "/"
    await Emitter(fake, key="k").of("/a").to("r").sockets_join("x")
    await Emitter(fake, key="k").of("b").server_side_emit("e")
    assert [ch for ch, _ in fake.published] == [b"k-request#/a#", b"k-request#/b#"]
