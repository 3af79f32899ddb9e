"""Socket.IO server for interop scenarios; ``tests/interop/reference_sio_server.mjs`` is its
Node.js twin with the same command line and the same behaviour.

    python tests/socketio_core/scenario_server.py --port 0 [--ping-interval MS]
        [--ping-timeout MS] [--connect-timeout MS] [--max-payload BYTES]
        [--recovery MS] [--parser json|msgpack]

Prints ``LISTENING <port>``. Behaviour, in every namespace that accepts connections:

* on connect: emit ``hello`` {"id", "nsp", "auth", "recovered"}.
* ``echo`` (*args) -> emit ``echo`` (*args) back; ``echo-ack`` (*args) -> ack(*args).
* ``join`` (room) -> join, ack(sorted rooms); ``leave`` (room) -> leave, ack.
* ``to-room`` (room, *args) -> ``room-message`` (*args) to the room, sender excluded.
* ``to-all-except`` (room, *args) -> ``except-message`` (*args) to all but the room.
* ``volatile`` (*args) -> volatile ``volatile-message`` (*args) to the sender.
* ``server-ack`` (timeout_ms, *args) -> the server emits ``need-ack`` (*args) to the sender
  with a timeout, then emits ``server-ack-result`` {"ok": value} or {"error": "timeout"}.
* ``broadcast-ack`` (timeout_ms) -> ``need-ack`` to every socket of the namespace with a
  timeout, then emits to the sender ``broadcast-ack-result`` {"responses": [...]} or
  {"error": "timeout", "responses": [...]} (responses sorted as strings).
* ``disconnect-me`` -> socket.disconnect(); ``close-me`` -> socket.disconnect(True).
* ``count`` -> ack(number of sockets in the namespace).
* ``disconnect`` reasons are kept; ``last-reasons`` -> ack(list of the last 20 reasons).
* ``data-set`` (value) -> socket.data = value; ``data-get`` -> ack(socket.data).

Namespaces: ``/`` and ``/custom``; ``/private`` refuses every connection with
message "not authorized" and data {"code": 42}, unless auth {"token": "secret"};
dynamic namespaces matching ``^/dynamic-\\d+$``.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from engineio_core import wait_for_shutdown_signal
from socketio_core import AckTimeoutError, ConnectRefused, Namespace, RecoveryOptions, Server, run

reasons: list[str] = []


def setup(nsp: Namespace) -> None:
    @nsp.on("connection")
    def connected(socket: Any) -> None:
        socket.emit("hello", {"id": socket.id, "nsp": socket.nsp.name,
                              "auth": socket.handshake.auth, "recovered": socket.recovered})

        @socket.on("echo")
        def echo(*args: Any) -> None:
            socket.emit("echo", *args)

        @socket.on("echo-ack")
        def echo_ack(*args: Any) -> tuple[Any, ...]:
            return args

        @socket.on("join")
        def join(room: str) -> list[str]:
            socket.join(room)
            return sorted(socket.rooms)

        @socket.on("leave")
        def leave(room: str) -> list[str]:
            socket.leave(room)
            return sorted(socket.rooms)

        @socket.on("to-room")
        def to_room(room: str, *args: Any) -> None:
            socket.to(room).emit("room-message", *args)

        @socket.on("to-all-except")
        def to_all_except(room: str, *args: Any) -> None:
            socket.nsp.except_(room).emit("except-message", *args)

        @socket.on("volatile")
        def volatile(*args: Any) -> None:
            socket.volatile.emit("volatile-message", *args)

        @socket.on("server-ack")
        async def server_ack(timeout_ms: int, *args: Any) -> None:
            try:
                value = await socket.timeout(timeout_ms / 1000).emit_with_ack("need-ack", *args)
            except AckTimeoutError:
                socket.emit("server-ack-result", {"error": "timeout"})
            else:
                socket.emit("server-ack-result", {"ok": value})

        @socket.on("broadcast-ack")
        async def broadcast_ack(timeout_ms: int) -> None:
            try:
                responses = await socket.nsp.timeout(timeout_ms / 1000).emit_with_ack("need-ack")
            except AckTimeoutError as exc:
                socket.emit("broadcast-ack-result", {"error": "timeout",
                                                     "responses": sorted(map(str, exc.responses))})
            else:
                socket.emit("broadcast-ack-result", {"responses": sorted(map(str, responses))})

        @socket.on("disconnect-me")
        def disconnect_me() -> None:
            socket.disconnect()

        @socket.on("close-me")
        def close_me() -> None:
            socket.disconnect(True)

        @socket.on("count")
        def count() -> int:
            return len(socket.nsp.sockets)

        @socket.on("last-reasons")
        def last_reasons() -> list[str]:
            return reasons[-20:]

        @socket.on("data-set")
        def data_set(value: Any) -> None:
            socket.data = value

        @socket.on("data-get")
        def data_get() -> Any:
            return socket.data

        @socket.on("disconnect")
        def disconnected(reason: str) -> None:
            reasons.append(reason)


def build(args: argparse.Namespace) -> Server:
    parser = None
    if args.parser == "msgpack":
        from socketio_core.msgpack_parser import MsgPackParser

        parser = MsgPackParser()
    io = Server(
        ping_interval=args.ping_interval / 1000,
        ping_timeout=args.ping_timeout / 1000,
        max_http_buffer_size=args.max_payload,
        connect_timeout=args.connect_timeout / 1000,
        connection_state_recovery=(
            RecoveryOptions(max_disconnection_duration=args.recovery / 1000)
            if args.recovery else None
        ),
        parser=parser,
    )
    setup(io.sockets)
    setup(io.of("/custom"))
    private = io.of("/private")

    @private.use
    def only_with_token(socket: Any) -> None:
        if socket.handshake.auth.get("token") != "secret":
            raise ConnectRefused("not authorized", {"code": 42})

    setup(private)
    setup(io.of(re.compile(r"^/dynamic-\d+$")))
    return io


async def main(args: argparse.Namespace) -> None:
    io = build(args)
    await io.start("127.0.0.1", args.port)
    print(f"LISTENING {io.port}", flush=True)
    await wait_for_shutdown_signal()
    await io.stop()


if __name__ == "__main__":
    cli = argparse.ArgumentParser()
    cli.add_argument("--port", type=int, default=0)
    cli.add_argument("--ping-interval", type=int, default=25000)
    cli.add_argument("--ping-timeout", type=int, default=20000)
    cli.add_argument("--connect-timeout", type=int, default=45000)
    cli.add_argument("--max-payload", type=int, default=1_000_000)
    cli.add_argument("--recovery", type=int, default=0)
    cli.add_argument("--parser", choices=("json", "msgpack"), default="json")
    run(main(cli.parse_args()))
