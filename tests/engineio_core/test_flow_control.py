"""Flow control in the engine: budgeted inbound processing, pausing a peer, write limits.

The transports run on the real event loop here (their timers are ``call_at`` handles) with
a fake asyncio transport underneath that records what it is asked to do.
"""

from __future__ import annotations

import asyncio

from engineio_core.packet import OutgoingPacket
from engineio_core.polling import PollingTransport
from engineio_core.session import Session, SessionConfig
from engineio_core.websocket import PROCESS_BUDGET, WebSocketTransport

WAIT = 5.0


class FakeSocket:
    """Stands in for the asyncio transport under a WebSocket connection."""

    def __init__(self, protocol_high_water: int = 1 << 30) -> None:
        self.written: list[bytes] = []
        self.buffered = 0
        self.reading = True
        self.closed = False
        self.aborted = False
        self.high_water = protocol_high_water
        self.ws: WebSocketTransport | None = None

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))
        self.buffered += len(data)
        if self.buffered > self.high_water and self.ws is not None:
            self.ws.on_pause_writing()

    def drain(self) -> None:
        """The peer read everything: asyncio would call resume_writing."""
        self.buffered = 0
        if self.ws is not None and self.ws.congested:
            self.ws.on_resume_writing()

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def client_frame(text: str) -> bytes:
    """A masked client text frame (mask of zeros keeps the payload readable)."""
    payload = text.encode()
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload), 0, 0, 0, 0]) + payload


def make_ws_session(
    config: SessionConfig | None = None, *, high_water: int = 1 << 30
) -> tuple[Session, WebSocketTransport, FakeSocket, list[str | bytes]]:
    loop = asyncio.get_running_loop()
    sock = FakeSocket(high_water)
    ws = WebSocketTransport(sock, loop, max_message_size=1_000_000, high_water=high_water)
    sock.ws = ws
    session = Session("sid", ws, config or SessionConfig(), loop)
    ws.session = session
    received: list[str | bytes] = []
    session.on_message = lambda s, data: received.append(data)
    session.open()
    return session, ws, sock, received


async def wait_for(predicate, timeout: float = WAIT) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.001)


# ------------------------------------------------------------------ WebSocket inbound


async def test_many_frames_in_one_read_are_spread_over_loop_iterations() -> None:
    session, ws, sock, received = make_ws_session()
    slow_handler_calls = 0

    def slow(_session: Session, data: str | bytes) -> None:
        nonlocal slow_handler_calls
        slow_handler_calls += 1
        received.append(data)
        # Each message costs a tenth of the budget: one read of 2,000 cannot be handled
        # in one go without holding the loop far longer than the budget.
        end = asyncio.get_running_loop().time() + PROCESS_BUDGET / 10
        while asyncio.get_running_loop().time() < end:
            pass

    session.on_message = slow
    data = b"".join(client_frame(f"4m{i}") for i in range(2000))
    ws.receive_data(data)
    first_call = slow_handler_calls
    assert 0 < first_call < 2000
    assert not sock.reading  # no more bytes from this peer while its backlog is worked off
    await wait_for(lambda: len(received) == 2000)
    assert received == [f"m{i}" for i in range(2000)]  # in order, none lost
    assert sock.reading


async def test_pause_reading_holds_frames_until_resumed() -> None:
    session, ws, sock, received = make_ws_session()
    paused_after = 3

    def handler(s: Session, data: str | bytes) -> None:
        received.append(data)
        if len(received) == paused_after:
            s.pause_reading()

    session.on_message = handler
    ws.receive_data(b"".join(client_frame(f"4m{i}") for i in range(10)))
    await asyncio.sleep(0.01)
    assert received == ["m0", "m1", "m2"]
    assert not sock.reading
    ws.receive_data(client_frame("4late"))  # already in flight from the kernel: kept
    await asyncio.sleep(0.01)
    assert len(received) == 3
    session.resume_reading()
    await wait_for(lambda: len(received) == 11)
    assert received[-1] == "late"
    assert sock.reading


async def test_pong_is_not_timed_out_while_reading_is_paused() -> None:
    config = SessionConfig(ping_interval=0.02, ping_timeout=0.02)
    session, _, _, _ = make_ws_session(config)
    session.pause_reading()
    await asyncio.sleep(0.2)  # several ping cycles without a pong being read
    assert session.is_open
    session.resume_reading()
    await wait_for(lambda: not session.is_open)  # no pong ever comes: now it times out
    assert session.close_reason == "ping timeout"


async def test_bad_frame_after_good_ones_delivers_them_then_closes() -> None:
    session, ws, _, received = make_ws_session()
    closed: list[str] = []
    session.on_close = lambda s, reason: closed.append(reason)
    unmasked = bytes([0x81, 0x02]) + b"4x"  # client frames must be masked
    ws.receive_data(client_frame("4a") + client_frame("4b") + unmasked)
    await wait_for(lambda: bool(closed))
    assert received == ["a", "b"]
    assert closed == ["transport error"]


# ------------------------------------------------------------------ WebSocket outbound


async def test_congested_peer_holds_frames_by_reference_in_order() -> None:
    session, ws, sock, _ = make_ws_session(high_water=1000)
    sock.written.clear()
    big = OutgoingPacket.message("x" * 1500)
    session.send_packet(big)
    ws.flush_batch()
    assert ws.congested
    small = [OutgoingPacket.message(f"s{i}") for i in range(5)]
    for packet in small:
        session.send_packet(packet)
    ws.flush_batch()
    assert len(sock.written) == 1  # the rest waits here, not in the socket's buffer
    assert ws.buffered_amount() == sock.buffered + sum(len(p.websocket_frame) for p in small)
    sock.drain()
    assert not ws.congested
    assert b"".join(sock.written[1:]) == b"".join(p.websocket_frame for p in small)


async def test_slow_consumer_is_cut_at_max_write_buffer_whatever_was_sent() -> None:
    config = SessionConfig(write_buffer_high_water=1000, max_write_buffer=10_000)
    session, ws, sock, _ = make_ws_session(config, high_water=1000)
    broadcast = OutgoingPacket.message("y" * 900)
    for _ in range(30):
        if not session.is_open:
            break
        session.send_packet(broadcast)
        ws.flush_batch()
    assert not session.is_open
    assert session.close_reason == "transport error"
    assert sock.aborted  # a peer that does not read would never get a close frame


async def test_ping_to_a_congested_peer_is_checked_too() -> None:
    config = SessionConfig(ping_interval=0.01, ping_timeout=5, write_buffer_high_water=100,
                           max_write_buffer=200)
    session, ws, sock, _ = make_ws_session(config, high_water=100)
    sock.buffered = 150
    ws.on_pause_writing()
    ws._backlog_bytes = 100  # as if frames were already waiting
    await wait_for(lambda: not session.is_open)
    assert session.close_reason == "transport error"


async def test_peer_congested_for_too_long_is_cut() -> None:
    config = SessionConfig(write_buffer_high_water=1000, max_write_buffer=1 << 30,
                           congestion_timeout=0.05)
    session, ws, _, _ = make_ws_session(config, high_water=1000)
    session.send_packet(OutgoingPacket.message("z" * 1500))
    ws.flush_batch()
    assert ws.congested
    session.send_packet(OutgoingPacket.message("a"))
    assert session.is_open
    await asyncio.sleep(0.1)
    session.send_packet(OutgoingPacket.message("b"))
    assert not session.is_open
    assert session.close_reason == "transport error"


async def test_one_iteration_cannot_build_an_unbounded_batch() -> None:
    loop = asyncio.get_running_loop()
    from engineio_core.websocket import WriteBatcher

    sock = FakeSocket(1 << 30)
    ws = WebSocketTransport(sock, loop, max_message_size=1000, high_water=1000,
                            batcher=WriteBatcher(loop))
    for _ in range(100):
        ws.send_one(OutgoingPacket.message("q" * 100))
    # Written in pieces of about the high-water mark, not as one 10 KB join at the end.
    assert len(sock.written) >= 9


# ------------------------------------------------------------------ long-polling


class Responder:
    def __init__(self) -> None:
        self.answers: list[tuple[int, bytes]] = []

    def respond(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.answers.append((status, body))


def make_polling_session() -> tuple[Session, PollingTransport, list[str | bytes]]:
    loop = asyncio.get_running_loop()
    transport = PollingTransport(loop)
    session = Session("sid", transport, SessionConfig(), loop)
    transport.session = session
    received: list[str | bytes] = []
    session.on_message = lambda s, data: received.append(data)
    session.open()
    return session, transport, received


async def test_post_is_answered_after_its_packets_and_held_while_paused() -> None:
    session, transport, received = make_polling_session()

    def handler(s: Session, data: str | bytes) -> None:
        received.append(data)
        if len(received) == 2:
            s.pause_reading()

    session.on_message = handler
    post = Responder()
    transport.on_data("\x1e".join(f"4m{i}" for i in range(5)).encode(), post)
    await asyncio.sleep(0.01)
    assert received == ["m0", "m1"]
    assert post.answers == []  # the client cannot send its next payload yet
    session.resume_reading()
    await wait_for(lambda: bool(post.answers))
    assert received == [f"m{i}" for i in range(5)]
    assert post.answers == [(200, b"ok")]


async def test_huge_post_is_processed_in_slices() -> None:
    _, transport, received = make_polling_session()
    post = Responder()
    count = 50_000
    transport.on_data("\x1e".join(["4x"] * count).encode(), post)
    assert len(received) < count  # not all in the first loop iteration
    await wait_for(lambda: bool(post.answers), timeout=30)
    assert len(received) == count


async def test_overlapping_post_is_refused_like_the_reference() -> None:
    session, transport, _ = make_polling_session()
    session.pause_reading()
    first, second = Responder(), Responder()
    transport.on_data(b"4a", first)
    transport.on_data(b"4b", second)
    assert second.answers == [(400, b"")]
    assert not session.is_open
    assert first.answers == [(200, b"ok")]  # released when the session closed


async def test_close_releases_a_held_post() -> None:
    session, transport, _ = make_polling_session()
    transport.on_poll(Responder())  # takes the handshake
    session.pause_reading()
    post = Responder()
    transport.on_data(b"4a\x1e4b", post)
    session.close()
    assert post.answers == [(200, b"ok")]
    assert transport._data is None  # what was left of the payload is not kept
