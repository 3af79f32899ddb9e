"""Socket.IO server instrumented for the Admin UI, for the admin interop tests; twin of
``tests/interop/reference_admin_server.mjs`` (same command line, same behaviour).

    python tests/socketio_core/admin_server.py --port 0 --password-hash HASH
        [--mode development|production] [--read-only] [--serve-ui-at /admin/ --ui-dir DIR]
        [--redis-url URL --redis-prefix PREFIX --server-id ID]

Prints ``LISTENING <port>``. Admin user "admin" with the given bcrypt hash. Namespaces
"/" and "/chat": a socket joins the room named by ``auth.room`` (if any); ``ping`` is
acked with "pong" and answered with a ``pong`` event; ``shout`` (room, text) emits
``shout`` (text) to the room. With ``--redis-url`` the namespaces use the Redis adapter
(one fleet per prefix).
"""

from __future__ import annotations

import argparse
from typing import Any

from engineio_core import wait_for_shutdown_signal
from socketio_core import Namespace, Server, run
from socketio_core.admin import instrument


def setup(nsp: Namespace) -> None:
    @nsp.on("connection")
    def connected(socket: Any) -> None:
        room = socket.handshake.auth.get("room")
        if isinstance(room, str):
            socket.join(room)

        @socket.on("ping")
        def ping(*args: Any) -> str:
            socket.emit("pong", *args)
            return "pong"

        @socket.on("shout")
        def shout(room: str, text: Any) -> None:
            nsp.to(room).emit("shout", text)


async def main(args: argparse.Namespace) -> None:
    options: dict[str, Any] = {}
    factory = redis = None
    if args.redis_url:
        import redis.asyncio as aioredis

        from socketio_core.redis_adapter import create_adapter

        redis = aioredis.Redis.from_url(args.redis_url)
        factory = create_adapter(redis, key=args.redis_prefix, requests_timeout=2.0)
        options["adapter"] = factory
    io = Server(ping_interval=2.0, ping_timeout=5.0, **options)
    setup(io.sockets)
    setup(io.of("/chat"))
    instrument(io, auth={"type": "basic", "username": "admin", "password": args.password_hash},
               mode=args.mode, read_only=args.read_only, server_id=args.server_id,
               serve_ui_at=args.serve_ui_at, ui_dir=args.ui_dir)
    await io.start("127.0.0.1", args.port)
    if factory is not None:
        await factory.ready()
    print(f"LISTENING {io.port}", flush=True)
    await wait_for_shutdown_signal()
    await io.stop()
    if factory is not None and redis is not None:
        await factory.aclose()
        await redis.aclose()


if __name__ == "__main__":
    cli = argparse.ArgumentParser()
    cli.add_argument("--port", type=int, default=0)
    cli.add_argument("--password-hash", required=True)
    cli.add_argument("--mode", choices=("development", "production"), default="development")
    cli.add_argument("--read-only", action="store_true")
    cli.add_argument("--server-id", default="python")
    cli.add_argument("--serve-ui-at", default=None)
    cli.add_argument("--ui-dir", default=None)
    cli.add_argument("--redis-url", default=None)
    cli.add_argument("--redis-prefix", default="socket.io")
    run(main(cli.parse_args()))
