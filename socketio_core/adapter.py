"""Adapters: who is in which room, and delivering a broadcast to them.

``InMemoryAdapter`` serves one process. A cluster adapter (Redis) subclasses it and adds
the messages to other nodes; the server only talks to the methods defined here.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engineio_core.packet import OutgoingPacket

from .packet import Packet, PacketType

if TYPE_CHECKING:
    from .namespace import Namespace
    from .socket import Socket

logger = logging.getLogger(__name__)

# Enum members as module constants: attribute access on an Enum class is slow on
# Python 3.11, and these are read once or more per packet.
_EVENT = PacketType.EVENT

__all__ = [
    "BroadcastFlags",
    "BroadcastOptions",
    "InMemoryAdapter",
    "RecoveryOptions",
    "SessionSnapshot",
]


@dataclass(frozen=True, slots=True)
class BroadcastFlags:
    volatile: bool = False
    compress: bool = True
    local: bool = False
    timeout: float | None = None


NO_FLAGS = BroadcastFlags()


@dataclass(frozen=True, slots=True)
class BroadcastOptions:
    """Recipients: sockets in any of ``rooms`` (all sockets if empty) minus ``except_rooms``."""

    rooms: frozenset[str] = frozenset()
    except_rooms: frozenset[str] = frozenset()
    flags: BroadcastFlags = NO_FLAGS


@dataclass(frozen=True, slots=True)
class RecoveryOptions:
    """Connection state recovery (Node's ``connectionStateRecovery``). Seconds."""

    max_disconnection_duration: float = 120.0
    skip_middlewares: bool = True
    #: Packets the in-memory adapter keeps for replay, the oldest dropped beyond (like the
    #: streams adapter's MAXLEN): without a bound, a client that floods events fills it
    #: with the answers for ``max_disconnection_duration``. A session whose last offset
    #: was dropped reconnects without recovery (``socket.recovered`` false).
    max_packets: int = 10_000
    #: Disconnected sessions kept for recovery, the oldest dropped beyond.
    max_sessions: int = 100_000


@dataclass(slots=True)
class SessionSnapshot:
    """What a recovering socket gets back: id, rooms, data, and the packets it missed."""

    sid: str
    pid: str
    rooms: list[str]
    data: Any
    disconnected_at: float = 0.0
    missed_packets: list[list[Any]] = field(default_factory=list)


# Disconnections after which a session is kept for recovery (the reference's list).
RECOVERABLE_REASONS = frozenset(
    {
        "transport error",
        "transport close",
        "forced close",
        "ping timeout",
        "server shutting down",
        "forced server close",
    }
)

RoomListener = Callable[..., Any]


class InMemoryAdapter:
    """Rooms and broadcasts for one namespace in one process."""

    def __init__(self, nsp: Namespace) -> None:
        self.nsp = nsp
        self.rooms: dict[str, set[str]] = {}
        self.sids: dict[str, set[str]] = {}
        self._listeners: dict[str, list[RoomListener]] = {}
        recovery = nsp.server.recovery
        self.recovery = recovery
        # Connection state recovery: the log of stored packets and the disconnected sessions.
        self._packets: deque[tuple[str, float, BroadcastOptions, list[Any]]] = deque()
        self._sessions: dict[str, SessionSnapshot] = {}
        self._offsets = itertools.count()
        self._offset_prefix = secrets.token_hex(4)

    # ------------------------------------------------------------------ room events

    def on(self, event: str, listener: RoomListener) -> None:
        """Listen to ``create-room``, ``delete-room`` (room) and ``join-room``,
        ``leave-room`` (room, sid)."""
        if event not in ("create-room", "delete-room", "join-room", "leave-room"):
            raise ValueError(f"unknown adapter event {event!r}")
        self._listeners.setdefault(event, []).append(listener)

    def _notify(self, event: str, *args: Any) -> None:
        for listener in self._listeners.get(event, ()):
            try:
                listener(*args)
            except Exception:
                logger.exception("error in adapter %s listener", event)

    # ------------------------------------------------------------------ membership

    def add_all(self, sid: str, rooms: Iterable[str]) -> None:
        mine = self.sids.get(sid)
        if mine is None:
            mine = self.sids[sid] = set()
        notify = bool(self._listeners)
        for room in rooms:
            mine.add(room)
            members = self.rooms.get(room)
            if members is None:
                members = self.rooms[room] = set()
                if notify:
                    self._notify("create-room", room)
            if sid not in members:
                members.add(sid)
                if notify:
                    self._notify("join-room", room, sid)

    def delete(self, sid: str, room: str) -> None:
        mine = self.sids.get(sid)
        if mine is not None:
            mine.discard(room)
        self._leave_room(sid, room)

    def _leave_room(self, sid: str, room: str) -> None:
        members = self.rooms.get(room)
        if members is None or sid not in members:
            return
        members.discard(sid)
        notify = bool(self._listeners)
        if notify:
            self._notify("leave-room", room, sid)
        if not members:
            del self.rooms[room]
            if notify:
                self._notify("delete-room", room)

    def delete_all(self, sid: str) -> None:
        mine = self.sids.pop(sid, None)
        if mine:
            for room in mine:
                self._leave_room(sid, room)

    def socket_rooms(self, sid: str) -> set[str] | None:
        return self.sids.get(sid)

    def sockets(self, rooms: Iterable[str] = ()) -> set[str]:
        ids: set[str] = set()
        self._apply(BroadcastOptions(rooms=frozenset(rooms)), lambda s: ids.add(s.id))
        return ids

    # ------------------------------------------------------------------ broadcast

    def encode(self, packet: Packet) -> list[OutgoingPacket]:
        """Socket.IO packet -> Engine.IO messages, once for every recipient."""
        return [OutgoingPacket.message(part) for part in self.nsp.server.parser.encode(packet)]

    def broadcast(self, packet: Packet, opts: BroadcastOptions) -> None:
        if self.recovery is not None:
            self._store(packet, opts)
        outgoing = self.encode(packet)
        volatile = opts.flags.volatile
        data = packet.data
        if len(outgoing) == 1:
            # The hot path: one Engine.IO message, the same object for every recipient.
            single = outgoing[0]
            for socket in self._recipients(opts):
                if socket._any_outgoing is not None:
                    socket._notify_outgoing(data)
                socket.client.session.send_packet(single, volatile=volatile)
            return
        for socket in self._recipients(opts):
            if socket._any_outgoing is not None:
                socket._notify_outgoing(data)
            socket.client.write_outgoing(outgoing, volatile)

    def broadcast_with_ack(
        self,
        packet: Packet,
        opts: BroadcastOptions,
        client_count: Callable[[int], None],
        on_ack: Callable[[Any], None],
    ) -> None:
        """Broadcast asking every recipient for an ack; reports how many were asked."""
        ack_id = packet.id = self.nsp.next_ack_id()
        outgoing = self.encode(packet)
        volatile = opts.flags.volatile
        count = 0

        def deliver(socket: Socket) -> None:
            nonlocal count
            count += 1
            socket._acks[ack_id] = on_ack
            if socket._any_outgoing is not None:
                socket._notify_outgoing(packet.data)
            socket.client.write_outgoing(outgoing, volatile)

        self._apply(opts, deliver)
        client_count(count)

    async def server_count(self) -> int:
        return 1

    def _apply(self, opts: BroadcastOptions, fn: Callable[[Socket], None]) -> None:
        for socket in self._recipients(opts):
            fn(socket)

    def _recipients(self, opts: BroadcastOptions) -> Iterator[Socket]:
        """The sockets ``opts`` targets, each once. Safe against changes while iterating."""
        sockets = self.nsp.sockets
        except_sids = self._except_sids(opts.except_rooms)
        rooms = opts.rooms
        if not rooms:
            for sid, socket in list(sockets.items()):
                if sid not in except_sids:
                    yield socket
            return
        if len(rooms) == 1:
            (room,) = rooms
            for sid in list(self.rooms.get(room, ())):
                if sid not in except_sids:
                    member = sockets.get(sid)
                    if member is not None:
                        yield member
            return
        seen: set[str] = set()
        for room in rooms:
            for sid in list(self.rooms.get(room, ())):
                if sid in seen or sid in except_sids:
                    continue
                seen.add(sid)
                member = sockets.get(sid)
                if member is not None:
                    yield member

    def _except_sids(self, except_rooms: frozenset[str]) -> set[str] | frozenset[str]:
        if not except_rooms:
            return frozenset()
        sids: set[str] = set()
        for room in except_rooms:
            sids.update(self.rooms.get(room, ()))
        return sids

    # ------------------------------------------------------------------ utilities

    async def fetch_sockets(self, opts: BroadcastOptions) -> list[Socket]:
        found: list[Socket] = []
        self._apply(opts, found.append)
        return found

    def add_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        self._apply(opts, lambda socket: socket.join(rooms))

    def del_sockets(self, opts: BroadcastOptions, rooms: Iterable[str]) -> None:
        rooms = list(rooms)
        self._apply(opts, lambda socket: socket.leave(*rooms))

    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        self._apply(opts, lambda socket: socket.disconnect(close))

    def server_side_emit(self, args: list[Any]) -> None:
        """Send to the other nodes of the cluster: there are none in memory."""

    async def server_side_emit_with_ack(self, args: list[Any]) -> list[Any]:
        """The answers of the other nodes: none in memory."""
        return []

    async def all_rooms(self) -> set[str]:
        """Every room of the namespace (on every node, with a cluster adapter)."""
        return set(self.rooms)

    def start(self) -> None:
        """The server is starting, in its event loop (cluster adapters connect here)."""

    def close(self) -> None:
        """Release resources (cluster adapters unsubscribe here)."""

    # ------------------------------------------------------------------ recovery

    def _store(self, packet: Packet, opts: BroadcastOptions) -> None:
        # Like the reference: only events without ack and not volatile can be replayed, and
        # the offset travels as the last argument so the client can report what it has.
        if packet.type is not _EVENT or packet.id is not None or opts.flags.volatile:
            return
        offset = f"{self._offset_prefix}-{next(self._offsets):x}"
        packet.data.append(offset)
        now = time.monotonic()
        packets = self._packets
        packets.append((offset, now, opts, packet.data))
        assert self.recovery is not None
        if len(packets) > self.recovery.max_packets:
            packets.popleft()
        self._expire(now)

    def _expire(self, now: float) -> None:
        assert self.recovery is not None
        threshold = now - self.recovery.max_disconnection_duration
        packets = self._packets
        while packets and packets[0][1] < threshold:
            packets.popleft()
        # Sessions are in the order they were kept, so the expired ones are at the front:
        # this runs for every stored packet and must not walk every session.
        sessions = self._sessions
        while sessions:
            pid = next(iter(sessions))
            if sessions[pid].disconnected_at >= threshold:
                break
            del sessions[pid]

    def persist_session(self, snapshot: SessionSnapshot) -> None:
        snapshot.disconnected_at = time.monotonic()
        sessions = self._sessions
        sessions.pop(snapshot.pid, None)  # kept in disconnection order (see _expire)
        sessions[snapshot.pid] = snapshot
        assert self.recovery is not None
        if len(sessions) > self.recovery.max_sessions:
            del sessions[next(iter(sessions))]  # the oldest (dicts keep insertion order)
        self._expire(snapshot.disconnected_at)

    async def restore_session(self, pid: str, offset: str) -> SessionSnapshot | None:
        if self.recovery is None:
            return None
        self._expire(time.monotonic())
        snapshot = self._sessions.pop(pid, None)
        if snapshot is None:
            return None
        packets = list(self._packets)
        start = next((i for i, p in enumerate(packets) if p[0] == offset), None)
        if start is None:
            return None  # too old: the client must start afresh
        rooms = set(snapshot.rooms)
        snapshot.missed_packets = [
            data for _, _, opts, data in packets[start + 1 :] if _includes(rooms, opts)
        ]
        return snapshot


def _includes(rooms: set[str], opts: BroadcastOptions) -> bool:
    included = not opts.rooms or not rooms.isdisjoint(opts.rooms)
    return included and rooms.isdisjoint(opts.except_rooms)
