"""One client cannot make the server hold unbounded work (issue: hardening, items 1, 2, 10).

* handler coroutines in flight per connection are bounded; at the bound the server stops
  reading that client (WebSocket: the socket; long-polling: the POST is answered late);
* a connection whose CONNECTs keep being refused is closed;
* the attachments of a binary packet must arrive in bounded time.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from socketio_core import ConnectRefused, Server, Socket
from socketio_core.client import MAX_CONNECT_REFUSALS

from .conftest import WAIT

pytestmark = pytest.mark.timeout(60)

LIMIT = 8


class Gate:
    """An async handler that blocks until released, counting how many wait at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.in_flight = 0
        self.most = 0
        self.done = 0

    async def handler(self, *args: Any) -> None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
            self.done += 1


async def until(predicate: Any, timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


class Polling:
    """Engine.IO long-polling by hand (aiohttp), for payloads no real client would send."""

    def __init__(self, http: aiohttp.ClientSession, port: int) -> None:
        self.http = http
        self.base = f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling"
        self.sid = ""

    async def open(self) -> None:
        async with self.http.get(self.base) as res:
            text = await res.text()
        assert text.startswith("0"), text
        self.sid = json.loads(text[1:])["sid"]

    def post(self, payload: str) -> asyncio.Task[tuple[int, str]]:
        async def send() -> tuple[int, str]:
            async with self.http.post(f"{self.base}&sid={self.sid}", data=payload.encode(),
                                      headers={"Content-Type": "text/plain"}) as res:
                return res.status, await res.text()

        return asyncio.ensure_future(send())

    async def get(self) -> str:
        async with self.http.get(f"{self.base}&sid={self.sid}") as res:
            return await res.text()


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT * 4)) as session:
        yield session


async def test_polling_post_of_3000_events_keeps_at_most_the_limit_in_flight(
    make_server: Any, http: aiohttp.ClientSession
) -> None:
    io: Server = await make_server(max_concurrent_handlers=LIMIT)
    gate = Gate()
    io.on("connection", lambda socket: socket.on("x", gate.handler))
    client = Polling(http, io.port)
    await client.open()
    assert await client.post("40") == (200, "ok")
    assert (await client.get()).startswith("40")
    post = client.post("\x1e".join(['42["x"]'] * 3000))
    await until(lambda: gate.in_flight == LIMIT)
    await asyncio.sleep(0.1)
    assert gate.most == LIMIT  # not 3,000 tasks
    assert not post.done()  # the client cannot send more until its handlers catch up
    gate.release.set()
    assert await asyncio.wait_for(post, WAIT) == (200, "ok")
    await until(lambda: gate.done == 3000)
    assert gate.most == LIMIT


async def test_websocket_client_is_not_read_while_its_handlers_are_busy(
    make_server: Any, raw_client: Any
) -> None:
    io: Server = await make_server(max_concurrent_handlers=LIMIT)
    gate = Gate()
    io.on("connection", lambda socket: socket.on("x", gate.handler))
    raw = await raw_client(io.port)
    await raw.connect()
    for _ in range(200):
        await raw.send('42["x"]')
    await until(lambda: gate.in_flight == LIMIT)
    await asyncio.sleep(0.1)
    assert gate.most == LIMIT
    gate.release.set()
    await until(lambda: gate.done == 200)
    assert gate.most == LIMIT
    await raw.send('42["x"]')  # still connected and served
    await until(lambda: gate.done == 201)


async def test_other_clients_are_served_while_one_is_paused(
    make_server: Any, raw_client: Any
) -> None:
    io: Server = await make_server(max_concurrent_handlers=LIMIT)
    gate = Gate()

    @io.on("connection")
    def connected(socket: Socket) -> None:
        socket.on("x", gate.handler)
        socket.on("echo", lambda value: value)

    greedy = await raw_client(io.port)
    await greedy.connect()
    for _ in range(50):
        await greedy.send('42["x"]')
    await until(lambda: gate.in_flight == LIMIT)
    polite = await raw_client(io.port)
    await polite.connect()
    await polite.send('421["echo","hi"]')
    assert await polite.recv() == '431["hi"]'
    gate.release.set()


async def test_async_catch_all_handlers_count_too(make_server: Any, raw_client: Any) -> None:
    io: Server = await make_server(max_concurrent_handlers=LIMIT)
    gate = Gate()
    io.on("connection", lambda socket: socket.on_any(gate.handler))
    raw = await raw_client(io.port)
    await raw.connect()
    for _ in range(100):
        await raw.send('42["anything"]')
    await until(lambda: gate.in_flight == LIMIT)
    await asyncio.sleep(0.1)
    assert gate.most == LIMIT
    gate.release.set()
    await until(lambda: gate.done == 100)


async def test_repeated_refused_connects_close_the_connection(
    make_server: Any, http: aiohttp.ClientSession
) -> None:
    io: Server = await make_server()
    attempts = 0

    @io.use
    def refuse(socket: Socket) -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectRefused("Authentication failed")

    client = Polling(http, io.port)
    await client.open()
    status, _ = await client.post("\x1e".join(['40{"token":"bad"}'] * 8000))
    assert status == 200
    assert attempts == MAX_CONNECT_REFUSALS  # the rest was never looked at
    packets = (await client.get()).split("\x1e")
    assert packets == ['44{"message":"Authentication failed"}'] * MAX_CONNECT_REFUSALS
    assert await client.get() == "1"  # then the close
    await until(lambda: client.sid not in io.engine.sessions)


async def test_a_few_refusals_keep_the_connection(make_server: Any, raw_client: Any) -> None:
    io: Server = await make_server()

    @io.of("/private").use
    def refuse(socket: Socket) -> None:
        raise ConnectRefused("no")

    raw = await raw_client(io.port)
    for _ in range(3):
        await raw.send("40/private,")
        assert (await raw.recv()).startswith("44/private,")
    assert (await raw.connect())["sid"]


async def test_attachments_must_arrive_in_time(make_server: Any, raw_client: Any) -> None:
    io: Server = await make_server(attachment_timeout=0.2)
    reasons: list[str] = []

    @io.on("connection")
    def connected(socket: Socket) -> None:
        socket.on("disconnect", reasons.append)

    raw = await raw_client(io.port)
    await raw.connect()
    await raw.send('451-["upload",{"_placeholder":true,"num":0}]')
    assert await raw.closed() == []
    assert reasons == ["parse error"]
