"""Engine.IO session state machine: heartbeats, upgrades, buffering. Sans-I/O.

The session never touches a socket or the event loop directly. It is driven by calls
(``receive``, ``send``, ``close``, timer callbacks) and acts through two narrow seams:

* a ``Transport`` (polling or WebSocket) that writes packets for it, and
* a ``Clock`` with ``time()`` and ``call_at(when, callback)``. An asyncio event loop is a
  Clock as it is; tests pass a fake one and move time by hand.

Rules (in the spirit of h11's _state.py):

* States go OPEN -> (UPGRADING -> OPEN)* -> CLOSING -> CLOSED, or straight to CLOSED.
  OPENING exists only between construction and ``open()``.
* Only packets from the current transport are application data. Packets from an upgrade
  candidate drive the probe dance and nothing else.
* Every way out goes through ``_on_close``, exactly once, which cancels every timer.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from .packet import OutgoingPacket, Packet, PacketType

logger = logging.getLogger(__name__)
_P_OPEN = PacketType.OPEN
_P_PING = PacketType.PING
_P_PONG = PacketType.PONG
_P_MESSAGE = PacketType.MESSAGE
_P_UPGRADE = PacketType.UPGRADE
_P_NOOP = PacketType.NOOP

__all__ = ["Clock", "Session", "SessionConfig", "SessionState", "TimerHandle", "Transport"]


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[..., object], /) -> TimerHandle: ...


class Transport(Protocol):
    """What a session needs from a transport. Implemented by the I/O layer."""

    name: str
    #: The session this transport carries (None once it is closed or discarded).
    session: Session | None

    # Read-only for the session (properties here): a transport may keep them as plain
    # attributes or compute them.
    @property
    def writable(self) -> bool:
        """True when ``send`` would put bytes on the wire now (WebSocket open, or a pending
        long-polling GET), False when packets would have to wait in the session buffer."""
        ...

    @property
    def congested(self) -> bool:
        """True while the peer is not keeping up: more than the high-water mark of bytes
        is waiting in the socket's write buffer (set from asyncio's pause/resume_writing)."""
        ...

    #: Clock time at which ``congested`` last became True.
    congested_since: float

    def send(self, packets: list[OutgoingPacket]) -> None: ...

    def send_one(self, packet: OutgoingPacket) -> None:
        """``send([packet])`` without the list: the broadcast hot path."""
        ...

    def buffered_amount(self) -> int:
        """Bytes written but not yet accepted by the peer's socket."""
        ...

    def close(self, callback: Callable[[], object] | None = None) -> None:
        """Close the transport in an orderly way (the peer is told when possible).

        ``callback`` runs once the peer has been told, or could not be.
        """
        ...

    def discard(self) -> None:
        """Forget the transport after an upgrade: it must not deliver anything more."""
        ...

    def pause_reading(self) -> None:
        """Deliver no more packets until ``resume_reading``; stop reading from the peer."""
        ...

    def resume_reading(self) -> None:
        """Deliver what was held back, then read from the peer again."""
        ...


class SessionState(enum.Enum):
    OPENING = "opening"
    OPEN = "open"
    UPGRADING = "upgrading"
    CLOSING = "closing"
    CLOSED = "closed"

# Enum members as module constants: attribute access on an Enum class is slow on
# Python 3.11, and these are read once or more per packet.
_S_OPENING = SessionState.OPENING
_S_OPEN = SessionState.OPEN
_S_UPGRADING = SessionState.UPGRADING
_S_CLOSING = SessionState.CLOSING
_S_CLOSED = SessionState.CLOSED


class SessionConfig:
    """Per-server settings a session reads. Times in seconds, sizes in bytes."""

    __slots__ = (
        "congestion_timeout",
        "max_payload",
        "max_write_buffer",
        "noop_interval",
        "ping_interval",
        "ping_timeout",
        "upgrade_timeout",
        "upgrades",
        "write_buffer_high_water",
    )

    def __init__(
        self,
        *,
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
        upgrade_timeout: float = 10.0,
        max_payload: int = 1_000_000,
        upgrades: tuple[str, ...] = ("websocket",),
        write_buffer_high_water: int = 64 * 1024,
        max_write_buffer: int = 1024 * 1024,
        congestion_timeout: float = 30.0,
        noop_interval: float = 0.1,
    ) -> None:
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.upgrade_timeout = upgrade_timeout
        self.max_payload = max_payload
        self.upgrades = upgrades
        self.write_buffer_high_water = write_buffer_high_water
        self.max_write_buffer = max_write_buffer
        self.congestion_timeout = congestion_timeout
        self.noop_interval = noop_interval


MessageCallback = Callable[["Session", "str | bytes"], object]
CloseCallback = Callable[["Session", str], object]

_PING = OutgoingPacket(_P_PING)
_NOOP = OutgoingPacket(_P_NOOP)
_PONG_PROBE = OutgoingPacket(_P_PONG, "probe")


class Session:
    """One Engine.IO session (one ``sid``), whatever transport currently carries it."""

    __slots__ = (
        "__weakref__",
        "_buffered_bytes",
        "_clock",
        "_config",
        "_last_packet_time",
        "_noop_timer",
        "_ping_timer",
        "_pong_timer",
        "_upgrade_timer",
        "close_reason",
        "data",
        "on_close",
        "on_message",
        "reading_held",
        "reading_paused",
        "request",
        "sid",
        "state",
        "transport",
        "upgrade_candidate",
        "upgraded",
        "write_buffer",
    )

    def __init__(
        self,
        sid: str,
        transport: Transport,
        config: SessionConfig,
        clock: Clock,
        *,
        request: Any = None,
    ) -> None:
        self.sid = sid
        self.transport = transport
        self.request = request
        self._config = config
        self._clock = clock
        self.state = _S_OPENING
        self.upgraded = False
        self.upgrade_candidate: Transport | None = None
        self.write_buffer: list[OutgoingPacket] = []
        self._buffered_bytes = 0
        self._ping_timer: TimerHandle | None = None
        self._pong_timer: TimerHandle | None = None
        self._upgrade_timer: TimerHandle | None = None
        self._noop_timer: TimerHandle | None = None
        self._last_packet_time = 0.0
        self.close_reason: str | None = None
        #: True while the layer above asked for no more packets (see ``pause_reading``).
        self.reading_paused = False
        #: True once the server stopped reading for good (draining, see ``hold_reading``).
        self.reading_held = False
        #: Free slot for the layer above (Socket.IO keeps its client object here).
        self.data: Any = None
        self.on_message: MessageCallback | None = None
        self.on_close: CloseCallback | None = None

    def __repr__(self) -> str:
        return f"<Session {self.sid} {self.state.value} {self.transport.name}>"

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Send the handshake packet and start the heartbeat."""
        if self.state is not _S_OPENING:
            raise RuntimeError("session already opened")
        self.state = _S_OPEN
        config = self._config
        upgrades = list(config.upgrades) if self.transport.name == "polling" else []
        handshake = orjson.dumps(
            {
                "sid": self.sid,
                "upgrades": upgrades,
                "pingInterval": _ms(config.ping_interval),
                "pingTimeout": _ms(config.ping_timeout),
                "maxPayload": config.max_payload,
            }
        ).decode()
        self._last_packet_time = self._clock.time()
        self._send(OutgoingPacket(_P_OPEN, handshake))
        self._schedule_ping()

    @property
    def is_open(self) -> bool:
        return self.state is _S_OPEN or self.state is _S_UPGRADING

    def close(self, reason: str = "forced close", *, discard: bool = False) -> None:
        """Close the session from the server side.

        Buffered packets are flushed first (on polling, with the next GET), then the
        transport is closed and ``on_close`` runs with ``reason``. With ``discard`` the
        transport is closed at once and buffered packets are dropped.
        """
        if not self.is_open and self.state is not _S_CLOSING:
            return
        self.state = _S_CLOSING
        if self.close_reason is None:
            self.close_reason = reason
        if discard or not self.write_buffer:
            self._close_transport()
        # Otherwise ``_flush`` closes the transport once the buffer has drained.

    def _close_transport(self) -> None:
        # The session stays registered (CLOSING) until the transport has told the peer:
        # on polling that can take until the client's next GET.
        reason = self.close_reason or "forced close"
        self.transport.close(lambda: self._on_close(reason))

    # ------------------------------------------------------------------ sending

    def send(self, data: str | bytes | bytearray | memoryview, *, volatile: bool = False) -> bool:
        """Send one message. Returns False if it was dropped (see ``send_packet``)."""
        return self.send_packet(OutgoingPacket.message(data), volatile=volatile)

    def send_packet(self, packet: OutgoingPacket, *, volatile: bool = False) -> bool:
        """Queue a pre-encoded packet; the same object may be given to many sessions.

        Slow consumer policy: a volatile packet is dropped when the transport cannot take
        it now (no pending GET, upgrade in progress) or is congested (more than
        ``write_buffer_high_water`` bytes waiting). When the bytes waiting for this peer
        pass ``max_write_buffer``, the session is closed with ``transport error``: a peer
        that stops reading cannot grow server memory forever.
        Returns True if the packet was queued or written.
        """
        transport = self.transport
        if (
            self.state is _S_OPEN
            and transport.writable
            and not transport.congested
            and not self.write_buffer
        ):
            transport.send_one(packet)  # the hot path: straight to the wire
            return True
        return self._send_packet_slow(packet, volatile)

    def _send_packet_slow(self, packet: OutgoingPacket, volatile: bool) -> bool:
        if not self.is_open:
            return False
        transport = self.transport
        if volatile and (
            not transport.writable
            or transport.congested
            or self.state is _S_UPGRADING
        ):
            return False
        if transport.writable and not self.write_buffer:
            transport.send_one(packet)
            if transport.congested:
                self._check_slow_consumer(transport)
            return True
        self.write_buffer.append(packet)
        self._buffered_bytes += len(packet.polling_text)
        if self._buffered_bytes > self._config.max_write_buffer:
            logger.info("session %s: %d bytes waiting, closing", self.sid, self._buffered_bytes)
            self.close("transport error", discard=True)
            return False
        self._flush()
        return True

    def _send(self, packet: OutgoingPacket) -> None:
        self.write_buffer.append(packet)
        self._flush()

    def _flush(self) -> None:
        if self.state is _S_CLOSED or not self.write_buffer:
            return
        transport = self.transport
        if not transport.writable:
            return
        packets = self.write_buffer
        self.write_buffer = []
        self._buffered_bytes = 0
        transport.send(packets)
        if self.state is _S_CLOSING:
            self._close_transport()
        elif transport.congested:
            self._check_slow_consumer(transport)

    def _check_slow_consumer(self, transport: Transport) -> None:
        """Cut a peer that is not reading: too many bytes waiting, or for too long.

        Called after every write to a congested transport (messages and pings alike),
        so nothing written can bypass the limits.
        """
        config = self._config
        waiting = transport.buffered_amount()
        if waiting > config.max_write_buffer:
            logger.info("session %s: %d bytes waiting for the peer, closing", self.sid, waiting)
        elif self._clock.time() - transport.congested_since > config.congestion_timeout:
            logger.info("session %s: peer has not read for %.0f s, closing",
                        self.sid, config.congestion_timeout)
        else:
            return
        self.close("transport error", discard=True)

    # ------------------------------------------------------------------ flow control

    def pause_reading(self) -> None:
        """Stop taking packets from the peer (its handlers are busy): backpressure.

        On WebSocket the server stops reading the socket, so TCP slows the peer down; on
        long-polling the response to the POST being processed is held back. Heartbeats
        are not timed out while reading is paused: the peer's pong may be waiting unread.
        """
        if not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def hold_reading(self) -> None:
        """Stop taking packets from the peer until the session closes (the server drains).

        Like ``pause_reading``, but ``resume_reading`` no longer undoes it: the layer
        above resumes when its handlers finish, which must not reopen a draining session.
        """
        self.reading_held = True
        self.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and not self.reading_held:
            self.reading_paused = False
            self.transport.resume_reading()

    def on_transport_ready(self, transport: Transport) -> None:
        """The transport became writable (a long-polling GET arrived)."""
        if transport is self.transport:
            self._flush()

    # ------------------------------------------------------------------ receiving

    def receive_message(self, transport: Transport, data: str | bytes) -> None:
        """A message packet arrived: ``receive`` without building a Packet (hot path)."""
        if transport is self.transport and self.state is _S_OPEN:
            self._last_packet_time = self._clock.time()
            if self.on_message is not None:
                self.on_message(self, data)
        else:
            self.receive(transport, Packet(_P_MESSAGE, data))

    def receive(self, transport: Transport, packet: Packet) -> None:
        """A packet arrived on ``transport``."""
        if transport is not self.transport:
            if transport is self.upgrade_candidate:
                self._receive_upgrade_packet(transport, packet)
            return
        if not self.is_open:
            return
        self._last_packet_time = self._clock.time()
        ptype = packet.type
        if ptype is _P_MESSAGE:
            if self.on_message is not None:
                self.on_message(self, packet.data)
        elif ptype is _P_PONG:
            if self._pong_timer is not None:
                self._pong_timer.cancel()
                self._pong_timer = None
            self._schedule_ping()
        elif ptype is _P_PING:
            # v4 clients never ping; the reference treats it as a transport error.
            self.on_transport_error(transport, "invalid heartbeat direction")
        # OPEN, UPGRADE, NOOP, and CLOSE over a WebSocket (the reference ignores it
        # there; polling handles CLOSE itself) mean nothing on the current transport.

    def on_parse_error(self, transport: Transport) -> None:
        """The transport received bytes that are not Engine.IO."""
        if transport is self.transport:
            self._close_from_transport(transport, "parse error")
        elif transport is self.upgrade_candidate:
            self._abort_upgrade(transport)

    def on_transport_error(self, transport: Transport, description: str = "") -> None:
        if transport is self.transport:
            logger.debug("session %s: transport error: %s", self.sid, description)
            self._close_from_transport(transport, "transport error")
        elif transport is self.upgrade_candidate:
            self._abort_upgrade(transport)

    def on_transport_close(self, transport: Transport) -> None:
        """The peer closed the transport (TCP or WebSocket close)."""
        if transport is self.transport:
            self._close_from_transport(transport, "transport close")
        elif transport is self.upgrade_candidate:
            self._abort_upgrade(transport)

    def _close_from_transport(self, transport: Transport, reason: str) -> None:
        if self.state is _S_CLOSED:
            return
        self._on_close(reason)
        transport.close()

    # ------------------------------------------------------------------ upgrade

    def begin_upgrade(self, transport: Transport) -> bool:
        """A WebSocket arrived for this sid. Returns False (and closes it) if refused."""
        if self.state is not _S_OPEN or self.upgraded:
            transport.close()
            return False
        self.state = _S_UPGRADING
        self.upgrade_candidate = transport
        clock = self._clock
        self._upgrade_timer = clock.call_at(
            clock.time() + self._config.upgrade_timeout, lambda: self._on_upgrade_timeout(transport)
        )
        return True

    def _on_upgrade_timeout(self, candidate: Transport) -> None:
        # Every way out of UPGRADING cancels this timer, so the candidate is still the one.
        self._upgrade_timer = None
        self._abort_upgrade(candidate)

    def _receive_upgrade_packet(self, transport: Transport, packet: Packet) -> None:
        if packet.type is _P_PING and packet.data == "probe":
            transport.send([_PONG_PROBE])
            self._cancel_noop()
            self._schedule_noop()
        elif packet.type is _P_UPGRADE and self.state is not _S_CLOSED:
            self._cancel_upgrade_timers()
            old = self.transport
            old.discard()
            self.upgrade_candidate = None
            self.upgraded = True
            self.transport = transport
            if self.reading_paused:
                transport.pause_reading()
            if self.state is _S_UPGRADING:
                self.state = _S_OPEN
            self._flush()
            if self.state is _S_CLOSING:
                self._close_transport()
        else:
            self._abort_upgrade(transport)

    def _schedule_noop(self) -> None:
        clock = self._clock
        self._noop_timer = clock.call_at(clock.time() + self._config.noop_interval, self._on_noop)

    def _on_noop(self) -> None:
        # Releases the pending polling GET so the client can pause polling and finish.
        self._noop_timer = None
        if self.state is not _S_UPGRADING:
            return
        transport = self.transport
        if transport.name == "polling" and transport.writable:
            transport.send([_NOOP])
        self._schedule_noop()

    def _cancel_noop(self) -> None:
        if self._noop_timer is not None:
            self._noop_timer.cancel()
            self._noop_timer = None

    def _cancel_upgrade_timers(self) -> None:
        self._cancel_noop()
        if self._upgrade_timer is not None:
            self._upgrade_timer.cancel()
            self._upgrade_timer = None

    def _abort_upgrade(self, candidate: Transport) -> None:
        # Always called with the current candidate (callers check it), never without one.
        self._cancel_upgrade_timers()
        self.upgrade_candidate = None
        if self.state is _S_UPGRADING:
            self.state = _S_OPEN
        candidate.close()

    # ------------------------------------------------------------------ heartbeat

    def _schedule_ping(self) -> None:
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        clock = self._clock
        self._ping_timer = clock.call_at(clock.time() + self._config.ping_interval, self._on_ping)

    def _on_ping(self) -> None:
        self._ping_timer = None
        if not self.is_open:
            return
        self._send(_PING)
        if not self.is_open:
            return  # the ping found a peer that is not reading: closed
        clock = self._clock
        self._pong_timer = clock.call_at(
            clock.time() + self._config.ping_timeout, self._on_pong_timeout
        )

    def _on_pong_timeout(self) -> None:
        # Never runs on a CLOSED session: ``_on_close`` cancels this timer.
        self._pong_timer = None
        # Like the reference: a peer that is visibly sending packets gets more time.
        clock = self._clock
        timeout = self._config.ping_timeout
        if self.reading_paused:
            # Its pong may be among the bytes we are not reading: we are the slow one.
            self._last_packet_time = clock.time()
        elapsed = clock.time() - self._last_packet_time
        if elapsed < timeout:
            self._pong_timer = clock.call_at(
                self._last_packet_time + timeout, self._on_pong_timeout
            )
            return
        self._close_from_transport(self.transport, "ping timeout")

    # ------------------------------------------------------------------ closing

    def _on_close(self, reason: str) -> None:
        if self.state is _S_CLOSED:
            return
        self.state = _S_CLOSED
        self.close_reason = reason
        for timer in (self._ping_timer, self._pong_timer):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self._pong_timer = None
        candidate = self.upgrade_candidate
        if candidate is not None:
            self._abort_upgrade(candidate)
            candidate.session = None
        self.write_buffer = []
        self._buffered_bytes = 0
        if self.on_close is not None:
            self.on_close(self, reason)
        # Break the reference cycles of a live session (session <-> transport, session ->
        # the layer above -> session), so that a closed connection is freed at once by
        # reference counting: after a flood of disconnects, memory comes back without
        # waiting for (or paying for) a full garbage collection.
        self.on_message = None
        if self.transport.session is self:
            self.transport.session = None


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
