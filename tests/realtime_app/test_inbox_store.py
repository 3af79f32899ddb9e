"""Stored private messages in the Store contract (issue 8), on the memory and Redis stores.

An acked message is never evicted: a full inbox, or a sender over its share of it, refuses;
messages expire after their TTL; a client message id makes a retry a no-op; inboxes are
read a page at a time by seq (also past the ~8,000 values a Lua ``unpack`` takes).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from realtime_app import store as store_module
from realtime_app.store import (
    DUPLICATE,
    INBOX_FULL,
    SENDER_LIMIT,
    STORED,
    Dedupe,
    InboxPolicy,
    MemoryStore,
    RedisStore,
)

from .conftest import REDIS_URL, eventually

pytestmark = pytest.mark.timeout(60)


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


def message(n: int, sender: str = "alice") -> dict[str, Any]:
    return {"id": f"{sender}-{n}", "senderId": sender, "senderUsername": sender,
            "message": f"hello {n}", "timestamp": "2024-01-01T00:00:00.000Z"}


async def ids(store: Any, user: str, ttl: float | None = None) -> list[str]:
    return [m["id"] for m in await store.pending_messages(user, ttl)]


# ---------------------------------------------------------------------- never evicted


async def test_full_inbox_refuses_and_loses_nothing(store: Any) -> None:
    # The attack of issue 8 item 5, scaled down: spam fills bob's inbox; the legitimate
    # message already stored stays, the next one is refused (its sender learns it).
    policy = InboxPolicy(limit=5, per_sender=5, ttl=3600)
    assert (await store.store_message("bob", message(0, "carol"), policy)).status == STORED
    results = [await store.store_message("bob", message(n, "spammer"), policy)
               for n in range(10)]
    assert [r.status for r in results] == [STORED] * 4 + [INBOX_FULL] * 6
    assert (await store.store_message("bob", message(1, "carol"), policy)).status == INBOX_FULL
    assert await ids(store, "bob") == ["carol-0"] + [f"spammer-{n}" for n in range(4)]
    # an ack makes room again
    assert await store.ack_message("bob", "spammer-0") is True
    assert (await store.store_message("bob", message(1, "carol"), policy)).status == STORED
    assert (await ids(store, "bob"))[-1] == "carol-1"


async def test_one_sender_holds_at_most_its_share(store: Any) -> None:
    policy = InboxPolicy(limit=10, per_sender=3, ttl=3600)
    statuses = [(await store.store_message("bob", message(n, "spammer"), policy)).status
                for n in range(5)]
    assert statuses == [STORED] * 3 + [SENDER_LIMIT] * 2
    # others still get through; other inboxes are separate
    assert (await store.store_message("bob", message(0, "carol"), policy)).status == STORED
    assert (await store.store_message("dave", message(9, "spammer"), policy)).status == STORED
    # a delivered message frees the sender's share
    assert await store.ack_message("bob", "spammer-1") is True
    assert await store.ack_message("bob", "spammer-1") is False  # counted once
    assert (await store.store_message("bob", message(5, "spammer"), policy)).status == STORED
    assert (await store.store_message("bob", message(6, "spammer"), policy)).status \
        == SENDER_LIMIT
    assert await ids(store, "bob") == ["spammer-0", "spammer-2", "carol-0", "spammer-5"]


async def test_seq_increases_and_pages_follow_it(store: Any) -> None:
    policy = InboxPolicy(limit=100, per_sender=100, ttl=3600)
    seqs = [(await store.store_message("bob", message(n), policy)).seq for n in range(8)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 8
    first = await store.inbox_page("bob", 0, 3)
    assert [(s, m["id"]) for s, m in first] == [(seqs[n], f"alice-{n}") for n in range(3)]
    # acks between two pages do not move the next page: it starts after a seq
    for n in (0, 3, 4):
        assert await store.ack_message("bob", f"alice-{n}")
    second = await store.inbox_page("bob", first[-1][0], 3)
    assert [m["id"] for _, m in second] == ["alice-5", "alice-6", "alice-7"]
    assert await store.inbox_page("bob", second[-1][0], 3) == []
    assert await store.inbox_page("nobody", 0, 3) == []
    # a new message comes after everything given out before, even once the inbox emptied
    for n in (1, 2, 5, 6, 7):
        assert await store.ack_message("bob", f"alice-{n}")
    later = await store.store_message("bob", message(8), policy)
    assert later.seq > seqs[-1]


# ---------------------------------------------------------------------- expiry


async def test_stored_messages_expire(store_kind: str, store: Any) -> None:
    policy = InboxPolicy(limit=2, per_sender=2, ttl=0.5)
    for n in range(2):
        assert (await store.store_message("ghost", message(n), policy)).status == STORED
    assert (await store.store_message("ghost", message(2), policy)).status == INBOX_FULL

    async def expired() -> bool:
        return await ids(store, "ghost", policy.ttl) == [] and \
            await store.inbox_page("ghost", 0, 10, policy.ttl) == []

    await eventually(expired)
    # expired messages no longer count: the inbox takes new ones, the sender's share too
    assert (await store.store_message("ghost", message(3), policy)).status == STORED
    assert (await store.store_message("ghost", message(4), policy)).status == STORED
    assert await ids(store, "ghost", policy.ttl) == ["alice-3", "alice-4"]
    if store_kind == "redis":
        # an inbox nobody writes to any more goes away whole (made-up user ids too)
        async def keys_gone() -> bool:
            return not [k async for k in store.redis.scan_iter(match=store.prefix + "*")]

        await eventually(keys_gone)
    else:
        assert "ghost" in store._inbox
        await asyncio.sleep(0.6)
        await store.store_message("someone-else", message(5), policy)
        assert "ghost" not in store._inbox  # pruned by a write to another inbox


# ---------------------------------------------------------------------- idempotency


async def test_dedupe_key_stores_once(store: Any) -> None:
    policy = InboxPolicy(limit=10, per_sender=10, ttl=3600)
    first = await store.store_message("bob", message(0), policy, Dedupe("alice:c1", "v0", 60))
    assert first.status == STORED
    retry = await store.store_message("bob", message(1), policy, Dedupe("alice:c1", "v1", 60))
    assert (retry.status, retry.previous) == (DUPLICATE, "v0")
    other = await store.store_message("bob", message(2), policy, Dedupe("alice:c2", "v2", 60))
    assert other.status == STORED
    assert await ids(store, "bob") == ["alice-0", "alice-2"]
    # still a duplicate once delivered and deleted
    assert await store.ack_message("bob", "alice-0")
    again = await store.store_message("bob", message(3), policy, Dedupe("alice:c1", "v3", 60))
    assert again.status == DUPLICATE


async def test_refused_message_does_not_remember_its_key(store: Any) -> None:
    policy = InboxPolicy(limit=2, per_sender=1, ttl=3600)
    assert (await store.store_message("bob", message(0), policy)).status == STORED
    refused = await store.store_message("bob", message(1), policy, Dedupe("alice:r", "v", 60))
    assert refused.status == SENDER_LIMIT
    assert await store.ack_message("bob", "alice-0")
    retried = await store.store_message("bob", message(1), policy, Dedupe("alice:r", "v", 60))
    assert retried.status == STORED


async def test_dedupe_key_expires(store: Any) -> None:
    policy = InboxPolicy(limit=10, per_sender=10, ttl=3600)
    await store.store_message("bob", message(0), policy, Dedupe("alice:x", "v", 0.2))

    async def forgotten() -> bool:
        result = await store.store_message("bob", message(1), policy, Dedupe("alice:x", "w", 60))
        return result.status == STORED

    await eventually(forgotten)


# ---------------------------------------------------------------------- big inboxes


async def test_inbox_of_more_than_8000_messages_is_read(
    redis_prefix: str, request: pytest.FixtureRequest
) -> None:
    # Issue 8 item 7: the old Lua script unpacked every id at once and failed past ~8,000
    # ("too many results to unpack"), so such an inbox was never delivered.
    if not request.getfixturevalue("redis_ready"):
        pytest.skip("no Redis on 127.0.0.1:6379")
    store = RedisStore(REDIS_URL, redis_prefix)
    try:
        total = 8_200
        policy = InboxPolicy(limit=10_000, per_sender=10_000, ttl=3600)
        pipe = store.redis.pipeline(transaction=False)  # one round trip for the setup
        keys = store._inbox_keys("bob")
        for n in range(total):
            msg = message(n)
            await store._store(keys=keys, args=[
                msg["id"], store_module._dump_message(msg), "alice", policy.limit,
                policy.per_sender, 3_600_000, store_module.now_ms() * 1000,
                store_module.expiry_cutoff(policy.ttl), 0,
            ], client=pipe)
        results = await pipe.execute()
        assert {status for status, _ in results} == {STORED}
        pending = await store.pending_messages("bob", policy.ttl)
        assert [m["id"] for m in pending] == [f"alice-{n}" for n in range(total)]
        page = await store.inbox_page("bob", 0, 1000)
        tail = await store.inbox_page("bob", page[-1][0], 10_000)
        assert len(page) + len(tail) == total
    finally:
        await store.close()


# ---------------------------------------------------------------------- Redis pool


async def test_redis_burst_waits_for_the_bounded_pool(
    redis_prefix: str, request: pytest.FixtureRequest
) -> None:
    # Issue 8 item 1: a burst bigger than the pool waits for a connection instead of
    # failing with "Too many connections".
    if not request.getfixturevalue("redis_ready"):
        pytest.skip("no Redis on 127.0.0.1:6379")
    store = RedisStore(REDIS_URL, redis_prefix, pool_size=2)
    try:
        results = await asyncio.gather(*(store.hit(f"burst:{n % 7}", 10_000, 60)
                                         for n in range(300)))
        assert all(r.allowed for r in results)
        assert sum(1 for r in results if r.count == 1) == 7
        pool = store.redis.connection_pool
        assert pool.max_connections == 2
    finally:
        await store.close()


# ---------------------------------------------------------------------- memory growth


async def test_memory_music_state_pruned_on_write(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    monkeypatch.setattr(store_module, "MUSIC_STATE_TTL", 0.05)
    for n in range(5):
        await store.set_music_state(f"room-{n}", {"n": n})
    await asyncio.sleep(0.1)
    await store.set_music_state("room-fresh", {"n": 9})
    assert list(store._music) == ["room-fresh"]  # nobody read the others
    # bounded work per write: at most 10 expired rooms go at a time
    for n in range(25):
        await store.set_music_state(f"later-{n}", {"n": n})
    await asyncio.sleep(0.1)
    await store.set_music_state("x", {})
    assert len(store._music) == 26 - 10 + 1


async def test_memory_inbox_order_survives_compaction() -> None:
    store = MemoryStore()
    policy = InboxPolicy(limit=1000, per_sender=1000, ttl=3600)
    for n in range(300):
        await store.store_message("bob", message(n), policy)
    for n in range(0, 300, 3):
        await store.ack_message("bob", f"alice-{n}")
    for n in range(1, 300, 3):
        await store.ack_message("bob", f"alice-{n}")  # more than half dead: compacted
    expected = [f"alice-{n}" for n in range(2, 300, 3)]
    assert await ids(store, "bob") == expected
    rows = await store.inbox_page("bob", 0, 10)
    assert [m["id"] for _, m in rows] == expected[:10]
    assert [m["id"] for _, m in await store.inbox_page("bob", rows[-1][0], 5)] == \
        expected[10:15]


async def test_lone_surrogate_round_trips(store: Any) -> None:
    # Half an emoji, as a browser's JSON.stringify sends it (issue 8 item 12): stored and
    # given back unchanged, not refused by the JSON encoder.
    policy = InboxPolicy(limit=10, per_sender=10, ttl=3600)
    odd = {**message(0), "message": "half \ud83d an emoji"}
    assert (await store.store_message("bob", odd, policy)).status == STORED
    assert await store.pending_messages("bob") == [odd]
