"""Checked by mypy --strict in tests/test_typing.py, never run: what the public handler
types accept and what they refuse. Each ``type: ignore`` marks a refusal; mypy's
warn_unused_ignores (part of strict) fails the test if one is no longer refused."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, assert_type

from engineio_core import EngineServer, Request, Session
from socketio_core import Namespace, Server, Socket
from socketio_core.socket import Ack


def engine_handlers(engine: EngineServer) -> None:
    @engine.on("connection")
    def connected(session: Session) -> None: ...

    @engine.on("message")
    async def echo(session: Session, data: str | bytes) -> None:
        session.send(data)

    @engine.on("headers")
    def add_header(headers: list[tuple[str, str]], request: Request) -> None:
        headers.append(("X-Served-By", "test"))

    @engine.on("connection_error")
    def refused(request: Request, code: int, message: str) -> None: ...

    engine.on("close", lambda session, reason: print(session.sid, reason.upper()))

    @engine.on("message")  # type: ignore[type-var]  # a message handler gets the data too
    def no_data(session: Session) -> None: ...

    engine.on("nonsense", lambda: None)  # type: ignore[call-overload]  # no such event


def socketio_handlers(io: Server) -> None:
    @io.on("connection")
    def connected(socket: Socket) -> None:
        @socket.on("chat")
        async def chat(text: str, room: str | None = None) -> dict[str, str]:
            return {"echo": text}  # the ack

        @socket.on("upload")
        def upload(data: bytes, *, ack: Ack | None = None) -> None:
            if ack is not None:
                ack(len(data))

        @socket.on("disconnect")
        def gone(reason: str) -> None: ...

        @socket.on("error")
        def failed(exc: Exception) -> None: ...

        @socket.use
        def packet_middleware(packet: list[Any]) -> None: ...

        socket.on_any(lambda event, *args: None)

        @socket.on("disconnect")  # type: ignore[type-var]  # gets the reason
        def gone_without_reason() -> None: ...

        # The decorators give back the handler with its own type.
        answer = assert_type(chat("hi"), Coroutine[Any, Any, dict[str, str]])
        answer.close()

    @io.on("connection")  # type: ignore[type-var]  # gets a Socket
    def wrong_connected(socket: str) -> None: ...

    @io.on("new_namespace")
    def created(nsp: Namespace) -> None: ...

    @io.use
    async def middleware(socket: Socket) -> None: ...

    @io.use  # type: ignore[type-var]  # a middleware refuses by raising, not returning
    def returns_verdict(socket: Socket) -> bool:
        return True

    @io.of("/cluster").on("sum")
    def server_side(a: int, b: int) -> int:  # other nodes' server_side_emit; ack a + b
        return a + b
