"""The Socket.IO side of the gateway: handshake auth, presence, messages, rooms, music sync."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from socketio_core import ConnectRefused, Server, Socket

from .auth import MAX_TOKEN_LENGTH, Authenticator, AuthError, extract_token
from .config import Config
from .metrics import Metrics
from .store import Store, StoreUnavailable

logger = logging.getLogger(__name__)

__all__ = ["Gateway", "Refusal"]

USER_ROOM_PREFIX = "user:"
ROOM_NAME = re.compile(r"^[A-Za-z0-9_.:@#\-]{1,128}$")
MUSIC_ACTIONS = ("play", "pause", "seek")
UNAVAILABLE = "Service temporarily unavailable"


class Refusal(Exception):
    """An event is refused; ``message`` is what the client is told."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


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
        self._warned_minute: dict[str, int] = {}
        io.use(self._authenticate)
        io.on("connection", self._on_connection)
        metrics.gauge("realtime_connected_sockets", "Sockets connected to this process",
                      lambda: len(io.sockets.sockets))

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._maintenance = asyncio.ensure_future(self._maintain())

    async def stop(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
            await asyncio.gather(self._maintenance, return_exceptions=True)

    async def _maintain(self) -> None:
        """Keeps this node's presence entries alive and watches for anomalies."""
        period = min(self.config.presence_ttl / 3, 10.0)
        while True:
            await asyncio.sleep(period)
            pairs = [(s.data["userId"], s.id) for s in list(self.io.sockets.sockets.values())]
            try:
                await self.store.refresh_connections(pairs, self.config.presence_ttl)
                await self._detect_anomalies()
            except StoreUnavailable as exc:
                self.metrics.inc("realtime_store_errors_total")
                logger.warning("store unavailable during maintenance: %s", exc)

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
        socket.join(user_room(user_id))
        self._arm_token_expiry(socket, socket.data.get("tokenExpiresAt"))
        socket.on("disconnect", lambda reason: self._disarm_token_expiry(socket))
        self.metrics.inc("realtime_connections_total")
        socket.emit("connected", {"message": "Connected successfully", "userId": user_id,
                                  "socketId": socket.id})
        if self.config.debug_events:
            socket.on_any(lambda event, *args: logger.info(
                "event in  %s %s %s %r", user_id, socket.id, event, args))
            socket.on_any_outgoing(lambda event, *args: logger.info(
                "event out %s %s %s %r", user_id, socket.id, event, args))
        events: dict[str, tuple[Callable[[Any], Any], Callable[..., Awaitable[dict[str, Any]]]]] = {
            "join-room": (_room, self._join_room),
            "leave-room": (_room, self._leave_room),
            "private-message": (self._validate_message, self._private_message),
            "music-sync": (self._validate_music, self._music_sync),
            "refresh-token": (_token, self._refresh_token),
        }
        for event, (validate, handle) in events.items():
            socket.on(event, self._event_handler(socket, event, validate, handle))
        def unknown_event(event: Any, *args: Any, ack: Callable[..., None] | None = None) -> None:
            if event not in events:
                self._unknown_event(socket, event, ack)

        socket.on_any(unknown_event)
        socket.on("disconnect", lambda reason: self.io.engine.spawn(
            self._after_disconnect(socket, reason)))
        self.io.engine.spawn(self._after_connect(socket))

    async def _after_connect(self, socket: Socket) -> None:
        user_id: str = socket.data["userId"]
        try:
            await self.store.record_minute({"connect": 1}, user_id)
            came_online = await self.store.add_connection(user_id, socket.id,
                                                          self.config.presence_ttl)
            if came_online:
                await self._notify_followers(user_id, "user-online")
            # The seed's client learns who is online from these events only: replay them.
            for followee in await self.store.following(user_id):
                if followee != user_id and await self.store.is_online(followee):
                    socket.emit("user-online", {"userId": followee})
            for message in await self.store.pending_messages(user_id):
                self._send_stored(socket, user_id, message)
        except StoreUnavailable as exc:
            self.metrics.inc("realtime_store_errors_total")
            logger.warning("store unavailable after connect of %s: %s", user_id, exc)

    async def _after_disconnect(self, socket: Socket, reason: str) -> None:
        user_id: str = socket.data["userId"]
        self.metrics.inc("realtime_disconnections_total", reason=reason)
        try:
            await self.store.record_minute({"disconnect": 1}, None)
            if await self.store.remove_connection(user_id, socket.id):
                await self._notify_followers(user_id, "user-offline")
        except StoreUnavailable as exc:
            self.metrics.inc("realtime_store_errors_total")
            logger.warning("store unavailable after disconnect of %s: %s", user_id, exc)

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
        """Emit to these rooms (everyone if None), encoded once; returns local deliveries."""
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
        return count

    # ------------------------------------------------------------------ event plumbing

    def _event_handler(
        self,
        socket: Socket,
        event: str,
        validate: Callable[[Any], Any],
        handle: Callable[..., Awaitable[dict[str, Any]]],
    ) -> Callable[..., Awaitable[None]]:
        async def handler(*args: Any, ack: Callable[..., None] | None = None) -> None:
            self.metrics.inc("realtime_events_total", event=event)
            if not await self._within_rate_limit(socket, event, ack):
                return
            try:
                data = validate(args[0] if args else None)
                result = await handle(socket, data)
            except Refusal as refusal:
                self.metrics.inc("realtime_rejections_total", reason=refusal.reason)
                self._refuse(socket, event, ack, refusal.message)
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
        try:
            result = await self.store.hit(f"{socket.data['userId']}:{event}", limit,
                                          self.config.rate_window)
        except StoreUnavailable as exc:
            self.metrics.inc("realtime_store_errors_total")
            logger.warning("store unavailable for rate limit: %s", exc)
            self._refuse(socket, event, ack, UNAVAILABLE)
            return False
        if result.allowed:
            return True
        self.metrics.inc("realtime_rate_limit_hits_total", event=event)
        socket.emit("rate-limit-exceeded", {"event": event, "limit": limit,
                                            "resetTime": result.reset_at})
        if ack is not None:
            ack({"success": False, "error": "Rate limit exceeded"})
        return False

    def _refuse(
        self, socket: Socket, event: str, ack: Callable[..., None] | None, message: str
    ) -> None:
        if ack is not None:
            ack({"success": False, "error": message})
        else:
            socket.emit("error", {"event": event, "message": message})

    def _unknown_event(
        self, socket: Socket, event: Any, ack: Callable[..., None] | None
    ) -> None:
        self.metrics.inc("realtime_events_total", event="unknown")

        async def refuse() -> None:
            if await self._within_rate_limit(socket, "default", ack):
                self.metrics.inc("realtime_rejections_total", reason="unknown_event")
                self._refuse(socket, str(event)[:128], ack, "Unknown event")

        self.io.engine.spawn(refuse())

    # ------------------------------------------------------------------ token expiry

    def _arm_token_expiry(self, socket: Socket, expires_at: float | None) -> None:
        """Disconnect the socket when its token expires (one timer per socket).

        At ``exp`` plus JWT_LEEWAY: the moment the handshake would start refusing the
        token, so a token accepted at connect is never cut before it is "expired".
        """
        self._disarm_token_expiry(socket)
        if expires_at is None or not socket.connected:
            return  # gone while a refresh-token waited: its disconnect handler already ran
        loop = asyncio.get_running_loop()
        delay = max(0.0, expires_at + self.auth.leeway - time.time())
        socket.data["_expiryTimer"] = loop.call_at(loop.time() + delay,
                                                   self._token_expired, socket)

    def _disarm_token_expiry(self, socket: Socket) -> None:
        timer = socket.data.pop("_expiryTimer", None)
        if timer is not None:
            timer.cancel()

    def _token_expired(self, socket: Socket) -> None:
        socket.data.pop("_expiryTimer", None)
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

    def _validate_message(self, payload: Any) -> dict[str, str]:
        data = _object(payload)
        target = _text(data, "targetUserId", maximum=128)
        text = _text(data, "message", maximum=1000)
        assert target is not None and text is not None
        lowered = text.lower()
        if any(word in lowered for word in self.config.banned_words):
            raise Refusal("Inappropriate content detected", "banned_words")
        return {"targetUserId": target, "message": text}

    async def _private_message(self, socket: Socket, data: dict[str, str]) -> dict[str, Any]:
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
        # Stored first, deleted when a device of the target acks it: nothing is lost if
        # the target is offline or drops before the packet arrives.
        dropped = await self.store.store_message(target, message, self.config.max_stored_messages)
        self.metrics.inc("realtime_stored_messages_total")
        if dropped:
            self.metrics.inc("realtime_stored_messages_dropped_total", dropped)
            logger.warning("inbox of %s full: dropped %d oldest messages", target, dropped)
        await self.store.record_minute({"messages:private-message": 1}, sender)
        self.io.engine.spawn(self._deliver(target, message))
        socket.emit("message-sent", {"id": message["id"], "targetUserId": target,
                                     "message": data["message"], "timestamp": timestamp})
        return {"id": message["id"]}

    async def _deliver(self, target: str, message: dict[str, Any]) -> None:
        # Each device gets its own ack callback: the first device to ack deletes the
        # stored copy. A target with no device online gets it on its next connection.
        sockets = await self.io.in_(user_room(target)).fetch_sockets()
        for socket in sockets:
            self._send_stored(socket, target, message)
        self.metrics.inc("realtime_broadcast_deliveries_total", len(sockets))

    def _send_stored(self, socket: Socket, user_id: str, message: dict[str, Any]) -> None:
        message_id = message["id"]
        # A message sent while the connection is being set up arrives live and also
        # from the inbox: each socket gets each message once.
        delivered: set[str] = socket.data.setdefault("_deliveredMessageIds", set())
        if message_id in delivered:
            return
        delivered.add(message_id)
        socket.emit("private-message", message,
                    callback=lambda *_: self.io.engine.spawn(self._ack_stored(user_id, message_id)))

    async def _ack_stored(self, user_id: str, message_id: str) -> None:
        try:
            await self.store.ack_message(user_id, message_id)
        except StoreUnavailable as exc:
            # Not lost: it stays stored and is delivered again on the next connection.
            self.metrics.inc("realtime_store_errors_total")
            logger.warning("could not delete delivered message %s: %s", message_id, exc)

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

    def notify(self, user_ids: list[str] | None, kind: str, message: str, data: Any) -> int:
        payload: dict[str, Any] = {"type": kind, "message": message, "timestamp": iso_now()}
        if data is not None:
            payload["data"] = data
        rooms = None if user_ids is None else [user_room(u) for u in user_ids]
        return self.broadcast(rooms, "notification", payload)

    async def stats(self) -> dict[str, Any]:
        minute = await self.store.minute_stats()
        return {
            "connectedClients": len(self.io.sockets.sockets),
            "onlineUsers": len(await self.store.online_users()),
            "rooms": len(self.io.sockets.adapter.rooms),
            **minute,
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
