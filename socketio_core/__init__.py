"""Socket.IO v5 server on top of engineio_core: namespaces, rooms, acks, broadcasts, adapters."""

from engineio_core import CookieOptions, CorsOptions, EngineServer, run

from .adapter import BroadcastOptions, InMemoryAdapter, RecoveryOptions
from .broadcast import BroadcastOperator
from .errors import AckTimeoutError, ConnectRefused, DisconnectedError
from .namespace import Namespace, ParentNamespace
from .packet import JsonParser, Packet, PacketType, Parser, ProtocolError
from .server import Server
from .socket import Handshake, Socket

__all__ = [
    "AckTimeoutError",
    "BroadcastOperator",
    "BroadcastOptions",
    "ConnectRefused",
    "CookieOptions",
    "CorsOptions",
    "DisconnectedError",
    "EngineServer",
    "Handshake",
    "InMemoryAdapter",
    "JsonParser",
    "Namespace",
    "Packet",
    "PacketType",
    "ParentNamespace",
    "Parser",
    "ProtocolError",
    "RecoveryOptions",
    "Server",
    "Socket",
    "run",
]
