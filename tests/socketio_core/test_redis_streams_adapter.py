"""The Redis Streams adapter: our nodes beside Node socket.io 4.8.4 + redis-streams-adapter 0.3.1.

* broadcasts through the stream, ours <-> ours and ours <-> Node
  (``tests/interop/redis_streams_node.mjs``), python-socketio clients;
* the stream entries we write are the ones Node's adapter writes (fields, JSON, base64
  msgpack for binary);
* connection state recovery across nodes with the real socket.io-client 4.8.4
  (``tests/interop/recovering_client.mjs``): a client leaves one node and comes back to
  another, ours or Node's, gets ``recovered`` and every missed event once, in order;
* beyond Node: our node killed with SIGKILL, the client recovers on another node;
* requests: fetch_sockets and server_count with a Node node.

Needs Redis on 127.0.0.1:6379 (shared: unique stream, channel and key names per test,
deleted afterwards) and ``npm ci`` in ``tests/interop``. Waits are bounded, nothing is timed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import socketio

from socketio_core import Server
from socketio_core.adapter import RecoveryOptions
from socketio_core.redis_streams_adapter import create_adapter

from ..interop_support import INTEROP_DIR
from .test_redis_adapter import _free_port, private_redis
from .test_redis_emitter import require_redis_peers

msgpack = pytest.importorskip("msgpack")
redis_asyncio = pytest.importorskip("redis.asyncio")

pytestmark = pytest.mark.timeout(120)

REDIS_URL = "redis://127.0.0.1:6379/0"
WAIT = 15.0
ROOT = Path(__file__).resolve().parents[2]


def require_streams_peers() -> None:
    require_redis_peers()
    if not (INTEROP_DIR / "node_modules/@socket.io/redis-streams-adapter/package.json").is_file():
        pytest.skip("@socket.io/redis-streams-adapter missing: run `npm ci` in tests/interop")


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


class Names:
    def __init__(self) -> None:
        base = f"test-{uuid.uuid4().hex}"
        self.stream = f"{base}-stream"
        self.prefix = f"{base}-ch"
        self.session = f"{base}-session:"


@pytest.fixture
async def names(redis: Any) -> AsyncIterator[Names]:
    n = Names()
    yield n
    keys = [n.stream] + [k async for k in redis.scan_iter(match=f"{n.session}*")]
    await redis.delete(*keys)


async def wait_until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    async with asyncio.timeout(WAIT):
        while not await check():
            await asyncio.sleep(0.02)


# --------------------------------------------------------------------- nodes


@pytest.fixture
async def make_ours(redis: Any, names: Names) -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    servers: list[tuple[Server, Any]] = []

    async def factory(recovery: float | None = None, client: Any = None) -> Server:
        adapter = create_adapter(client or redis, stream_name=names.stream,
                                 channel_prefix=names.prefix,
                                 session_key_prefix=names.session, block_time=1.0,
                                 requests_timeout=3.0)
        io = Server(adapter=adapter, ping_interval=20.0, ping_timeout=20.0,
                    connection_state_recovery=(
                        RecoveryOptions(max_disconnection_duration=recovery)
                        if recovery else None))
        io.on("connection",
              lambda socket: socket.join(socket.handshake.auth.get("rooms") or []))
        await io.start("127.0.0.1", 0)
        await adapter.ready()
        servers.append((io, adapter))
        return io

    yield factory
    for io, adapter in servers:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(io.stop(), WAIT)
        await adapter.aclose()


class Lines:
    """A child process speaking JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.items: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self._ids = 0
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            with contextlib.suppress(ValueError):
                self.items.append(json.loads(line))
                self.changed.set()

    async def wait_for(self, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        try:
            async with asyncio.timeout(WAIT):
                while True:
                    for item in self.items:
                        if check(item):
                            return item
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {what}; got {self.items[-5:]}") from None

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())

    async def call(self, op: str, **args: Any) -> Any:
        self._ids += 1
        ident = self._ids
        self.send(id=ident, op=op, **args)
        item = await self.wait_for(lambda i: i.get("kind") == "done" and i["id"] == ident, op)
        if "error" in item:
            raise RuntimeError(item["error"])
        return item.get("result")

    async def close(self) -> None:
        self._reader.cancel()
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@pytest.fixture
async def spawn() -> AsyncIterator[Callable[..., Awaitable[Lines]]]:
    children: list[Lines] = []

    async def start(*argv: str, cwd: Path = INTEROP_DIR) -> Lines:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        child = Lines(proc)
        children.append(child)
        return child

    yield start
    for child in children:
        await child.close()


async def node_node(spawn: Callable[..., Awaitable[Lines]], names: Names,
                    recovery_ms: int = 0) -> tuple[Lines, int]:
    require_streams_peers()
    node = await spawn("node", "redis_streams_node.mjs", REDIS_URL, names.stream, names.prefix,
                       names.session, str(recovery_ms))
    ready = await node.wait_for(lambda i: i.get("kind") == "ready", "ready line")
    return node, ready["port"]


# --------------------------------------------------------------------- clients


class Client:
    """A python-socketio client; records events."""

    def __init__(self, port: int, rooms: list[str]) -> None:
        self.port = port
        self.rooms = rooms
        self.events: list[list[Any]] = []
        self.changed = asyncio.Event()
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("*", self._on_event)

    def _on_event(self, event: str, *args: Any) -> None:
        self.events.append([event, *args])
        self.changed.set()

    async def connect(self) -> Client:
        await self.sio.connect(f"http://127.0.0.1:{self.port}", transports=["websocket"],
                               auth={"rooms": self.rooms}, wait_timeout=WAIT)
        return self

    async def until_fences(self, *fences: int) -> list[list[Any]]:
        """Events before every fence (sent from different nodes), fences left out. With
        recovery on, events carry their offset last: a fence is ["fence", n, offset]."""

        def index(fence: int) -> int | None:
            return next((i for i, e in enumerate(self.events) if e[:2] == ["fence", fence]),
                        None)

        async with asyncio.timeout(WAIT):
            while any(index(f) is None for f in fences):
                self.changed.clear()
                await self.changed.wait()
        at = max(index(f) or 0 for f in fences)
        before = [e for e in self.events[:at + 1] if e[0] != "fence"]
        del self.events[: at + 1]
        return before


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.sio.disconnect(), 5)


async def connect(made: list[Client], port: int, rooms: list[str]) -> Client:
    client = Client(port, rooms)
    made.append(client)
    return await client.connect()


# --------------------------------------------------------------------- broadcasts


async def test_broadcast_between_our_nodes(make_ours: Any, clients: list[Client]) -> None:
    a, b = await make_ours(), await make_ours()
    a1 = await connect(clients, a.port, ["r1"])
    a2 = await connect(clients, a.port, [])
    b1 = await connect(clients, b.port, ["r1"])
    b2 = await connect(clients, b.port, ["r2"])
    a.emit("all", 1, {"two": [2.5, None]})
    a.to("r1").emit("to r1")
    b.to(["r1", "r2"]).except_("r1").emit("r1 or r2, not r1")
    b.emit("binary", b"\x00\x01\xff", {"nested": b"abc"})
    a.emit("fence", 1)
    b.emit("fence", 2)
    every = ["all", 1, {"two": [2.5, None]}]
    binary = ["binary", b"\x00\x01\xff", {"nested": b"abc"}]
    for client, expected in ((a1, [every, ["to r1"], binary]), (a2, [every, binary]),
                             (b1, [every, ["to r1"], binary]),
                             (b2, [every, ["r1 or r2, not r1"], binary])):
        got = await client.until_fences(1, 2)
        # Broadcasts from one node arrive in order; between nodes only per-node order holds.
        assert sorted(map(repr, got)) == sorted(map(repr, expected))
        assert [e for e in got if e[0] in ("all", "to r1")] == [
            e for e in expected if e[0] in ("all", "to r1")]


async def test_entries_are_nodes_format(make_ours: Any, redis: Any, names: Names) -> None:
    a = await make_ours()
    a.to("r1").emit("hello", "world", 1.5)
    a.emit("bin", b"\x01\x02")

    async def two() -> bool:
        return await redis.xlen(names.stream) >= 2

    await wait_until(two, "two entries")
    (_, text), (_, binary) = await redis.xrange(names.stream)
    assert list(text) == [b"uid", b"nsp", b"type", b"data"]
    assert text[b"nsp"] == b"/" and text[b"type"] == b"3" and len(text[b"uid"]) == 16
    assert text[b"data"] == (b'{"packet":{"type":2,"data":["hello","world",1.5]},'
                             b'"opts":{"rooms":["r1"],"except":[],"flags":{}}}')
    decoded = msgpack.unpackb(base64.b64decode(binary[b"data"]), raw=False)
    assert decoded == {"packet": {"type": 2, "data": ["bin", b"\x01\x02"]},
                       "opts": {"rooms": [], "except": [], "flags": {}}}


async def test_broadcast_with_node(make_ours: Any, spawn: Any, names: Names,
                                   clients: list[Client]) -> None:
    node, port = await node_node(spawn, names)
    ours = await make_ours()
    p1 = await connect(clients, ours.port, ["r1"])
    p2 = await connect(clients, ours.port, [])
    n1 = await connect(clients, port, ["r1"])
    n2 = await connect(clients, port, [])
    await node.call("emit", event="from node", args=[1, {"a": [True, None]}])
    await node.call("emit", to=["r1"], event="node r1", args=[{"hex": "00ff10"}])
    ours.emit("from ours", "x", 2.5)
    ours.to("r1").emit("ours r1", b"\x00\xff")
    await node.call("emit", event="fence", args=[1])
    ours.emit("fence", 2)
    expect_all = [["from node", 1, {"a": [True, None]}], ["from ours", "x", 2.5]]
    for client, in_r1 in ((p1, True), (p2, False), (n1, True), (n2, False)):
        got = await client.until_fences(1, 2)
        expected = expect_all + ([["node r1", b"\x00\xff\x10"], ["ours r1", b"\x00\xff"]]
                                 if in_r1 else [])
        assert sorted(map(repr, got)) == sorted(map(repr, expected))
    assert await node.call("serverCount") == 2
    assert await ours.of("/").adapter.server_count() == 2
    fetched = await node.call("fetchSockets", to=["r1"])
    assert sorted(s["id"] for s in fetched) == sorted([p1.sio.get_sid(), n1.sio.get_sid()])
    ours_view = await ours.fetch_sockets()
    assert sorted(s.id for s in ours_view) == sorted(
        c.sio.get_sid() for c in (p1, p2, n1, n2))


# --------------------------------------------------------------------- recovery


class NpmClient:
    def __init__(self, lines: Lines) -> None:
        self.lines = lines

    def events(self) -> list[list[Any]]:
        return [i["args"] for i in self.lines.items if i.get("kind") == "event"]

    async def connected(self, count: int) -> dict[str, Any]:
        seen: list[dict[str, Any]] = []

        def check(item: dict[str, Any]) -> bool:
            if item.get("kind") == "connect" and item not in seen:
                seen.append(item)
            return len(seen) >= count

        await self.lines.wait_for(check, f"connect #{count}")
        return seen[count - 1]

    async def got(self, count: int) -> list[list[Any]]:
        def check(_: dict[str, Any]) -> bool:
            return len(self.events()) >= count

        await self.lines.wait_for(check, f"{count} events")
        return self.events()


async def npm_client(spawn: Any, port: int, rooms: list[str]) -> NpmClient:
    require_streams_peers()
    lines = await spawn("node", "recovering_client.mjs", f"http://127.0.0.1:{port}",
                        json.dumps({"rooms": rooms}))
    client = NpmClient(lines)
    await client.connected(1)
    return client


async def away_and_back(client: NpmClient, redis: Any, names: Names, to_port: int,
                        while_away: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    """Drop the connection, let ``while_away`` emit, then reconnect to ``to_port``."""
    client.lines.send(op="switch", url="http://127.0.0.1:9")  # discard port: refused
    client.lines.send(op="drop")
    await client.lines.wait_for(lambda i: i.get("kind") == "disconnect", "disconnect")

    async def saved() -> bool:
        return bool([k async for k in redis.scan_iter(match=f"{names.session}*")])

    await wait_until(saved, "a saved session")
    await while_away()
    client.lines.send(op="switch", url=f"http://127.0.0.1:{to_port}")
    return await client.connected(2)


def strip_offsets(events: list[list[Any]]) -> list[list[Any]]:
    return [e[:-1] for e in events]


async def recovery_across(make_emit: Any, client: NpmClient, redis: Any,
                          names: Names, to_port: int) -> None:
    await make_emit("before", 0)
    first = await client.got(1)
    assert first[0][:2] == ["before", 0]

    async def while_away() -> None:
        for i in range(1, 4):
            await make_emit("missed", i)
        await make_emit("other room", 0, room="elsewhere")

    again = await away_and_back(client, redis, names, to_port, while_away)
    assert again["recovered"] is True
    await make_emit("after", 9)
    events = await client.got(5)
    assert strip_offsets(events) == [["before", 0], ["missed", 1], ["missed", 2],
                                     ["missed", 3], ["after", 9]]
    offsets = [e[-1] for e in events]
    assert len(set(offsets)) == 5 and all("-" in o for o in offsets)


async def test_recovery_between_our_nodes(make_ours: Any, spawn: Any, redis: Any,
                                          names: Names) -> None:
    a, b = await make_ours(recovery=30), await make_ours(recovery=30)
    client = await npm_client(spawn, a.port, ["r1"])
    first_id = (await client.connected(1))["id"]

    async def emit(event: str, arg: int, room: str = "r1") -> None:
        b.to(room).emit(event, arg)

    await recovery_across(emit, client, redis, names, b.port)
    assert (await client.connected(2))["id"] == first_id
    assert [s.id for s in await b.fetch_sockets()] == [first_id]


async def test_recovery_node_to_ours(make_ours: Any, spawn: Any, redis: Any,
                                     names: Names) -> None:
    node, port = await node_node(spawn, names, recovery_ms=30_000)
    ours = await make_ours(recovery=30)
    client = await npm_client(spawn, port, ["r1"])

    async def emit(event: str, arg: int, room: str = "r1") -> None:
        await node.call("emit", to=[room], event=event, args=[arg])

    await recovery_across(emit, client, redis, names, ours.port)


async def test_recovery_ours_to_node(make_ours: Any, spawn: Any, redis: Any,
                                     names: Names) -> None:
    _node, port = await node_node(spawn, names, recovery_ms=30_000)
    ours = await make_ours(recovery=30)
    client = await npm_client(spawn, ours.port, ["r1"])

    async def emit(event: str, arg: int, room: str = "r1") -> None:
        ours.to(room).emit(event, arg)

    await recovery_across(emit, client, redis, names, port)


async def killed_node_missed_events(make_ours: Any, spawn: Any, redis: Any,
                                    names: Names) -> tuple[Server, Any]:
    """A client on node A (a child process) got "before"; A is killed (SIGKILL); node B
    emits "missed" 1-3 meanwhile. Returns (B, the client, still disconnected)."""
    killed = await spawn(sys.executable, "-m", "tests.socketio_core.streams_node", REDIS_URL,
                         names.stream, names.prefix, names.session, "30", cwd=ROOT)
    assert killed.proc.stdout is not None
    b = await make_ours(recovery=30)
    killed._reader.cancel()
    line = await asyncio.wait_for(killed.proc.stdout.readline(), WAIT)
    assert line.startswith(b"LISTENING "), line
    client = await npm_client(spawn, int(line.split()[1]), ["r1"])
    b.to("r1").emit("before", 0)
    await client.got(1)

    async def live_session() -> bool:
        return bool([k async for k in redis.scan_iter(match=f"{names.session}*")])

    await wait_until(live_session, "the live session in Redis")
    client.lines.send(op="switch", url="http://127.0.0.1:9")
    os.kill(killed.proc.pid, signal.SIGKILL)
    await killed.proc.wait()
    await client.lines.wait_for(lambda i: i.get("kind") == "disconnect", "disconnect")
    for i in range(1, 4):
        b.to("r1").emit("missed", i)
    return b, client


async def recovers_on(node: Server, client: Any) -> None:
    client.lines.send(op="switch", url=f"http://127.0.0.1:{node.port}")
    again = await client.connected(2)
    assert again["recovered"] is True
    node.to("r1").emit("after", 9)
    events = await client.got(5)
    assert strip_offsets(events) == [["before", 0], ["missed", 1], ["missed", 2],
                                     ["missed", 3], ["after", 9]]


async def test_recovery_after_sigkill(make_ours: Any, spawn: Any, redis: Any,
                                      names: Names) -> None:
    """Beyond Node: the session of a connected socket is in Redis before any disconnect."""
    b, client = await killed_node_missed_events(make_ours, spawn, redis, names)
    await recovers_on(b, client)


async def test_recovery_after_the_whole_fleet_restarted(make_ours: Any, spawn: Any,
                                                       redis: Any, names: Names) -> None:
    """Node A is killed, B emits, B stops too; a fresh node C (nothing in memory) recovers
    the client from what is in Redis alone: the session and the stream."""
    b, client = await killed_node_missed_events(make_ours, spawn, redis, names)
    await asyncio.sleep(0.2)  # written to the stream before B goes
    await asyncio.wait_for(b.stop(), WAIT)
    await recovers_on(await make_ours(recovery=30), client)


async def test_client_that_leaves_has_no_session(make_ours: Any, spawn: Any, redis: Any,
                                                 names: Names) -> None:
    """The live session goes when the client leaves by itself (Node keeps none either)."""
    a = await make_ours(recovery=30)
    client = await npm_client(spawn, a.port, ["r1"])

    def sessions(n: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return len([k async for k in redis.scan_iter(match=f"{names.session}*")]) == n
        return check

    await wait_until(sessions(1), "a live session")
    client.lines.send(op="leave")
    await client.lines.wait_for(lambda i: i.get("kind") == "disconnect", "disconnect")
    await wait_until(sessions(0), "no session")


async def test_recovery_during_a_stream_of_events(make_ours: Any, spawn: Any, redis: Any,
                                                  names: Names) -> None:
    """Both nodes emit all along while the client leaves A and recovers on B: it gets
    every event exactly once, each node's events in order (the hand-over from the replay
    to live delivery neither loses nor repeats one)."""
    a, b = await make_ours(recovery=30), await make_ours(recovery=30)
    client = await npm_client(spawn, a.port, ["r1"])
    sent = {"A": 0, "B": 0}
    running = True

    async def pump(name: str, io: Server) -> None:
        while running:
            io.to("r1").emit("n", name, sent[name])
            sent[name] += 1
            await asyncio.sleep(0.002)

    pumps = [asyncio.create_task(pump("A", a)), asyncio.create_task(pump("B", b))]
    try:
        await client.got(20)
        again = await away_and_back(client, redis, names, b.port, lambda: asyncio.sleep(0.2))
        assert again["recovered"] is True
        seen = len(client.events())
        await client.got(seen + 50)  # live again, both nodes
    finally:
        running = False
        await asyncio.gather(*pumps)
    a.to("r1").emit("end", "A")
    b.to("r1").emit("end", "B")

    def ends(_: dict[str, Any]) -> bool:
        return sum(1 for e in client.events() if e[0] == "end") == 2

    await client.lines.wait_for(ends, "both ends")
    events = [e for e in client.events() if e[0] == "n"]
    for name in ("A", "B"):
        numbers = [e[2] for e in events if e[1] == name]
        assert numbers == list(range(sent[name])), name
    offsets = [e[-1] for e in events]
    assert len(set(offsets)) == len(offsets)


async def test_requests_with_node(make_ours: Any, spawn: Any, names: Names,
                                  clients: list[Client]) -> None:
    """Join/leave/disconnect (stream), server-side emits and broadcasts with acks (pub/sub),
    both ways."""
    node, port = await node_node(spawn, names)
    ours = await make_ours()
    p1 = await connect(clients, ours.port, ["r1"])
    n1 = await connect(clients, port, ["r1"])
    p1.sio.on("question", lambda *args: "p1 answer")
    n1.sio.on("question", lambda *args: "n1 answer")
    sid_p, sid_n = p1.sio.get_sid(), n1.sio.get_sid()

    # Joins and leaves, from each side; seen by fetch_sockets on the other.
    ours.to("r1").sockets_join("from ours")
    await node.call("socketsJoin", to=["r1"], rooms=["from node"])
    await node.call("socketsLeave", to=["r1"], rooms=["r1"])

    async def joined() -> bool:
        rooms = (await node.call("rooms"))[sid_n]
        mine = {s.id: s.rooms for s in await ours.fetch_sockets()}
        return rooms == ["from node", "from ours"] and mine.get(sid_p) == {
            sid_p, "from node", "from ours"}

    await wait_until(joined, "rooms changed on both nodes")
    fetched = await node.call("fetchSockets", to=["from ours"])
    assert sorted(s["id"] for s in fetched) == sorted([sid_p, sid_n])

    # Server-side emits, with and without acks.
    received: list[list[Any]] = []
    ours.of("/").on("sse", lambda *args: received.append(list(args)) or "ours ack")
    await node.call("serverSideEmit", args=["sse", 1, {"x": "y"}])
    ours.server_side_emit("sse", "from ours")
    assert await ours.server_side_emit_with_ack("sse", "ask") == ["node:ask"]
    assert await node.call("serverSideEmitWithAck", args=["sse", "ask node"]) == ["ours ack"]

    async def got_sse() -> bool:
        return received[:1] == [[1, {"x": "y"}]]

    await wait_until(got_sse, "server-side event on ours")
    await node.wait_for(lambda i: i.get("kind") == "sse" and i["args"] == ["from ours"],
                        "server-side event on Node")

    # Broadcasts with acks, both ways: every client answers once.
    answers = await ours.timeout(3).emit_with_ack("question")
    assert sorted(answers) == ["n1 answer", "p1 answer"]
    assert sorted(await node.call("emitWithAck", event="question")) == ["n1 answer",
                                                                         "p1 answer"]

    # Disconnects, from each side.
    ours.to(sid_n).disconnect_sockets()
    await node.wait_for(lambda i: i.get("kind") == "gone" and i["id"] == sid_n, "n1 gone")
    await node.call("disconnectSockets", to=[sid_p])

    async def p1_gone() -> bool:
        return not p1.sio.connected

    await wait_until(p1_gone, "p1 disconnected")


@pytest.mark.parametrize("recovery", [None, 30.0])
async def test_redis_away_and_back(make_ours: Any, clients: list[Client],
                                   recovery: float | None) -> None:
    """Local delivery goes on while Redis is away (with recovery too, without offsets);
    once Redis is back, broadcasts flow between the nodes again."""
    port = _free_port()
    client = redis_asyncio.Redis(port=port, socket_connect_timeout=1, socket_timeout=2)
    try:
        async with private_redis(port) as server:
            a = await make_ours(recovery, client)
            b = await make_ours(recovery, client)
            on_a = await connect(clients, a.port, [])
            on_b = await connect(clients, b.port, [])
            a.emit("fence", 1)
            for c in (on_a, on_b):
                await c.until_fences(1)
            server.kill()
            await server.wait()
        for i in range(20):
            a.emit("during", i)
        a.emit("fence", 2)
        during = await on_a.until_fences(2)
        assert [e[:2] for e in during] == [["during", i] for i in range(20)]
        async with private_redis(port):
            for node in (a, b):
                await node.of("/").adapter.factory.ready(WAIT)
            async with asyncio.timeout(WAIT):
                while not any(e[0] == "after" for e in on_b.events):
                    a.emit("after")
                    on_b.changed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(on_b.changed.wait(), 0.2)
            for node in (a, b):
                await asyncio.wait_for(node.stop(), WAIT)
    finally:
        await client.aclose()


async def test_live_session_expiry_is_refreshed(make_ours: Any, spawn: Any, redis: Any,
                                                names: Names) -> None:
    """A connected socket's session key outlives max_disconnection_duration: its expiry is
    pushed back while the node runs, and it holds the socket's rooms."""
    a = await make_ours(recovery=1.0)
    client = await npm_client(spawn, a.port, ["r1", "r2"])
    sid = (await client.connected(1))["id"]
    keys: list[bytes] = []

    async def one_key() -> bool:
        keys[:] = [k async for k in redis.scan_iter(match=f"{names.session}*")]
        return len(keys) == 1

    await wait_until(one_key, "the live session")
    session = msgpack.unpackb(base64.b64decode(await redis.get(keys[0])), raw=False)
    assert session["sid"] == sid and sorted(session["rooms"]) == sorted([sid, "r1", "r2"])
    assert set(session) == {"sid", "pid", "rooms", "data"}
    first = await redis.pttl(keys[0])
    assert first > 1000  # longer than max_disconnection_duration

    async def refreshed() -> bool:
        return await redis.pttl(keys[0]) > first

    await wait_until(refreshed, "a refreshed expiry")


async def session_of(redis: Any, names: Names) -> dict[str, Any]:
    keys = [k async for k in redis.scan_iter(match=f"{names.session}*")]
    assert len(keys) == 1, keys
    value = await redis.get(keys[0])
    assert value is not None
    return dict(msgpack.unpackb(base64.b64decode(value), raw=False))


async def written(server: Server) -> None:
    """Every Redis command this node queued so far has been answered."""
    done = asyncio.Event()
    server.of("/").adapter.factory.command("ping", callback=lambda _: done.set())
    await asyncio.wait_for(done.wait(), WAIT)


async def comes_back_while_connected(make_ours: Any, spawn: Any, redis: Any, names: Names,
                                     same_node: bool) -> None:
    a = await make_ours(recovery=30)
    b = a if same_node else await make_ours(recovery=30)
    first = await npm_client(spawn, a.port, ["r1"])
    sid = (await first.connected(1))["id"]
    b.to("r1").emit("hello", 1)
    offset = (await first.got(1))[0][-1]

    async def live() -> bool:
        return bool([k async for k in redis.scan_iter(match=f"{names.session}*")])

    await wait_until(live, "the live session")
    pid = (await session_of(redis, names))["pid"]
    # The same client, as far as the server can tell, back on b before a saw it leave.
    lines = await spawn("node", "recovering_client.mjs", f"http://127.0.0.1:{b.port}",
                        json.dumps({"pid": pid, "offset": offset, "rooms": ["on b"]}))
    again = await NpmClient(lines).connected(1)
    # (socket.io-client says recovered only for a pid it got itself: ask the server)
    assert again["id"] == sid and b.of("/").sockets[sid].recovered

    async def b_owns_it() -> bool:
        if not await live():
            return False  # between the restore (GET DEL) and b's first write
        return "on b" in (await session_of(redis, names))["rooms"]

    await wait_until(b_owns_it, "b's live session")
    if same_node:
        await first.lines.wait_for(lambda i: i.get("kind") == "disconnect", "old one dropped")
        assert [s.id for s in await a.fetch_sockets()] == [sid]
    else:
        first.lines.send(op="switch", url="http://127.0.0.1:9")
        first.lines.send(op="drop")  # a now sees it leave, and keeps out of b's session

        async def gone_from_a() -> bool:
            return sid not in a.of("/").sockets

        await wait_until(gone_from_a, "the socket gone from a")
        await written(a)
        assert sorted((await session_of(redis, names))["rooms"]) == sorted([sid, "r1", "on b"])
    b.to("r1").emit("hello", 2)
    got = await NpmClient(lines).got(1)
    assert strip_offsets(got) == [["hello", 2]]


async def test_back_on_the_same_node_while_connected(make_ours: Any, spawn: Any, redis: Any,
                                                     names: Names) -> None:
    """Beyond Node, a live session: its old socket is dropped, ids stay unique."""
    await comes_back_while_connected(make_ours, spawn, redis, names, same_node=True)


async def test_back_on_another_node_while_connected(make_ours: Any, spawn: Any, redis: Any,
                                                    names: Names) -> None:
    """The old node, seeing its socket leave later, does not overwrite the session that
    the other node now owns."""
    await comes_back_while_connected(make_ours, spawn, redis, names, same_node=False)
