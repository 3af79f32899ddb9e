"""A Socket.IO server on the Redis adapter: `python examples/emitter/server.py [port]`.

Its clients join the room "jobs"; worker.py, which is not a server, reports to them
through Redis. REDIS_URL and SOCKETIO_KEY (the adapter's key) must match the worker's.
"""
import asyncio
import os
import sys

import redis.asyncio as redis

from socketio_core import Server, run
from socketio_core.redis_adapter import create_adapter

client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
adapter = create_adapter(client, key=os.environ.get("SOCKETIO_KEY", "socket.io"))
io = Server(adapter=adapter)


@io.on("connection")
def connected(socket):
    socket.join("jobs")


async def main(port):
    await io.start("127.0.0.1", port)
    await adapter.ready()  # subscribed: what the worker publishes from now on arrives
    print(f"Listening on http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()

run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000))
