"""A worker that reports to the Socket.IO clients of every node, without being a server:
`python examples/emitter/worker.py [job]` (start server.py first).

The Emitter publishes to Redis in the format of Node's @socket.io/redis-emitter; every
node with a Redis adapter on the same key (ours or Node's) delivers to its clients.
"""
import asyncio
import os
import sys

import redis.asyncio as redis

from socketio_core.redis_emitter import Emitter


async def main(job):
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
    emitter = Emitter(client, key=os.environ.get("SOCKETIO_KEY", "socket.io"))
    for percent in (0, 50, 100):
        servers = await emitter.to("jobs").emit("progress", job, percent)
        print(f"{job}: {percent}% sent to {servers} server(s)", flush=True)
        await asyncio.sleep(0.2)
    await client.aclose()

asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "nightly-report"))
