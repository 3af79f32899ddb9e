"""Redis going away and coming back, with a redis-server of the test's own.

The shared Redis is never touched: each test starts ``redis-server`` on a free port
(no persistence), points the gateway at it, stops it and starts it again on the same port.
The server is killed at the end whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from .conftest import WAIT, GatewayFactory, Harness, eventually

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed"),
]

UNAVAILABLE = {"success": False, "error": "Service temporarily unavailable"}
RECOVERY = 15.0  # seconds the gateway gets to notice that Redis is back


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """One redis-server on 127.0.0.1:<port>, stopped and started on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5,
                             socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        try:
            while True:
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not start")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
        self.process = None


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    server = RedisProcess()
    try:
        server.start()
        yield server
    finally:
        server.kill()


async def outage_gateway(
    gateway_factory: GatewayFactory, server: RedisProcess, **overrides: Any
) -> Harness:
    gw = await gateway_factory("own-redis", {"REDIS_URL": server.url,
                                             "REDIS_PREFIX": "outage:"}, **overrides)
    assert type(gw.store).__name__ == "RedisStore"
    return gw


async def stop_redis(server: RedisProcess) -> None:
    await asyncio.get_running_loop().run_in_executor(None, server.stop)


async def start_redis(server: RedisProcess) -> None:
    await asyncio.get_running_loop().run_in_executor(None, server.start)


async def send(client: Any, target: str, text: str, timeout: float = WAIT) -> Any:
    return await client.call("private-message", {"targetUserId": target, "message": text},
                             timeout=timeout)


async def test_gateway_survives_redis_outage_and_recovers(
    own_redis: RedisProcess, gateway_factory: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="realtime_app")
    gw = await outage_gateway(gateway_factory, own_redis)
    alice = await gw.connect("alice")
    bob = await gw.connect("bob")
    assert (await send(alice, "bob", "before"))["success"] is True
    assert (await bob.next("private-message"))["message"] == "before"

    async def delivered() -> bool:
        return await gw.store.pending_messages("bob") == []

    await eventually(delivered)  # bob's ack has deleted it
    assert (await gw.http("GET", "/readyz", key=None))[0] == 200

    await stop_redis(own_redis)

    # connected clients keep their connections; store-backed events are refused cleanly
    assert await send(alice, "bob", "during", timeout=10) == UNAVAILABLE
    await alice.emit("private-message", {"targetUserId": "bob", "message": "during, no ack"})
    assert await alice.next("error", timeout=10) == {
        "event": "private-message", "message": "Service temporarily unavailable"}
    assert await alice.call("join-room", {"room": "r"}, timeout=10) == UNAVAILABLE
    assert alice.connected and bob.connected
    status, _, body = await gw.http("GET", "/readyz", key=None)
    assert status == 503, body
    assert (await gw.http("GET", "/healthz", key=None))[0] == 200
    status, _, body = await gw.http("GET", "/api/online-users")
    assert status == 503 and body == {"error": "Service temporarily unavailable"}

    # new connections are still accepted: auth does not need Redis, presence failures
    # are logged
    carol = await gw.connect("carol")
    assert carol.all("connected")[0]["userId"] == "carol"

    async def presence_failure_logged() -> bool:
        return any("store unavailable after connect of carol" in r.getMessage()
                   for r in caplog.records)

    await eventually(presence_failure_logged)
    assert gw.metric("realtime_store_errors_total") >= 3
    await asyncio.sleep(0.1)
    assert [m["message"] for m in bob.all("private-message")] == ["before"]

    await start_redis(own_redis)

    # the gateway recovers by itself
    deadline = time.monotonic() + RECOVERY
    while True:
        answer = await send(alice, "bob", "after", timeout=10)
        if answer.get("success"):
            break
        assert answer == UNAVAILABLE
        assert time.monotonic() < deadline, "handlers did not recover within 15 s"
        await asyncio.sleep(0.2)
    assert (await bob.next("private-message", lambda m: m["message"] == "after"))["id"] == \
        answer["id"]
    assert "during" not in str(bob.all("private-message"))
    assert alice.connected and bob.connected and carol.connected

    async def ready() -> bool:
        return (await gw.http("GET", "/readyz", key=None))[0] == 200

    await eventually(ready, timeout=RECOVERY)
    assert (await carol.call("join-room", {"room": "r"}))["success"] is True
    assert (await send(carol, "alice", "hello again"))["success"] is True
    assert (await alice.next("private-message", lambda m: m["message"] == "hello again"))


async def test_gateway_started_while_redis_is_down(
    own_redis: RedisProcess, gateway_factory: GatewayFactory
) -> None:
    await stop_redis(own_redis)
    gw = await outage_gateway(gateway_factory, own_redis)  # starts anyway, with a warning
    alice = await gw.connect("alice")
    assert await send(alice, "bob", "x", timeout=10) == UNAVAILABLE
    assert (await gw.http("GET", "/readyz", key=None))[0] == 503
    await start_redis(own_redis)

    async def works() -> bool:
        return bool((await send(alice, "bob", "y", timeout=10)).get("success"))

    await eventually(works, timeout=RECOVERY, interval=0.2)

    async def ready() -> bool:  # the store and the adapter's subscription are back
        return (await gw.http("GET", "/readyz", key=None))[0] == 200

    await eventually(ready, timeout=RECOVERY, interval=0.2)


async def test_presence_after_redis_restart_still_reports_offline(
    own_redis: RedisProcess, gateway_factory: GatewayFactory
) -> None:
    # A connected user is online ("online while >= 1 socket connected"), also after Redis
    # lost its data in a restart; when that user's last socket leaves, followers are told.
    gw = await outage_gateway(gateway_factory, own_redis, presence_ttl=1.5)
    star = await gw.connect("star")

    async def star_online() -> bool:
        status, _, body = await gw.http("GET", "/api/users/star/online")
        return status == 200 and body["online"] is True

    await eventually(star_online)
    await stop_redis(own_redis)
    await start_redis(own_redis)  # empty: --save "" --appendonly no

    async def follow_works() -> bool:
        status, _, _ = await gw.http("PUT", "/api/follows",
                                     json={"followerId": "fan", "followeeId": "star"})
        return status == 200

    await eventually(follow_works, timeout=RECOVERY, interval=0.2)
    fan = await gw.connect("fan")
    await eventually(star_online, timeout=RECOVERY)  # the maintenance refresh restores it
    await star.close()
    note = await fan.next("notification")
    assert (note["type"], note["userId"]) == ("user-offline", "star")
    assert await fan.next("user-offline") == {"userId": "star"}
