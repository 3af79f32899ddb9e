"""The Store contract, run on both the memory store and the Redis store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from realtime_app.store import (
    STORED,
    InboxPolicy,
    MemoryStore,
    RedisStore,
    Store,
    StoreUnavailable,
    current_minute,
    now_ms,
)

from .conftest import REDIS_URL, eventually

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def store(
    store_kind: str, redis_prefix: str, request: pytest.FixtureRequest
) -> AsyncIterator[Any]:
    if store_kind == "memory":
        yield MemoryStore()
        return
    if not request.getfixturevalue("redis_ready"):
        pytest.skip("no Redis on 127.0.0.1:6379")
    redis_store = RedisStore(REDIS_URL, redis_prefix)
    yield redis_store
    await redis_store.close()


POLICY = InboxPolicy(limit=10, per_sender=10, ttl=3600)


def message(n: int) -> dict[str, Any]:
    return {"id": f"m{n}", "senderId": "alice", "senderUsername": "Alice",
            "message": f"hello {n}", "timestamp": "2024-01-01T00:00:00.000Z"}


def test_both_stores_satisfy_the_protocol() -> None:
    names = [n for n in vars(Store) if not n.startswith("_")]
    assert "add_connection" in names and "minute_stats" in names
    for name in names:
        assert callable(getattr(MemoryStore, name)), name
        assert callable(getattr(RedisStore, name)), name


async def test_ping(store: Any) -> None:
    assert await store.ping() is True


# ---------------------------------------------------------------------- presence


async def test_presence_with_several_sockets(store: Any) -> None:
    assert await store.is_online("u1") is False
    assert await store.add_connection("u1", "s1", 30) is True  # came online
    assert await store.add_connection("u1", "s2", 30) is False  # already online
    assert await store.add_connection("u2", "s3", 30) is True
    assert await store.is_online("u1") and await store.is_online("u2")
    assert await store.online_users() == ["u1", "u2"]
    assert await store.online_count() == 2
    assert await store.remove_connection("u1", "s1") is False  # s2 is still there
    assert await store.is_online("u1")
    assert await store.remove_connection("u1", "s2") is True  # last one
    assert not await store.is_online("u1")
    assert await store.online_users() == ["u2"]
    # removing an unknown or already removed socket changes nothing
    assert await store.remove_connection("u1", "s2") is False
    assert await store.remove_connection("nobody", "sx") is False
    assert await store.online_users() == ["u2"]


async def test_same_socket_added_twice_counts_once(store: Any) -> None:
    assert await store.add_connection("u", "s", 30) is True
    assert await store.add_connection("u", "s", 30) is False
    assert await store.remove_connection("u", "s") is True
    assert not await store.is_online("u")


async def test_presence_expires_after_ttl_unless_refreshed(store: Any) -> None:
    await store.add_connection("stale", "s1", 0.5)
    await store.add_connection("kept", "s2", 0.5)
    await store.refresh_connections([("kept", "s2"), ("ghost", "s9")], 30)

    async def stale_gone() -> bool:
        return not await store.is_online("stale")

    await eventually(stale_gone)
    assert await store.is_online("kept")
    # Refreshing a socket the store does not know (expired, or lost in a Redis restart)
    # may either ignore it or bring it back, but presence must stay consistent: if its user
    # now counts as online, removing that socket is the user's last one leaving (that is
    # what tells followers "user-offline").
    ghost_online = await store.is_online("ghost")
    assert ("ghost" in await store.online_users()) is ghost_online
    if ghost_online:
        assert await store.remove_connection("ghost", "s9") is True
        assert not await store.is_online("ghost")
    assert await store.online_users() == ["kept"]
    # the expired socket does not count: the next connection brings the user online again
    assert await store.add_connection("stale", "s3", 30) is True
    assert await store.remove_connection("stale", "s3") is True


async def test_refresh_of_nothing_is_fine(store: Any) -> None:
    await store.refresh_connections([], 30)
    assert await store.online_users() == []


# ---------------------------------------------------------------------- rate limits


async def test_rate_limit_window_counts_and_resets(store: Any) -> None:
    before = now_ms()
    results = [await store.hit("u:event", 3, 0.5) for _ in range(5)]
    assert [r.allowed for r in results] == [True, True, True, False, False]
    assert [r.count for r in results] == [1, 2, 3, 4, 5]
    reset_at = results[0].reset_at
    assert before < reset_at <= now_ms() + 600
    assert all(abs(r.reset_at - reset_at) <= 250 for r in results)  # one window
    # another key has its own window
    assert (await store.hit("u:other", 3, 0.5)).count == 1

    async def reset() -> bool:
        result = await store.hit("u:probe", 1000, 60)  # keep polling without touching u:event
        assert result.allowed
        return now_ms() > reset_at + 20

    await eventually(reset)
    fresh = await store.hit("u:event", 3, 0.5)
    assert (fresh.allowed, fresh.count) == (True, 1)
    assert fresh.reset_at > reset_at


# ---------------------------------------------------------------------- inbox


async def test_inbox_keeps_order_and_acks_by_id(store: Any) -> None:
    assert await store.pending_messages("bob") == []
    for n in range(4):
        assert (await store.store_message("bob", message(n), POLICY)).status == STORED
    assert await store.pending_messages("bob") == [message(n) for n in range(4)]
    assert await store.ack_message("bob", "m1") is True
    assert await store.ack_message("bob", "m1") is False  # once
    assert await store.ack_message("bob", "unknown") is False
    assert await store.ack_message("carol", "m0") is False  # another user's inbox
    assert [m["id"] for m in await store.pending_messages("bob")] == ["m0", "m2", "m3"]
    for n in (0, 2, 3):
        assert await store.ack_message("bob", f"m{n}") is True
    assert await store.pending_messages("bob") == []


async def test_inbox_round_trips_unicode_and_nested_values(store: Any) -> None:
    odd = {**message(9), "message": "héllo 🎵 \"quoted\" \n newline", "extra": {"a": [1, None]}}
    await store.store_message("bob", odd, POLICY)
    assert await store.pending_messages("bob") == [odd]


# ---------------------------------------------------------------------- follows


async def test_follow_graph(store: Any) -> None:
    assert await store.follow("f1", "star") is True
    assert await store.follow("f1", "star") is False  # already
    assert await store.follow("f2", "star") is True
    assert await store.follow("f1", "other") is True
    assert await store.followers("star") == ["f1", "f2"]
    assert await store.following("f1") == ["other", "star"]
    assert await store.followers("nobody") == [] and await store.following("nobody") == []
    assert await store.unfollow("f1", "star") is True
    assert await store.unfollow("f1", "star") is False
    assert await store.followers("star") == ["f2"]
    assert await store.following("f1") == ["other"]


# ---------------------------------------------------------------------- music


async def test_music_state(store: Any) -> None:
    assert await store.get_music_state("room-1") is None
    state = {"songId": "s1", "position": 12.5, "playing": True, "updatedAt": now_ms(),
             "userId": "u"}
    await store.set_music_state("room-1", state)
    assert await store.get_music_state("room-1") == state
    await store.set_music_state("room-1", {**state, "playing": False})
    assert (await store.get_music_state("room-1"))["playing"] is False
    assert await store.get_music_state("room-2") is None


# ---------------------------------------------------------------------- statistics


async def test_minute_stats(store_kind: str, store: Any) -> None:
    for _ in range(3):  # retried when the minute changes under the test
        minute = current_minute()
        target = MemoryStore() if store_kind == "memory" and _ else store
        await target.record_minute({"connect": 1}, {"u1"})
        await target.record_minute({"connect": 1}, {"u2"})
        await target.record_minute({"disconnect": 1}, ())
        await target.record_minute({"messages:private-message": 2}, ["u1", "u3"])
        await target.record_minute({"messages:private-message": 1}, {"u3"}, minute)
        stats = await target.minute_stats()
        if current_minute() != minute:
            if store_kind == "redis":
                await asyncio.sleep(0)  # the new minute has fresh keys: just retry
            continue
        assert stats == {"connections": 2, "disconnections": 1, "activeUsers": 3,
                         "messageCount": 3}
        return
    pytest.fail("the minute kept changing")


async def test_empty_minute_stats(store: Any) -> None:
    assert await store.minute_stats() == {"connections": 0, "disconnections": 0,
                                          "activeUsers": 0, "messageCount": 0}


# ---------------------------------------------------------------------- unavailable


async def test_redis_store_unreachable_raises_store_unavailable(redis_prefix: str) -> None:
    # nothing listens on port 1
    unreachable = RedisStore("redis://127.0.0.1:1/0", redis_prefix, timeout=0.5)
    try:
        assert await unreachable.ping() is False
        for call in (
            unreachable.add_connection("u", "s", 10),
            unreachable.remove_connection("u", "s"),
            unreachable.is_online("u"),
            unreachable.online_users(),
            unreachable.online_count(),
            unreachable.hit("k", 1, 1),
            unreachable.store_message("u", message(1), POLICY),
            unreachable.inbox_page("u", 0, 10),
            unreachable.pending_messages("u"),
            unreachable.ack_message("u", "m1"),
            unreachable.follow("a", "b"),
            unreachable.followers("b"),
            unreachable.set_music_state("r", {}),
            unreachable.get_music_state("r"),
            unreachable.record_minute({"connect": 1}, {"u"}),
            unreachable.minute_stats(),
            unreachable.refresh_connections([("u", "s")], 10),
        ):
            with pytest.raises(StoreUnavailable):
                await call
    finally:
        await unreachable.close()
