"""The benchmark app on python-socketio 5.x (``AsyncServer(async_mode="asgi")``) under
uvicorn with uvloop, log level warning. Same contract as ``ours.py``.

Runs in the harness's cache venv (python-socketio, uvicorn, uvloop pinned there).
WebSocket permessage-deflate is off, as in the other two servers' defaults.
With ``--redis URL --redis-key KEY`` the server is one node of a fleet through
``socketio.AsyncRedisManager`` (channel KEY; needs the ``redis`` package in the venv).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

import socketio
import uvicorn


def build(redis_url: str | None = None, redis_key: str = "socketio",
          ping_interval: float | None = None) -> socketio.AsyncServer:
    manager = None
    if redis_url:
        manager = socketio.AsyncRedisManager(redis_url, channel=redis_key)
    options: dict[str, Any] = {}
    if ping_interval is not None:
        options["ping_interval"] = ping_interval
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager, **options)

    @sio.on("join")
    async def join(sid: str, room: str) -> bool:
        await sio.enter_room(sid, room)
        return True

    @sio.on("bcast")
    async def bcast(sid: str, room: str, payload: Any) -> None:
        await sio.emit("msg", payload, room=room)

    @sio.on("departures")
    async def departures(sid: str, command: str) -> Any:
        return None  # no departure times from this server (the generator reports none)

    @sio.on("echo")
    async def echo(sid: str, payload: Any) -> Any:
        return payload

    return sio


async def main(host: str, port: int, redis_url: str | None, redis_key: str,
               ping_interval: float | None = None) -> None:
    sio = build(redis_url, redis_key, ping_interval)
    app = socketio.ASGIApp(sio, socketio_path="socket.io")
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        log_level="warning",
        lifespan="off",
        ws_per_message_deflate=False,
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():
            task.result()
            return
        await asyncio.sleep(0.01)
    if redis_url:
        # The manager subscribes in a background task that python-socketio starts at the
        # first connection; start it now (once) so it listens before clients arrive.
        sio.manager_initialized = True
        sio.manager.initialize()
        await asyncio.sleep(0.5)
    print(f"LISTENING {server.servers[0].sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.should_exit = True
    await task


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--redis", help="Redis URL: run as one node with AsyncRedisManager")
    parser.add_argument("--redis-key", default="socketio", help="the manager's channel")
    parser.add_argument("--ping-interval", type=float, help="pingInterval in seconds (25)")
    args = parser.parse_args()
    import uvloop

    uvloop.run(main(args.host, args.port, args.redis, args.redis_key, args.ping_interval))
