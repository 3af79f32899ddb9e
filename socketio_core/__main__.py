"""``python -m socketio_core``: the demo server of the Socket.IO protocol's test suite.

In ``/`` and ``/custom``: on connect, emit ``auth`` with the handshake auth;
``message`` -> ``message-back`` with the same arguments; ``message-with-ack`` acks its
arguments. Times on the command line are in milliseconds.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from engineio_core import wait_for_shutdown_signal

from . import CorsOptions, RecoveryOptions, Server, Socket, run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m socketio_core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000, help="0 picks a free port")
    parser.add_argument("--path", default="/socket.io/")
    parser.add_argument("--ping-interval", type=int, default=25000, metavar="MS")
    parser.add_argument("--ping-timeout", type=int, default=20000, metavar="MS")
    parser.add_argument("--max-payload", type=int, default=1_000_000, metavar="BYTES")
    parser.add_argument("--connect-timeout", type=int, default=45000, metavar="MS")
    parser.add_argument("--transports", default="polling,websocket")
    parser.add_argument("--cors", metavar="ORIGIN", help="allowed origin; '*' for any")
    parser.add_argument("--recovery", type=int, metavar="MS", default=0,
                        help="enable connection state recovery with this max disconnection")
    parser.add_argument("--parser", choices=("json", "msgpack"), default="json")
    parser.add_argument("--serve-client", action="store_true",
                        help="serve the browser client at <path>socket.io.js (as Node does)")
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> Server:
    parser = None
    if args.parser == "msgpack":
        from .msgpack_parser import MsgPackParser

        parser = MsgPackParser()
    io = Server(
        path=args.path,
        ping_interval=args.ping_interval / 1000,
        ping_timeout=args.ping_timeout / 1000,
        max_http_buffer_size=args.max_payload,
        connect_timeout=args.connect_timeout / 1000,
        transports=tuple(t for t in args.transports.split(",") if t),
        cors=CorsOptions(origin=args.cors) if args.cors else None,
        connection_state_recovery=(
            RecoveryOptions(max_disconnection_duration=args.recovery / 1000)
            if args.recovery else None
        ),
        parser=parser,
        serve_client=args.serve_client,
    )

    def on_connection(socket: Socket) -> None:
        socket.emit("auth", socket.handshake.auth)

        @socket.on("message")
        def message(*items: Any) -> None:
            socket.emit("message-back", *items)

        @socket.on("message-with-ack")
        def message_with_ack(*items: Any) -> tuple[Any, ...]:
            return items

    io.on("connection", on_connection)
    io.of("/custom").on("connection", on_connection)
    return io


async def main(args: argparse.Namespace) -> None:
    io = build(args)
    await io.start(args.host, args.port)
    print(f"LISTENING {io.port}", flush=True)
    await wait_for_shutdown_signal()
    await io.stop()


if __name__ == "__main__":
    arguments = parse_args()
    logging.basicConfig(level=arguments.log_level.upper(), stream=sys.stderr)
    run(main(arguments))
