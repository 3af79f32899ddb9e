"""Small in-process checks of the Python API (names, errors, room events, no-op cases)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engineio_core import EngineServer
from socketio_core import AckTimeoutError, DisconnectedError, Namespace, Server, Socket

from .conftest import WAIT, RawClient, Recorder

pytestmark = pytest.mark.timeout(30)


async def connected_socket(io: Server, raw_client: Any, nsp: str = "/") -> tuple[RawClient,
                                                                               Socket]:
    raw = await raw_client(io.port)
    sid = (await raw.connect(nsp))["sid"]
    return raw, io.of(nsp).sockets[sid]


# ---------------------------------------------------------------------- namespaces


def test_of_normalizes_names() -> None:
    io = Server()
    chat = io.of("chat")
    assert isinstance(chat, Namespace)
    assert chat.name == "/chat"
    assert io.of("/chat") is chat
    assert io.of("/") is io.sockets
    assert io.of("") is io.sockets


def test_new_namespace_fires_for_static_namespaces() -> None:
    io = Server()
    created: list[str] = []
    io.on("new_namespace", lambda nsp: created.append(nsp.name))
    io.of("/a")
    io.of("a")  # the same one: no second event
    io.of("/b")
    assert created == ["/a", "/b"]


# ---------------------------------------------------------------------- construction


def test_engine_and_engine_options_are_exclusive() -> None:
    engine = EngineServer()
    with pytest.raises(TypeError):
        Server(engine=engine, ping_interval=5)
    with pytest.raises(TypeError):
        Server(engine=engine, max_http_buffer_size=10)


def test_engine_and_path_are_exclusive() -> None:
    """The path belongs to the engine: giving both cannot be honoured, so it must fail."""
    with pytest.raises(TypeError):
        Server(engine=EngineServer(), path="/custom-path/")


def test_path_option_reaches_the_engine() -> None:
    io = Server(path="/rt")
    assert io.engine.path == "/rt/"
    own = EngineServer(path="/mine/")
    assert Server(engine=own).engine is own


# ---------------------------------------------------------------------- reserved names


RESERVED = ["connect", "connect_error", "disconnect", "disconnecting", "newListener",
            "removeListener"]


@pytest.mark.parametrize("event", RESERVED)
async def test_emitting_reserved_event_raises(server: Server, raw_client: Any,
                                              event: str) -> None:
    io = server
    _, socket = await connected_socket(io, raw_client)
    with pytest.raises(ValueError):
        io.emit(event)
    with pytest.raises(ValueError):
        io.to("room").emit(event, 1)
    with pytest.raises(ValueError):
        io.of("/other").emit(event)
    with pytest.raises(ValueError):
        socket.emit(event)
    with pytest.raises(ValueError):
        socket.to("room").emit(event)
    with pytest.raises(ValueError):
        socket.volatile.emit(event)
    with pytest.raises(ValueError):
        await socket.emit_with_ack(event, timeout=0.1)
    with pytest.raises(ValueError):
        await io.timeout(0.1).emit_with_ack(event)


async def test_non_string_event_name_raises(server: Server) -> None:
    with pytest.raises(TypeError):
        server.emit(42)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- sockets and rooms


async def test_socket_rooms_contain_its_id(server: Server, raw_client: Any) -> None:
    _, socket = await connected_socket(server, raw_client)
    assert socket.rooms == {socket.id}
    socket.join("a")
    assert socket.rooms == {socket.id, "a"}
    assert isinstance(socket.rooms, set)
    socket.rooms.add("not-really")  # a copy: changing it does not join
    assert "not-really" not in socket.rooms
    assert socket.connected and not socket.recovered


async def test_adapter_room_events_in_order(server: Server, raw_client: Any) -> None:
    io = server
    events: list[tuple[Any, ...]] = []
    adapter = io.sockets.adapter
    for name in ("create-room", "join-room", "leave-room", "delete-room"):
        adapter.on(name, lambda *args, name=name: events.append((name, *args)))
    with pytest.raises(ValueError):
        adapter.on("no-such-event", lambda *args: None)

    raw, a = await connected_socket(io, raw_client)
    assert events == [("create-room", a.id), ("join-room", a.id, a.id)]
    events.clear()

    a.join("lobby")
    a.join("lobby")  # already in: nothing
    _, b = await connected_socket(io, raw_client)
    b.join("lobby")
    assert events == [
        ("create-room", "lobby"), ("join-room", "lobby", a.id),
        ("create-room", b.id), ("join-room", b.id, b.id),
        ("join-room", "lobby", b.id),
    ]
    events.clear()

    a.leave("lobby")
    a.leave("lobby")  # not in it any more: nothing
    b.leave("lobby")
    assert events == [
        ("leave-room", "lobby", a.id),
        ("leave-room", "lobby", b.id), ("delete-room", "lobby"),
    ]
    events.clear()

    a.join("x")
    events.clear()
    disconnected = asyncio.Event()
    a.on("disconnect", lambda reason: disconnected.set())
    await raw.ws.close()
    await asyncio.wait_for(disconnected.wait(), WAIT)
    assert sorted(events) == sorted([
        ("leave-room", a.id, a.id), ("delete-room", a.id),
        ("leave-room", "x", a.id), ("delete-room", "x"),
    ])
    # Each room is left before it is deleted.
    for room in (a.id, "x"):
        assert events.index(("leave-room", room, a.id)) < events.index(("delete-room", room))


async def test_emit_to_empty_room_does_nothing(server: Server, raw_client: Any,
                                               recorder: Recorder) -> None:
    io = server
    raw, socket = await connected_socket(io, raw_client)
    socket.on_any_outgoing(lambda *args: recorder.put("out", args))
    io.to("empty").emit("x", 1)
    io.to("empty").volatile.emit("x", 2)
    socket.to("empty").emit("x", 3)
    assert await io.to("empty").emit_with_ack("x") == []
    assert await io.to("empty").timeout(0.5).emit_with_ack("x") == []
    assert await io.in_("empty").fetch_sockets() == []
    io.in_("empty").sockets_join("other")
    io.in_("empty").disconnect_sockets()
    assert "empty" not in io.sockets.adapter.rooms
    assert "other" not in io.sockets.adapter.rooms
    assert socket.connected
    assert recorder.empty("out")
    # The next thing the client receives is what comes after.
    io.emit("after")
    assert await raw.recv() == '42["after"]'


async def test_emit_with_ack_on_disconnected_socket(server: Server, raw_client: Any) -> None:
    raw, socket = await connected_socket(server, raw_client)
    pending = asyncio.ensure_future(socket.emit_with_ack("question"))
    assert await raw.recv() == '420["question"]'
    socket.disconnect()
    with pytest.raises(DisconnectedError):
        await asyncio.wait_for(pending, WAIT)
    with pytest.raises(DisconnectedError):
        await socket.emit_with_ack("question")
    socket.emit("ignored")  # emitting on a disconnected socket is a no-op
    assert await raw.recv() == "41"


async def test_ack_by_hand_and_timeout(server: Server, raw_client: Any) -> None:
    raw, socket = await connected_socket(server, raw_client)
    answer = asyncio.ensure_future(socket.emit_with_ack("q", 1, timeout=WAIT))
    frame = await raw.recv()
    assert isinstance(frame, str) and frame.startswith("42") and frame.endswith('["q",1]')
    ack_id = frame[2:frame.index("[")]
    await raw.send(f'43{ack_id}["a",2]')
    assert await answer == ("a", 2)
    with pytest.raises(AckTimeoutError):
        await socket.timeout(0.1).emit_with_ack("q")
    assert socket.connected


async def test_namespace_sockets_and_server_shortcuts(server: Server, raw_client: Any) -> None:
    io = server
    io.of("/custom")
    _, socket = await connected_socket(io, raw_client)
    _, custom = await connected_socket(io, raw_client, "/custom")
    assert io.sockets.sockets == {socket.id: socket}
    assert io.of("/custom").sockets == {custom.id: custom}
    assert [s.id for s in await io.fetch_sockets()] == [socket.id]
    assert socket.nsp is io.sockets and custom.nsp.name == "/custom"
    assert socket.handshake.query["EIO"] == "4"
