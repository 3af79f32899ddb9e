"""The gateway's shared state behind one small interface: in memory, or in Redis.

Presence, rate-limit counters, undelivered private messages, the follow graph, music
playback state and per-minute statistics. The memory store serves a single process; the
Redis store lets several gateway processes share all of it. Every Redis operation that
must be atomic is one Lua script, so one round trip.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

__all__ = ["MemoryStore", "RateResult", "RedisStore", "Store", "StoreUnavailable"]

MINUTE_KEY_TTL = 3600  # per-minute statistics are kept for an hour
MUSIC_STATE_TTL = 24 * 3600


class StoreUnavailable(Exception):
    """The backing store cannot be reached; the operation did not happen."""


@dataclass(frozen=True, slots=True)
class RateResult:
    allowed: bool
    count: int
    #: When the window ends, in milliseconds since the epoch.
    reset_at: int


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

    async def hit(self, key: str, limit: int, window: float) -> RateResult: ...

    # undelivered private messages, oldest first
    async def store_message(self, user_id: str, message: dict[str, Any], limit: int) -> int:
        """Append; returns how many old messages were dropped to stay within ``limit``."""
        ...

    async def pending_messages(self, user_id: str) -> list[dict[str, Any]]: ...

    async def ack_message(self, user_id: str, message_id: str) -> bool: ...

    async def follow(self, follower: str, followee: str) -> bool: ...

    async def unfollow(self, follower: str, followee: str) -> bool: ...

    async def followers(self, user_id: str) -> list[str]: ...

    async def following(self, user_id: str) -> list[str]: ...

    async def set_music_state(self, room: str, state: dict[str, Any]) -> None: ...

    async def get_music_state(self, room: str) -> dict[str, Any] | None: ...

    async def record_minute(self, counters: dict[str, int], active_user: str | None) -> None: ...

    async def minute_stats(self) -> dict[str, int]: ...


# ====================================================================== memory


class MemoryStore:
    """Exact, single-process store. Everything is lost when the process stops."""

    def __init__(self) -> None:
        self._presence: dict[str, dict[str, float]] = {}
        self._windows: dict[str, tuple[int, int]] = {}
        self._inbox: dict[str, OrderedDict[str, dict[str, Any]]] = {}
        self._followers: dict[str, set[str]] = {}
        self._following: dict[str, set[str]] = {}
        self._music: dict[str, tuple[float, dict[str, Any]]] = {}
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

    async def store_message(self, user_id: str, message: dict[str, Any], limit: int) -> int:
        inbox = self._inbox.setdefault(user_id, OrderedDict())
        inbox[message["id"]] = message
        dropped = 0
        while len(inbox) > limit:
            inbox.popitem(last=False)
            dropped += 1
        return dropped

    async def pending_messages(self, user_id: str) -> list[dict[str, Any]]:
        return list(self._inbox.get(user_id, {}).values())

    async def ack_message(self, user_id: str, message_id: str) -> bool:
        inbox = self._inbox.get(user_id)
        if inbox is None or message_id not in inbox:
            return False
        del inbox[message_id]
        if not inbox:
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
        self._music[room] = (time.monotonic() + MUSIC_STATE_TTL, state)

    async def get_music_state(self, room: str) -> dict[str, Any] | None:
        entry = self._music.get(room)
        if entry is None or entry[0] <= time.monotonic():
            self._music.pop(room, None)
            return None
        return entry[1]

    async def record_minute(self, counters: dict[str, int], active_user: str | None) -> None:
        minute = current_minute()
        for name, amount in counters.items():
            self._minutes[(name, minute)] = self._minutes.get((name, minute), 0) + amount
        if active_user is not None:
            self._active.setdefault(minute, set()).add(active_user)
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

_HIT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""

_STORE_MESSAGE = """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local dropped = 0
while redis.call('LLEN', KEYS[1]) > tonumber(ARGV[3]) do
  local old = redis.call('LPOP', KEYS[1])
  redis.call('HDEL', KEYS[2], old)
  dropped = dropped + 1
end
return dropped
"""

_PENDING = """
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
if #ids == 0 then return {} end
return redis.call('HMGET', KEYS[2], unpack(ids))
"""

_ACK = """
local n = redis.call('LREM', KEYS[1], 1, ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return n
"""


class RedisStore:
    """Shared store on Redis (redis-py asyncio). Keys all start with ``prefix``."""

    def __init__(self, url: str, prefix: str = "rt:", *, timeout: float = 2.0) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        self.prefix = prefix
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        self.redis = aioredis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=10,
            decode_responses=True,
            # One immediate retry: after a Redis restart each pooled connection fails once.
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[RedisConnectionError],
        )
        self._add = self.redis.register_script(_ADD_CONNECTION)
        self._remove = self.redis.register_script(_REMOVE_CONNECTION)
        self._hit = self.redis.register_script(_HIT)
        self._store = self.redis.register_script(_STORE_MESSAGE)
        self._pending = self.redis.register_script(_PENDING)
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
        online = self._key("presence", "online")
        now = now_ms()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zremrangebyscore(online, "-inf", now)
        pipe.zrangebyscore(online, now, "+inf")
        _, users = await self._run(pipe.execute())
        return sorted(users)

    async def hit(self, key: str, limit: int, window: float) -> RateResult:
        count, ttl = await self._run(
            self._hit(keys=[self._key("rate", key)], args=[int(window * 1000)])
        )
        return RateResult(int(count) <= limit, int(count), now_ms() + int(ttl))

    async def store_message(self, user_id: str, message: dict[str, Any], limit: int) -> int:
        dropped = await self._run(self._store(
            keys=[self._key("inbox", user_id, "ids"), self._key("inbox", user_id, "messages")],
            args=[message["id"], orjson.dumps(message).decode(), limit],
        ))
        return int(dropped)

    async def pending_messages(self, user_id: str) -> list[dict[str, Any]]:
        values = await self._run(self._pending(
            keys=[self._key("inbox", user_id, "ids"), self._key("inbox", user_id, "messages")],
        ))
        return [orjson.loads(v) for v in values if v]

    async def ack_message(self, user_id: str, message_id: str) -> bool:
        removed = await self._run(self._ack(
            keys=[self._key("inbox", user_id, "ids"), self._key("inbox", user_id, "messages")],
            args=[message_id],
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
        await self._run(self.redis.set(self._key("music", room), orjson.dumps(state).decode(),
                                       ex=MUSIC_STATE_TTL))

    async def get_music_state(self, room: str) -> dict[str, Any] | None:
        value = await self._run(self.redis.get(self._key("music", room)))
        return orjson.loads(value) if value else None

    async def record_minute(self, counters: dict[str, int], active_user: str | None) -> None:
        minute = str(current_minute())
        pipe = self.redis.pipeline(transaction=False)
        for name, amount in counters.items():
            key = self._key("metrics", name, minute)
            pipe.incrby(key, amount)
            pipe.expire(key, MINUTE_KEY_TTL)
        if active_user is not None:
            key = self._key("active", minute)
            pipe.sadd(key, active_user)
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
