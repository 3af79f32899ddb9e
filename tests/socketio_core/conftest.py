"""Fixtures for Socket.IO tests against in-process servers.

* ``make_server(**options)``: builds a ``socketio_core.Server`` (times in seconds), starts it
  on 127.0.0.1 with a free port and stops it at the end of the test. ``server`` is one with
  the defaults below and nothing registered.
* ``sio_client(**options)``: python-socketio ``AsyncClient`` factory (no reconnection unless
  asked); every client is disconnected at the end.
* ``raw_client(port, ...)``: a hand-driven Engine.IO/Socket.IO peer over a WebSocket
  (``RawClient``), for bad input and for what python-socketio cannot do (recovery).
* ``recorder``: collects values from server handlers and waits for them.

Every wait is bounded (``WAIT`` seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import socketio
import websockets
from websockets.exceptions import ConnectionClosed

from socketio_core import Server

WAIT = 5.0

#: Server options every test gets unless it overrides them: no heartbeat noise.
DEFAULT_OPTIONS: dict[str, Any] = {"ping_interval": 20.0, "ping_timeout": 20.0}


@pytest.fixture
async def make_server() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    servers: list[Server] = []

    async def factory(**options: Any) -> Server:
        for key, value in DEFAULT_OPTIONS.items():
            if "engine" not in options:
                options.setdefault(key, value)
        io = Server(**options)
        await io.start("127.0.0.1", 0)
        servers.append(io)
        return io

    yield factory
    for io in servers:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(io.stop(), WAIT)


@pytest.fixture
async def server(make_server: Callable[..., Awaitable[Server]]) -> Server:
    return await make_server()


def url(io: Server) -> str:
    return f"http://127.0.0.1:{io.port}"


@pytest.fixture
async def sio_client(
    make_server: Callable[..., Awaitable[Server]],  # so that clients go before servers
) -> AsyncIterator[Callable[..., socketio.AsyncClient]]:
    clients: list[socketio.AsyncClient] = []

    def factory(**options: Any) -> socketio.AsyncClient:
        options.setdefault("reconnection", False)
        client = socketio.AsyncClient(**options)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), WAIT)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.eio.disconnect(abort=True), WAIT)


class Recorder:
    """Values pushed by handlers, awaited by the test: ``await rec.get("disconnect")``."""

    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[Any]] = {}
        self.log: list[tuple[str, Any]] = []

    def _queue(self, key: str) -> asyncio.Queue[Any]:
        return self._queues.setdefault(key, asyncio.Queue())

    def put(self, key: str, value: Any = None) -> None:
        self.log.append((key, value))
        self._queue(key).put_nowait(value)

    def putter(self, key: str) -> Callable[..., None]:
        """A handler that records its argument (or a tuple of them)."""

        def handler(*args: Any) -> None:
            self.put(key, args[0] if len(args) == 1 else args)

        return handler

    async def get(self, key: str, timeout: float = WAIT) -> Any:
        return await asyncio.wait_for(self._queue(key).get(), timeout)

    async def get_n(self, key: str, n: int, timeout: float = WAIT) -> list[Any]:
        return [await self.get(key, timeout) for _ in range(n)]

    def empty(self, key: str) -> bool:
        return self._queue(key).empty()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


class RawClient:
    """One WebSocket speaking Engine.IO v4 + Socket.IO v5 by hand.

    Frames are written as on the wire: ``send('42["x",1]')`` is an Engine.IO message
    holding a Socket.IO EVENT; bytes go as binary frames. ``recv`` returns the next frame
    (``'42[...]'`` or bytes), answering Engine.IO pings on the way unless ``answer_pings``
    is off. ``closed()`` waits for the server to close the connection.
    """

    def __init__(self, ws: Any, handshake: dict[str, Any]) -> None:
        self.ws = ws
        self.handshake = handshake
        self.sid: str = handshake["sid"]
        self.answer_pings = True

    async def send(self, frame: str | bytes) -> None:
        await self.ws.send(frame)

    async def recv(self, timeout: float = WAIT) -> str | bytes:
        while True:
            frame = await asyncio.wait_for(self.ws.recv(), timeout)
            if frame == "2":
                if self.answer_pings:
                    await self.ws.send("3")
                continue
            return frame

    async def recv_json(self, prefix: str, timeout: float = WAIT) -> Any:
        """The next frame, which must start with ``prefix``; returns the JSON after it."""
        frame = await self.recv(timeout)
        assert isinstance(frame, str) and frame.startswith(prefix), (frame, prefix)
        return json.loads(frame[len(prefix):])

    async def connect(self, nsp: str = "/", auth: Any = None) -> dict[str, Any]:
        """CONNECT and return the server's CONNECT payload (``{"sid": ...}``)."""
        prefix = "40" if nsp == "/" else f"40{nsp},"
        body = json.dumps(auth) if auth is not None else ""
        await self.send(prefix + body)
        return await self.recv_json(prefix)

    async def closed(self, timeout: float = WAIT) -> list[str | bytes]:
        """Wait until the server closes; return what it sent before (pings answered)."""
        received: list[str | bytes] = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    frame = await self.ws.recv()
                    if frame == "2" and self.answer_pings:
                        await self.ws.send("3")
                        continue
                    received.append(frame)
        except ConnectionClosed:
            return received
        raise AssertionError("unreachable")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), WAIT)


@pytest.fixture
async def raw_client(
    make_server: Callable[..., Awaitable[Server]],  # so that clients go before servers
) -> AsyncIterator[Callable[..., Awaitable[RawClient]]]:
    clients: list[RawClient] = []

    async def factory(port: int, path: str = "/socket.io/") -> RawClient:
        ws = await websockets.connect(
            f"ws://127.0.0.1:{port}{path}?EIO=4&transport=websocket",
            max_size=None, ping_interval=None, open_timeout=WAIT, close_timeout=1,
        )
        opening = await asyncio.wait_for(ws.recv(), WAIT)
        assert isinstance(opening, str) and opening.startswith("0"), opening
        client = RawClient(ws, json.loads(opening[1:]))
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()
