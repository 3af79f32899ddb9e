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
    def __init__(self, name: str, writable: bool = True) -> None:
        self.name = name
        self.writable = writable
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
        if callback is not None:
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
