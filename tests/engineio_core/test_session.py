"""Session state machine driven by a fake clock: no sleeping, no sockets."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

import orjson
import pytest

from engineio_core.packet import OutgoingPacket, Packet, PacketType
from engineio_core.session import Session, SessionConfig, SessionState


class FakeTimer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, FakeTimer, Callable[[], object]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object]) -> FakeTimer:
        timer = FakeTimer()
        heapq.heappush(self._queue, (when, next(self._seq), timer, callback))
        return timer

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self._queue and self._queue[0][0] <= end:
            when, _, timer, callback = heapq.heappop(self._queue)
            self.now = when
            if not timer.cancelled:
                callback()
        self.now = end


class FakeTransport:
    def __init__(self, name: str, writable: bool = True, *, close_later: bool = False) -> None:
        self.name = name
        self.writable = writable
        #: Like polling without a pending GET: ``close`` tells the peer (and calls back) later.
        self.close_later = close_later
        self.close_callback: Callable[[], object] | None = None
        self.sent: list[str] = []
        self.closed = False
        self.discarded = False
        self.buffered = 0
        self.congested = False
        self.congested_since = 0.0
        self.reading_paused = False
        self.session: object = None

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False

    def send_one(self, packet: OutgoingPacket) -> None:
        self.send([packet])

    def send(self, packets: list[OutgoingPacket]) -> None:
        self.sent.extend(p.polling_text for p in packets)
        if self.name == "polling":
            self.writable = False  # one response per GET

    def buffered_amount(self) -> int:
        return self.buffered

    def close(self, callback: Callable[[], object] | None = None) -> None:
        self.closed = True
        if self.close_later:
            if callback is not None:
                self.close_callback = callback
        elif callback is not None:
            callback()

    def discard(self) -> None:
        self.discarded = True


CONFIG = SessionConfig(ping_interval=25.0, ping_timeout=20.0, upgrade_timeout=10.0,
                       max_payload=1000, max_write_buffer=100, write_buffer_high_water=10)


def make(name: str = "websocket") -> tuple[Session, FakeTransport, FakeClock, list[object]]:
    clock = FakeClock()
    transport = FakeTransport(name)
    session = Session("sid1", transport, CONFIG, clock)
    events: list[object] = []
    session.on_message = lambda s, data: events.append(("message", data))
    session.on_close = lambda s, reason: events.append(("close", reason))
    session.open()
    return session, transport, clock, events


def test_handshake_packet() -> None:
    session, transport, _, _ = make("polling")
    assert transport.sent[0][0] == "0"
    assert orjson.loads(transport.sent[0][1:]) == {
        "sid": "sid1", "upgrades": ["websocket"], "pingInterval": 25000,
        "pingTimeout": 20000, "maxPayload": 1000,
    }
    assert session.state is SessionState.OPEN


def test_websocket_handshake_offers_no_upgrades() -> None:
    _, transport, _, _ = make("websocket")
    assert orjson.loads(transport.sent[0][1:])["upgrades"] == []


def test_ping_then_timeout() -> None:
    session, transport, clock, events = make()
    clock.advance(24.9)
    assert transport.sent[1:] == []
    clock.advance(0.2)
    assert transport.sent[1:] == ["2"]
    clock.advance(19.8)
    assert session.is_open
    clock.advance(0.3)
    assert events == [("close", "ping timeout")]
    assert session.state is SessionState.CLOSED and transport.closed


def test_pong_keeps_the_session_alive() -> None:
    session, transport, clock, events = make()
    for _ in range(10):
        clock.advance(25.0)
        assert transport.sent[-1] == "2"
        clock.advance(5.0)
        session.receive(transport, Packet(PacketType.PONG))
    assert session.is_open and events == []
    assert transport.sent.count("2") == 10


def test_any_packet_delays_the_ping_timeout() -> None:
    session, transport, clock, events = make()
    clock.advance(25.0)
    clock.advance(15.0)
    session.receive(transport, Packet(PacketType.MESSAGE, "late but alive"))
    clock.advance(10.0)  # 20 s after the ping, 10 s after the last packet
    assert session.is_open
    clock.advance(10.1)
    assert events[-1] == ("close", "ping timeout")


def test_messages_and_ignored_close_packet() -> None:
    session, transport, _, events = make()
    session.receive(transport, Packet(PacketType.MESSAGE, "hi"))
    session.receive(transport, Packet(PacketType.MESSAGE, b"\x00"))
    # Like the reference, a close packet over a WebSocket means nothing (polling
    # transports handle it themselves).
    session.receive(transport, Packet(PacketType.CLOSE))
    assert events == [("message", "hi"), ("message", b"\x00")]
    session.on_transport_close(transport)
    assert events[-1] == ("close", "transport close")


def test_client_ping_is_a_transport_error() -> None:
    session, transport, _, events = make()
    session.receive(transport, Packet(PacketType.PING))
    assert events == [("close", "transport error")]


def test_parse_error_closes() -> None:
    session, transport, _, events = make()
    session.on_parse_error(transport)
    assert events == [("close", "parse error")]


def test_polling_buffers_until_a_get() -> None:
    session, transport, _, _ = make("polling")
    session.send("a")
    session.send(b"\x01")
    assert transport.sent == [transport.sent[0]]
    transport.writable = True
    session.on_transport_ready(transport)
    assert transport.sent[1:] == ["4a", "bAQ=="]


def test_volatile_dropped_when_not_writable() -> None:
    session, transport, _, _ = make("polling")
    assert session.send("v", volatile=True) is False
    transport.writable = True
    assert session.send("v", volatile=True) is True


def test_volatile_dropped_when_congested() -> None:
    session, transport, _, _ = make("websocket")
    transport.congested = True  # the socket buffer passed its high-water mark
    assert session.send("v", volatile=True) is False
    assert session.send("kept") is True
    assert transport.sent[-1] == "4kept"


def test_congested_peer_past_the_limit_is_closed() -> None:
    session, transport, _, events = make("websocket")
    transport.congested = True
    transport.buffered = 50
    session.send("x")
    assert events == []
    transport.buffered = 101
    session.send("x")
    assert events == [("close", "transport error")]


def test_polling_buffer_limit_closes() -> None:
    session, _, _, events = make("polling")
    for _ in range(30):
        session.send("0123456789")
    assert events == [("close", "transport error")]
    assert session.write_buffer == []


def test_server_close_flushes_first_on_polling() -> None:
    session, transport, _, events = make("polling")
    session.send("bye")
    session.close()
    assert session.state is SessionState.CLOSING and events == []
    transport.writable = True
    session.on_transport_ready(transport)
    assert transport.sent[-1] == "4bye"
    assert events == [("close", "forced close")] and transport.closed


def test_upgrade_dance() -> None:
    session, polling, clock, events = make("polling")
    ws = FakeTransport("websocket")
    assert session.begin_upgrade(ws)
    assert session.state is SessionState.UPGRADING
    session.receive(ws, Packet(PacketType.PING, "probe"))
    assert ws.sent == ["3probe"]
    polling.writable = True  # a GET is pending: the noop releases it
    clock.advance(0.1)
    assert polling.sent[-1] == "6"
    session.send("queued during upgrade")
    session.receive(ws, Packet(PacketType.UPGRADE))
    assert session.transport is ws and session.upgraded and polling.discarded
    assert ws.sent[-1] == "4queued during upgrade"
    session.receive(ws, Packet(PacketType.MESSAGE, "over ws"))
    session.receive(polling, Packet(PacketType.MESSAGE, "stale"))
    assert events == [("message", "over ws")]
    assert not session.begin_upgrade(FakeTransport("websocket"))


def test_upgrade_timeout_keeps_polling() -> None:
    session, _, clock, events = make("polling")
    ws = FakeTransport("websocket")
    session.begin_upgrade(ws)
    clock.advance(10.0)
    assert ws.closed and session.state is SessionState.OPEN and events == []


def test_unexpected_packet_during_upgrade_aborts_it() -> None:
    session, _, _, _ = make("polling")
    ws = FakeTransport("websocket")
    session.begin_upgrade(ws)
    session.receive(ws, Packet(PacketType.MESSAGE, "too early"))
    assert ws.closed and session.state is SessionState.OPEN


def test_close_while_upgrading_closes_candidate() -> None:
    session, _, _, events = make("polling")
    ws = FakeTransport("websocket")
    session.begin_upgrade(ws)
    session.close(discard=True)
    assert ws.closed and events == [("close", "forced close")]


@pytest.mark.parametrize("reason", ["server shutting down", "forced close"])
def test_close_reason_is_reported(reason: str) -> None:
    session, _, _, events = make()
    session.close(reason)
    session.close("again")
    assert events == [("close", reason)]


# ---------------------------------------------------------------- every remaining branch
# The state machine is kept at 100% branch coverage (see the README's Tests section): each
# test below is one transition or guard the scenarios above do not reach.


def test_repr_and_open_twice() -> None:
    session, _, _, _ = make()
    assert repr(session) == "<Session sid1 open websocket>"
    with pytest.raises(RuntimeError):
        session.open()


def test_first_close_reason_wins_while_closing() -> None:
    session, transport, _, events = make("polling")
    session.send("pending")
    session.close("server shutting down")
    session.close("forced close")  # CLOSING: still waiting for the GET, reason kept
    assert session.state is SessionState.CLOSING
    transport.writable = True
    session.on_transport_ready(transport)
    assert events == [("close", "server shutting down")]


def test_send_during_upgrade_goes_to_the_old_transport() -> None:
    session, polling, _, _ = make("polling")
    session.begin_upgrade(FakeTransport("websocket"))
    polling.writable = True  # a GET is pending
    assert session.send("during upgrade") is True
    assert polling.sent[-1] == "4during upgrade"
    # Volatile packets wait for the upgrade to finish: they are dropped meanwhile.
    polling.writable = True
    assert session.send("volatile", volatile=True) is False


def test_send_during_upgrade_to_a_congested_transport_checks_the_peer() -> None:
    session, polling, _, events = make("polling")
    session.begin_upgrade(FakeTransport("websocket"))
    polling.writable = True
    polling.congested = True
    polling.buffered = 101  # past max_write_buffer
    assert session.send("x") is True
    assert events == [("close", "transport error")]


def test_send_on_a_closed_session_is_dropped() -> None:
    session, transport, _, _ = make()
    session.close()
    assert session.send("late") is False
    assert transport.sent[1:] == []


def test_ready_without_anything_to_send_and_ready_of_another_transport() -> None:
    session, polling, _, _ = make("polling")
    polling.writable = True
    session.on_transport_ready(polling)  # nothing buffered
    session.send("queued")  # written at once: the GET is pending
    session.send("buffered")
    other = FakeTransport("polling")
    session.on_transport_ready(other)  # not this session's transport: ignored
    assert polling.sent[1:] == ["4queued"] and other.sent == []


def test_flush_to_a_congested_transport_checks_the_peer() -> None:
    session, polling, _, events = make("polling")
    session.send("a")
    polling.writable = True
    polling.congested = True
    polling.buffered = 101
    session.on_transport_ready(polling)
    assert polling.sent[-1] == "4a"
    assert events == [("close", "transport error")]


def test_peer_congested_for_too_long_is_closed() -> None:
    session, transport, clock, events = make()
    transport.congested = True
    transport.congested_since = clock.time()
    session.send("x")
    clock.advance(30.0)  # the ping at 25 s is checked too: not long enough yet
    assert events == [] and transport.sent[-1] == "2"
    clock.advance(0.1)
    session.send("y")  # congested for more than congestion_timeout (30 s)
    assert events == [("close", "transport error")]


def test_ping_to_a_peer_that_does_not_read_closes_it() -> None:
    session, transport, clock, events = make()
    transport.congested = True
    transport.buffered = 101
    clock.advance(25.0)  # the ping itself finds the peer over the limit
    assert transport.sent[-1] == "2"
    assert events == [("close", "transport error")] and not session.is_open
    clock.advance(100.0)  # no pong timer was armed
    assert events == [("close", "transport error")]


def test_pause_hold_and_resume_reading() -> None:
    session, transport, _, _ = make()
    session.pause_reading()
    session.pause_reading()  # already paused: the transport is told once
    assert transport.reading_paused and session.reading_paused
    session.resume_reading()
    assert not transport.reading_paused
    session.resume_reading()  # not paused: nothing to do
    session.hold_reading()
    session.resume_reading()  # held: resuming does not undo it
    assert transport.reading_paused and session.reading_held


def test_receive_message_fast_path_and_fallback() -> None:
    session, transport, _, events = make()
    session.receive_message(transport, "fast")
    session.on_message = None
    session.receive_message(transport, "nobody listens")
    session.receive(transport, Packet(PacketType.MESSAGE, "nobody listens either"))
    assert events == [("message", "fast")]
    # Not OPEN (upgrading): the general path, which still delivers current-transport messages.
    session, polling, _, events = make("polling")
    session.begin_upgrade(FakeTransport("websocket"))
    session.receive_message(polling, "while upgrading")
    assert events == [("message", "while upgrading")]


def test_packets_on_a_closing_session_are_ignored() -> None:
    session, polling, _, events = make("polling")
    session.send("pending")
    session.close()
    session.receive(polling, Packet(PacketType.MESSAGE, "too late"))
    assert events == [] and session.state is SessionState.CLOSING


def test_unsolicited_pong_reschedules_the_ping() -> None:
    session, transport, clock, events = make()
    clock.advance(10.0)
    session.receive(transport, Packet(PacketType.PONG))  # no ping was sent: no pong timer
    clock.advance(20.0)  # 30 s after open, 20 s after the pong
    assert transport.sent[1:] == []
    clock.advance(5.0)
    assert transport.sent[1:] == ["2"] and events == []


@pytest.mark.parametrize("event", ["parse", "error", "close"])
def test_candidate_failure_aborts_the_upgrade_only(event: str) -> None:
    session, polling, _, events = make("polling")
    ws = FakeTransport("websocket")
    session.begin_upgrade(ws)
    {
        "parse": session.on_parse_error,
        "error": session.on_transport_error,
        "close": session.on_transport_close,
    }[event](ws)
    assert ws.closed and session.upgrade_candidate is None
    assert session.state is SessionState.OPEN and session.transport is polling
    assert events == []


@pytest.mark.parametrize("event", ["parse", "error", "close"])
def test_unknown_transport_events_are_ignored(event: str) -> None:
    session, _, _, events = make()
    stranger = FakeTransport("websocket")
    {
        "parse": session.on_parse_error,
        "error": session.on_transport_error,
        "close": session.on_transport_close,
    }[event](stranger)
    assert session.is_open and events == [] and not stranger.closed


def test_transport_events_after_close_are_ignored() -> None:
    session, transport, _, events = make()
    session.on_transport_close(transport)
    session.on_transport_error(transport, "late")
    assert events == [("close", "transport close")]


def test_upgrade_completes_while_reading_is_paused() -> None:
    session, _, _, _ = make("polling")
    ws = FakeTransport("websocket")
    session.begin_upgrade(ws)
    session.pause_reading()
    session.receive(ws, Packet(PacketType.UPGRADE))
    assert session.transport is ws and ws.reading_paused


def test_upgrade_completes_while_closing_with_buffered_packets() -> None:
    # close() during the upgrade with packets waiting: they go out on the new transport,
    # which is then closed.
    session, polling, clock, events = make("polling")
    ws = FakeTransport("websocket")
    session.begin_upgrade(ws)
    session.receive(ws, Packet(PacketType.PING, "probe"))  # starts the noop timer
    session.send("last words")
    session.close()
    assert session.state is SessionState.CLOSING
    clock.advance(0.1)  # the noop timer fires on a CLOSING session: nothing sent
    assert polling.sent[1:] == []
    session.receive(ws, Packet(PacketType.UPGRADE))
    assert ws.sent == ["3probe", "4last words"] and ws.closed
    assert events == [("close", "forced close")]


def test_upgrade_completes_while_closing_with_nothing_buffered() -> None:
    # close() during the upgrade with an empty buffer: the old polling transport was
    # waiting for a GET to tell the peer; the new transport is closed instead.
    clock = FakeClock()
    polling = FakeTransport("polling", close_later=True)
    session = Session("sid1", polling, CONFIG, clock)
    events: list[object] = []
    session.on_close = lambda s, reason: events.append(("close", reason))
    session.open()
    ws = FakeTransport("websocket")
    session.begin_upgrade(ws)
    session.close()
    assert polling.closed and session.state is SessionState.CLOSING
    session.receive(ws, Packet(PacketType.UPGRADE))
    assert polling.discarded and ws.closed
    assert events == [("close", "forced close")]


def test_noop_waits_for_a_pending_get() -> None:
    session, polling, clock, _ = make("polling")  # the handshake used the GET
    session.begin_upgrade(ws := FakeTransport("websocket"))
    session.receive(ws, Packet(PacketType.PING, "probe"))
    clock.advance(0.1)  # no GET pending: nothing to release, the noop is rescheduled
    assert polling.sent[1:] == []
    polling.writable = True
    clock.advance(0.1)
    assert polling.sent[1:] == ["6"]


def test_upgrade_timeout_then_a_new_upgrade() -> None:
    session, _, clock, _ = make("polling")
    first = FakeTransport("websocket")
    session.begin_upgrade(first)
    clock.advance(10.0)
    assert first.closed and session.state is SessionState.OPEN
    second = FakeTransport("websocket")
    assert session.begin_upgrade(second)
    session.receive(second, Packet(PacketType.UPGRADE))  # no probe, no noop timer
    assert session.transport is second and session.upgraded


def test_ping_timer_on_a_closing_session_sends_nothing() -> None:
    session, polling, clock, events = make("polling")
    session.send("pending")
    session.close()
    clock.advance(25.0)
    assert polling.sent[1:] == [] and session.state is SessionState.CLOSING
    assert events == []


def test_pong_timeout_while_reading_is_paused_waits() -> None:
    session, _, clock, events = make()
    clock.advance(25.0)
    session.pause_reading()  # its pong may be unread: we are the slow one
    clock.advance(60.0)
    assert session.is_open and events == []
    session.resume_reading()
    clock.advance(20.0)
    assert events == [("close", "ping timeout")]


def test_close_callback_after_a_transport_close_is_ignored() -> None:
    clock = FakeClock()
    polling = FakeTransport("polling", close_later=True)
    session = Session("sid1", polling, CONFIG, clock)
    polling.session = session
    session.open()
    session.close()  # waits for a GET to tell the peer
    session.on_transport_close(polling)  # the peer went away first
    assert session.state is SessionState.CLOSED and session.close_reason == "transport close"
    assert polling.session is None  # the reference cycle is broken
    assert polling.close_callback is not None
    polling.close_callback()  # the transport's late callback changes nothing
    assert session.close_reason == "transport close"


def test_close_detaches_the_candidate() -> None:
    session, _, _, _ = make("polling")
    ws = FakeTransport("websocket")
    ws.session = session
    session.begin_upgrade(ws)
    session.on_transport_error(session.transport, "gone")
    assert ws.closed and ws.session is None
