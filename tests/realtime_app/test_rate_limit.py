"""Cheap rate limiting and the presence race (issue 8 items 1 and 11).

A client flooding events is refused by a per-process token bucket once over its limit,
without a store (Redis) call per event; the shared counter stays the authority. Connect
and disconnect bookkeeping of one socket run in order, so a quick connect + disconnect
leaves no ghost online user.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from realtime_app.gateway import LocalRateLimiter
from realtime_app.store import MemoryStore, RateResult, RedisStore

from .conftest import REDIS_URL, WAIT, GatewayFactory, eventually

pytestmark = pytest.mark.timeout(60)


# ---------------------------------------------------------------------- the bucket


def test_bucket_allows_the_limit_then_refills() -> None:
    buckets = LocalRateLimiter()
    key = ("alice", "x")
    assert [buckets.take(key, 3, 60, 100.0) for _ in range(3)] == [None] * 3
    retry_at = buckets.take(key, 3, 60, 100.0)
    assert retry_at == pytest.approx(120.0)  # one token per 20 s
    assert buckets.take(key, 3, 60, 110.0) is not None
    assert buckets.take(key, 3, 60, 120.0) is None
    assert buckets.take(("bob", "x"), 3, 60, 120.0) is None  # per user
    assert buckets.take(("alice", "y"), 3, 60, 120.0) is None  # per event
    # a full bucket does not fill beyond the limit
    assert [buckets.take(("carol", "x"), 2, 60, t) for t in (0.0, 1000.0, 1000.0, 1000.0)] \
        == [None, None, None, pytest.approx(1030.0)]


def test_bucket_refuses_until_the_shared_window_ends() -> None:
    buckets = LocalRateLimiter()
    key = ("alice", "x")
    assert buckets.take(key, 100, 60, 0.0) is None
    buckets.refuse_until(key, 30.0)  # the shared counter said no (other processes)
    assert buckets.take(key, 100, 60, 10.0) == 30.0
    assert buckets.take(key, 100, 60, 30.0) is None


def test_bucket_count_is_bounded() -> None:
    buckets = LocalRateLimiter(max_keys=100)
    for n in range(1000):
        assert buckets.take((f"user-{n}", "x"), 1, 60, 0.0) is None
    assert len(buckets) == 100
    # the most recent ones are kept: still refused
    assert buckets.take(("user-999", "x"), 1, 60, 0.0) is not None
    # an evicted one starts again (the shared counter still counts it)
    assert buckets.take(("user-0", "x"), 1, 60, 0.0) is None


# ---------------------------------------------------------------------- the flood


def counting(base: type) -> type:
    class Counting(base):  # type: ignore[misc, valid-type]
        hits = 0

        async def hit(self, key: str, limit: int, window: float) -> RateResult:
            type(self).hits += 1
            result: RateResult = await super().hit(key, limit, window)
            return result

    return Counting


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_flood_is_refused_without_a_store_call_per_event(
    kind: str, gateway_factory: GatewayFactory, redis_prefix: str,
    request: pytest.FixtureRequest,
) -> None:
    # Issue 8 item 1, scaled down: one client sends hundreds of events at once; past its
    # limit they cost no store round trip, and another user is served meanwhile.
    if kind == "redis":
        if not request.getfixturevalue("redis_ready"):
            pytest.skip("no Redis on 127.0.0.1:6379")
        store: Any = counting(RedisStore)(REDIS_URL, redis_prefix)
    else:
        store = counting(MemoryStore)()
    gw = await gateway_factory(kind, {"RATE_LIMIT_DEFAULT": "10",
                                      "RATE_LIMIT_PRIVATE_MESSAGE": "5"}, store=store)
    spawned: list[str] = []
    engine = gw.app.io.engine
    spawn = engine.spawn

    def recording_spawn(awaitable: Any) -> Any:
        spawned.append(getattr(awaitable, "__qualname__", ""))
        return spawn(awaitable)

    engine.spawn = recording_spawn  # type: ignore[method-assign]
    alice = await gw.connect("alice")
    mallory = await gw.connect("mallory")
    before = type(store).hits
    flood = 300
    for n in range(flood):
        await mallory.emit("x", n)
        await mallory.emit("private-message", {"targetUserId": "alice", "message": f"{n}"})
    answer = await alice.call("private-message", {"targetUserId": "bob", "message": "hi"})
    assert answer["success"] is True
    await mallory.next_n("rate-limit-exceeded", 2 * flood - 15, timeout=WAIT * 2)
    assert len(await mallory.next_n("error", 10)) == 10  # the unknown events in the limit
    assert len(await mallory.next_n("message-sent", 5)) == 5
    # past the limit nothing reached the store: at most one call per allowed event (+ alice)
    assert type(store).hits - before <= 10 + 5 + 1
    assert gw.metric("realtime_rate_limit_hits_total", event="default") == flood - 10
    assert gw.metric("realtime_rate_limit_hits_total", event="private-message") == flood - 5
    # the work of each event ran in its handler, never in a task of the gateway's own
    # (its own tasks are per connection, per disconnection and per ack of a message sent)
    own = ("Gateway._after_connect", "Gateway._after_disconnect", "Gateway._ack_stored")
    ours = [name for name in spawned if name.startswith("Gateway.") and name not in own
            and not name.endswith((".handler", ".unknown_event"))]
    assert ours == [], ours[:5]
    assert mallory.connected and alice.connected


async def test_shared_counter_refusal_is_remembered_locally(
    gateway_factory: GatewayFactory, redis_prefix: str, request: pytest.FixtureRequest
) -> None:
    # Two processes share one Redis: the second one learns from the shared counter that
    # the user is over the limit, and from then on refuses without asking it.
    if not request.getfixturevalue("redis_ready"):
        pytest.skip("no Redis on 127.0.0.1:6379")
    env = {"RATE_LIMIT_JOIN_ROOM": "3"}
    one = await gateway_factory("redis", env)
    store: Any = counting(RedisStore)(REDIS_URL, redis_prefix)
    two = await gateway_factory("redis", {**env, "REDIS_PREFIX": redis_prefix}, store=store)
    on_one = await one.connect("alice")
    on_two = await two.connect("alice")
    for _ in range(3):
        assert (await on_one.call("join-room", {"room": "r"}))["success"] is True
    refused = {"success": False, "error": "Rate limit exceeded"}
    assert await on_two.call("join-room", {"room": "r"}) == refused
    calls = type(store).hits
    for _ in range(5):
        assert await on_two.call("join-room", {"room": "r"}) == refused
    assert type(store).hits == calls
    exceeded = on_two.all("rate-limit-exceeded")
    assert {e["resetTime"] for e in exceeded} == {exceeded[0]["resetTime"]}


# ---------------------------------------------------------------------- presence race


class SlowPresenceStore(MemoryStore):
    """add_connection waits for ``release``: the disconnect work can come first."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.adding = asyncio.Event()

    async def add_connection(self, user_id: str, socket_id: str, ttl: float) -> bool:
        self.adding.set()
        await asyncio.wait_for(self.release.wait(), WAIT)
        return await super().add_connection(user_id, socket_id, ttl)


async def test_quick_connect_and_disconnect_leave_no_ghost(
    gateway_factory: GatewayFactory,
) -> None:
    store = SlowPresenceStore()
    gw = await gateway_factory("memory", store=store)
    bob = await gw.connect("bob", settle=False)
    await asyncio.wait_for(store.adding.wait(), WAIT)
    await bob.close()

    async def gone() -> bool:
        return not gw.app.io.sockets.sockets

    await eventually(gone)
    await asyncio.sleep(0.05)  # the disconnect work has started and is waiting
    store.release.set()
    await gw.settled()
    await gw.settled("_after_disconnect")
    assert await store.is_online("bob") is False
    assert await store.online_users() == []
