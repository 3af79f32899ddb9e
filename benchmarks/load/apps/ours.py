"""The benchmark app on this project's ``socketio_core`` (uvloop via ``engineio_core.run``).

Contract shared by the three apps (path ``/socket.io/``):

* ``join`` (room) -> the socket joins the room, ack ``true``;
* ``bcast`` (room, payload) -> ``msg`` (payload) to everyone in the room, sender included;
* ``echo`` (payload) with ack -> ack (payload).

``python benchmarks/load/apps/ours.py --port 0`` prints ``LISTENING <port>`` once listening;
SIGTERM / SIGINT stop it. With ``--redis URL --redis-key KEY`` the server is one node of a
fleet: ``socketio_core.redis_adapter.create_adapter`` (the ``fanout2`` scenario), and
``LISTENING`` waits until the adapter is subscribed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from socketio_core import Server, Socket, run


def build(adapter: Any = None) -> Server:
    io = Server(path="/socket.io/") if adapter is None else Server(
        path="/socket.io/", adapter=adapter)

    @io.on("connection")
    def connection(socket: Socket) -> None:
        @socket.on("join")
        def join(room: str) -> bool:
            socket.join(room)
            return True

        @socket.on("bcast")
        def bcast(room: str, payload: Any) -> None:
            io.to(room).emit("msg", payload)

        @socket.on("echo")
        def echo(payload: Any) -> Any:
            return payload

    return io


async def main(host: str, port: int, redis_url: str | None, redis_key: str) -> None:
    client: Any = None
    adapter: Any = None
    if redis_url:
        import redis.asyncio as aioredis

        from socketio_core.redis_adapter import create_adapter

        client = aioredis.Redis.from_url(redis_url)
        adapter = create_adapter(client, key=redis_key)
    io = build(adapter)
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
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    run(main(args.host, args.port, args.redis, args.redis_key))
