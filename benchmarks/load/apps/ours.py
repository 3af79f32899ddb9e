"""The benchmark app on this project's ``socketio_core`` (uvloop via ``engineio_core.run``).

Contract shared by the three apps (path ``/socket.io/``):

* ``join`` (room) -> the socket joins the room, ack ``true``;
* ``bcast`` (room, payload) -> ``msg`` (payload) to everyone in the room, sender included;
* ``echo`` (payload) with ack -> ack (payload).

``python benchmarks/load/apps/ours.py --port 0`` prints ``LISTENING <port>`` once listening;
SIGTERM / SIGINT stop it. ``departures`` ("start" / "stop", with ack) records, for each
``bcast`` handled in between, when the first and the last frame left the process (see
``DepartureTap``). With ``--redis URL --redis-key KEY`` the server is one node of a
fleet: ``socketio_core.redis_adapter.create_adapter`` (the ``fanout2`` scenario), and
``LISTENING`` waits until the adapter is subscribed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from typing import Any

from socketio_core import Server, Socket, run


class _Tap:
    """Stands in for one connection's asyncio transport: stamps each write, then makes it."""

    __slots__ = ("tap", "writer")

    def __init__(self, tap: DepartureTap, writer: Any) -> None:
        self.tap = tap
        self.writer = writer

    def write(self, data: bytes) -> None:
        record = self.tap.current
        if record is not None and record[3] < record[4]:
            t = time.monotonic_ns() // 1000
            if not record[3]:
                record[1] = t
            record[2] = t
            record[3] += 1
        self.writer.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.writer, name)


class DepartureTap:
    """Server-side departure times of broadcasts, for the benchmarks' tail measurements.

    Between ``start`` and ``stop`` every WebSocket connection's writes go through a
    ``_Tap``; each ``bcast`` opens a record ``[received, first write, last write, writes,
    room size]`` (CLOCK_MONOTONIC microseconds, the clock of the generator's
    ``process.hrtime``), and the next writes, as many as the room has members, are counted
    in it (one frame per recipient; a ping written meanwhile may take one's place). Off
    outside the window, so the throughput numbers carry no instrumentation.
    """

    def __init__(self, io: Server) -> None:
        self.io = io
        self.records: list[list[int]] = []
        self.current: list[int] | None = None
        self.on = False

    def _transports(self) -> list[Any]:
        found = []
        for socket in list(self.io.of("/").sockets.values()):
            transport = socket.client.session.transport
            if getattr(transport, "name", "") == "websocket":
                found.append(transport)
        return found

    def start(self) -> None:
        self.records = []
        self.current = None
        self.on = True
        for transport in self._transports():
            if not isinstance(transport._writer, _Tap):
                transport._writer = _Tap(self, transport._writer)

    def stop(self) -> list[list[int]]:
        self.on = False
        self.current = None
        for transport in self._transports():
            if isinstance(transport._writer, _Tap):
                transport._writer = transport._writer.writer
        return self.records[-5000:]

    def broadcast_received(self, room: str) -> None:
        if self.on:
            members = len(self.io.of("/").adapter.rooms.get(room, ()))
            self.current = [time.monotonic_ns() // 1000, 0, 0, 0, members]
            self.records.append(self.current)


def build(adapter: Any = None, ping_interval: float | None = None) -> Server:
    options: dict[str, Any] = {"path": "/socket.io/"}
    if adapter is not None:
        options["adapter"] = adapter
    if ping_interval is not None:
        options["ping_interval"] = ping_interval
    io = Server(**options)
    tap = DepartureTap(io)

    @io.on("connection")
    def connection(socket: Socket) -> None:
        @socket.on("join")
        def join(room: str) -> bool:
            socket.join(room)
            return True

        @socket.on("bcast")
        def bcast(room: str, payload: Any) -> None:
            if tap.on:
                tap.broadcast_received(room)
            io.to(room).emit("msg", payload)

        @socket.on("departures")
        def departures(command: str) -> Any:
            if command == "start":
                tap.start()
                return True
            return tap.stop()

        @socket.on("echo")
        def echo(payload: Any) -> Any:
            return payload

    return io


async def main(host: str, port: int, redis_url: str | None, redis_key: str,
               ping_interval: float | None = None) -> None:
    client: Any = None
    adapter: Any = None
    if redis_url:
        import redis.asyncio as aioredis

        from socketio_core.redis_adapter import create_adapter

        client = aioredis.Redis.from_url(redis_url)
        adapter = create_adapter(client, key=redis_key)
    io = build(adapter, ping_interval)
    await io.start(host, port)
    if adapter is not None:
        # The other node's broadcasts must arrive from the first client on.
        await adapter.ready(timeout=10)
    print(f"LISTENING {io.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await io.stop()
    if adapter is not None:
        await adapter.aclose()
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--redis", help="Redis URL: run as one node with the Redis adapter")
    parser.add_argument("--redis-key", default="socket.io", help="the adapter's channel prefix")
    parser.add_argument("--ping-interval", type=float,
                        help="Engine.IO pingInterval in seconds (default: the server's, 25)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    run(main(args.host, args.port, args.redis, args.redis_key, args.ping_interval))
