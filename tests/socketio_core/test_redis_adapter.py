"""The Redis adapter in a fleet: our nodes beside Node socket.io 4.8.4 + redis-adapter 8.3.0.

* mixed fleet: a Node node (``tests/interop/redis_adapter_node.mjs``, driven by JSON lines)
  and one of ours share a Redis; python-socketio clients on both nodes, WebSocket and polling;
  broadcasts, sockets_join/leave/disconnect, server-side events, fetch_sockets, all_rooms,
  server_count and broadcasts with acks, in both directions;
* two of ours; our Redis emitter and npm ``@socket.io/redis-emitter`` reaching our node;
* golden bytes: what our node publishes equals what Node's adapter publishes (PSUBSCRIBE);
* failure: Redis away and back (a private ``redis-server`` on a free port).

Needs Redis on 127.0.0.1:6379 (shared: a unique key prefix per test, no key created) and
``npm ci`` in ``tests/interop``. Every wait is bounded; nothing is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import shutil
import socket as socket_module
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import socketio

from socketio_core import Server
from socketio_core.errors import AckTimeoutError
from socketio_core.redis_adapter import RedisAdapterError, RemoteSocket, create_adapter
from socketio_core.redis_emitter import Emitter

from ..interop_support import INTEROP_DIR
from .test_redis_emitter import case, node_publish, require_redis_peers, tag, untag

msgpack = pytest.importorskip("msgpack")
redis_asyncio = pytest.importorskip("redis.asyncio")

pytestmark = pytest.mark.timeout(120)

REDIS_URL = "redis://127.0.0.1:6379/0"
WAIT = 15.0
NAMESPACES = ["/", "/admin"]


# --------------------------------------------------------------------- fixtures


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
    return f"test-{uuid.uuid4().hex}"


class NodeNode:
    """The Node fleet member: commands on stdin, JSON lines on stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.port = 0
        self.sse: list[dict[str, Any]] = []
        self._ids = 0
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._sse_event = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), WAIT)
        assert line, "the Node node exited before it was ready"
        ready = json.loads(line)
        assert ready["kind"] == "ready", ready
        self.port = ready["port"]
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            item = json.loads(line)
            if item["kind"] == "sse":
                self.sse.append(item)
                self._sse_event.set()
            elif item["kind"] == "done":
                future = self._waiting.pop(item["id"], None)
                if future is not None and not future.done():
                    future.set_result(item)

    async def call(self, op: str, **args: Any) -> Any:
        assert self.proc.stdin is not None
        self._ids += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[self._ids] = future
        self.proc.stdin.write((json.dumps({"id": self._ids, "op": op, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        item = await asyncio.wait_for(future, WAIT)
        if "error" in item:
            raise RuntimeError(item["error"])
        return untag(item.get("result"))

    async def wait_sse(self, count: int) -> list[dict[str, Any]]:
        async with asyncio.timeout(WAIT):
            while len(self.sse) < count:
                self._sse_event.clear()
                await self._sse_event.wait()
        return self.sse

    async def close(self) -> None:
        if self._reader is not None:
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
async def node_node(key: str) -> AsyncIterator[NodeNode]:
    require_redis_peers()
    proc = await asyncio.create_subprocess_exec(
        "node", str(INTEROP_DIR / "redis_adapter_node.mjs"), REDIS_URL, key, ",".join(NAMESPACES),
        cwd=INTEROP_DIR, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    node = NodeNode(proc)
    try:
        await node.start()
        yield node
    finally:
        await node.close()


class OurNode:
    """One of our servers with the Redis adapter; records server-side events."""

    def __init__(self, io: Server, adapter: Any) -> None:
        self.io = io
        self.adapter = adapter
        self.sse: list[tuple[str, list[Any]]] = []
        self.sse_event = asyncio.Event()

    @property
    def port(self) -> int:
        return self.io.port

    async def wait_sse(self, count: int) -> list[tuple[str, list[Any]]]:
        async with asyncio.timeout(WAIT):
            while len(self.sse) < count:
                self.sse_event.clear()
                await self.sse_event.wait()
        return self.sse


@pytest.fixture
async def make_ours(redis: Any, key: str) -> AsyncIterator[Callable[..., Awaitable[OurNode]]]:
    nodes: list[OurNode] = []

    async def factory(client: Any = None, **options: Any) -> OurNode:
        adapter = create_adapter(client or redis, key=options.pop("key", key),
                                 requests_timeout=options.pop("requests_timeout", 3.0))
        io = Server(adapter=adapter, ping_interval=20.0, ping_timeout=20.0, **options)
        node = OurNode(io, adapter)
        for name in NAMESPACES:
            nsp = io.of(name)

            def connected(socket: Any) -> None:
                socket.join(socket.handshake.auth.get("rooms") or [])

            def sse(*args: Any, name: str = name) -> str:
                node.sse.append((name, list(args)))
                node.sse_event.set()
                return f"python:{args[0] if args else None}"

            nsp.on("connection", connected)
            nsp.on("sse", sse)
        await io.start("127.0.0.1", 0)
        nodes.append(node)
        await adapter.ready()
        return node

    yield factory
    for node in nodes:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(node.io.stop(), WAIT)
        await node.adapter.aclose()


class Client:
    """A python-socketio client on one node; records the events it gets, binary as bytes."""

    def __init__(self, name: str, port: int, nsp: str, rooms: list[str], transport: str) -> None:
        self.name = name
        self.nsp = nsp
        self.port = port
        self.rooms = rooms
        self.transport = transport
        self.events: list[list[Any]] = []
        self.changed = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("*", self._on_event, namespace=nsp)
        self.sio.on("disconnect", self._on_disconnect, namespace=nsp)
        self.answer: Any = None

    def _on_event(self, event: str, *args: Any) -> Any:
        self.events.append([event, *args])
        self.changed.set()
        return f"{self.name}:{event}"

    def _on_disconnect(self, *args: Any) -> None:
        self.disconnected.set()

    @property
    def sid(self) -> str:
        sid = self.sio.get_sid(self.nsp)
        assert sid is not None
        return sid

    async def connect(self) -> None:
        await self.sio.connect(
            f"http://127.0.0.1:{self.port}", namespaces=[self.nsp], transports=[self.transport],
            auth={"name": self.name, "rooms": self.rooms}, wait_timeout=WAIT,
        )

    async def until_fence(self, fence: int) -> list[list[Any]]:
        """Events before the fence ``["fence", fence]``; they are removed from ``events``."""
        try:
            async with asyncio.timeout(WAIT):
                while ["fence", fence] not in self.events:
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(f"{self.name}: no fence {fence} after {len(self.events)} "
                                 f"events, the last: {self.events[-3:]}") from None
        at = self.events.index(["fence", fence])
        before = self.events[:at]
        del self.events[: at + 1]
        return before


class Fleet:
    """Clients spread over the nodes; ``settle`` waits for a fence sent from one node."""

    def __init__(self) -> None:
        self.clients: dict[str, Client] = {}
        self._fences = 0

    async def add(self, name: str, port: int, nsp: str, rooms: list[str], transport: str) -> None:
        client = Client(name, port, nsp, rooms, transport)
        await client.connect()
        self.clients[name] = client

    def sid(self, name: str) -> str:
        return self.clients[name].sid

    async def settle(self, emit_fence: Callable[[str, int], Awaitable[None]]) -> dict[str, Any]:
        self._fences += 1
        fence = self._fences
        for nsp in NAMESPACES:
            await emit_fence(nsp, fence)
        live = {n: c for n, c in self.clients.items() if not c.disconnected.is_set()}
        return {name: await client.until_fence(fence) for name, client in live.items()}

    async def close(self) -> None:
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.sio.disconnect(), 5)


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    f = Fleet()
    yield f
    await f.close()


def ours_fence(node: OurNode) -> Callable[[str, int], Awaitable[None]]:
    async def emit(nsp: str, fence: int) -> None:
        node.io.of(nsp).emit("fence", fence)

    return emit


def node_fence(node: NodeNode) -> Callable[[str, int], Awaitable[None]]:
    async def emit(nsp: str, fence: int) -> None:
        await node.call("emit", nsp=nsp, event="fence", args=[fence])

    return emit


async def mixed_fleet(fleet: Fleet, ours: OurNode, node: NodeNode) -> None:
    """P1 (ws), P2 (polling), P3 on our node, N1 (ws), N2 (polling), N3 on Node's; and
    one admin client on each."""
    await fleet.add("P1", ours.port, "/", ["r1", "r2"], "websocket")
    await fleet.add("P2", ours.port, "/", ["r2"], "polling")
    await fleet.add("P3", ours.port, "/", [], "websocket")
    await fleet.add("N1", node.port, "/", ["r1", "r2"], "websocket")
    await fleet.add("N2", node.port, "/", ["r2"], "polling")
    await fleet.add("N3", node.port, "/", [], "polling")
    await fleet.add("PA", ours.port, "/admin", ["r1"], "polling")
    await fleet.add("NA", node.port, "/admin", ["r1"], "websocket")


BLOB = bytes(range(256)) * 3


def expected_broadcasts(sid_p1: str, sid_n1: str) -> dict[str, list[list[Any]]]:
    every = ["all", 1, "two", {"three": [3.5, None]}]
    binary = ["binary", BLOB, {"nested": [b"abc", {"deep": b""}]}, "text"]
    return {
        "P1": [every, ["to r1"], ["socket id"], binary],
        "N1": [every, ["to r1"], ["socket id"], binary],
        "P2": [every, ["r1 or r2, not r1"], binary],
        "N2": [every, ["r1 or r2, not r1"], binary],
        "P3": [every, ["not r2"], binary],
        "N3": [every, ["not r2"], binary],
        "PA": [["admin", b"\x00\x01"], ["admin r1"]],
        "NA": [["admin", b"\x00\x01"], ["admin r1"]],
    }


# ------------------------------------------------------------------ mixed fleet


async def test_broadcasts_from_our_node_reach_node_clients(
    make_ours: Any, node_node: NodeNode, fleet: Fleet
) -> None:
    ours = await make_ours()
    await mixed_fleet(fleet, ours, node_node)
    io = ours.io
    io.emit("all", 1, "two", {"three": [3.5, None]})
    io.to("r1").emit("to r1")
    io.to("r1", "r2").except_("r1").emit("r1 or r2, not r1")
    io.except_("r2").emit("not r2")
    io.to(fleet.sid("P1")).to(fleet.sid("N1")).emit("socket id")
    io.to("nobody").emit("to an empty room")
    io.of("/admin").emit("admin", b"\x00\x01")
    io.of("/admin").to("r1").emit("admin r1")
    io.emit("binary", BLOB, {"nested": [b"abc", {"deep": b""}]}, "text")
    io.local.emit("local only")  # never published
    events = await fleet.settle(ours_fence(ours))
    expected = expected_broadcasts(fleet.sid("P1"), fleet.sid("N1"))
    for name in ("P1", "P2", "P3"):  # local sockets also get the local-only broadcast
        expected[name].append(["local only"])
    assert events == expected


async def test_broadcasts_from_node_reach_our_clients(
    make_ours: Any, node_node: NodeNode, fleet: Fleet
) -> None:
    ours = await make_ours()
    await mixed_fleet(fleet, ours, node_node)
    call = node_node.call
    await call("emit", event="all", args=[1, "two", {"three": [3.5, None]}])
    await call("emit", to=["r1"], event="to r1", args=[])
    await call("emit", to=["r1", "r2"], **{"except": ["r1"]}, event="r1 or r2, not r1", args=[])
    await call("emit", **{"except": ["r2"]}, event="not r2", args=[])
    await call("emit", to=[fleet.sid("P1"), fleet.sid("N1")], event="socket id", args=[])
    await call("emit", to=["nobody"], event="to an empty room", args=[])
    await call("emit", nsp="/admin", event="admin", args=tag([b"\x00\x01"]))
    await call("emit", nsp="/admin", to=["r1"], event="admin r1", args=[])
    await call("emit", event="binary", args=tag([BLOB, {"nested": [b"abc", {"deep": b""}]},
                                                 "text"]))
    events = await fleet.settle(node_fence(node_node))
    assert events == expected_broadcasts(fleet.sid("P1"), fleet.sid("N1"))


async def test_sockets_join_leave_disconnect_both_ways(
    make_ours: Any, node_node: NodeNode, fleet: Fleet
) -> None:
    ours = await make_ours()
    await mixed_fleet(fleet, ours, node_node)
    io = ours.io
    # From our node.
    io.sockets_join("j1")
    io.to("r2").sockets_join(["j2", "j3"])
    io.except_("r1").sockets_leave("r2")
    io.of("/admin").to("r1").sockets_join("adm")
    await fleet.settle(ours_fence(ours))
    rooms = {"P1": ["j1", "j2", "j3", "r1", "r2"], "P2": ["j1", "j2", "j3"], "P3": ["j1"]}
    assert {n: sorted(s.rooms - {s.id}) for n, s in _by_name(io.of("/")).items()} == rooms
    assert await node_node.call("rooms") == {
        "N1": ["j1", "j2", "j3", "r1", "r2"], "N2": ["j1", "j2", "j3"], "N3": ["j1"]}
    assert await node_node.call("rooms", nsp="/admin") == {"NA": ["adm", "r1"]}
    assert {n: sorted(s.rooms - {s.id}) for n, s in _by_name(io.of("/admin")).items()} == {
        "PA": ["adm", "r1"]}
    # From Node's node.
    await node_node.call("socketsLeave", to=["j1"], **{"except": ["j3"]}, rooms=["j1"])
    await node_node.call("socketsJoin", to=["r1"], rooms=["n1"])
    await fleet.settle(node_fence(node_node))
    assert {n: sorted(s.rooms - {s.id}) for n, s in _by_name(io.of("/")).items()} == {
        "P1": ["j1", "j2", "j3", "n1", "r1", "r2"], "P2": ["j1", "j2", "j3"], "P3": []}
    assert await node_node.call("rooms") == {
        "N1": ["j1", "j2", "j3", "n1", "r1", "r2"], "N2": ["j1", "j2", "j3"], "N3": []}
    # Disconnects: from Node's node (P2 and N2), then from ours (the admin namespace).
    await node_node.call("disconnectSockets", to=["j3"], **{"except": ["r1"]})
    io.of("/admin").disconnect_sockets()
    for name in ("P2", "N2", "PA", "NA"):
        try:
            await asyncio.wait_for(fleet.clients[name].disconnected.wait(), WAIT)
        except TimeoutError:
            raise AssertionError(f"{name} not disconnected") from None
    events = await fleet.settle(ours_fence(ours))
    assert set(events) == {"P1", "P3", "N1", "N3"}
    assert not any(c.disconnected.is_set() for n, c in fleet.clients.items() if n in events)


def _by_name(nsp: Any) -> dict[str, Any]:
    return {s.handshake.auth["name"]: s for s in nsp.sockets.values()}


async def test_server_side_emit_both_ways(make_ours: Any, node_node: NodeNode) -> None:
    ours = await make_ours()
    ours.io.server_side_emit("sse", 1, "x", {"k": [True, None]})
    ours.io.of("/admin").server_side_emit("sse", "admin")
    sse = await node_node.wait_sse(2)
    assert sorted((s["nsp"], json.dumps(s["args"])) for s in sse) == [
        ("/", json.dumps([1, "x", {"k": [True, None]}])), ("/admin", json.dumps(["admin"]))]
    await node_node.call("serverSideEmit", args=["sse", 2, {"a": "é"}])
    await node_node.call("serverSideEmit", nsp="/admin", args=["sse", "from node"])
    got = await ours.wait_sse(2)
    assert sorted(got) == [("/", [2, {"a": "é"}]), ("/admin", ["from node"])]
    # With acks: each side's handlers answer.
    assert await ours.io.server_side_emit_with_ack("sse", "q1") == ["node:q1"]
    assert await node_node.call("serverSideEmitWithAck", args=["sse", "q2"]) == ["python:q2"]
    with pytest.raises(ValueError, match="reserved"):
        ours.io.server_side_emit("connection", 1)


async def test_fetch_sockets_all_rooms_count_and_acks_across(
    make_ours: Any, node_node: NodeNode, fleet: Fleet
) -> None:
    ours = await make_ours()
    await mixed_fleet(fleet, ours, node_node)
    io = ours.io
    assert await io.server_count() == 2
    assert await node_node.call("serverCount") == 2
    found = await io.in_("r2").fetch_sockets()
    names = sorted((s.handshake.auth["name"], isinstance(s, RemoteSocket)) for s in found)
    assert names == [("N1", True), ("N2", True), ("P1", False), ("P2", False)]
    remote = next(s for s in found if s.handshake.auth["name"] == "N1")
    assert remote.handshake.url.startswith("/socket.io/") and remote.handshake.address
    assert remote.id == fleet.sid("N1") and remote.rooms == {remote.id, "r1", "r2"}
    remote.join("via-remote")
    remote.emit("to remote", b"\x07")
    await fleet.settle(ours_fence(ours))
    assert (await node_node.call("rooms"))["N1"] == ["r1", "r2", "via-remote"]
    node_found = await node_node.call("fetchSockets", to=["r1"])
    assert sorted((s["name"], s["local"]) for s in node_found) == [
        ("N1", True), ("P1", False)]
    assert sorted(s["rooms"] for s in node_found if s["name"] == "P1")[0] == sorted(
        [fleet.sid("P1"), "r1", "r2"])
    rooms = await io.sockets.adapter.all_rooms()
    assert {"r1", "r2", "via-remote", fleet.sid("N1"), fleet.sid("P1")} <= rooms
    assert set(await node_node.call("allRooms")) == rooms
    # Broadcasts with acks: answers of clients on both nodes.
    answers = await io.to("r1").timeout(5).emit_with_ack("ask")
    assert sorted(answers) == ["N1:ask", "P1:ask"]
    answers = await node_node.call("emitWithAck", to=["r2"], event="ask2", args=[], timeout=5000)
    assert sorted(answers) == ["N1:ask2", "N2:ask2", "P1:ask2", "P2:ask2"]


# ------------------------------------------------------------------ two of ours


async def test_two_of_our_nodes(make_ours: Any, fleet: Fleet) -> None:
    a = await make_ours()
    b = await make_ours()
    await fleet.add("A1", a.port, "/", ["r1"], "websocket")
    await fleet.add("A2", a.port, "/", [], "polling")
    await fleet.add("B1", b.port, "/", ["r1"], "polling")
    await fleet.add("B2", b.port, "/", [], "websocket")
    a.io.to("r1").emit("r1", b"\x01")
    b.io.except_("r1").emit("not r1")
    b.io.in_("r1").sockets_join("joined")
    b.io.to("joined").emit("via joined")
    a.io.server_side_emit("sse", "hello b")
    events = await fleet.settle(ours_fence(b))
    # b's own broadcasts reach b's sockets in program order, a's through Redis before b's
    # fence only if published before it: a's emits are checked separately below.
    assert events["B2"] == [["not r1"]] and events["A2"] == [["not r1"]]
    assert events["A1"][-1] == ["via joined"] and events["B1"][-1] == ["via joined"]
    assert ["r1", b"\x01"] in events["A1"] + fleet.clients["A1"].events
    assert await b.wait_sse(1) == [("/", ["hello b"])]
    assert await a.io.server_count() == 2
    assert await a.io.server_side_emit_with_ack("sse", "q") == ["python:q"]
    fetched = await a.io.fetch_sockets()
    assert len(fetched) == 4 and sum(isinstance(s, RemoteSocket) for s in fetched) == 2
    b.io.local.disconnect_sockets()  # only b's sockets
    for name in ("B1", "B2"):
        await asyncio.wait_for(fleet.clients[name].disconnected.wait(), WAIT)
    a.io.in_("r1").disconnect_sockets()
    await asyncio.wait_for(fleet.clients["A1"].disconnected.wait(), WAIT)
    assert not fleet.clients["A2"].disconnected.is_set()


async def test_emitters_reach_our_node(make_ours: Any, redis: Any, key: str, fleet: Fleet) -> None:
    require_redis_peers()
    ours = await make_ours()
    await fleet.add("P1", ours.port, "/", ["r1"], "websocket")
    await fleet.add("P2", ours.port, "/", [], "polling")
    await fleet.add("PA", ours.port, "/admin", [], "websocket")
    emitter = Emitter(redis, key=key)
    assert await emitter.to("r1").emit("py emitter", b"\x02") == 1
    await emitter.of("/admin").emit("py admin")
    await emitter.except_("r1").sockets_join("e1")
    await emitter.to("e1").emit("via e1")
    await emitter.server_side_emit("sse", "from py emitter")
    errors = await asyncio.to_thread(node_publish, key, [
        case(("to", "r1"), call=("emit", "node emitter", tag(b"\x03"))),
        case(("of", "/admin"), call=("emit", "node admin")),
        case(("to", "e1"), call=("socketsLeave", "e1")),
        case(call=("serverSideEmit", "sse", "from node emitter")),
    ])
    assert errors == [None] * 4
    events = await fleet.settle(ours_fence(ours))
    assert events["P1"] == [["py emitter", b"\x02"], ["node emitter", b"\x03"]]
    assert events["P2"] == [["via e1"]]
    assert events["PA"] == [["py admin"], ["node admin"]]
    assert sorted(ours.sse) == [("/", ["from node emitter"]), ("/", ["from py emitter"])]
    assert _by_name(ours.io.of("/"))["P2"].rooms == {fleet.sid("P2")}


# ------------------------------------------------------------------ golden bytes


async def _capture(redis: Any, pattern: str) -> Any:
    pubsub = redis.pubsub()
    await pubsub.psubscribe(pattern)
    message = await pubsub.get_message(timeout=WAIT)
    assert message is not None and message["type"] == "psubscribe"
    return pubsub


async def _take(pubsub: Any, count: int) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    async with asyncio.timeout(WAIT):
        while len(out) < count:
            message = await pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "pmessage":
                out.append((message["channel"], message["data"]))
    return out


DATE = dt.datetime(2021, 1, 1, 0, 0, 0, 123_000, tzinfo=dt.UTC)


def _without_uid(data: bytes, uid: str) -> bytes:
    return data.replace(uid.encode(), b"<uid!>")


async def test_published_bytes_equal_nodes(
    make_ours: Any, node_node: NodeNode, redis: Any, key: str
) -> None:
    ours = await make_ours()
    pubsub = await _capture(redis, key + "*")
    io = ours.io
    calls: list[tuple[dict[str, Any], Callable[[], None]]] = [
        ({"event": "hello", "args": ["world"]}, lambda: io.emit("hello", "world")),
        ({"to": ["room1"], "event": "hello", "args": ["world"]},
         lambda: io.to("room1").emit("hello", "world")),
        ({"to": ["a"], "except": ["b"], "event": "e", "args": tag([1, 2.5, {"k": None}, b"\x01"])},
         lambda: io.to("a").except_("b").emit("e", 1, 2.5, {"k": None}, b"\x01")),
        # Floats and dates take the exact encoder: 2.0 is packed as notepack packs 2.
        ({"event": "numbers", "args": tag([2.0, -1.0, 0.5, 2**40, -(2**33), "é😀", DATE])},
         lambda: io.emit("numbers", 2.0, -1.0, 0.5, 2**40, -(2**33), "é😀", DATE)),
        ({"event": "nested", "args": tag([{"a": [True, False, None, {"b": [b"\x00" * 300]}]}])},
         lambda: io.emit("nested", {"a": [True, False, None, {"b": [b"\x00" * 300]}]})),
        ({"nsp": "/admin", "volatile": True, "event": "v", "args": []},
         lambda: io.of("/admin").volatile.emit("v")),
        ({"op": "socketsJoin", "to": ["a"], "rooms": ["x"]}, lambda: io.to("a").sockets_join("x")),
        ({"op": "socketsLeave", "except": ["a"], "rooms": ["x"]},
         lambda: io.except_("a").sockets_leave("x")),
        ({"op": "disconnectSockets", "to": ["zz"], "close": True},
         lambda: io.to("zz").disconnect_sockets(True)),
        ({"op": "serverSideEmit", "args": ["sse", 1, "a"]},
         lambda: io.server_side_emit("sse", 1, "a")),
    ]
    node_uid = None
    our_uid = {name: io.of(name).adapter.uid for name in NAMESPACES}  # type: ignore[attr-defined]
    for spec, ours_call in calls:
        spec = dict(spec)
        op = spec.pop("op", "emit")
        await node_node.call(op, **spec)
        [(node_channel, node_data)] = await _take(pubsub, 1)
        ours_call()
        [(channel, data)] = await _take(pubsub, 1)
        nsp = spec.get("nsp", "/")
        node_uid = msgpack.unpackb(node_data)[0] if op == "emit" else json.loads(node_data)["uid"]
        assert channel == node_channel
        assert _without_uid(data, our_uid[nsp]) == _without_uid(node_data, node_uid), spec
    # Server-side events of Node's node reached ours (and ours did not echo to itself).
    await ours.wait_sse(1)
    await pubsub.aclose()


# ------------------------------------------------------------------ failure


def _free_port() -> int:
    with socket_module.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def private_redis(port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """A redis-server of our own on a free port, nothing saved."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        proc = await asyncio.create_subprocess_exec(
            binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
            "no", "--dir", tmp,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            client = redis_asyncio.Redis(port=port)
            async with asyncio.timeout(WAIT):
                while True:
                    try:
                        await client.ping()
                        break
                    except Exception:  # redis.ConnectionError until it listens
                        await asyncio.sleep(0.05)
            await client.aclose()
            yield proc
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_redis_away_and_back(
    make_ours: Any, fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    port = _free_port()
    client = redis_asyncio.Redis(port=port, socket_connect_timeout=1, socket_timeout=2)
    caplog.set_level(logging.WARNING, logger="socketio_core.redis_adapter")
    try:
        async with private_redis(port) as server:
            a = await make_ours(client)
            b = await make_ours(client)
            await fleet.add("A", a.port, "/", [], "websocket")
            await fleet.add("B", b.port, "/", [], "polling")
            a.io.emit("before")
            await fleet.settle(ours_fence(a))
            server.kill()
            await server.wait()
        # Redis is away: local delivery goes on; publishes fail and are counted.
        for i in range(50):
            a.io.emit("during", i)
        async with asyncio.timeout(WAIT):
            while len([e for e in fleet.clients["A"].events if e[0] == "during"]) < 50:
                fleet.clients["A"].changed.clear()
                await fleet.clients["A"].changed.wait()
        async with asyncio.timeout(WAIT):
            while a.adapter.stats.publish_errors < 50:
                await asyncio.sleep(0.05)
        with pytest.raises(RedisAdapterError):
            await a.io.server_count()
        failures = [r for r in caplog.records if "publish failed" in r.getMessage()]
        assert len(failures) == 1, [r.getMessage() for r in caplog.records]
        # Redis back on the same port: the subscribers come back and broadcasts flow again.
        async with private_redis(port):
            await a.adapter.ready(WAIT)
            await b.adapter.ready(WAIT)
            # The publisher retries after its backoff: emit until one gets through.
            b_client = fleet.clients["B"]
            async with asyncio.timeout(WAIT):
                while ["after"] not in b_client.events:
                    a.io.emit("after")
                    b_client.changed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(b_client.changed.wait(), 0.2)
            assert await a.io.server_count() == 2
            assert any("subscriber connected again" in r.getMessage() for r in caplog.records)
            for node in (a, b):
                await asyncio.wait_for(node.io.stop(), WAIT)
                await node.adapter.aclose()
    finally:
        await client.aclose()


def test_refuses_a_synchronous_client() -> None:
    import redis as redis_sync

    with pytest.raises(TypeError, match=r"redis\.asyncio"):
        create_adapter(redis_sync.Redis())


async def test_ready_raises_when_redis_is_unreachable() -> None:
    client = redis_asyncio.Redis(port=_free_port(), socket_connect_timeout=1)
    adapter = create_adapter(client, requests_timeout=0.5)
    io = Server(adapter=adapter)
    try:
        with pytest.raises(RedisAdapterError, match="not subscribed"):
            await adapter.ready()
        io.emit("still delivered locally")  # no socket, but no error either
        with pytest.raises(RedisAdapterError):
            await io.fetch_sockets()
    finally:
        await io.stop()
        await adapter.aclose()
        await client.aclose()



async def test_stopping_the_server_stops_the_adapter(redis: Any, key: str) -> None:
    """``Server.stop()`` ends the subscriber; the publisher sends what was queued, then ends."""
    adapter = create_adapter(redis, key=key)
    io = Server(adapter=adapter)
    await io.start("127.0.0.1", 0)
    await adapter.ready()
    pubsub = await _capture(redis, key + "*")
    io.emit("bye")
    await io.stop()
    assert [channel for channel, _ in await _take(pubsub, 1)] == [f"{key}#/#".encode()]
    async with asyncio.timeout(WAIT):
        while adapter._publisher is not None or adapter._subscriber is not None:
            await asyncio.sleep(0.05)
    assert adapter.stats.published == 1 and adapter.stats.publish_errors == 0
    await pubsub.aclose()
    await adapter.aclose()


async def test_requests_time_out_with_a_clear_error(
    make_ours: Any, node_node: NodeNode, redis: Any, key: str
) -> None:
    """A node that is counted but does not answer: the requester's wait is bounded."""
    ours = await make_ours(requests_timeout=1.0)
    # Node's node has no handler for "nobody": it never answers the server-side ack.
    with pytest.raises(AckTimeoutError, match="only 0 responses received out of 1") as info:
        await ours.io.server_side_emit_with_ack("nobody", 1)
    assert info.value.responses == []
    # A silent subscriber on the request channel counts as a server and answers nothing.
    silent = redis.pubsub()
    await silent.subscribe(f"{key}-request#/#")
    try:
        assert await ours.io.server_count() == 3
        with pytest.raises(RedisAdapterError, match="fetchSockets"):
            await ours.io.fetch_sockets()
        with pytest.raises(RedisAdapterError, match="allRooms"):
            await ours.io.sockets.adapter.all_rooms()
        with pytest.raises(AckTimeoutError, match="only 1 responses received out of 2") as info:
            await ours.io.server_side_emit_with_ack("sse", "partial")
        assert info.value.responses == ["node:partial"]
        # A broadcast with acks and no timeout of its own: bounded by requests_timeout too.
        with pytest.raises(AckTimeoutError):
            await ours.io.emit_with_ack("ask")
    finally:
        await silent.aclose()


async def test_json_broadcasts_and_malformed_messages(
    make_ours: Any, redis: Any, key: str, fleet: Fleet
) -> None:
    """Receivers pick the codec by the first byte; garbage is ignored, the node goes on."""
    ours = await make_ours()
    await fleet.add("P1", ours.port, "/", ["r1"], "websocket")
    await redis.publish(f"{key}#/#", b"\xc1garbage")
    await redis.publish(f"{key}-request#/#", b"{not json")
    await redis.publish(f"{key}-request#/#", b'{"type":99}')
    await redis.publish(f"{key}#/#r1#", json.dumps(
        ["other", {"type": 2, "data": ["json", {"a": 1}]}, {"rooms": ["r1"], "except": []}]))
    await redis.publish(f"{key}#/#", msgpack.packb(
        ["other", {"type": 2, "data": ["other nsp"], "nsp": "/admin"},
         {"rooms": [], "except": [], "flags": {}}]))
    # Reserved names never reach handlers as server-side events (a socket is expected).
    for name in ("connection", "new_namespace", "disconnect"):
        await redis.publish(f"{key}-request#/#", json.dumps(
            {"uid": "emitter", "type": 6, "data": [name, "not a socket"]}))
    await redis.publish(f"{key}-request#/#", json.dumps(
        {"uid": "emitter", "type": 6, "data": ["sse", "after"]}))
    events = await fleet.settle(ours_fence(ours))
    assert events["P1"] == [["json", {"a": 1}]]
    assert await ours.wait_sse(1) == [("/", ["after"])]
    assert len(ours.io.sockets.sockets) == 1  # the connection handler was not called again


async def test_a_client_that_decodes_responses(make_ours: Any, key: str, fleet: Fleet) -> None:
    """``decode_responses=True`` clients work: the subscriber reads bytes on its own pool."""
    client = redis_asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
    a = await make_ours(client)
    b = await make_ours(client)
    try:
        await fleet.add("B", b.port, "/", [], "websocket")
        a.io.emit("bytes", b"\xff\x00", "é")
        events = await fleet.settle(ours_fence(a))
        assert events["B"] == [["bytes", b"\xff\x00", "é"]]
        assert await a.io.server_count() == 2
    finally:
        for node in (a, b):
            await node.io.stop()
            await node.adapter.aclose()
        await client.aclose()


async def test_responses_on_the_specific_channel(
    redis: Any, key: str, fleet: Fleet
) -> None:
    """``publish_on_specific_response_channel``: answers go to the requester's own channel."""
    factories = [create_adapter(redis, key=key, publish_on_specific_response_channel=True)
                 for _ in range(2)]
    servers = [Server(adapter=f) for f in factories]
    try:
        for io, factory in zip(servers, factories, strict=True):
            await io.start("127.0.0.1", 0)
            await factory.ready()
        await fleet.add("B", servers[1].port, "/", ["r"], "websocket")
        pubsub = await _capture(redis, f"{key}-response#*")
        fetched = await servers[0].fetch_sockets()
        assert [s.id for s in fetched] == [fleet.sid("B")]
        [(channel, _)] = await _take(pubsub, 1)
        uid = servers[0].sockets.adapter.uid  # type: ignore[attr-defined]
        assert channel == f"{key}-response#/#{uid}#".encode()
        await pubsub.aclose()
    finally:
        for io, factory in zip(servers, factories, strict=True):
            await io.stop()
            await factory.aclose()


async def test_dates_arrive_as_from_a_node_server(
    make_ours: Any, node_node: NodeNode, fleet: Fleet
) -> None:
    """A JavaScript Date (msgpack timestamp) reaches JSON clients as JSON.stringify wrote it."""
    ours = await make_ours()
    await fleet.add("P1", ours.port, "/", [], "websocket")
    await fleet.add("N1", node_node.port, "/", [], "polling")
    ms = 961_027_200_123  # 2000-06-15T00:00:00.123Z
    await node_node.call("emit", event="date", args=[{"$date": ms}, {"in": [{"$date": 0}]}])
    events = await fleet.settle(node_fence(node_node))
    expected = [["date", "2000-06-15T00:00:00.123Z", {"in": ["1970-01-01T00:00:00.000Z"]}]]
    assert events == {"P1": expected, "N1": expected}


async def test_a_hung_redis_holds_nothing_unbounded(
    make_ours: Any, fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis stopped (SIGSTOP): local delivery goes on, the publish queue stays bounded."""
    import signal

    from socketio_core import redis_adapter

    monkeypatch.setattr(redis_adapter, "MAX_PUBLISH_QUEUE", 5_000)  # a quicker test

    port = _free_port()
    client = redis_asyncio.Redis(port=port, socket_connect_timeout=1, socket_timeout=1)
    try:
        async with private_redis(port) as server:
            a = await make_ours(client)
            await fleet.add("A", a.port, "/", [], "websocket")
            server.send_signal(signal.SIGSTOP)
            try:
                total = redis_adapter.MAX_PUBLISH_QUEUE + 500
                for i in range(total):
                    a.io.to("nobody").emit("lost", i)
                a.io.emit("local still works")
                events = await fleet.settle(ours_fence(a))
                assert events["A"] == [["local still works"]]
                stats = a.adapter.stats
                assert len(a.adapter._queue) <= redis_adapter.MAX_PUBLISH_QUEUE
                assert stats.dropped >= 500
            finally:
                server.send_signal(signal.SIGCONT)
            # Back: broadcasts flow again through Redis.
            async with asyncio.timeout(WAIT):
                while a.adapter.stats.published == 0 or a.adapter._outage:
                    a.io.to("nobody").emit("probe")
                    await asyncio.sleep(0.1)
            await asyncio.wait_for(a.io.stop(), WAIT)
            await a.adapter.aclose()
    finally:
        await client.aclose()


async def test_socketio_client_fleet_acts_on_our_node(make_ours: Any, redis: Any, key: str) -> None:
    """Real socket.io-client 4.8.4 clients on a Node node (``redis_emitter_fleet.mjs``): what
    our node does reaches them."""
    from .test_redis_emitter import Fleet as NodeFleet
    from .test_redis_emitter import _fleet_process

    require_redis_peers()
    ours = await make_ours()
    io = ours.io
    with _fleet_process(key) as proc:
        fleet = NodeFleet(proc, Emitter(redis, key=key))
        await fleet.start()
        sent = ours.adapter.stats.published
        io.to("r1").emit("to r1", b"\x01", {"k": [b"\x02"]})
        io.except_("r2").emit("not r2")
        io.of("/admin").emit("admin")
        io.to("r2").sockets_join("j")
        io.to("j").emit("via j")
        io.server_side_emit("report")
        io.server_side_emit("sse", 1, {"a": None})
        # The fleet's fences come from another connection: ours must be in Redis first.
        async with asyncio.timeout(WAIT):
            while ours.adapter.stats.published < sent + 7:
                await asyncio.sleep(0.02)
        events = await fleet.settle()
        assert events == {"A": [["to r1", b"\x01", {"k": [b"\x02"]}], ["via j"]],
                          "B": [["via j"]], "C": [["not r2"]], "D": [["admin"]]}
        assert fleet.lines == [
            {"kind": "rooms", "nsp": "/", "rooms": {"A": ["j", "r1", "r2"], "B": ["j", "r2"],
                                                    "C": []}},
            {"kind": "sse", "nsp": "/", "args": [1, {"a": None}]},
        ]
        io.to("r2").except_("r1").disconnect_sockets(close=True)
        item = await fleet.wait_for(lambda line: line["kind"] == "disconnect")
        assert item == {"kind": "disconnect", "client": "B", "reason": "io server disconnect"}
        item = await fleet.wait_for(lambda line: line["kind"] == "conn-close")
        assert item == {"kind": "conn-close", "client": "B", "reason": "forced close"}


async def test_dynamic_namespaces_across_nodes(make_ours: Any, fleet: Fleet) -> None:
    """Children of a dynamic namespace have their own channels; stop() releases them all."""
    import re

    a = await make_ours()
    b = await make_ours()
    for node in (a, b):
        parent = node.io.of(re.compile(r"^/dyn-\d+$"))
        parent.on("connection", lambda socket: socket.join("d"))
    await fleet.add("B", b.port, "/dyn-1", [], "websocket")
    child = a.io.of("/dyn-1")  # created on a by name: the same channels as b's child
    # A namespace created at run time subscribes in the background (as in Node).
    await a.adapter.ready()
    await b.adapter.ready()
    child.to("d").emit("dyn", 1)
    child.emit("fence", 1)
    assert await fleet.clients["B"].until_fence(1) == [["dyn", 1]]
    for node in (a, b):
        await asyncio.wait_for(node.io.stop(), WAIT)
        assert node.adapter._channels == {} and node.adapter._patterns == {}


async def test_many_broadcasts_arrive_once_and_in_order(make_ours: Any, fleet: Fleet) -> None:
    """A burst from one node reaches the other's clients complete and in order (one
    publisher, one connection, pipelined)."""
    a = await make_ours()
    b = await make_ours()
    await fleet.add("B1", b.port, "/", ["r"], "websocket")
    # WebSocket: python-engineio's client refuses a polling payload of more than 16 packets,
    # and a burst is sent in one payload (by Node's servers too).
    await fleet.add("B2", b.port, "/", [], "websocket")
    for i in range(1000):
        a.io.to("r").emit("n", i) if i % 2 else a.io.emit("n", i, b"\x01" * (i % 7))
    events = await fleet.settle(ours_fence(a))
    assert [e[1] for e in events["B1"]] == list(range(1000))
    assert [e[1] for e in events["B2"]] == list(range(0, 1000, 2))
    assert all(e[2] == b"\x01" * (e[1] % 7) for e in events["B2"])
    assert a.adapter.stats.publish_errors == 0 and a.adapter.stats.dropped == 0


def test_a_server_made_before_the_loop_runs(key: str) -> None:
    """``Server(adapter=create_adapter(...))`` at import time: ``start()`` subscribes, so a
    node without clients still gets server-side events."""
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    factory = create_adapter(client, key=key)
    io = Server(adapter=factory)
    got: list[Any] = []
    io.on("sse", got.append)

    async def scenario() -> None:
        try:
            await client.ping()
        except OSError:
            pytest.skip("no Redis on 127.0.0.1:6379")
        await io.start("127.0.0.1", 0)
        try:
            async with asyncio.timeout(WAIT):  # subscribed without ready()
                while await io.server_count() != 1:
                    await asyncio.sleep(0.02)
            await Emitter(client, key=key).server_side_emit("sse", "hello")
            async with asyncio.timeout(WAIT):
                while not got:
                    await asyncio.sleep(0.02)
            assert got == ["hello"]
        finally:
            await io.stop()
            await factory.aclose()
            await client.aclose()

    asyncio.run(scenario())
