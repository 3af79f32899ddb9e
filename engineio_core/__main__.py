"""``python -m engineio_core``: an Engine.IO echo server (every message is sent back)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from . import CorsOptions, EngineServer, Session, run, wait_for_shutdown_signal


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m engineio_core", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000, help="0 picks a free port")
    parser.add_argument("--path", default="/engine.io/")
    parser.add_argument("--ping-interval", type=int, default=25000, metavar="MS")
    parser.add_argument("--ping-timeout", type=int, default=20000, metavar="MS")
    parser.add_argument("--upgrade-timeout", type=int, default=10000, metavar="MS")
    parser.add_argument("--max-payload", type=int, default=1_000_000, metavar="BYTES")
    parser.add_argument("--transports", default="polling,websocket")
    parser.add_argument("--cors", metavar="ORIGIN", help="allowed origin; '*' for any")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument(
        "--asgi", action="store_true", help="serve through the ASGI adapter under uvicorn"
    )
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> None:
    server = EngineServer(
        path=args.path,
        ping_interval=args.ping_interval / 1000,
        ping_timeout=args.ping_timeout / 1000,
        upgrade_timeout=args.upgrade_timeout / 1000,
        max_http_buffer_size=args.max_payload,
        transports=tuple(t for t in args.transports.split(",") if t),
        cors=CorsOptions(origin=args.cors) if args.cors else None,
    )

    @server.on("message")
    def echo(session: Session, data: str | bytes) -> None:
        session.send(data)

    if args.asgi:
        await serve_asgi(server, args)
        return
    await server.start(args.host, args.port)
    print(f"LISTENING {server.port}", flush=True)
    await wait_for_shutdown_signal()
    await server.stop()


async def serve_asgi(server: EngineServer, args: argparse.Namespace) -> None:
    import uvicorn

    from .asgi import EngineASGIApp

    config = uvicorn.Config(
        EngineASGIApp(server), host=args.host, port=args.port, log_level="warning", lifespan="on"
    )
    web = uvicorn.Server(config)
    task = asyncio.ensure_future(web.serve())
    while not web.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = web.servers[0].sockets[0].getsockname()[1]
    print(f"LISTENING {port}", flush=True)
    await wait_for_shutdown_signal()
    web.should_exit = True
    await task


if __name__ == "__main__":
    arguments = parse_args()
    logging.basicConfig(level=arguments.log_level.upper(), stream=sys.stderr)
    run(main(arguments))
