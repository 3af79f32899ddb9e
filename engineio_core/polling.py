"""HTTP long-polling transport: turns GET/POST exchanges into session packets. No sockets.

The HTTP layer (``http.py`` for the raw server, ``asgi.py`` under ASGI) parses requests and
hands each one over with a ``Responder`` that can answer it exactly once, now or later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from .packet import RECORD_SEPARATOR, OutgoingPacket, Packet, PacketType, iter_payload

if TYPE_CHECKING:
    from .session import Clock, Session, TimerHandle

logger = logging.getLogger(__name__)

# Enum members as module constants: attribute access on an Enum class is slow on
# Python 3.11, and these are read once or more per packet.
_P_CLOSE = PacketType.CLOSE
_P_NOOP = PacketType.NOOP

__all__ = ["PollingTransport", "Responder"]

Headers = list[tuple[str, str]]

# How long a server-side close waits for the client's next GET to carry the close packet
# (the reference waits 30 s too).
CLOSE_TIMEOUT = 30.0

# Packets of one POST are delivered for at most this many seconds per loop iteration.
PROCESS_BUDGET = 0.002
_END = object()

_CLOSE = OutgoingPacket(_P_CLOSE)
_NOOP = OutgoingPacket(_P_NOOP)
_PAYLOAD_HEADERS: Headers = [
    ("Content-Type", "text/plain; charset=UTF-8"),
    ("Cache-Control", "no-store"),
]
_OK_HEADERS: Headers = [("Content-Type", "text/html"), ("Cache-Control", "no-store")]


class Responder(Protocol):
    """Answers one HTTP request, exactly once.

    The responder appends its own extra headers (CORS, cookie, hooks); it never mutates the
    ``headers`` list it is given, so transports can pass shared constant lists.
    """

    def respond(self, status: int, headers: Headers, body: bytes) -> None: ...


class PollingTransport:
    __slots__ = (
        "_clock",
        "_close_timer",
        "_data",
        "_paused",
        "_poll",
        "_post",
        "_resume_scheduled",
        "_should_close",
        "discarded",
        "session",
        "writable",
    )

    name = "polling"
    #: Long-polling congestion is the session's queue, counted by the session itself.
    congested = False
    congested_since = 0.0

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.session: Session | None = None
        self._poll: Responder | None = None
        self.writable = False
        self.discarded = False
        self._should_close: Callable[[], object] | None = None
        self._close_timer: TimerHandle | None = None
        # The POST being processed: its packets not yet delivered, and its responder,
        # answered once they all are (holding the answer is the backpressure).
        self._data: Iterator[Packet | None] | None = None
        self._post: Responder | None = None
        self._paused = False
        self._resume_scheduled = False

    # ---------------------------------------------------------------- from HTTP

    def on_poll(self, responder: Responder) -> None:
        """A GET arrived: keep it until there is something to send."""
        session = self.session
        if self._poll is not None:
            # Two concurrent GETs: the reference answers 400 and closes the session.
            responder.respond(400, _OK_HEADERS, b"")
            if session is not None:
                session.on_transport_error(self, "overlap from client")
            return
        self._poll = responder
        self.writable = True
        if session is not None:
            session.on_transport_ready(self)
        if self.writable and self._should_close is not None:
            self.send([])

    def on_poll_aborted(self, responder: Responder) -> None:
        """The connection of a pending GET went away before it was answered."""
        if responder is not self._poll:
            return
        self._poll = None
        self.writable = False
        if self.session is not None and not self.discarded:
            self.session.on_transport_error(self, "poll connection closed prematurely")

    def on_data(self, body: bytes, responder: Responder) -> None:
        """A POST arrived with a complete body (the HTTP layer enforced the size limit).

        Like the reference, packets before a bad one are still delivered, and invalid
        UTF-8 is decoded with replacement characters. Packets are delivered for at most
        ``PROCESS_BUDGET`` seconds per loop iteration, and not at all while the session
        has paused reading; the POST is answered once every packet was delivered, so a
        client cannot send the next payload before this one is through.
        """
        session = self.session
        if self._post is not None:
            # Like the reference: a second POST while one is in progress is an error.
            responder.respond(400, _OK_HEADERS, b"")
            if session is not None:
                session.on_transport_error(self, "data request overlap from client")
            return
        if session is None:
            responder.respond(200, _OK_HEADERS, b"ok")
            return
        self._post = responder
        self._data = iter_payload(body.decode("utf-8", "replace"))
        self._deliver_data()

    def _deliver_data(self) -> None:
        self._resume_scheduled = False
        session = self.session
        packets = self._data
        if packets is None or session is None:
            self._end_post()
            return
        clock = self._clock
        deadline = clock.time() + PROCESS_BUDGET
        while not self._paused:  # else resume_reading carries on
            packet = next(packets, _END)
            if packet is _END:
                break
            if packet is None:
                session.on_parse_error(self)
                break
            assert isinstance(packet, Packet)
            if packet.type is _P_CLOSE:
                # The client is leaving: release its pending GET, then close.
                if self.writable:
                    self.send([_NOOP])
                self.discarded = True
                session.on_transport_close(self)
                break
            session.receive(self, packet)
            if not session.is_open or self._data is None:
                break
            if clock.time() > deadline:
                self._schedule_delivery()
                return
        else:
            return
        self._end_post()

    def _end_post(self) -> None:
        responder, self._post = self._post, None
        self._data = None
        if responder is not None:
            responder.respond(200, _OK_HEADERS, b"ok")

    def _schedule_delivery(self) -> None:
        if not self._resume_scheduled:
            self._resume_scheduled = True
            self._clock.call_at(self._clock.time(), self._deliver_data)

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        self._paused = False
        if self._data is not None:
            self._schedule_delivery()

    # ---------------------------------------------------------------- from session

    def send(self, packets: list[OutgoingPacket]) -> None:
        responder = self._poll
        if responder is None:
            raise RuntimeError("polling transport is not writable")
        self._poll = None
        self.writable = False
        done = self._should_close
        if done is not None:
            packets = [*packets, _CLOSE]
            self._should_close = None
            self._cancel_close_timer()
        elif not packets:
            packets = [_NOOP]
        body = encode_payload_text(packets).encode()
        responder.respond(200, _PAYLOAD_HEADERS, body)
        if done is not None:
            done()

    def send_one(self, packet: OutgoingPacket) -> None:
        self.send([packet])

    def buffered_amount(self) -> int:
        return 0

    def close(self, callback: Callable[[], object] | None = None) -> None:
        self._end_post()  # what is left of a POST being processed means nothing now
        done = callback if callback is not None else _nothing
        if self.writable:
            self.send([_CLOSE])
            done()
        elif self.discarded:
            done()
        else:
            self._should_close = done
            clock = self._clock
            self._close_timer = clock.call_at(clock.time() + CLOSE_TIMEOUT, self._on_close_timeout)

    def discard(self) -> None:
        self.discarded = True
        self._end_post()
        if self.writable:
            # Release a GET that is still pending after the upgrade.
            self.send([_NOOP])

    def _on_close_timeout(self) -> None:
        self._close_timer = None
        done, self._should_close = self._should_close, None
        if done is not None:
            done()

    def _cancel_close_timer(self) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None


def encode_payload_text(packets: list[OutgoingPacket]) -> str:
    if len(packets) == 1:
        return packets[0].polling_text
    return RECORD_SEPARATOR.join(p.polling_text for p in packets)


def _nothing() -> None:
    return None

