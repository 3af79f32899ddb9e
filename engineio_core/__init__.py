"""Engine.IO v4 server on raw asyncio: h11 for HTTP, websockets' sans-I/O layer for WebSocket."""

from collections.abc import Coroutine
from typing import Any

from .cors import CorsOptions
from .packet import OutgoingPacket, Packet, PacketType, ProtocolError
from .request import HttpResponse, Request
from .server import ERROR_MESSAGES, CookieOptions, EngineServer, Forbidden
from .session import Session, SessionState

__all__ = [
    "ERROR_MESSAGES",
    "CookieOptions",
    "CorsOptions",
    "EngineServer",
    "Forbidden",
    "HttpResponse",
    "OutgoingPacket",
    "Packet",
    "PacketType",
    "ProtocolError",
    "Request",
    "Session",
    "SessionState",
    "run",
    "wait_for_shutdown_signal",
]


def run(main: Coroutine[Any, Any, object]) -> None:
    """Run a coroutine with uvloop when it is installed, plain asyncio otherwise."""
    import asyncio

    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


async def wait_for_shutdown_signal() -> None:
    """Return once the process gets SIGINT or SIGTERM (for ``main`` functions)."""
    import asyncio
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
