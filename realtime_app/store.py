"""The gateway's shared state behind one small interface: in memory, or in Redis.

Presence, rate-limit counters, undelivered private messages, the follow graph, music
playback state and per-minute statistics. The memory store serves a single process; the
Redis store lets several gateway processes share all of it. Every Redis operation that
must be atomic is one Lua script, so one round trip.
"""

from __future__ import annotations

import json
import time
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "Dedupe", "InboxPolicy", "MemoryStore", "RateResult", "RedisStore", "Store", "StoreResult",
    "StoreUnavailable",
]

MINUTE_KEY_TTL = 3600  # per-minute statistics are kept for an hour
MUSIC_STATE_TTL = 24 * 3600
#: Expired stored messages deleted per write at most: the work of one call stays bounded
#: (in Redis the inbox keys' own TTL clears whatever is left).
PRUNE_BATCH = 200
#: Messages per round trip when a whole inbox is read (a Lua ``unpack`` stays far below
#: its ~8,000 values limit).
READ_BATCH = 1000

#: :class:`StoreResult` statuses.
STORED = "stored"
DUPLICATE = "duplicate"
INBOX_FULL = "inbox_full"
SENDER_LIMIT = "sender_limit"


class StoreUnavailable(Exception):
    """The backing store cannot be reached; the operation did not happen."""


@dataclass(frozen=True, slots=True)
class RateResult:
    allowed: bool
    count: int
    #: When the window ends, in milliseconds since the epoch.
    reset_at: int


@dataclass(frozen=True, slots=True)
class InboxPolicy:
    """What one inbox may hold: ``limit`` messages, ``per_sender`` of them from one sender,
    each for ``ttl`` seconds."""

    limit: int
    per_sender: int
    ttl: float


@dataclass(frozen=True, slots=True)
class Dedupe:
    """Store a message only if ``key`` is new; remember ``value`` under it for ``ttl`` s."""

    key: str
    value: str
    ttl: float


@dataclass(frozen=True, slots=True)
class StoreResult:
    #: STORED, DUPLICATE (``previous`` holds the first call's Dedupe.value), INBOX_FULL or
    #: SENDER_LIMIT (nothing stored).
    status: str
    #: Position of a STORED message in its inbox: increasing, never reused; also its time
    #: of storage in microseconds since the epoch (or a little later under bursts).
    seq: int = 0
    previous: str | None = None


def now_ms() -> int:
    return int(time.time() * 1000)


def current_minute() -> int:
    return int(time.time() // 60)


class Store(Protocol):
    async def ping(self) -> bool: ...

    async def close(self) -> None: ...

    # presence: a user is online while any of their sockets is
    async def add_connection(self, user_id: str, socket_id: str, ttl: float) -> bool:
        """Record a socket; True if the user was offline before."""
        ...

    async def remove_connection(self, user_id: str, socket_id: str) -> bool:
        """Forget a socket; True if it was the user's last one."""
        ...

    async def refresh_connections(self, pairs: list[tuple[str, str]], ttl: float) -> None: ...

    async def is_online(self, user_id: str) -> bool: ...

    async def online_users(self) -> list[str]: ...

    async def online_count(self) -> int:
        """How many users are online (without listing them: /stats, every metrics scrape)."""
        ...

    async def pop_offline_users(self, limit: int) -> list[str]:
        """Users whose every socket expired unseen (their node died): each is returned by
        one call only, on whichever node asks first, so that one node announces it."""
        ...

    async def hit(self, key: str, limit: int, window: float) -> RateResult: ...

    # undelivered private messages, oldest first; ``message`` has "id" and "senderId"
    async def store_message(
        self, user_id: str, message: dict[str, Any], policy: InboxPolicy,
        dedupe: Dedupe | None = None,
    ) -> StoreResult:
        """Append unless the inbox or the sender's share of it is full (never evicts)."""
        ...

    async def inbox_page(
        self, user_id: str, after: int, count: int, ttl: float | None = None
    ) -> list[tuple[int, dict[str, Any]]]:
        """Up to ``count`` (seq, message) with seq > ``after``, oldest first; with ``ttl``,
        messages older than ``ttl`` seconds are left out."""
        ...

    async def pending_messages(
        self, user_id: str, ttl: float | None = None
    ) -> list[dict[str, Any]]:
        """Every stored message, oldest first (read page by page, whatever the size)."""
        ...

    async def ack_message(self, user_id: str, message_id: str) -> bool: ...

    async def follow(self, follower: str, followee: str) -> bool: ...

    async def unfollow(self, follower: str, followee: str) -> bool: ...

    async def followers(self, user_id: str) -> list[str]: ...

    async def following(self, user_id: str) -> list[str]: ...

    async def set_music_state(self, room: str, state: dict[str, Any]) -> None: ...

    async def get_music_state(self, room: str) -> dict[str, Any] | None: ...

    async def record_minute(self, counters: Mapping[str, int], active_users: Collection[str],
                            minute: int | None = None) -> None:
        """Add to the per-minute statistics of ``minute`` (default: this one)."""
        ...

    async def minute_stats(self) -> dict[str, int]: ...


# ====================================================================== memory


def expiry_cutoff(ttl: float) -> int:
    """The seq below which a stored message is older than ``ttl`` seconds."""
    return (now_ms() - int(ttl * 1000)) * 1000


def next_seq(last: int) -> int:
    # Increasing, and close to the time of storage in microseconds, so that a seq is both
    # the inbox order and the message's age (see StoreResult.seq).
    return max(last + 1, now_ms() * 1000)


class _MemoryInbox:
    """One user's stored messages in seq order, with per-sender counts.

    Deleted ids stay in ``order`` until more than half of it is dead (amortised O(1));
    ``seqs`` is parallel to ``order`` for the bisection of a page.
    """

    __slots__ = ("head", "messages", "order", "senders", "seqs", "written")

    def __init__(self) -> None:
        self.messages: dict[str, tuple[int, str, dict[str, Any]]] = {}
        self.order: list[str] = []
        self.seqs: list[int] = []
        self.head = 0  # order[:head] are all deleted
        self.senders: dict[str, int] = {}
        self.written = 0.0

    def add(self, message: dict[str, Any], sender: str, seq: int) -> None:
        message_id = str(message["id"])
        self.messages[message_id] = (seq, sender, message)
        self.order.append(message_id)
        self.seqs.append(seq)
        self.senders[sender] = self.senders.get(sender, 0) + 1
        self.written = time.time()

    def remove(self, message_id: str) -> bool:
        entry = self.messages.pop(message_id, None)
        if entry is None:
            return False
        sender = entry[1]
        left = self.senders[sender] - 1
        if left:
            self.senders[sender] = left
        else:
            del self.senders[sender]
        dead = len(self.order) - len(self.messages)
        if dead > 64 and dead * 2 > len(self.order):
            self.order = [i for i in self.order if i in self.messages]
            self.seqs = [self.messages[i][0] for i in self.order]
            self.head = 0
        return True

    def _live(self, index: int) -> bool:
        entry = self.messages.get(self.order[index])
        return entry is not None and entry[0] == self.seqs[index]

    def prune(self, cutoff: int, budget: int) -> None:
        while self.head < len(self.order) and budget > 0:
            if not self._live(self.head):
                self.head += 1
                continue
            if self.seqs[self.head] >= cutoff:
                return
            length = len(self.order)
            self.remove(self.order[self.head])
            budget -= 1
            if len(self.order) == length:  # else compacted: head is 0 and order[0] is live
                self.head += 1

    def page(self, after: int, count: int) -> list[tuple[int, dict[str, Any]]]:
        rows: list[tuple[int, dict[str, Any]]] = []
        index = max(self.head, bisect_right(self.seqs, after))
        while index < len(self.order) and len(rows) < count:
            if self._live(index):
                rows.append((self.seqs[index], self.messages[self.order[index]][2]))
            index += 1
        return rows



class MemoryStore:
    """Exact, single-process store. Everything is lost when the process stops."""

    def __init__(self) -> None:
        self._presence: dict[str, dict[str, float]] = {}
        self._windows: dict[str, tuple[int, int]] = {}
        # Least recently written first: whole inboxes past their TTL are at the front.
        self._inbox: OrderedDict[str, _MemoryInbox] = OrderedDict()
        self._dedupe: OrderedDict[str, tuple[float, str]] = OrderedDict()
        # One counter for all inboxes: a seq is never given out twice, even after an
        # inbox emptied and was deleted (sockets compare seqs with what they replayed).
        self._last_seq = 0
        self._followers: dict[str, set[str]] = {}
        self._following: dict[str, set[str]] = {}
        # Least recently written first (all expire MUSIC_STATE_TTL after their write).
        self._music: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._minutes: dict[tuple[str, int], int] = {}
        self._active: dict[int, set[str]] = {}

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None

    def _live(self, user_id: str) -> dict[str, float]:
        sockets = self._presence.get(user_id, {})
        now = time.monotonic()
        for sid in [s for s, expiry in sockets.items() if expiry <= now]:
            del sockets[sid]
        if not sockets:
            self._presence.pop(user_id, None)
        return sockets

    async def add_connection(self, user_id: str, socket_id: str, ttl: float) -> bool:
        was_offline = not self._live(user_id)
        self._presence.setdefault(user_id, {})[socket_id] = time.monotonic() + ttl
        return was_offline

    async def remove_connection(self, user_id: str, socket_id: str) -> bool:
        sockets = self._live(user_id)
        if socket_id not in sockets:
            return False
        del sockets[socket_id]
        if not sockets:
            self._presence.pop(user_id, None)
            return True
        return False

    async def refresh_connections(self, pairs: list[tuple[str, str]], ttl: float) -> None:
        expiry = time.monotonic() + ttl
        for user_id, socket_id in pairs:
            sockets = self._presence.get(user_id)
            if sockets is not None and socket_id in sockets:
                sockets[socket_id] = expiry

    async def is_online(self, user_id: str) -> bool:
        return bool(self._live(user_id))

    async def online_users(self) -> list[str]:
        return sorted(u for u in list(self._presence) if self._live(u))

    async def online_count(self) -> int:
        return sum(1 for u in list(self._presence) if self._live(u))

    async def pop_offline_users(self, limit: int) -> list[str]:
        now = time.monotonic()
        gone = [u for u, sockets in list(self._presence.items())
                if all(expiry <= now for expiry in sockets.values())][:limit]
        for user_id in gone:
            del self._presence[user_id]
        return gone

    async def hit(self, key: str, limit: int, window: float) -> RateResult:
        now = now_ms()
        count, reset_at = self._windows.get(key, (0, 0))
        if reset_at <= now:
            count, reset_at = 0, now + int(window * 1000)
            if len(self._windows) > 100_000:  # forget finished windows now and then
                self._windows = {k: v for k, v in self._windows.items() if v[1] > now}
        count += 1
        self._windows[key] = (count, reset_at)
        return RateResult(count <= limit, count, reset_at)

    async def store_message(
        self, user_id: str, message: dict[str, Any], policy: InboxPolicy,
        dedupe: Dedupe | None = None,
    ) -> StoreResult:
        now = time.monotonic()
        self._prune_dedupe(now)
        if dedupe is not None:
            entry = self._dedupe.get(dedupe.key)
            if entry is not None and entry[0] > now:
                return StoreResult(DUPLICATE, previous=entry[1])
        self._prune_inboxes(policy.ttl)
        inbox = self._inbox.get(user_id) or _MemoryInbox()
        inbox.prune(expiry_cutoff(policy.ttl), PRUNE_BATCH)
        sender = str(message["senderId"])
        if len(inbox.messages) >= policy.limit:
            return StoreResult(INBOX_FULL)
        if inbox.senders.get(sender, 0) >= policy.per_sender:
            return StoreResult(SENDER_LIMIT)
        seq = self._last_seq = next_seq(self._last_seq)
        inbox.add(message, sender, seq)
        self._inbox[user_id] = inbox
        self._inbox.move_to_end(user_id)  # most recently written last
        if dedupe is not None:
            self._dedupe[dedupe.key] = (now + dedupe.ttl, dedupe.value)
            self._dedupe.move_to_end(dedupe.key)
        return StoreResult(STORED, seq)

    def _prune_dedupe(self, now: float) -> None:
        # Bounded work per call; entries expire in insertion order for a constant TTL.
        for _ in range(10):
            if not self._dedupe:
                return
            key, (expiry, _value) = next(iter(self._dedupe.items()))
            if expiry > now:
                return
            del self._dedupe[key]

    def _prune_inboxes(self, ttl: float) -> None:
        # An inbox last written more than ``ttl`` ago holds only expired messages: the
        # inboxes of made-up user ids go away without anyone reading them.
        deadline = time.time() - ttl
        for _ in range(10):
            if not self._inbox:
                return
            user_id, inbox = next(iter(self._inbox.items()))
            if inbox.written > deadline:
                return
            del self._inbox[user_id]

    async def inbox_page(
        self, user_id: str, after: int, count: int, ttl: float | None = None
    ) -> list[tuple[int, dict[str, Any]]]:
        inbox = self._inbox.get(user_id)
        if inbox is None:
            return []
        floor = after if ttl is None else max(after, expiry_cutoff(ttl) - 1)
        return inbox.page(floor, count)

    async def pending_messages(
        self, user_id: str, ttl: float | None = None
    ) -> list[dict[str, Any]]:
        return [m for _, m in await self.inbox_page(user_id, 0, 1 << 62, ttl)]

    async def ack_message(self, user_id: str, message_id: str) -> bool:
        inbox = self._inbox.get(user_id)
        if inbox is None or not inbox.remove(message_id):
            return False
        if not inbox.messages:
            del self._inbox[user_id]
        return True

    async def follow(self, follower: str, followee: str) -> bool:
        added = follower not in self._followers.get(followee, set())
        self._followers.setdefault(followee, set()).add(follower)
        self._following.setdefault(follower, set()).add(followee)
        return added

    async def unfollow(self, follower: str, followee: str) -> bool:
        removed = follower in self._followers.get(followee, set())
        self._followers.get(followee, set()).discard(follower)
        self._following.get(follower, set()).discard(followee)
        return removed

    async def followers(self, user_id: str) -> list[str]:
        return sorted(self._followers.get(user_id, ()))

    async def following(self, user_id: str) -> list[str]:
        return sorted(self._following.get(user_id, ()))

    async def set_music_state(self, room: str, state: dict[str, Any]) -> None:
        now = time.monotonic()
        # Rooms nobody reads again would stay forever: drop a few expired ones per write.
        for _ in range(10):
            if not self._music:
                break
            oldest, (expiry, _state) = next(iter(self._music.items()))
            if expiry > now:
                break
            del self._music[oldest]
        self._music.pop(room, None)
        self._music[room] = (now + MUSIC_STATE_TTL, state)

    async def get_music_state(self, room: str) -> dict[str, Any] | None:
        entry = self._music.get(room)
        if entry is None or entry[0] <= time.monotonic():
            self._music.pop(room, None)
            return None
        return entry[1]

    async def record_minute(self, counters: Mapping[str, int], active_users: Collection[str],
                            minute: int | None = None) -> None:
        if minute is None:
            minute = current_minute()
        for name, amount in counters.items():
            self._minutes[(name, minute)] = self._minutes.get((name, minute), 0) + amount
        if active_users:
            self._active.setdefault(minute, set()).update(active_users)
        if len(self._minutes) > 1000 or len(self._active) > 60:
            oldest = minute - MINUTE_KEY_TTL // 60
            self._minutes = {k: v for k, v in self._minutes.items() if k[1] > oldest}
            self._active = {k: v for k, v in self._active.items() if k > oldest}

    async def minute_stats(self) -> dict[str, int]:
        minute = current_minute()
        return {
            "connections": self._minutes.get(("connect", minute), 0),
            "disconnections": self._minutes.get(("disconnect", minute), 0),
            "activeUsers": len(self._active.get(minute, ())),
            "messageCount": self._minutes.get(("messages:private-message", minute), 0),
        }


# ====================================================================== redis

_ADD_CONNECTION = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], 'GT', ARGV[2], ARGV[4])
if before == 0 then return 1 end
return 0
"""

_REMOVE_CONNECTION = """
local removed = redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local left = redis.call('ZCARD', KEYS[1])
if left == 0 then
  redis.call('ZREM', KEYS[2], ARGV[3])
  if removed == 1 then return 1 end
  return 0
end
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('ZADD', KEYS[2], top[2], ARGV[3])
return 0
"""

# KEYS: online; ARGV: now ms, limit. Users whose last socket expired, taken out at once.
_POP_OFFLINE = """
local users = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #users > 0 then redis.call('ZREM', KEYS[1], unpack(users)) end
return users
"""

_HIT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""

# An inbox is five keys: order (sorted set, id by seq), messages (hash id -> JSON), from
# (hash id -> sender), senders (hash sender -> count) and seq (the last seq given out).
# Every write sets all five to expire STORED_MESSAGE_TTL later: an inbox nobody writes to
# any more disappears whole, made-up user ids included.
_FORGET = """
local function forget(id)
  if redis.call('ZREM', KEYS[1], id) == 0 then return 0 end
  redis.call('HDEL', KEYS[2], id)
  local sender = redis.call('HGET', KEYS[3], id)
  if sender then
    redis.call('HDEL', KEYS[3], id)
    if redis.call('HINCRBY', KEYS[4], sender, -1) <= 0 then
      redis.call('HDEL', KEYS[4], sender)
    end
  end
  return 1
end
"""

# KEYS: order, messages, from, senders, seq[, dedupe]
# ARGV: id, json, sender, limit, per sender, ttl ms, now us, expiry cutoff,
#       prune batch[, dedupe value, dedupe ttl ms]
_STORE_MESSAGE = _FORGET + """
if KEYS[6] then
  local previous = redis.call('GET', KEYS[6])
  if previous then return {'duplicate', previous} end
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[8],
                           'LIMIT', 0, ARGV[9])
for _, id in ipairs(expired) do forget(id) end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return {'inbox_full', ''} end
if tonumber(redis.call('HGET', KEYS[4], ARGV[3]) or '0') >= tonumber(ARGV[5]) then
  return {'sender_limit', ''}
end
local seq = tonumber(redis.call('GET', KEYS[5]) or '0') + 1
local now = tonumber(ARGV[7])
if now > seq then seq = now end
seq = string.format('%.0f', seq)
redis.call('SET', KEYS[5], seq, 'PX', ARGV[6])
redis.call('ZADD', KEYS[1], seq, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[6]) end
if KEYS[6] then redis.call('SET', KEYS[6], ARGV[10], 'PX', ARGV[11]) end
return {'stored', seq}
"""

# KEYS: order, messages; ARGV: exclusive lower seq, count. A page, never the whole inbox:
# unpack() of more than ~8,000 values fails.
_PAGE = """
local rows = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES',
                        'LIMIT', 0, ARGV[2])
if #rows == 0 then return {} end
local ids = {}
for i = 1, #rows, 2 do ids[#ids + 1] = rows[i] end
local bodies = redis.call('HMGET', KEYS[2], unpack(ids))
local out = {}
for i = 1, #ids do
  out[#out + 1] = rows[2 * i]
  out[#out + 1] = bodies[i] or ''
end
return out
"""

# KEYS: order, messages, from, senders; ARGV: id
_ACK = _FORGET + """
return forget(ARGV[1])
"""


def _dump_message(message: dict[str, Any]) -> str:
    # Stored messages and music state. ASCII JSON: a lone surrogate (half an emoji a
    # browser sent) survives as its escape, where orjson and UTF-8 would refuse it.
    return json.dumps(message, ensure_ascii=True, separators=(",", ":"))


def _load_message(value: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(value)
    return loaded


class RedisStore:
    """Shared store on Redis (redis-py asyncio). Keys all start with ``prefix``."""

    def __init__(
        self, url: str, prefix: str = "rt:", *, timeout: float = 2.0, pool_size: int = 50
    ) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        self.prefix = prefix
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        # Bounded, and a burst waits for a free connection (up to ``timeout``) instead of
        # failing with "Too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=pool_size,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=10,
            decode_responses=True,
            # One immediate retry: after a Redis restart each pooled connection fails once.
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[RedisConnectionError],
        )
        self.redis = aioredis.Redis.from_pool(pool)
        self._add = self.redis.register_script(_ADD_CONNECTION)
        self._remove = self.redis.register_script(_REMOVE_CONNECTION)
        self._hit = self.redis.register_script(_HIT)
        self._pop_offline = self.redis.register_script(_POP_OFFLINE)
        self._store = self.redis.register_script(_STORE_MESSAGE)
        self._page = self.redis.register_script(_PAGE)
        self._ack = self.redis.register_script(_ACK)

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def _run(self, coro: Any) -> Any:
        try:
            return await coro
        except self._errors as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except self._errors:
            return False

    async def close(self) -> None:
        await self.redis.aclose()

    async def add_connection(self, user_id: str, socket_id: str, ttl: float) -> bool:
        now = now_ms()
        result = await self._run(self._add(
            keys=[self._key("presence", "user", user_id), self._key("presence", "online")],
            args=[now, now + int(ttl * 1000), socket_id, user_id],
        ))
        return bool(result)

    async def remove_connection(self, user_id: str, socket_id: str) -> bool:
        result = await self._run(self._remove(
            keys=[self._key("presence", "user", user_id), self._key("presence", "online")],
            args=[now_ms(), socket_id, user_id],
        ))
        return bool(result)

    async def refresh_connections(self, pairs: list[tuple[str, str]], ttl: float) -> None:
        if not pairs:
            return
        expiry = now_ms() + int(ttl * 1000)
        online = self._key("presence", "online")
        pipe = self.redis.pipeline(transaction=False)
        for user_id, socket_id in pairs:
            user_key = self._key("presence", "user", user_id)
            # Not XX: after Redis lost its data, live sockets put their presence back.
            pipe.zadd(user_key, {socket_id: expiry})
            pipe.pexpireat(user_key, expiry)
            pipe.zadd(online, {user_id: expiry}, gt=True)
        await self._run(pipe.execute())

    async def is_online(self, user_id: str) -> bool:
        score = await self._run(self.redis.zscore(self._key("presence", "online"), user_id))
        return score is not None and score > now_ms()

    async def online_users(self) -> list[str]:
        # Expired entries stay for pop_offline_users, which announces them.
        online = self._key("presence", "online")
        users = await self._run(self.redis.zrangebyscore(online, f"({now_ms()}", "+inf"))
        return sorted(users)

    async def online_count(self) -> int:
        online = self._key("presence", "online")
        return int(await self._run(self.redis.zcount(online, f"({now_ms()}", "+inf")))

    async def pop_offline_users(self, limit: int) -> list[str]:
        users = await self._run(self._pop_offline(
            keys=[self._key("presence", "online")], args=[now_ms(), limit]))
        return list(users)

    async def hit(self, key: str, limit: int, window: float) -> RateResult:
        count, ttl = await self._run(
            self._hit(keys=[self._key("rate", key)], args=[int(window * 1000)])
        )
        return RateResult(int(count) <= limit, int(count), now_ms() + int(ttl))

    def _inbox_keys(self, user_id: str) -> list[str]:
        return [self._key("inbox", user_id, part)
                # "order", not the list "ids" of earlier versions: a key of another type
                # would fail every call on that inbox (WRONGTYPE).
                for part in ("order", "messages", "from", "senders", "seq")]

    async def store_message(
        self, user_id: str, message: dict[str, Any], policy: InboxPolicy,
        dedupe: Dedupe | None = None,
    ) -> StoreResult:
        keys = self._inbox_keys(user_id)
        ttl_ms = max(1, int(policy.ttl * 1000))
        args: list[Any] = [
            message["id"], _dump_message(message), str(message["senderId"]), policy.limit,
            policy.per_sender, ttl_ms, now_ms() * 1000, expiry_cutoff(policy.ttl),
            PRUNE_BATCH,
        ]
        if dedupe is not None:
            keys.append(self._key("dedupe", dedupe.key))
            args += [dedupe.value, max(1, int(dedupe.ttl * 1000))]
        status, value = await self._run(self._store(keys=keys, args=args))
        if status == STORED:
            return StoreResult(STORED, int(value))
        if status == DUPLICATE:
            return StoreResult(DUPLICATE, previous=value)
        return StoreResult(status)

    async def inbox_page(
        self, user_id: str, after: int, count: int, ttl: float | None = None
    ) -> list[tuple[int, dict[str, Any]]]:
        floor = after if ttl is None else max(after, expiry_cutoff(ttl) - 1)
        rows = await self._run(self._page(
            keys=self._inbox_keys(user_id)[:2], args=[floor, count],
        ))
        return [(int(float(rows[i])), _load_message(rows[i + 1]))
                for i in range(0, len(rows), 2) if rows[i + 1]]

    async def pending_messages(
        self, user_id: str, ttl: float | None = None
    ) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        after = 0
        while True:
            rows = await self.inbox_page(user_id, after, READ_BATCH, ttl)
            messages += [m for _, m in rows]
            if len(rows) < READ_BATCH:
                return messages
            after = rows[-1][0]

    async def ack_message(self, user_id: str, message_id: str) -> bool:
        removed = await self._run(self._ack(
            keys=self._inbox_keys(user_id)[:4], args=[message_id],
        ))
        return bool(removed)

    async def follow(self, follower: str, followee: str) -> bool:
        pipe = self.redis.pipeline(transaction=True)
        pipe.sadd(self._key("followers", followee), follower)
        pipe.sadd(self._key("following", follower), followee)
        added, _ = await self._run(pipe.execute())
        return bool(added)

    async def unfollow(self, follower: str, followee: str) -> bool:
        pipe = self.redis.pipeline(transaction=True)
        pipe.srem(self._key("followers", followee), follower)
        pipe.srem(self._key("following", follower), followee)
        removed, _ = await self._run(pipe.execute())
        return bool(removed)

    async def followers(self, user_id: str) -> list[str]:
        return sorted(await self._run(self.redis.smembers(self._key("followers", user_id))))

    async def following(self, user_id: str) -> list[str]:
        return sorted(await self._run(self.redis.smembers(self._key("following", user_id))))

    async def set_music_state(self, room: str, state: dict[str, Any]) -> None:
        await self._run(self.redis.set(self._key("music", room), _dump_message(state),
                                       ex=MUSIC_STATE_TTL))

    async def get_music_state(self, room: str) -> dict[str, Any] | None:
        value = await self._run(self.redis.get(self._key("music", room)))
        return _load_message(value) if value else None

    async def record_minute(self, counters: Mapping[str, int], active_users: Collection[str],
                            minute: int | None = None) -> None:
        label = str(current_minute() if minute is None else minute)
        pipe = self.redis.pipeline(transaction=False)
        for name, amount in counters.items():
            key = self._key("metrics", name, label)
            pipe.incrby(key, amount)
            pipe.expire(key, MINUTE_KEY_TTL)
        if active_users:
            key = self._key("active", label)
            pipe.sadd(key, *active_users)
            pipe.expire(key, MINUTE_KEY_TTL)
        await self._run(pipe.execute())

    async def minute_stats(self) -> dict[str, int]:
        minute = str(current_minute())
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self._key("metrics", "connect", minute))
        pipe.get(self._key("metrics", "disconnect", minute))
        pipe.scard(self._key("active", minute))
        pipe.get(self._key("metrics", "messages:private-message", minute))
        connect, disconnect, active, messages = await self._run(pipe.execute())
        return {
            "connections": int(connect or 0),
            "disconnections": int(disconnect or 0),
            "activeUsers": int(active or 0),
            "messageCount": int(messages or 0),
        }
