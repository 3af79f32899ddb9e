"""One node of a two-node chat: `python examples/haproxy/node.py 3001` (and 3002).

The nodes share broadcasts through Redis (REDIS_URL, SOCKETIO_KEY); HAProxy in front keeps
each client on one node (haproxy.cfg). Each client is told which node it reached.
"""
import asyncio
import os
import sys

import redis.asyncio as redis

from socketio_core import Server, run
from socketio_core.redis_adapter import create_adapter

port = int(sys.argv[1]) if len(sys.argv) > 1 else 3001
client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
adapter = create_adapter(client, key=os.environ.get("SOCKETIO_KEY", "socket.io"))
io = Server(adapter=adapter, serve_client=True)  # the bundle is HAProxy's health check


@io.on("connection")
def connected(socket):
    socket.emit("welcome", f"node {port}")

    @socket.on("chat")
    def chat(text):
        io.emit("chat", str(text)[:500])  # every client, on every node


async def main():
    await io.start("127.0.0.1", port)
    await adapter.ready()
    print(f"Node listening on http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()

run(main())
