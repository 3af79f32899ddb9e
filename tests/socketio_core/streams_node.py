"""One of our servers with the Redis Streams adapter, in its own process (to be killed).

    python -m tests.socketio_core.streams_node <redis_url> <stream> <channel_prefix> \\
        <session_key_prefix> <max_disconnection_s>

Prints ``LISTENING <port>`` once the adapter is ready; every socket joins
``handshake.auth["rooms"]``. Runs until killed.
"""

from __future__ import annotations

import asyncio
import sys

import redis.asyncio as redis_asyncio

from socketio_core import Server
from socketio_core.adapter import RecoveryOptions
from socketio_core.redis_streams_adapter import create_adapter


async def main() -> None:
    url, stream, prefix, session_prefix, recovery = sys.argv[1:6]
    adapter = create_adapter(redis_asyncio.Redis.from_url(url), stream_name=stream,
                             channel_prefix=prefix, session_key_prefix=session_prefix)
    io = Server(adapter=adapter, connection_state_recovery=RecoveryOptions(
        max_disconnection_duration=float(recovery)))
    io.on("connection", lambda socket: socket.join(socket.handshake.auth.get("rooms") or []))
    await io.start("127.0.0.1", 0)
    await adapter.ready()
    sys.stdout.write(f"LISTENING {io.port}\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
