"""The sharded Redis adapter beside Node socket.io 4.8.4 + ``createShardedAdapter`` (8.3.0).

Every subscription mode (static, dynamic, dynamic-private):

* broadcasts from our node reach a Node node's clients and back, and between two of ours;
* in the dynamic modes a node reads only the room broadcasts it has members for (counted
  with ``factory.stats.received``), and a room's channel goes when its last member leaves;
* requests both ways: sockets_join/leave/disconnect, server-side events with and without
  acks, fetch_sockets, server_count, broadcasts with acks;
* our messages are Node's, byte for byte apart from the node ids.

Needs Redis 7 on 127.0.0.1:6379 (shared: a unique channel prefix per test, no key created)
and ``npm ci`` in ``tests/interop``. Every wait is bounded; nothing is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from socketio_core import Server
from socketio_core.redis_adapter import RemoteSocket, create_sharded_adapter

from ..interop_support import INTEROP_DIR
from .test_redis_adapter import (
    BLOB,
    NAMESPACES,
    REDIS_URL,
    WAIT,
    Fleet,
    NodeNode,
    OurNode,
    _by_name,
    _free_port,
    fleet,
    key,
    mixed_fleet,
    node_fence,
    ours_fence,
    private_redis,
    redis,
    redis_asyncio,
)
from .test_redis_emitter import require_redis_peers, tag

pytestmark = pytest.mark.timeout(120)

MODES = ["static", "dynamic", "dynamic-private"]

__all__ = ["fleet", "key", "redis"]  # fixtures, imported for pytest


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_node(key: str) -> AsyncIterator[Callable[[str], Awaitable[NodeNode]]]:
    nodes: list[NodeNode] = []

    async def start(mode: str) -> NodeNode:
        require_redis_peers()
        proc = await asyncio.create_subprocess_exec(
            "node", str(INTEROP_DIR / "redis_adapter_node.mjs"), REDIS_URL, key,
            ",".join(NAMESPACES), f"sharded:{mode}",
            cwd=INTEROP_DIR, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        node = NodeNode(proc)
        nodes.append(node)
        await node.start()
        return node

    yield start
    for node in nodes:
        await node.close()


@pytest.fixture
async def make_ours(redis: Any, key: str) -> AsyncIterator[Callable[..., Awaitable[OurNode]]]:
    nodes: list[OurNode] = []

    async def factory(mode: str, client: Any = None, **options: Any) -> OurNode:
        adapter = create_sharded_adapter(client or redis, channel_prefix=key,
                                         subscription_mode=mode,
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


async def shard_numsub(redis: Any, channel: str) -> int:
    reply = await redis.execute_command("PUBSUB", "SHARDNUMSUB", channel)
    return int(reply[1])


async def wait_subscribers(redis: Any, wanted: dict[str, int]) -> None:
    """Until each channel has exactly that many shard subscribers (bounded)."""
    got: dict[str, int] = {}
    try:
        async with asyncio.timeout(WAIT):
            while True:
                got = {ch: await shard_numsub(redis, ch) for ch in wanted}
                if got == wanted:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"shard subscribers {got}, wanted {wanted}") from None


def room_channels(key: str, mode: str, fleet: Fleet, both: int = 2) -> dict[str, int]:
    """The room channels of ``mixed_fleet`` and how many nodes listen on each in ``mode``."""
    public = {f"{key}#/#r1#": both, f"{key}#/#r2#": both, f"{key}#/admin#r1#": both}
    if mode == "static":
        return dict.fromkeys(public, 0) | {f"{key}#/#{fleet.sid('P1')}#": 0}
    private = {f"{key}#{c.nsp}#{c.sid}#": (1 if mode == "dynamic-private" else 0)
               for c in fleet.clients.values()}
    return public | private


def expected(extra: bool = True) -> dict[str, list[list[Any]]]:
    every = ["all", 1, "two", {"three": [3.5, None]}]
    binary = ["binary", BLOB, {"nested": [b"abc", {"deep": b""}]}, "text"]
    return {
        "P1": [every, ["to r1"], ["socket id"], ["only P1"], binary],
        "N1": [every, ["to r1"], ["socket id"], ["only N1", b"\x02"], binary],
        "P2": [every, ["r1 or r2, not r1"], binary],
        "N2": [every, ["r1 or r2, not r1"], binary],
        "P3": [every, ["not r2"], binary],
        "N3": [every, ["not r2"], binary],
        "PA": [["admin", b"\x00\x01"], ["admin r1"]],
        "NA": [["admin", b"\x00\x01"], ["admin r1"]],
    }


# ------------------------------------------------------------------ broadcasts


async def test_broadcasts_from_our_node_reach_node_clients(
    mode: str, make_ours: Any, make_node: Any, fleet: Fleet, redis: Any, key: str
) -> None:
    ours = await make_ours(mode)
    node = await make_node(mode)
    await mixed_fleet(fleet, ours, node)
    await wait_subscribers(redis, room_channels(key, mode, fleet))
    io = ours.io
    io.emit("all", 1, "two", {"three": [3.5, None]})
    io.to("r1").emit("to r1")
    io.to("r1", "r2").except_("r1").emit("r1 or r2, not r1")
    io.except_("r2").emit("not r2")
    io.to(fleet.sid("P1")).to(fleet.sid("N1")).emit("socket id")
    io.to(fleet.sid("P1")).emit("only P1")
    io.to(fleet.sid("N1")).emit("only N1", b"\x02")
    io.to("nobody").emit("to an empty room")
    io.of("/admin").emit("admin", b"\x00\x01")
    io.of("/admin").to("r1").emit("admin r1")
    io.emit("binary", BLOB, {"nested": [b"abc", {"deep": b""}]}, "text")
    events = await fleet.settle(ours_fence(ours))
    assert events == expected()


async def test_broadcasts_from_node_reach_our_clients(
    mode: str, make_ours: Any, make_node: Any, fleet: Fleet, redis: Any, key: str
) -> None:
    ours = await make_ours(mode)
    node = await make_node(mode)
    await mixed_fleet(fleet, ours, node)
    await wait_subscribers(redis, room_channels(key, mode, fleet))
    await ours.adapter.ready()
    call = node.call
    await call("emit", event="all", args=[1, "two", {"three": [3.5, None]}])
    await call("emit", to=["r1"], event="to r1", args=[])
    await call("emit", to=["r1", "r2"], **{"except": ["r1"]}, event="r1 or r2, not r1", args=[])
    await call("emit", **{"except": ["r2"]}, event="not r2", args=[])
    await call("emit", to=[fleet.sid("P1"), fleet.sid("N1")], event="socket id", args=[])
    await call("emit", to=[fleet.sid("P1")], event="only P1", args=[])
    await call("emit", to=[fleet.sid("N1")], event="only N1", args=tag([b"\x02"]))
    await call("emit", to=["nobody"], event="to an empty room", args=[])
    await call("emit", nsp="/admin", event="admin", args=tag([b"\x00\x01"]))
    await call("emit", nsp="/admin", to=["r1"], event="admin r1", args=[])
    await call("emit", event="binary", args=tag([BLOB, {"nested": [b"abc", {"deep": b""}]},
                                                 "text"]))
    events = await fleet.settle(node_fence(node))
    assert events == expected()


async def test_two_of_our_nodes(mode: str, make_ours: Any, fleet: Fleet, redis: Any,
                                key: str) -> None:
    a = await make_ours(mode)
    b = await make_ours(mode)
    await fleet.add("A1", a.port, "/", ["r1"], "websocket")
    await fleet.add("A2", a.port, "/", [], "polling")
    await fleet.add("B1", b.port, "/", ["r1"], "polling")
    await fleet.add("B2", b.port, "/", [], "websocket")
    await a.adapter.ready()
    await b.adapter.ready()
    a.io.to("r1").emit("r1", b"\x01")
    a.io.to(fleet.sid("B2")).emit("only B2")
    a.io.except_("r1").emit("not r1")
    events = await fleet.settle(ours_fence(a))
    assert events == {"A1": [["r1", b"\x01"]], "B1": [["r1", b"\x01"]], "A2": [["not r1"]],
                      "B2": [["only B2"], ["not r1"]]}


# ------------------------------------------------------------------ what a node reads


async def test_a_node_reads_only_the_rooms_it_has_members_in(
    mode: str, make_ours: Any, make_node: Any, fleet: Fleet, redis: Any, key: str
) -> None:
    """Room broadcasts of a room without local members never reach the node's subscriber
    in the dynamic modes (static: every broadcast does)."""
    ours = await make_ours(mode)
    node = await make_node(mode)
    await fleet.add("P", ours.port, "/", ["mine", "both"], "websocket")
    await fleet.add("N", node.port, "/", ["theirs", "both"], "websocket")
    dynamic = mode != "static"
    await wait_subscribers(redis, {f"{key}#/#mine#": int(dynamic),
                                   f"{key}#/#theirs#": int(dynamic),
                                   f"{key}#/#both#": 2 * int(dynamic)})
    await ours.adapter.ready()
    stats = ours.adapter.stats

    def fence(sender: Any) -> Callable[[str, int], Awaitable[None]]:
        # Fences on "/" only: one more message read, and none still in flight after it.
        emit = node_fence(sender) if isinstance(sender, NodeNode) else ours_fence(sender)

        async def only_root(nsp: str, number: int) -> None:
            if nsp == "/":
                await emit(nsp, number)

        return only_root

    await fleet.settle(fence(node))  # everything before is read
    before = stats.received
    for i in range(20):
        await node.call("emit", to=["theirs"], event="theirs", args=[i])
    await node.call("emit", to=["both"], event="both", args=[])
    await node.call("emit", to=[fleet.sid("N")], event="N's id", args=[])
    events = await fleet.settle(fence(node))
    assert events == {"P": [["both"]],
                      "N": [["theirs", i] for i in range(20)] + [["both"], ["N's id"]]}
    # Read by our subscriber, besides "both" and the fence: in static mode everything; in
    # dynamic the socket-id broadcast too (on the common channel); in dynamic-private none.
    read = stats.received - before
    assert read == {"static": 20 + 1 + 1 + 1, "dynamic": 1 + 1 + 1, "dynamic-private": 1 + 1}[
        mode]
    # A room's channel goes once its last local member leaves.
    ours.io.in_("mine").sockets_leave("mine")
    await wait_subscribers(redis, {f"{key}#/#mine#": 0, f"{key}#/#both#": 2 * int(dynamic)})
    await node.call("socketsLeave", to=["both"], rooms=["both"])
    await wait_subscribers(redis, {f"{key}#/#both#": 0, f"{key}#/#theirs#": int(dynamic)})
    await fleet.settle(fence(ours))
    await fleet.settle(fence(node))
    before = stats.received
    await node.call("emit", to=["both"], event="nobody", args=[])
    events = await fleet.settle(fence(node))
    assert events == {"P": [], "N": []}
    assert stats.received - before == (1 + 1 if mode == "static" else 1)


# ------------------------------------------------------------------ requests


async def test_requests_both_ways(
    mode: str, make_ours: Any, make_node: Any, fleet: Fleet, redis: Any, key: str
) -> None:
    ours = await make_ours(mode)
    node = await make_node(mode)
    await mixed_fleet(fleet, ours, node)
    await wait_subscribers(redis, room_channels(key, mode, fleet))
    io = ours.io
    assert await io.server_count() == 2
    assert await node.call("serverCount") == 2
    # Server-side events.
    io.server_side_emit("sse", 1, "x", {"k": [True, None]})
    io.of("/admin").server_side_emit("sse", b"\x05")
    sse = await node.wait_sse(2)
    assert sorted((s["nsp"], json.dumps(s["args"])) for s in sse) == [
        ("/", json.dumps([1, "x", {"k": [True, None]}])),
        ("/admin", json.dumps(tag([b"\x05"])))]
    await node.call("serverSideEmit", args=["sse", 2, {"a": "é"}])
    await node.call("serverSideEmit", nsp="/admin", args=tag(["sse", b"\x06"]))
    assert sorted(await ours.wait_sse(2)) == [("/", [2, {"a": "é"}]), ("/admin", [b"\x06"])]
    assert await io.server_side_emit_with_ack("sse", "q1") == ["node:q1"]
    assert await node.call("serverSideEmitWithAck", args=["sse", "q2"]) == ["python:q2"]
    # Joins, leaves: from ours, then from Node's.
    io.sockets_join("j1")
    io.to("r2").sockets_join(["j2", "j3"])
    io.except_("r1").sockets_leave("r2")
    await fleet.settle(ours_fence(ours))
    assert await node.call("rooms") == {
        "N1": ["j1", "j2", "j3", "r1", "r2"], "N2": ["j1", "j2", "j3"], "N3": ["j1"]}
    await node.call("socketsLeave", to=["j1"], **{"except": ["j3"]}, rooms=["j1"])
    await node.call("socketsJoin", to=["r1"], rooms=["n1"])
    await fleet.settle(node_fence(node))
    assert {n: sorted(s.rooms - {s.id}) for n, s in _by_name(io.of("/")).items()} == {
        "P1": ["j1", "j2", "j3", "n1", "r1", "r2"], "P2": ["j1", "j2", "j3"], "P3": []}
    # A room joined through the cluster gets its channel on both nodes (dynamic modes).
    await wait_subscribers(redis, {f"{key}#/#n1#": 0 if mode == "static" else 2})
    await ours.adapter.ready()
    io.to("n1").emit("to n1")
    await node.call("emit", to=["n1"], event="n1 from node", args=[])
    events = await fleet.settle(node_fence(node))
    # Each node's own broadcast reaches its local socket first: the order may differ.
    assert sorted(events["P1"]) == sorted(events["N1"]) == [["n1 from node"], ["to n1"]]
    # fetch_sockets both ways, and a remote socket acting through the cluster.
    found = await io.in_("r2").fetch_sockets()
    assert sorted((s.handshake.auth["name"], isinstance(s, RemoteSocket)) for s in found) == [
        ("N1", True), ("P1", False)]
    remote = next(s for s in found if isinstance(s, RemoteSocket))
    assert remote.id == fleet.sid("N1") and "r1" in remote.rooms
    remote.join("via-remote")
    remote.emit("to remote", b"\x07")
    events = await fleet.settle(ours_fence(ours))
    assert events["N1"] == [["to remote", b"\x07"]]
    assert "via-remote" in (await node.call("rooms"))["N1"]
    node_found = await node.call("fetchSockets", to=["r1"])
    assert sorted((s["name"], s["local"]) for s in node_found) == [("N1", True), ("P1", False)]
    # Broadcasts with acks, both ways.
    assert sorted(await io.to("r1").timeout(5).emit_with_ack("ask")) == ["N1:ask", "P1:ask"]
    answers = await node.call("emitWithAck", to=["j3"], event="ask2", args=[], timeout=5000)
    assert sorted(answers) == ["N1:ask2", "N2:ask2", "P1:ask2", "P2:ask2"]
    # Disconnects: from Node's node, then from ours.
    await node.call("disconnectSockets", to=["j3"], **{"except": ["r1"]})
    io.of("/admin").disconnect_sockets()
    for name in ("P2", "N2", "PA", "NA"):
        try:
            await asyncio.wait_for(fleet.clients[name].disconnected.wait(), WAIT)
        except TimeoutError:
            raise AssertionError(f"{name} not disconnected") from None
    assert not fleet.clients["P1"].disconnected.is_set()
    assert not fleet.clients["N3"].disconnected.is_set()


# ------------------------------------------------------------------ wire format


async def test_our_messages_are_nodes(
    make_ours: Any, make_node: Any, fleet: Fleet, redis: Any, key: str
) -> None:
    """The same operations on both nodes publish the same bytes, node ids aside."""
    ours = await make_ours("dynamic")
    node = await make_node("dynamic")
    await fleet.add("P", ours.port, "/", ["room"], "websocket")
    await fleet.add("N", node.port, "/", ["room"], "websocket")
    await wait_subscribers(redis, {f"{key}#/#room#": 2})
    observer = redis.pubsub()
    channels = [f"{key}#/#", f"{key}#/#room#"]
    try:
        for channel in channels:
            await observer.ssubscribe(channel)
        for _ in channels:
            await asyncio.wait_for(observer.get_message(timeout=WAIT), WAIT)

        async def collect(count: int) -> list[tuple[bytes, bytes]]:
            out = []
            async with asyncio.timeout(WAIT):
                while len(out) < count:
                    message = await observer.get_message(timeout=1.0)
                    if message and message["type"] == "smessage":
                        out.append((message["channel"], message["data"]))
            return out

        async def from_ours() -> None:
            ours.io.to("room").emit("e", 1, 2.5, "é", {"k": None}, [True])
            ours.io.emit("bin", b"\x00\xff", {"n": [1.0, -3]})
            ours.io.to("room").except_("x").volatile.emit("v")
            ours.io.in_("room").sockets_join("j")
            ours.io.server_side_emit("sse", {"a": 1})

        async def from_node() -> None:
            await node.call("emit", to=["room"], event="e",
                            args=[1, 2.5, "é", {"k": None}, [True]])
            await node.call("emit", event="bin", args=tag([b"\x00\xff", {"n": [1.0, -3]}]))
            await node.call("emit", to=["room"], **{"except": ["x"]}, volatile=True,
                            event="v", args=[])
            await node.call("socketsJoin", to=["room"], rooms=["j"])
            await node.call("serverSideEmit", args=["sse", {"a": 1}])

        await from_ours()
        mine = await collect(5)
        await from_node()
        theirs = await collect(5)
    finally:
        with contextlib.suppress(Exception):
            await observer.aclose()

    def anonymous(items: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        uid = re.compile(rb'"uid":"[0-9a-f]{16}"|\xa3uid\xb0[0-9a-f]{16}')
        return [(ch, uid.sub(b"UID", data)) for ch, data in items]

    assert anonymous(mine) == anonymous(theirs)
    assert mine[0][0] == f"{key}#/#room#".encode()  # a one-room broadcast: its own channel
    assert mine[1][1][:1] != b"{"  # binary: msgpack


async def test_refuses_an_unknown_mode(redis: Any) -> None:
    with pytest.raises(ValueError, match="subscription_mode"):
        create_sharded_adapter(redis, subscription_mode="sometimes")


async def test_ready_waits_for_room_channels(
    mode: str, make_ours: Any, fleet: Fleet, redis: Any, key: str
) -> None:
    ours = await make_ours(mode)
    await fleet.add("P", ours.port, "/", ["x"], "websocket")
    await ours.adapter.ready()
    dynamic = int(mode != "static")
    assert await shard_numsub(redis, f"{key}#/#x#") == dynamic
    ours.io.in_("x").sockets_join("y")  # while subscribed to everything else
    await ours.adapter.ready()
    assert await shard_numsub(redis, f"{key}#/#y#") == dynamic
    assert await shard_numsub(redis, f"{key}#/#{fleet.sid('P')}#") == int(
        mode == "dynamic-private")
    ours.io.in_("x").sockets_leave("x")
    await wait_subscribers(redis, {f"{key}#/#x#": 0})


async def test_redis_away_and_back(make_ours: Any, fleet: Fleet, key: str) -> None:
    """The subscriber subscribes again to every channel, room channels included."""
    port = _free_port()
    client = redis_asyncio.Redis(port=port, socket_connect_timeout=1, socket_timeout=2)
    try:
        async with private_redis(port) as server:
            a = await make_ours("dynamic", client)
            b = await make_ours("dynamic", client)
            await fleet.add("A", a.port, "/", ["r"], "websocket")
            await fleet.add("B", b.port, "/", ["r"], "polling")
            await a.adapter.ready()
            await b.adapter.ready()
            a.io.to("r").emit("before")
            events = await fleet.settle(ours_fence(a))
            assert events == {"A": [["before"]], "B": [["before"]]}
            server.kill()
            await server.wait()
        for i in range(20):
            a.io.to("r").emit("during", i)  # local sockets still get them
        async with asyncio.timeout(WAIT):
            while a.adapter.stats.publish_errors < 20:
                await asyncio.sleep(0.05)
        async with private_redis(port):
            await a.adapter.ready(WAIT)
            await b.adapter.ready(WAIT)
            # redis-py may subscribe again by itself before the adapter sees the outage.
            await wait_subscribers(client, {f"{key}#/#r#": 2})
            b_client = fleet.clients["B"]
            async with asyncio.timeout(WAIT):
                while ["after"] not in b_client.events:
                    a.io.to("r").emit("after")  # until the publisher's backoff ends
                    b_client.changed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(b_client.changed.wait(), 0.2)
            for node in (a, b):
                await asyncio.wait_for(node.io.stop(), WAIT)
                await node.adapter.aclose()
    finally:
        await client.aclose()


async def test_encoding_fast_path_writes_what_the_exact_encoder_writes(redis: Any) -> None:
    import datetime as dt
    import enum

    from socketio_core.redis_emitter import _to_json

    class Color(enum.StrEnum):
        RED = "red"

    factory = create_sharded_adapter(redis, channel_prefix="unused")
    io = Server(adapter=factory)
    adapter: Any = io.of("/").adapter
    try:
        values = [
            ["e", 1, -2, 2**63, "é😀\u2028\x00\x1f\"\\/", {"k": [True, None, {}]}, []],
            ["floats", 1.0, 2.5, -0.0, 1e21, 1e-7, float("nan")],
            ["dates", dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)],
            ["lone \ud800", {"\udc00": 1}],
            ["keys", {1: "int key"}],
            ["big", 2**64],
            ["marker bytes in text", "\u02c0 \u0104 \u0144"],  # UTF-8 cb 80, c4 84, c5 84
            ["subclass", Color.RED],
        ]
        for args in values:
            message = {"type": 3, "data": {"packet": {"type": 2, "data": args}},
                       "uid": adapter.uid, "nsp": "/"}
            encoded = adapter._encode(message)
            text = encoded.decode() if isinstance(encoded, bytes) else encoded
            assert text == _to_json(message), args
        binary = {"type": 3, "data": {"packet": {"type": 2, "data": ["b", {"x": b"\x01"}]}},
                  "uid": adapter.uid, "nsp": "/"}
        assert adapter._encode(binary) == factory.encode(binary)
        not_binary_type = {"type": 4, "data": {"rooms": ["a"], "opts": {}},
                           "uid": adapter.uid, "nsp": "/"}
        assert adapter._encode(not_binary_type) == _to_json(not_binary_type).encode()
    finally:
        io.of("/").adapter.close()
        await factory.aclose()


def test_refuses_a_synchronous_client() -> None:
    import redis as redis_sync

    with pytest.raises(TypeError, match=r"create_sharded_adapter needs a redis\.asyncio client"):
        create_sharded_adapter(redis_sync.Redis())


async def test_dynamic_namespaces_and_stop(make_ours: Any, fleet: Fleet, redis: Any,
                                           key: str) -> None:
    """Children of a dynamic namespace have their own channels; stop() releases them all."""
    a = await make_ours("dynamic")
    b = await make_ours("dynamic")
    for node in (a, b):
        parent = node.io.of(re.compile(r"^/dyn-\d+$"))
        parent.on("connection", lambda socket: socket.join("d"))
    await fleet.add("B", b.port, "/dyn-1", [], "websocket")
    child = a.io.of("/dyn-1")  # created on a by name: the same channels as b's child
    await a.adapter.ready()
    await b.adapter.ready()
    await wait_subscribers(redis, {f"{key}#/dyn-1#": 2, f"{key}#/dyn-1#d#": 1})
    child.to("d").emit("dyn", 1)
    child.emit("fence", 1)
    assert await fleet.clients["B"].until_fence(1) == [["dyn", 1]]
    for node in (a, b):
        await asyncio.wait_for(node.io.stop(), WAIT)
        assert node.adapter._channels == {}
    await wait_subscribers(redis, {f"{key}#/dyn-1#": 0, f"{key}#/dyn-1#d#": 0,
                                   f"{key}#/#": 0})
