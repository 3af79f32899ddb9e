"""``python -m engineio_core``: an Engine.IO echo server (every message is sent back)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from . import CorsOptions, EngineServer, run


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
    def echo(session, data):  # type: ignore[no-untyped-def]
        session.send(data)

    await server.start(args.host, args.port)
    print(f"LISTENING {server.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


if __name__ == "__main__":
    arguments = parse_args()
    logging.basicConfig(level=arguments.log_level.upper(), stream=sys.stderr)
    run(main(arguments))
