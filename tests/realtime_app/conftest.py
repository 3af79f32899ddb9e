"""Fixtures for the realtime gateway tests: in-process gateways, tokens, clients, HTTP.

* ``gateway_factory(kind="memory", env=None, argv=None, **overrides)``: builds a
  ``GatewayApp`` from ``load_config(argv, BASE_ENV | env)`` on 127.0.0.1 port 0 and starts
  it. ``kind="redis"`` points REDIS_URL at the shared test Redis with a key prefix unique to
  the test (``test:<uuid>:``); its keys are deleted at teardown. ``overrides`` replace
  Config fields that have no variable (``presence_ttl``...);
  ``store=`` hands the app a store object of the test's own.
* ``store_kind``: "memory" / "redis"; ``make_gateway`` is ``gateway_factory`` bound to it, so
  a test that uses ``make_gateway`` or ``gw`` runs once per store.
* ``Harness``: ``token(sub, ...)``, ``connect(sub, ...)`` -> :class:`Client`,
  ``refused(...)`` -> the CONNECT_ERROR payload, ``http(method, path, ...)``.
* ``Client``: python-socketio ``AsyncClient`` that records every event in order;
  ``next(event)`` / ``call(event, data)`` / ``quiet(event)``, all with bounded waits.

Every wait is bounded (``WAIT`` seconds); nothing asserts on durations.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import jwt
import pytest
import redis
import socketio
from socketio.exceptions import ConnectionError as SioConnectionError

from realtime_app import GatewayApp, load_config

WAIT = 5.0
SECRET = "test-secret-0123456789abcdefghijklmnopqrstuvwxyz"
API_KEY = "test-api-key-0123456789abcdef"
FRONTEND = "http://allowed.example"
REDIS_URL = "redis://127.0.0.1:6379/0"

#: Every test gateway gets these unless the test overrides them. Rate limits are high so
#: that tests sending many events only meet a limit when they set a low one.
BASE_ENV: dict[str, str] = {
    "JWT_SECRET": SECRET,
    "API_KEY": API_KEY,
    "FRONTEND_URL": FRONTEND,
    "PORT": "0",
    "HOST": "127.0.0.1",
    "PING_INTERVAL": "20000",
    "PING_TIMEOUT": "20000",
    "RATE_LIMIT_PRIVATE_MESSAGE": "1000",
    "RATE_LIMIT_MUSIC_SYNC": "1000",
    "RATE_LIMIT_JOIN_ROOM": "1000",
    "RATE_LIMIT_DEFAULT": "1000",
    # With recovery on, every event carries its offset as an extra last argument (as with
    # Node), which python-socketio hands to the handlers: these tests look at payloads.
    # Recovery itself is tested with socket.io-client (tests/realtime_app_e2e, fleet).
    "CONNECTION_RECOVERY_MS": "0",
}



# ---------------------------------------------------------------------- small helpers


def make_token(
    sub: str | None = "alice",
    *,
    secret: str | bytes | Any = SECRET,
    algorithm: str = "HS256",
    exp_in: float | None = 600,
    username: str | None = None,
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A signed JWT. ``sub=None`` / ``exp_in=None`` leave the claim out; extra claims are
    added as given (a value of None removes the claim)."""
    now = int(time.time())
    payload: dict[str, Any] = {"iat": now}
    if sub is not None:
        payload["sub"] = sub
    if exp_in is not None:
        payload["exp"] = now + int(exp_in)
    if username is not None:
        payload["username"] = username
    for key, value in claims.items():
        if value is None:
            payload.pop(key, None)
        else:
            payload[key] = value
    return jwt.encode(payload, secret, algorithm=algorithm, headers=headers)


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = WAIT, interval: float = 0.05
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {last!r})")
        await asyncio.sleep(interval)


def redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def delete_prefix(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_ready() -> bool:
    """The shared test Redis on 127.0.0.1:6379, started when it is down."""
    if redis_available():
        return True
    if shutil.which("redis-server"):
        subprocess.run(
            ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379",
             "--save", "", "--appendonly", "no"],
            check=False, capture_output=True, timeout=10,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if redis_available():
                return True
            time.sleep(0.1)
    return False


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest) -> Any:
    """A key prefix unique to this test; its keys are deleted afterwards."""
    prefix = f"test:{uuid.uuid4().hex}:"
    yield prefix
    if redis_available():
        delete_prefix(prefix)


# ---------------------------------------------------------------------- clients


class Client:
    """A python-socketio AsyncClient that records every event it receives, in order.

    ``private-message`` is acked unless ``ack_private`` is False: then the handler holds
    the ack back until the client is closed (and a closed client sends nothing).
    """

    def __init__(self, user_id: str, *, ack_private: bool = True) -> None:
        self.user_id = user_id
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self._cursor: dict[str, int] = {}
        self._changed = asyncio.Event()
        self.ack_private = ack_private
        self._release = asyncio.Event()
        self.connect_errors: list[Any] = []
        self.disconnect_reasons: list[Any] = []
        self.sio.on("*", self._record)
        self.sio.on("private-message", self._on_private)
        self.sio.on("connect_error", self.connect_errors.append)
        self.sio.on("disconnect", lambda *args: self.disconnect_reasons.append(args))

    def _add(self, event: str, args: tuple[Any, ...]) -> None:
        self.events.append((event, args[0] if len(args) == 1 else args))
        self._changed.set()

    async def _record(self, event: str, *args: Any) -> None:
        self._add(event, args)

    async def _on_private(self, *args: Any) -> Any:
        self._add("private-message", args)
        if self.ack_private:
            return "ok"
        await self._release.wait()
        return None

    @property
    def sid(self) -> str:
        sid = self.sio.get_sid()
        assert sid is not None
        return sid

    @property
    def connected(self) -> bool:
        return bool(self.sio.connected)

    def all(self, event: str) -> list[Any]:
        """Every payload of ``event`` received so far (consumed or not)."""
        return [data for name, data in self.events if name == event]

    async def next(
        self, event: str, match: Callable[[Any], bool] | None = None, timeout: float = WAIT
    ) -> Any:
        """The next not yet consumed ``event`` (matching ``match``), waiting for it."""
        deadline = time.monotonic() + timeout
        while True:
            start = self._cursor.get(event, 0)
            for index in range(start, len(self.events)):
                name, data = self.events[index]
                if name == event and (match is None or match(data)):
                    self._cursor[event] = index + 1
                    return data
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.user_id}: no {event!r} within {timeout}s; got {self.events!r}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def next_n(self, event: str, n: int, timeout: float = WAIT) -> list[Any]:
        return [await self.next(event, timeout=timeout) for _ in range(n)]

    async def quiet(self, event: str, wait: float = 0.2) -> None:
        """Assert that no new ``event`` arrives within ``wait`` seconds (bounded)."""
        await asyncio.sleep(wait)
        start = self._cursor.get(event, 0)
        extra = [data for name, data in self.events[start:] if name == event]
        assert not extra, f"{self.user_id}: unexpected {event!r}: {extra!r}"

    def pending(self, event: str) -> list[Any]:
        start = self._cursor.get(event, 0)
        return [data for name, data in self.events[start:] if name == event]

    async def call(self, event: str, data: Any = None, timeout: float = WAIT) -> Any:
        if data is None:
            return await self.sio.call(event, timeout=timeout)
        return await self.sio.call(event, data, timeout=timeout)

    async def emit(self, event: str, *args: Any) -> None:
        await self.sio.emit(event, args[0] if len(args) == 1 else args if args else None)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sio.disconnect(), WAIT)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sio.eio.disconnect(abort=True), WAIT)
        self._release.set()


# ---------------------------------------------------------------------- harness


class Harness:
    """One started gateway and what a test needs around it."""

    def __init__(self, app: GatewayApp, kind: str, prefix: str | None) -> None:
        self.app = app
        self.kind = kind
        self.prefix = prefix
        self.clients: list[Client] = []
        self._http: aiohttp.ClientSession | None = None

    @property
    def config(self) -> Any:
        return self.app.config

    @property
    def store(self) -> Any:
        return self.app.store

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.app.port}"

    def metric(self, name: str, **labels: str) -> float:
        return self.app.metrics.value(name, **labels)

    def token(self, sub: str | None = "alice", **kwargs: Any) -> str:
        kwargs.setdefault("secret", self.config.jwt_secret or SECRET)
        return make_token(sub, **kwargs)

    def client(self, user_id: str = "?", *, ack_private: bool = True) -> Client:
        client = Client(user_id, ack_private=ack_private)
        self.clients.append(client)
        return client

    async def connect(
        self,
        sub: str = "alice",
        *,
        username: str | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        ack_private: bool = True,
        transport: str = "websocket",
        wait_connected: bool = True,
        settle: bool = True,
    ) -> Client:
        """Connect as ``sub`` (auth.token) and wait for the ``connected`` event."""
        client = self.client(sub, ack_private=ack_private)
        auth = None
        if headers is None:
            auth = {"token": token or self.token(sub, username=username)}
        await client.sio.connect(self.url, auth=auth, headers=headers or {},
                                 transports=[transport], wait_timeout=WAIT)
        if wait_connected:
            await client.next("connected")
            if settle:
                await self.settled()
        return client

    async def settled(self, coroutine_name: str = "_after_connect") -> None:
        """Wait until the gateway finished its connect work (presence, stored messages).

        A message sent while the target's connect work is still running can reach the
        target twice (see test_gateway.py::test_message_during_connect_not_duplicated);
        tests that are not about that race wait here so that they stay deterministic.
        """
        engine = self.app.io.engine

        async def idle() -> bool:
            tasks = getattr(engine, "_tasks", set())
            return not any(not t.done() and t.get_coro().__name__ == coroutine_name
                           for t in tasks)

        await eventually(idle, interval=0.01)

    async def refused(
        self, auth: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        """Try to connect; the handshake must be refused; returns the connect_error data."""
        client = self.client("refused")
        with pytest.raises(SioConnectionError):
            await client.sio.connect(self.url, auth=auth, headers=headers or {},
                                     transports=["websocket"], wait_timeout=WAIT)
        assert client.connect_errors, "no connect_error received"
        return client.connect_errors[0]

    async def http(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | str | None = None,
        key: str | None = API_KEY,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        """One request; returns (status, headers, parsed JSON body or text)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT))
        sent = dict(headers or {})
        if key is not None:
            sent.setdefault("Authorization", f"Bearer {key}")
        async with self._http.request(method, self.url + path, json=json, data=data,
                                      headers=sent) as response:
            text = await response.text()
            body: Any = text
            if response.content_type == "application/json":
                body = await response.json()
            return response.status, dict(response.headers), body

    async def online(self, user_id: str) -> bool:
        status, _, body = await self.http("GET", f"/api/users/{user_id}/online")
        assert status == 200, body
        return bool(body["online"])

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        if self._http is not None:
            await self._http.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.app.stop(), 10)


GatewayFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def gateway_factory(
    request: pytest.FixtureRequest, redis_prefix: str
) -> AsyncIterator[GatewayFactory]:
    harnesses: list[Harness] = []

    async def factory(
        kind: str = "memory",
        env: dict[str, str] | None = None,
        argv: list[str] | None = None,
        *,
        drop: tuple[str, ...] = (),
        store: Any = None,
        **overrides: Any,
    ) -> Harness:
        environ = {**BASE_ENV, **(env or {})}
        for name in drop:
            environ.pop(name, None)
        prefix = None
        if kind == "redis":
            if not request.getfixturevalue("redis_ready"):
                pytest.skip("no Redis on 127.0.0.1:6379")
            environ.setdefault("REDIS_URL", REDIS_URL)
            environ.setdefault("REDIS_PREFIX", redis_prefix)
            prefix = environ["REDIS_PREFIX"]
        config = load_config(argv or [], environ)
        if overrides:
            config = dataclasses.replace(config, **overrides)
        app = GatewayApp(config, store)
        await app.start()
        harness = Harness(app, kind, prefix)
        harnesses.append(harness)
        return harness

    yield factory
    for harness in harnesses:
        await harness.close()


@pytest.fixture(params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_gateway(gateway_factory: GatewayFactory, store_kind: str) -> GatewayFactory:
    async def factory(env: dict[str, str] | None = None, **kwargs: Any) -> Harness:
        return await gateway_factory(store_kind, env, **kwargs)

    return factory


@pytest.fixture
async def gw(make_gateway: GatewayFactory) -> Harness:
    """A gateway with the base configuration, once per store kind."""
    return await make_gateway()


@pytest.fixture
async def memory_gw(gateway_factory: GatewayFactory) -> Harness:
    """A gateway with the base configuration on the memory store only."""
    return await gateway_factory("memory")
