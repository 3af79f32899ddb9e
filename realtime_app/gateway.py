"""The Socket.IO side of the gateway: handshake auth, presence, messages, rooms, music sync."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from socketio_core import AckTimeoutError, ConnectRefused, Server, Socket

from .auth import MAX_TOKEN_LENGTH, Authenticator, AuthError, extract_token
from .config import Config
from .metrics import Metrics
from .store import (
    DUPLICATE,
    INBOX_FULL,
    SENDER_LIMIT,
    Dedupe,
    InboxPolicy,
    Store,
    StoreUnavailable,
    current_minute,
)

logger = logging.getLogger(__name__)

__all__ = ["Gateway", "LocalRateLimiter", "Refusal"]

USER_ROOM_PREFIX = "user:"
ROOM_NAME = re.compile(r"^[A-Za-z0-9_.:@#\-]{1,128}$")
MUSIC_ACTIONS = ("play", "pause", "seek")
UNAVAILABLE = "Service temporarily unavailable"
CLIENT_MESSAGE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: How long a private message's clientMessageId makes a retry return the first answer.
CLIENT_MESSAGE_ID_TTL = 3600.0
#: Local rate-limit buckets kept per process (least recently used evicted beyond).
RATE_BUCKETS = 50_000
#: Server-side events between the nodes of a fleet (never sent to clients).
DELIVER_EVENT = "gateway:deliver"
NODE_STATS_EVENT = "gateway:node-stats"
COUNT_EVENT = "gateway:count-sockets"
#: "Messages between nodes were lost: send your sockets their inboxes again."
RESYNC_EVENT = "gateway:resync"
#: Seconds between two looks at the cluster adapter's counters (local, no I/O).
CLUSTER_CHECK_PERIOD = 1.0

#: A client event's handler: gets the socket and the validator's result, answers the
#: ack's fields (``success: true`` is added).
EventHandle = Callable[[Socket, Any], Awaitable[dict[str, Any]]]
#: Users announced offline per maintenance round after their node died.
OFFLINE_SWEEP_LIMIT = 1000


class Refusal(Exception):
    """An event is refused; ``message`` is what the client is told, with ``code`` if set."""

    def __init__(self, message: str, reason: str = "invalid", code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.code = code


class LocalRateLimiter:
    """Token buckets per (user, event) in this process, in front of the shared counter.

    A bucket holds up to ``limit`` tokens and refills at ``limit / window`` per second. An
    empty bucket, or one the shared counter refused until its window ends, refuses without
    a store call: a client flooding events costs no Redis round trip per event. The shared
    counter stays the authority across processes. At most ``max_keys`` buckets: the least
    recently used goes (a full bucket is the same as none; an evicted busy one only makes
    this process ask the shared counter again).
    """

    __slots__ = ("_buckets", "max_keys")

    def __init__(self, max_keys: int = RATE_BUCKETS) -> None:
        #: key -> [tokens, updated at, refused until] (monotonic seconds)
        self._buckets: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        self.max_keys = max_keys

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: tuple[str, str], limit: int, window: float, now: float) -> float | None:
        """Take a token: None if allowed, else when the next one can be (monotonic)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [float(limit), now, 0.0]
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        if bucket[2] > now:
            return bucket[2]
        rate = limit / window
        tokens = min(float(limit), bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens < 1:
            bucket[0] = tokens
            return now + (1 - tokens) / rate
        bucket[0] = tokens - 1
        return None

    def refuse_until(self, key: tuple[str, str], until: float) -> None:
        """The shared counter refused: refuse locally until its window ends."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket[2] = max(bucket[2], until)


class _SocketState:
    """The gateway's bookkeeping for one socket.

    Stored messages are replayed a page at a time: ``cursor`` is the seq of the last one
    replayed, the next page is read when the client acks ``awaiting`` (the last message
    of the page). Messages delivered live while the replay has not reached them are in
    ``live`` (id -> seq) so that the replay skips them; entries go when the cursor passes
    them, and all of them when the replay is over, so ``live`` never outgrows the inbox.
    """

    __slots__ = ("awaiting", "connect_task", "cursor", "expiry_timer", "in_flight", "live",
                 "reading", "replayed")

    def __init__(self) -> None:
        self.connect_task: asyncio.Task[None] | None = None
        self.expiry_timer: asyncio.TimerHandle | None = None
        self.cursor = 0
        self.replayed = False  # the replay reached the end of the inbox (or gave up)
        self.live: dict[str, int] = {}
        self.awaiting: str | None = None
        self.reading = False
        #: Ids of stored messages sent to this socket and not acked yet (oldest first, at
        #: most MAX_STORED_MESSAGES): a resync of the inbox does not send them again.
        self.in_flight: dict[str, None] = {}


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def user_room(user_id: str) -> str:
    return USER_ROOM_PREFIX + user_id


# ---------------------------------------------------------------------- validation


def _object(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise Refusal("Invalid message format")
    return payload


def _text(payload: dict[str, Any], name: str, *, maximum: int, required: bool = True) -> str | None:
    value = payload.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise Refusal(f"{name} must be a string")
    if not value.strip():
        raise Refusal(f"{name} must not be empty")
    if len(value) > maximum:
        raise Refusal(f"{name} is too long (max {maximum} characters)")
    return value


def _token(payload: Any) -> str:
    token = _text(_object(payload), "token", maximum=MAX_TOKEN_LENGTH)
    assert token is not None
    return token


def _room(payload: Any) -> str:
    room = _text(_object(payload), "room", maximum=128)
    assert room is not None
    if not ROOM_NAME.match(room):
        raise Refusal("Invalid room name (letters, digits and _ . : @ # - only)")
    return room


class Gateway:
    """Wires the application's behaviour onto a Socket.IO server."""

    def __init__(
        self, config: Config, io: Server, store: Store, auth: Authenticator, metrics: Metrics
    ) -> None:
        self.config = config
        self.io = io
        self.store = store
        self.auth = auth
        self.metrics = metrics
        self._maintenance: asyncio.Task[None] | None = None
        #: This node's name in a fleet (logs, metrics, /healthz); set by the app.
        self.node_id = config.node_id
        #: The gateway's bookkeeping per connected socket. Not in ``socket.data``: that
        #: is saved to Redis for connection state recovery and must stay plain data.
        self._states: dict[Socket, _SocketState] = {}
        #: The cluster adapter factory (``healthy``, ``stats``), set by the app with Redis.
        self.cluster: Any = None
        #: The node stops (SIGTERM): stored messages are no longer sent from here.
        self.stopping = False
        self._cluster_marks: tuple[int, int] = (0, 0)
        self._resync_due = False
        self._tell_others = False
        #: The running resync of the inboxes (one at a time, beside the maintenance loop).
        self._resync: asyncio.Task[None] | None = None
        self._warned_minute: dict[str, int] = {}
        self._buckets = LocalRateLimiter()
        #: Per-minute statistics counted here and written once a second (a Redis round
        #: trip per private message was ~10% of a node's CPU, benchmarks gateway-pm):
        #: minute -> (counters, active users).
        self._minute_counts: dict[int, tuple[Counter[str], set[str]]] = {}
        self.inbox_policy = InboxPolicy(config.max_stored_messages,
                                        config.stored_messages_per_sender,
                                        config.stored_message_ttl)
        io.use(self._authenticate)
        io.on("connection", self._on_connection)
        # What the other nodes of a fleet ask this one (server-side events, see
        # docs/howto/gateway-fleet.md).
        io.on(DELIVER_EVENT, self._deliver_local)
        io.on(NODE_STATS_EVENT, self._node_stats)
        io.on(COUNT_EVENT, self._count_local)
        io.on(RESYNC_EVENT, self._resync_soon)
        metrics.gauge("realtime_connected_sockets", "Sockets connected to this node",
                      lambda: len(io.sockets.sockets))
        metrics.labelled_gauge(
            "realtime_namespace_sockets", "Sockets connected to this node, by namespace",
            ("namespace",), lambda: [((n.name,), len(n.sockets)) for n in io.namespaces])
        metrics.labelled_gauge(
            "realtime_namespace_rooms", "Rooms on this node (each socket's own included), by "
            "namespace", ("namespace",),
            lambda: [((n.name,), len(n.adapter.rooms)) for n in io.namespaces])

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._maintenance = asyncio.ensure_future(self._maintain())

    async def stop(self) -> None:
        for task in (self._maintenance, self._resync):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self._write_minute_counts()

    async def _maintain(self) -> None:
        """Keeps this node's presence entries alive, watches for anomalies, and resends
        stored messages when messages between nodes may have been lost."""
        period = min(self.config.presence_ttl / 3, 10.0)
        loop = asyncio.get_running_loop()
        next_round = loop.time() + period
        while True:
            await asyncio.sleep(min(CLUSTER_CHECK_PERIOD, period))
            await self._write_minute_counts()
            self._check_cluster()
            if loop.time() < next_round:
                continue
            next_round = loop.time() + period
            pairs = [(s.data["userId"], s.id) for s in list(self.io.sockets.sockets.values())]
            try:
                await self.store.refresh_connections(pairs, self.config.presence_ttl)
                await self._announce_vanished_users()
                await self._detect_anomalies()
            except StoreUnavailable as exc:
                self.metrics.inc("realtime_store_errors_total")
                logger.warning("store unavailable during maintenance: %s", exc)

    async def stop_sending_stored(self, timeout: float) -> None:
        """First step of a graceful stop: send no more stored messages from this node
        (they stay in the inbox and reach each client on the node it reconnects to) and
        wait, up to ``timeout`` seconds, for the acks of those already sent. Without the
        wait, an ack still in flight when reading stops would leave its message stored,
        and the next node would send it again."""
        self.stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Nothing is sent from now on: only the sockets waiting for an ack now matter.
        waiting = [(s, state) for s, state in self._states.items() if state.in_flight]
        while waiting and loop.time() < deadline:
            await asyncio.sleep(0.02)
            waiting = [(s, state) for s, state in waiting if state.in_flight and s.connected]

    def _check_cluster(self) -> None:
        """After an outage of the cluster adapter, resend every local socket its inbox.

        A private message is stored, then handed to the other nodes by a server-side event;
        if that event was lost (Redis away, this node's subscription down, a publish that
        failed), the target's socket here never got it, although it is stored. When the
        adapter's counters show such a loss, and once it is healthy again, every socket
        gets what its inbox holds that it was not sent (nothing twice: ``in_flight``). A
        node whose publish failed asks the others to do the same.
        """
        cluster = self.cluster
        if cluster is None:
            return
        stats = cluster.stats
        marks = (stats.reconnects, stats.publish_errors + stats.dropped)
        if marks != self._cluster_marks:
            if marks[1] != self._cluster_marks[1]:
                self._tell_others = True
            self._cluster_marks = marks
            self._resync_due = True
        if not self._resync_due or not cluster.healthy:
            return
        if self._resync is not None and not self._resync.done():
            return  # the next one starts when this one is over (still due)
        self._resync_due = False
        if self._tell_others:
            self._tell_others = False
            self.io.server_side_emit(RESYNC_EVENT)
        # A task of its own: resending to every socket takes a store read each, and the
        # maintenance loop must keep refreshing presence meanwhile.
        self._resync = asyncio.ensure_future(self._resync_inboxes())

    def _resync_soon(self) -> None:
        """RESYNC_EVENT: another node lost messages to the fleet; resync at the next look."""
        self._resync_due = True

    async def _resync_inboxes(self) -> None:
        sockets = [(s, st) for s, st in list(self._states.items()) if s.connected]
        logger.info("resending stored messages to %d sockets after messages between nodes "
                    "were lost", len(sockets))
        self.metrics.inc("realtime_inbox_resyncs_total")
        for socket, state in sockets:  # one at a time: a burst of reads is a Redis stall
            if state.reading or state.awaiting is not None or not state.replayed:
                continue  # a replay is going on: it reads the inbox anyway
            state.replayed = False
            state.cursor = 0
            try:
                await self._replay(socket, socket.data["userId"])
            except StoreUnavailable as exc:
                self.metrics.inc("realtime_store_errors_total")
                logger.warning("store unavailable resending stored messages: %s", exc)
                self._resync_due = True  # try again at the next look
                return

    async def _announce_vanished_users(self) -> None:
        """Users whose sockets were all on a node that died (no disconnect was seen):
        their presence expired; tell their followers they are offline, once."""
        for user_id in await self.store.pop_offline_users(OFFLINE_SWEEP_LIMIT):
            logger.info("%s is offline: presence expired (its node stopped refreshing it)",
                        user_id)
            await self._notify_followers(user_id, "user-offline")

    async def _detect_anomalies(self) -> None:
        stats = await self.store.minute_stats()
        minute = int(time.time() // 60)
        checks = (("connections", self.config.anomaly_connections_per_minute),
                  ("messageCount", self.config.anomaly_messages_per_minute))
        for name, threshold in checks:
            if stats[name] > threshold and self._warned_minute.get(name) != minute:
                self._warned_minute[name] = minute
                logger.warning("high %s rate: %d this minute (threshold %d)",
                               name, stats[name], threshold)

    # ------------------------------------------------------------------ handshake

    def _authenticate(self, socket: Socket) -> None:
        # Refusals are counted and logged in aggregate (Metrics.refused_handshake): one
        # POST can carry thousands of CONNECT packets, a log line each would be a flood.
        handshake = socket.handshake
        token = extract_token(handshake.auth, handshake.headers)
        if token is None:
            self.metrics.refused_handshake("missing_token", handshake.address)
            raise ConnectRefused("Authentication failed", {"code": "UNAUTHORIZED"})
        try:
            identity = self.auth.verify(token)
        except AuthError as exc:
            self.metrics.refused_handshake("invalid_token", handshake.address)
            logger.debug("handshake refused from %s: %s", handshake.address, exc)
            raise ConnectRefused("Authentication failed", {"code": "UNAUTHORIZED"}) from None
        # The cap counts this process's sockets of the user: its user room holds them all.
        # Middleware and connection handler run in one go, so two CONNECTs cannot both
        # pass the check before either joined the room.
        cap = self.config.max_sockets_per_user
        if cap and len(self.io.sockets.adapter.rooms.get(user_room(identity.user_id), ())) >= cap:
            self.metrics.refused_handshake("too_many_connections", handshake.address)
            raise ConnectRefused("Too many connections", {"code": "TOO_MANY_CONNECTIONS"})
        socket.data["userId"] = identity.user_id
        socket.data["username"] = identity.username
        socket.data["tokenExpiresAt"] = identity.expires_at

    def _on_connection(self, socket: Socket) -> None:
        user_id: str = socket.data["userId"]
        state = self._states[socket] = _SocketState()
        socket.join(user_room(user_id))
        self._arm_token_expiry(socket, socket.data.get("tokenExpiresAt"))
        socket.on("disconnect", lambda reason: self._disarm_token_expiry(socket))
        self.metrics.inc("realtime_connections_total")
        if socket.recovered:
            self.metrics.inc("realtime_recovered_connections_total")
        socket.emit("connected", {"message": "Connected successfully", "userId": user_id,
                                  "socketId": socket.id, "recovered": socket.recovered})
        if self.config.debug_events:
            socket.on_any(lambda event, *args: logger.info(
                "event in  %s %s %s %r", user_id, socket.id, event, args))
            socket.on_any_outgoing(lambda event, *args: logger.info(
                "event out %s %s %s %r", user_id, socket.id, event, args))
        events: dict[str, tuple[Callable[[Any], Any], EventHandle]] = {
            "join-room": (_room, self._join_room),
            "leave-room": (_room, self._leave_room),
            "private-message": (self._validate_message, self._private_message),
            "music-sync": (self._validate_music, self._music_sync),
            "refresh-token": (_token, self._refresh_token),
        }
        for event, (validate, handle) in events.items():
            socket.on(event, self._event_handler(socket, event, validate, handle))
        # Known events cost nothing here. For an unknown one the returned coroutine runs
        # as a handler task, which the Socket.IO layer counts (never a task of ours per
        # incoming event).
        def unknown_event(
            event: Any, *args: Any, ack: Callable[..., None] | None = None
        ) -> Awaitable[None] | None:
            if event in events:
                return None
            return self._unknown_event(socket, event, ack)

        socket.on_any(unknown_event)
        # One task per connection and one per disconnection: bounded by the sockets.
        socket.on("disconnect", lambda reason: self.io.engine.spawn(
            self._after_disconnect(socket, reason)))
        state.connect_task = self.io.engine.spawn(self._after_connect(socket))

    async def _after_connect(self, socket: Socket) -> None:
        user_id: str = socket.data["userId"]
        try:
            self._count_minute("connect", user_id)
            if not socket.connected:  # gone already: nothing to add, nothing to remove
                return
            came_online = await self.store.add_connection(user_id, socket.id,
                                                          self.config.presence_ttl)
            if came_online:
                await self._notify_followers(user_id, "user-online")
            if not socket.connected:
                return
            # The seed's client learns who is online from these events only: replay them.
            for followee in await self.store.following(user_id):
                if followee != user_id and await self.store.is_online(followee):
                    socket.emit("user-online", {"userId": followee})
            await self._replay(socket, user_id)
        except StoreUnavailable as exc:
            self.metrics.inc("realtime_store_errors_total")
            logger.warning("store unavailable after connect of %s: %s", user_id, exc)

    async def _after_disconnect(self, socket: Socket, reason: str) -> None:
        user_id: str = socket.data["userId"]
        self.metrics.inc("realtime_disconnections_total", reason=reason)
        state = self._states.pop(socket, None)
        if state is not None and state.connect_task is not None:
            # Presence is added by the connect task: removing before it ran would leave a
            # ghost online user behind (a quick connect + disconnect).
            await asyncio.wait([state.connect_task])
        if reason == "server shutting down":
            # This node stops; the client reconnects to another one at once. Its presence
            # entry stays until it expires (presence TTL) or the recovered socket takes it
            # over: followers see no offline/online flap for a restart of the fleet.
            return
        try:
            self._count_minute("disconnect", None)
            if await self.store.remove_connection(user_id, socket.id):
                await self._notify_followers(user_id, "user-offline")
        except StoreUnavailable as exc:
            self.metrics.inc("realtime_store_errors_total")
            logger.warning("store unavailable after disconnect of %s: %s", user_id, exc)

    def _count_minute(self, counter: str, user_id: str | None) -> None:
        """Count for the per-minute statistics (written by ``_write_minute_counts``)."""
        minute = current_minute()
        entry = self._minute_counts.get(minute)
        if entry is None:
            entry = self._minute_counts[minute] = (Counter(), set())
        entry[0][counter] += 1
        if user_id is not None:
            entry[1].add(user_id)

    async def _write_minute_counts(self) -> None:
        """Per-minute statistics, best effort: they never decide an answer or skip work.
        What a failed write held is counted as lost, not kept (bounded memory)."""
        pending, self._minute_counts = self._minute_counts, {}
        for minute, (counters, users) in sorted(pending.items()):
            try:
                await self.store.record_minute(counters, users, minute)
            except StoreUnavailable as exc:
                self.metrics.inc("realtime_store_errors_total")
                self.metrics.inc("realtime_stats_errors_total")
                logger.warning("statistics not recorded (%s): %s", ", ".join(counters), exc)

    async def _notify_followers(self, user_id: str, kind: str) -> None:
        followers = await self.store.followers(user_id)
        if not followers:
            return
        rooms = [user_room(f) for f in followers]
        verb = "online" if kind == "user-online" else "offline"
        self.broadcast(rooms, "notification", {
            "type": kind, "userId": user_id, "message": f"{user_id} is {verb}",
            "timestamp": iso_now(),
        })
        self.broadcast(rooms, kind, {"userId": user_id})

    def broadcast(self, rooms: list[str] | None, event: str, payload: dict[str, Any]) -> int:
        """Emit to these rooms (everyone if None) on every node, encoded once; returns the
        deliveries on this node."""
        adapter = self.io.sockets.adapter
        if rooms is None:
            count = len(self.io.sockets.sockets)
        else:
            count = len(adapter.sockets(rooms)) if rooms else 0
        if rooms is None:
            self.io.emit(event, payload)
        elif rooms:
            self.io.to(rooms).emit(event, payload)
        self.metrics.inc("realtime_broadcast_deliveries_total", count)
        self.metrics.observe_fanout(count)
        return count

    # ------------------------------------------------------------------ event plumbing

    def _event_handler(
        self,
        socket: Socket,
        event: str,
        validate: Callable[[Any], Any],
        handle: EventHandle,
    ) -> Callable[..., Awaitable[None]]:
        async def handler(*args: Any, ack: Callable[..., None] | None = None) -> None:
            started = time.perf_counter()
            try:
                await handle_event(*args, ack=ack)
            finally:
                self.metrics.observe_event(event, time.perf_counter() - started)

        async def handle_event(*args: Any, ack: Callable[..., None] | None = None) -> None:
            self.metrics.inc("realtime_events_total", event=event)
            if not await self._within_rate_limit(socket, event, ack):
                return
            try:
                data = validate(args[0] if args else None)
                result = await handle(socket, data)
            except Refusal as refusal:
                self.metrics.inc("realtime_rejections_total", reason=refusal.reason)
                self._refuse(socket, event, ack, refusal.message, refusal.code)
                return
            except StoreUnavailable as exc:
                self.metrics.inc("realtime_store_errors_total")
                logger.warning("store unavailable for %s: %s", event, exc)
                self._refuse(socket, event, ack, UNAVAILABLE)
                return
            if ack is not None:
                ack({"success": True, **result})

        return handler

    async def _within_rate_limit(
        self, socket: Socket, event: str, ack: Callable[..., None] | None
    ) -> bool:
        limit = self.config.rate_limit(event)
        key = (socket.data["userId"], event)
        now = time.monotonic()
        # Refused here while this process knows the user is over the limit: no store call.
        retry_at = self._buckets.take(key, limit, self.config.rate_window, now)
        if retry_at is not None:
            self._rate_limited(socket, event, ack, limit,
                               int(time.time() * 1000 + (retry_at - now) * 1000))
            return False
        try:
            result = await self.store.hit(f"{key[0]}:{event}", limit, self.config.rate_window)
        except StoreUnavailable as exc:
            self.metrics.inc("realtime_store_errors_total")
            logger.warning("store unavailable for rate limit: %s", exc)
            self._refuse(socket, event, ack, UNAVAILABLE)
            return False
        if result.allowed:
            return True
        # Over the fleet-wide limit (other processes counted too): refuse locally until
        # the shared window ends.
        wait = max(0.0, result.reset_at / 1000 - time.time())
        self._buckets.refuse_until(key, time.monotonic() + wait)
        self._rate_limited(socket, event, ack, limit, result.reset_at)
        return False

    def _rate_limited(
        self, socket: Socket, event: str, ack: Callable[..., None] | None, limit: int,
        reset_at: int,
    ) -> None:
        self.metrics.inc("realtime_rate_limit_hits_total", event=event)
        socket.emit("rate-limit-exceeded", {"event": event, "limit": limit,
                                            "resetTime": reset_at})
        if ack is not None:
            ack({"success": False, "error": "Rate limit exceeded"})

    def _refuse(
        self, socket: Socket, event: str, ack: Callable[..., None] | None, message: str,
        code: str | None = None,
    ) -> None:
        # New refusals carry a machine-readable ``code``; the seed's ones keep their shape.
        extra = {"code": code} if code is not None else {}
        if ack is not None:
            ack({"success": False, "error": message, **extra})
        else:
            socket.emit("error", {"event": event, "message": message, **extra})

    async def _unknown_event(
        self, socket: Socket, event: Any, ack: Callable[..., None] | None
    ) -> None:
        self.metrics.inc("realtime_events_total", event="unknown")
        if await self._within_rate_limit(socket, "default", ack):
            self.metrics.inc("realtime_rejections_total", reason="unknown_event")
            self._refuse(socket, str(event)[:128], ack, "Unknown event")

    # ------------------------------------------------------------------ token expiry

    def _arm_token_expiry(self, socket: Socket, expires_at: float | None) -> None:
        """Disconnect the socket when its token expires (one timer per socket).

        At ``exp`` plus JWT_LEEWAY: the moment the handshake would start refusing the
        token, so a token accepted at connect is never cut before it is "expired".
        """
        self._disarm_token_expiry(socket)
        state = self._states.get(socket)
        if expires_at is None or state is None or not socket.connected:
            return  # gone while a refresh-token waited: its disconnect handler already ran
        loop = asyncio.get_running_loop()
        delay = max(0.0, expires_at + self.auth.leeway - time.time())
        state.expiry_timer = loop.call_at(loop.time() + delay, self._token_expired, socket)

    def expiry_timer(self, socket: Socket) -> asyncio.TimerHandle | None:
        """The timer that disconnects this socket when its token expires (None: none)."""
        state = self._states.get(socket)
        return None if state is None else state.expiry_timer

    def _disarm_token_expiry(self, socket: Socket) -> None:
        state = self._states.get(socket)
        if state is not None and state.expiry_timer is not None:
            state.expiry_timer.cancel()
            state.expiry_timer = None

    def _token_expired(self, socket: Socket) -> None:
        state = self._states.get(socket)
        if state is not None:
            state.expiry_timer = None
        if not socket.connected:
            return
        self.metrics.inc("realtime_token_expirations_total")
        # The reason first, then the DISCONNECT: the page shows it; the client does not
        # reconnect by itself after a server disconnect.
        socket.emit("token-expired", {"code": "TOKEN_EXPIRED",
                                      "message": "Session expired: sign in again"})
        socket.disconnect()

    async def _refresh_token(self, socket: Socket, token: str) -> dict[str, Any]:
        try:
            identity = self.auth.verify(token)
        except AuthError as exc:
            logger.debug("refresh-token refused for %s: %s", socket.data["userId"], exc)
            raise Refusal("Invalid token", "invalid_refresh_token") from None
        if identity.user_id != socket.data["userId"]:
            raise Refusal("The token is for another user", "refresh_other_user")
        socket.data["username"] = identity.username
        socket.data["tokenExpiresAt"] = identity.expires_at
        self._arm_token_expiry(socket, identity.expires_at)
        return {"exp": None if identity.expires_at is None else int(identity.expires_at)}

    # ------------------------------------------------------------------ rooms

    def _check_room(self, socket: Socket, room: str) -> None:
        # user:<id> rooms carry private messages, and every socket has a room named after
        # its id: joining either would let one user listen to another.
        if room.startswith(USER_ROOM_PREFIX) or room in self.io.sockets.sockets:
            raise Refusal("Room name is reserved", "reserved_room")

    async def _join_room(self, socket: Socket, room: str) -> dict[str, Any]:
        self._check_room(socket, room)
        rooms = socket.rooms
        if room not in rooms:
            own = {socket.id, user_room(socket.data["userId"])}
            if len(rooms - own) >= self.config.max_rooms_per_socket:
                raise Refusal(f"Too many rooms (max {self.config.max_rooms_per_socket})",
                              "too_many_rooms")
            socket.join(room)
        socket.emit("joined-room", {"room": room})
        state = await self.store.get_music_state(room)
        if state is not None:
            socket.emit("music-state", music_state_payload(room, state))
        return {"room": room}

    async def _leave_room(self, socket: Socket, room: str) -> dict[str, Any]:
        self._check_room(socket, room)
        socket.leave(room)
        socket.emit("left-room", {"room": room})
        return {"room": room}

    # ------------------------------------------------------------------ private messages

    def _validate_message(self, payload: Any) -> dict[str, str | None]:
        data = _object(payload)
        target = _text(data, "targetUserId", maximum=128)
        text = _text(data, "message", maximum=1000)
        assert target is not None and text is not None
        client_id = data.get("clientMessageId")
        if client_id is not None and (
            not isinstance(client_id, str) or not CLIENT_MESSAGE_ID.match(client_id)
        ):
            raise Refusal("clientMessageId must be 1 to 64 letters, digits, _ or -")
        lowered = text.lower()
        if any(word in lowered for word in self.config.banned_words):
            raise Refusal("Inappropriate content detected", "banned_words")
        return {"targetUserId": target, "message": text, "clientMessageId": client_id}

    async def _private_message(self, socket: Socket, data: dict[str, Any]) -> dict[str, Any]:
        sender: str = socket.data["userId"]
        target = data["targetUserId"]
        timestamp = iso_now()
        message = {
            "id": uuid.uuid4().hex,
            "senderId": sender,
            "senderUsername": socket.data["username"],
            "message": data["message"],
            "timestamp": timestamp,
        }
        # A retry of the same clientMessageId gets the first answer instead of a second
        # copy; the fingerprint tells a retry from a different message reusing the id.
        dedupe: Dedupe | None = None
        fingerprint = ""
        if data.get("clientMessageId"):
            fingerprint = hashlib.blake2b(
                f"{target}\0{data['message']}".encode("utf-8", "surrogatepass"),
                digest_size=8).hexdigest()
            dedupe = Dedupe(f"{sender}:{data['clientMessageId']}",
                            f"{message['id']}:{fingerprint}", CLIENT_MESSAGE_ID_TTL)
        # Stored first, deleted when a device of the target acks it: nothing is lost if
        # the target is offline or drops before the packet arrives. Never evicts: a full
        # inbox refuses, and the sender learns it.
        result = await self.store.store_message(target, message, self.inbox_policy, dedupe)
        if result.status == DUPLICATE:
            first_id, _, first_fingerprint = (result.previous or "").partition(":")
            if first_fingerprint != fingerprint:
                raise Refusal("clientMessageId was already used for another message",
                              "client_message_id_reused", "CLIENT_MESSAGE_ID_REUSED")
            self.metrics.inc("realtime_duplicate_messages_total")
            return {"id": first_id}
        if result.status == INBOX_FULL:
            self.metrics.inc("realtime_stored_messages_refused_total", reason="inbox_full")
            raise Refusal("Inbox full", "inbox_full", "INBOX_FULL")
        if result.status == SENDER_LIMIT:
            self.metrics.inc("realtime_stored_messages_refused_total", reason="sender_limit")
            raise Refusal("Too many undelivered messages to this user", "inbox_sender_limit",
                          "INBOX_SENDER_LIMIT")
        # Stored: from here on the answer is success.
        self.metrics.inc("realtime_stored_messages_total")
        # This node's sockets of the target now; every other node's through the cluster
        # adapter (with one node, or the memory adapter, that is a no-op).
        self._deliver_local(target, message, result.seq)
        self.io.server_side_emit(DELIVER_EVENT, target, message, result.seq)
        socket.emit("message-sent", {"id": message["id"], "targetUserId": target,
                                     "message": data["message"], "timestamp": timestamp})

        # Statistics are written later, and cannot change the answer: a failure there must
        # not tell the sender that a stored message was not sent (a retry would duplicate).
        self._count_minute("messages:private-message", sender)
        return {"id": message["id"]}

    def _deliver_local(self, target: Any, message: Any, seq: Any) -> int:
        """Send a stored private message to the target's sockets on this node.

        Each device gets its own ack callback, answered to the node that holds it: the
        first device to ack deletes the stored copy (the store is shared). A target with
        no device online gets it on its next connection. Also the handler of
        DELIVER_EVENT, which other nodes send after storing a message.
        """
        if not (isinstance(target, str) and isinstance(message, dict)
                and isinstance(message.get("id"), str) and isinstance(seq, int)):
            logger.warning("ignored a malformed %s from another node", DELIVER_EVENT)
            return 0
        sids = self.io.sockets.adapter.rooms.get(user_room(target))
        if not sids:
            return 0
        sent = 0
        for sid in list(sids):
            socket = self.io.sockets.sockets.get(sid)
            state = self._states.get(socket) if socket is not None else None
            if socket is None or state is None or seq <= state.cursor:
                continue  # the replay of stored messages has sent it already
            if not state.replayed:
                if message["id"] in state.live:
                    continue
                if len(state.live) >= self.config.max_stored_messages:
                    # A socket that keeps the replay waiting while live messages pile up:
                    # stop its replay (the rest comes on its next connection).
                    state.replayed = True
                    state.live.clear()
                else:
                    state.live[message["id"]] = seq
            self._send_stored(socket, target, message)
            sent += 1
        self.metrics.inc("realtime_broadcast_deliveries_total", sent)
        self.metrics.observe_fanout(sent)
        return sent

    async def _replay(self, socket: Socket, user_id: str) -> None:
        """Send this socket the next page of its stored messages."""
        state = self._states.get(socket)
        if state is None:
            return  # disconnected meanwhile
        page_size = self.config.inbox_page_size
        while not state.replayed and not state.reading and socket.connected:
            state.reading = True
            try:
                rows = await self.store.inbox_page(user_id, state.cursor, page_size,
                                                   self.inbox_policy.ttl)
            finally:
                state.reading = False
            if state.replayed or not socket.connected:
                return
            last: str | None = None
            for seq, message in rows:
                state.cursor = max(state.cursor, seq)
                # Not when delivered live meanwhile, or sent and not acked yet (a resync).
                if (state.live.pop(message["id"], None) is None
                        and message["id"] not in state.in_flight):
                    self._send_stored(socket, user_id, message)
                    last = message["id"]
            if len(rows) < page_size:
                state.replayed = True
                state.live.clear()
                return
            if state.live:
                state.live = {i: q for i, q in state.live.items() if q > state.cursor}
            if last is not None:
                state.awaiting = last  # the next page after the client acks this one
                return

    def _send_stored(self, socket: Socket, user_id: str, message: dict[str, Any]) -> None:
        if self.stopping:
            return  # stays stored: the client gets it from the node it moves to
        message_id = message["id"]
        state = self._states.get(socket)
        if state is not None:
            in_flight = state.in_flight
            in_flight[message_id] = None
            if len(in_flight) > self.config.max_stored_messages:
                del in_flight[next(iter(in_flight))]  # at worst sent twice (same id)
        socket.emit("private-message", message,
                    callback=lambda *_: self.io.engine.spawn(
                        self._ack_stored(socket, user_id, message_id)))

    async def _ack_stored(self, socket: Socket, user_id: str, message_id: str) -> None:
        # One task per ack of a message we sent (at most a page plus the live messages
        # the inbox holds); the client cannot make more than that.
        try:
            await self.store.ack_message(user_id, message_id)
        except StoreUnavailable as exc:
            # Not lost: it stays stored and is delivered again on the next connection.
            self.metrics.inc("realtime_store_errors_total")
            logger.warning("could not delete delivered message %s: %s", message_id, exc)
        state = self._states.get(socket)
        if state is not None:
            state.in_flight.pop(message_id, None)
        if state is not None and state.awaiting == message_id:
            state.awaiting = None
            try:
                await self._replay(socket, user_id)
            except StoreUnavailable as exc:
                # The rest of the inbox comes on the next connection.
                self.metrics.inc("realtime_store_errors_total")
                logger.warning("store unavailable replaying to %s: %s", user_id, exc)

    # ------------------------------------------------------------------ music sync

    def _validate_music(self, payload: Any) -> dict[str, Any]:
        data = _object(payload)
        action = data.get("action")
        if action not in MUSIC_ACTIONS:
            raise Refusal("action must be play, pause or seek")
        song = _text(data, "songId", maximum=128)
        current = data.get("currentTime")
        if current is not None and (
            isinstance(current, bool) or not isinstance(current, int | float)
            or not math.isfinite(current) or current < 0
        ):
            raise Refusal("currentTime must be a non-negative number")
        room = data.get("room")
        if room is not None:
            room = _room({"room": room})
        return {"action": action, "songId": song, "currentTime": current, "room": room}

    async def _music_sync(self, socket: Socket, data: dict[str, Any]) -> dict[str, Any]:
        user_id: str = socket.data["userId"]
        room = data["room"] or user_room(user_id)
        if room not in socket.rooms:
            raise Refusal("You are not in this room", "not_in_room")
        socket.to(room).emit("music-sync", {
            "action": data["action"], "songId": data["songId"],
            "currentTime": data["currentTime"], "userId": user_id, "timestamp": iso_now(),
        })
        previous = await self.store.get_music_state(room)
        if data["action"] == "play":
            playing = True
        elif data["action"] == "pause":
            playing = False
        else:
            playing = bool(previous and previous.get("playing")
                           and previous.get("songId") == data["songId"])
        position = data["currentTime"]
        if position is None:
            position = current_position(previous) if previous else 0.0
        await self.store.set_music_state(room, {
            "songId": data["songId"], "position": position, "playing": playing,
            "updatedAt": int(time.time() * 1000), "userId": user_id,
        })
        return {"room": room}

    # ------------------------------------------------------------------ service API

    async def notify(
        self, user_ids: list[str] | None, kind: str, message: str, data: Any
    ) -> tuple[int, bool]:
        """Notify these users (everyone if None) on every node: (sockets reached in the
        fleet, whether every node answered the count)."""
        payload: dict[str, Any] = {"type": kind, "message": message, "timestamp": iso_now()}
        if data is not None:
            payload["data"] = data
        rooms = None if user_ids is None else [user_room(u) for u in user_ids]
        count = self.broadcast(rooms, "notification", payload)
        answers, complete = await self._ask_nodes(COUNT_EVENT, rooms)
        return count + sum(a for a in answers if isinstance(a, int)), complete

    def _count_local(self, rooms: Any = None) -> int:
        """COUNT_EVENT: this node's sockets in these rooms (all of them for None)."""
        if rooms is None:
            return len(self.io.sockets.sockets)
        if not isinstance(rooms, list):
            return 0
        return len(self.io.sockets.adapter.sockets([r for r in rooms if isinstance(r, str)]))

    def _node_stats(self) -> dict[str, Any]:
        """NODE_STATS_EVENT: this node's numbers for the fleet-wide /stats."""
        sockets = self.io.sockets.sockets
        return {
            "node": self.node_id,
            "sockets": len(sockets),
            # Rooms other than each socket's own (those are counted by "sockets"): user
            # and named rooms can span nodes, /stats counts each name once.
            "rooms": [room for room in self.io.sockets.adapter.rooms if room not in sockets],
        }

    async def _ask_nodes(self, event: str, *args: Any) -> tuple[list[Any], bool]:
        """The answers of the other nodes (none without a cluster adapter); False if some
        did not answer within the adapter's request timeout."""
        try:
            return await self.io.server_side_emit_with_ack(event, *args), True
        except AckTimeoutError as exc:
            logger.warning("%s: not every node answered in time", event)
            return list(exc.responses), False

    async def stats(self) -> dict[str, Any]:
        """Fleet-wide numbers: every node's sockets and rooms, presence from the store."""
        minute = await self.store.minute_stats()
        answers, complete = await self._ask_nodes(NODE_STATS_EVENT)
        nodes = [self._node_stats()] + [a for a in answers if isinstance(a, dict)]
        rooms: set[str] = set()
        for node in nodes:
            rooms.update(r for r in node.get("rooms") or () if isinstance(r, str))
        sockets = sum(n["sockets"] for n in nodes if isinstance(n.get("sockets"), int))
        return {
            "connectedClients": sockets,
            "onlineUsers": await self.store.online_count(),
            "rooms": sockets + len(rooms),
            **minute,
            "node": self.node_id,
            "nodes": [{"node": n.get("node"), "connectedClients": n.get("sockets")}
                      for n in nodes],
            "complete": complete,
            "timestamp": iso_now(),
        }


def current_position(state: dict[str, Any]) -> float:
    """Playback position now: advanced by the time elapsed while playing."""
    position = float(state.get("position") or 0.0)
    if state.get("playing"):
        position += max(0.0, time.time() - state.get("updatedAt", 0) / 1000)
    return round(position, 3)


def music_state_payload(room: str, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "room": room,
        "songId": state.get("songId"),
        "currentTime": current_position(state),
        "playing": bool(state.get("playing")),
        "updatedAt": state.get("updatedAt"),
    }
