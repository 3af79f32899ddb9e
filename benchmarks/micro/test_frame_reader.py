"""The WebSocket read path: the frame parse, and one whole echo round trip in process.

* ``ws-read-1-frame`` / ``ws-read-8-frames``: one read holding one (or eight) masked client
  text frame(s) of the echo scenario's shape (``4`` + an event with an ack id, ~130
  bytes), parsed into ``websockets`` frames. ``FrameReader`` is ours
  (``engineio_core.frame_reader``: its fast path takes these frames); ``websockets`` is the
  bare sans-I/O ``Protocol`` the transport used before (``receive_data`` +
  ``events_received``), which the fast path must match byte for byte.
* ``echo-roundtrip``: our whole server path for one echo, in process: the client frame into
  a connected ``WebSocketTransport`` -> Engine.IO -> Socket.IO decode -> the handler of
  ``benchmarks/load/apps/ours.py`` -> the ack encoded and framed -> the per-iteration write
  batch flushed into a fake socket (the write is a counter). No event loop runs: what is
  left to the loop and the kernel in the ``echo`` load scenario is not in this number.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State

from benchmarks.load.apps.ours import build
from engineio_core import Request
from engineio_core.frame_reader import FrameReader

from .payloads import EVENT_WITH_ACK_TEXT
from .test_broadcast import CountingWriter, FakeAcceptor, _batcher, _new_loop

MAX_SIZE = 1_000_000
ECHO_FRAME = Frame(Opcode.TEXT, ("4" + EVENT_WITH_ACK_TEXT).encode()).serialize(mask=True)
EIGHT_FRAMES = ECHO_FRAME * 8
PARSERS = ("FrameReader", "websockets")


def _parse_function(parser: str) -> Any:
    protocol = Protocol(Side.SERVER, state=State.OPEN, max_size=MAX_SIZE)
    if parser == "FrameReader":
        return FrameReader(protocol).receive

    def parse(data: bytes) -> list[Frame]:
        protocol.receive_data(data)
        return protocol.events_received()

    return parse


@pytest.mark.benchmark(group="ws-read-1-frame")
@pytest.mark.parametrize("parser", PARSERS)
def test_read_one_frame(benchmark, parser):
    parse = _parse_function(parser)
    frames = benchmark(parse, ECHO_FRAME)
    assert [f.data for f in frames] == [("4" + EVENT_WITH_ACK_TEXT).encode()]


@pytest.mark.benchmark(group="ws-read-8-frames")
@pytest.mark.parametrize("parser", PARSERS)
def test_read_eight_frames(benchmark, parser):
    parse = _parse_function(parser)
    frames = benchmark(parse, EIGHT_FRAMES)
    assert len(frames) == 8


class _NoLoop:
    """The write batcher's loop: the benchmark flushes the batch itself, once per echo."""

    def call_soon(self, callback: Any, *args: Any) -> None:
        pass


@pytest.mark.benchmark(group="echo-roundtrip")
def test_echo_roundtrip(benchmark):
    loop = _new_loop()
    io = build()
    writer = CountingWriter()

    async def connect() -> Any:
        request = Request(
            method="GET",
            url="/socket.io/?EIO=4&transport=websocket",
            path="/socket.io/",
            query={"EIO": "4", "transport": "websocket"},
            headers={"connection": "Upgrade", "upgrade": "websocket"},
            upgrade=True,
        )
        acceptor = FakeAcceptor(io.engine, writer)
        io.engine.handle_websocket(request, acceptor)
        assert acceptor.transport is not None
        acceptor.transport.receive_data(
            Frame(Opcode.TEXT, b"40").serialize(mask=True)
        )
        return acceptor.transport

    try:
        transport = loop.run_until_complete(connect())
        batcher = _batcher(io.engine)
        if batcher is not None:
            batcher._loop = _NoLoop()
        frame = Frame(Opcode.TEXT, b'4212["echo",{"t":1732584000123,"pad":"xxxxxxxx"}]')
        frame_bytes = frame.serialize(mask=True)

        def echo() -> None:
            transport.receive_data(frame_bytes)
            if batcher is not None:
                batcher.flush()

        before = writer.frames
        benchmark(echo)
        assert writer.frames > before  # every echo wrote its ack
    finally:
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
