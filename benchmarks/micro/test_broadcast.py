"""The broadcast path: building one broadcast, and routing it to a room of 1,000 sockets.

* ``broadcast-build``: Socket.IO packet -> Socket.IO string -> Engine.IO message -> the
  WebSocket frame bytes, once (what a broadcast pays whatever the room size).
* ``broadcast-route-1000``: ``to(room).emit(...)`` to 1,000 connected in-memory sockets.
  Ours: real ``WebSocketTransport`` objects over a fake asyncio transport (the write is a
  counter), connected through ``EngineServer.handle_websocket`` and a CONNECT frame; when
  the server coalesces writes per loop iteration, the timed call includes that flush.
  python-socketio: real ``engineio.async_socket.AsyncSocket`` objects registered with the
  server, connected through its Engine.IO event handlers; delivery ends in each socket's
  send queue (where its WebSocket writer task would pick it up), so its per-recipient
  framing is *not* counted: the comparison favours python-socketio.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from typing import Any

import pytest
from websockets.frames import Frame, Opcode

from engineio_core import EngineServer, OutgoingPacket, Request
from engineio_core.websocket import WebSocketTransport
from socketio_core import JsonParser, Packet, PacketType, Server

from .payloads import EVENT_TEXT, PAYLOAD, ROOM_SIZE

ROUNDS = 100
EXPECTED_FRAME = Frame(Opcode.TEXT, ("4" + EVENT_TEXT).encode()).serialize(mask=False)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


# ---------------------------------------------------------------------- build


@pytest.mark.benchmark(group="broadcast-build")
def test_broadcast_build(benchmark, impl):
    if impl == "ours":
        parser = JsonParser()

        def build() -> list[bytes]:
            parts = parser.encode(Packet(PacketType.EVENT, ["msg", PAYLOAD], "/"))
            return [OutgoingPacket.message(part).websocket_frame for part in parts]

    else:
        from engineio import packet as eio_packet
        from socketio import packet as sio_packet

        def build() -> list[bytes]:
            encoded = sio_packet.Packet(
                sio_packet.EVENT, data=["msg", PAYLOAD], namespace="/"
            ).encode()
            parts = encoded if isinstance(encoded, list) else [encoded]
            frames = []
            for part in parts:
                data = eio_packet.Packet(eio_packet.MESSAGE, part).encode()
                if isinstance(data, str):
                    frames.append(Frame(Opcode.TEXT, data.encode()).serialize(mask=False))
                else:
                    frames.append(Frame(Opcode.BINARY, data).serialize(mask=False))
            return frames

    assert benchmark(build) == [EXPECTED_FRAME]


# ---------------------------------------------------------------------- route: ours


class CountingWriter:
    """Stands in for the asyncio transport under a WebSocket: counts what is written."""

    __slots__ = ("bytes", "frames")

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.frames += 1
        self.bytes += len(data)

    def writelines(self, data: list[bytes]) -> None:
        for chunk in data:
            self.write(chunk)

    def close(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


class FakeAcceptor:
    def __init__(self, engine: EngineServer, writer: CountingWriter) -> None:
        self.engine = engine
        self.writer = writer
        self.transport: WebSocketTransport | None = None

    def accept(self, headers: list[tuple[str, str]]) -> WebSocketTransport:
        extra: dict[str, Any] = {}
        batcher = _batcher(self.engine)
        if batcher is not None:
            extra["batcher"] = batcher
        self.transport = WebSocketTransport(
            self.writer, self.engine.loop, max_message_size=self.engine.max_http_buffer_size,
            **extra,
        )
        return self.transport

    def reject(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        raise AssertionError(f"upgrade refused: {status} {body!r}")


def _batcher(engine: EngineServer) -> Any:
    """The engine's per-iteration write batcher, when this version of the server has one
    (the raw HTTP server hands it to every WebSocket transport)."""
    if "batcher" not in inspect.signature(WebSocketTransport).parameters:
        return None
    return getattr(engine, "write_batcher", None)


def _client_frame(text: str) -> bytes:
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=True)


class OurRoom:
    def __init__(self, size: int) -> None:
        self.loop = _new_loop()
        self.writer = CountingWriter()
        self.io = self.make_server()
        self.loop.run_until_complete(self._connect(size))
        self.batcher = _batcher(self.io.engine)

    def make_server(self) -> Server:
        return Server()

    async def _connect(self, size: int) -> None:
        engine = self.io.engine
        connect = _client_frame("40")
        for _ in range(size):
            request = Request(
                method="GET",
                url="/socket.io/?EIO=4&transport=websocket",
                path="/socket.io/",
                query={"EIO": "4", "transport": "websocket"},
                headers={"connection": "Upgrade", "upgrade": "websocket"},
                upgrade=True,
            )
            acceptor = FakeAcceptor(engine, self.writer)
            engine.handle_websocket(request, acceptor)
            assert acceptor.transport is not None
            acceptor.transport.receive_data(connect)
        sockets = list(self.io.sockets.sockets.values())
        assert len(sockets) == size
        for socket in sockets:
            socket.join("room")

    def emit(self) -> None:
        self.io.to("room").emit("msg", PAYLOAD)
        if self.batcher is not None:
            # What the loop's call_soon callback does at the end of the iteration: one
            # write per recipient (the scheduled callback then finds nothing to do).
            self.batcher.flush()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(self.io.stop())
        self.loop.close()


# ---------------------------------------------------------------------- route: theirs


class TheirRoom:
    def __init__(self, size: int) -> None:
        from engineio.async_socket import AsyncSocket

        self.loop = _new_loop()
        self.sio = self.make_sio()
        self.sockets: list[Any] = []

        @self.sio.on("connect")
        async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
            return None

        async def setup() -> None:
            sio, eio = self.sio, self.sio.eio
            for i in range(size):
                eio_sid = f"eio{i}"
                sock = AsyncSocket(eio, eio_sid)
                sock.connected = True
                eio.sockets[eio_sid] = sock
                self.sockets.append(sock)
                await sio._handle_eio_connect(eio_sid, {})
                await sio._handle_eio_message(eio_sid, "0")
                sid = sio.manager.sid_from_eio_sid(eio_sid, "/")
                await sio.enter_room(sid, "room")

        self.loop.run_until_complete(setup())
        self.drain()

    def make_sio(self) -> Any:
        import socketio

        return socketio.AsyncServer(async_mode="asgi")

    def drain(self) -> int:
        delivered = 0
        for sock in self.sockets:
            queue = sock.queue
            while not queue.empty():
                queue.get_nowait()
                queue.task_done()
                delivered += 1
        return delivered

    def reset(self) -> None:
        """Empty the send queues between rounds (not timed)."""
        self.drain()

    def emit(self) -> None:
        self.loop.run_until_complete(self.sio.emit("msg", PAYLOAD, room="room"))

    def close(self) -> None:
        self.loop.close()


@pytest.mark.per_op(ROOM_SIZE, "delivery")
@pytest.mark.benchmark(group="broadcast-route-1000")
def test_broadcast_route_1000(benchmark, impl):
    if impl == "ours":
        room = OurRoom(ROOM_SIZE)
        try:
            before = room.writer.frames
            room.emit()
            assert room.writer.frames - before == ROOM_SIZE
            benchmark.pedantic(room.emit, rounds=ROUNDS, iterations=1, warmup_rounds=2)
        finally:
            room.close()
    else:
        room = TheirRoom(ROOM_SIZE)
        try:
            room.emit()
            assert room.drain() == ROOM_SIZE
            benchmark.pedantic(room.emit, setup=room.reset, rounds=ROUNDS, iterations=1,
                               warmup_rounds=2)
        finally:
            room.close()
    benchmark.extra_info["deliveries_per_round"] = ROOM_SIZE
