"""One Engine.IO session seen from Socket.IO: decodes packets, multiplexes namespaces."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from engineio_core import OutgoingPacket, Session

from .packet import Packet, PacketType, ProtocolError

if TYPE_CHECKING:
    import asyncio

    from .server import Server
    from .socket import Socket

logger = logging.getLogger(__name__)

# Enum members as module constants: attribute access on an Enum class is slow on
# Python 3.11, and these are read once or more per packet.
_CONNECT = PacketType.CONNECT
_DISCONNECT = PacketType.DISCONNECT
_CONNECT_ERROR = PacketType.CONNECT_ERROR

__all__ = ["Client"]


class Client:
    __slots__ = ("_connect_timer", "decoder", "nsps", "server", "session")

    def __init__(self, server: Server, session: Session) -> None:
        self.server = server
        self.session = session
        self.decoder = server.parser.decoder()
        #: Namespace name -> the socket this client has in it.
        self.nsps: dict[str, Socket] = {}
        self._connect_timer: asyncio.TimerHandle | None = server.engine.loop.call_later(
            server.connect_timeout, self._on_connect_timeout
        )
        session.data = self
        session.on_message = self.on_data

    @property
    def is_open(self) -> bool:
        return self.session.is_open

    # ------------------------------------------------------------------ inbound

    def on_data(self, session: Session, data: str | bytes) -> None:
        try:
            packet = self.decoder.add(data)
        except ProtocolError as exc:
            logger.debug("session %s: invalid packet: %s", session.sid, exc)
            self.close("parse error")
            return
        if packet is not None:
            self._on_packet(packet)

    def _on_packet(self, packet: Packet) -> None:
        socket = self.nsps.get(packet.nsp)
        ptype = packet.type
        if socket is None and ptype is _CONNECT:
            self._connect(packet.nsp, packet.data or {})
        elif socket is not None and ptype is not _CONNECT and (
            ptype is not _CONNECT_ERROR
        ):
            socket._on_packet(packet)
        elif socket is None and ptype is _DISCONNECT:
            # A client leaving a namespace it never joined (or that refused it): harmless.
            return
        else:
            # A second CONNECT, or a packet for a namespace not joined: the reference
            # closes the connection ("forced server close" for the sockets).
            logger.debug("session %s: invalid state for %s", self.session.sid, ptype.name)
            self.close()

    def _connect(self, name: str, auth: dict[str, Any]) -> None:
        server = self.server
        nsp = server._nsps.get(name)
        if nsp is not None:
            nsp._add(self, auth)
            return
        if not server._parent_nsps:
            self._invalid_namespace(name)
            return
        server.engine.spawn(self._connect_dynamic(name, auth))

    async def _connect_dynamic(self, name: str, auth: dict[str, Any]) -> None:
        nsp = await self.server._match_dynamic(name, auth)
        if not self.is_open:
            return
        if nsp is None:
            self._invalid_namespace(name)
        else:
            nsp._add(self, auth)

    def _invalid_namespace(self, name: str) -> None:
        self.write_packet(
            Packet(_CONNECT_ERROR, {"message": "Invalid namespace"}, name), False
        )

    def _add(self, socket: Socket) -> None:
        self.nsps[socket.nsp.name] = socket
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None

    def _remove(self, socket: Socket) -> None:
        if self.nsps.get(socket.nsp.name) is socket:
            del self.nsps[socket.nsp.name]

    def _on_connect_timeout(self) -> None:
        self._connect_timer = None
        if not self.nsps and self.is_open:
            logger.debug("session %s: no namespace joined in time", self.session.sid)
            self.close("forced close")

    # ------------------------------------------------------------------ outbound

    def write_packet(self, packet: Packet, volatile: bool) -> None:
        parts = self.server.parser.encode(packet)
        session = self.session
        if len(parts) == 1:
            session.send_packet(OutgoingPacket.message(parts[0]), volatile=volatile)
            return
        self.write_outgoing([OutgoingPacket.message(p) for p in parts], volatile)

    def write_outgoing(self, outgoing: list[OutgoingPacket], volatile: bool) -> None:
        """Write a pre-encoded packet (text part, then attachments)."""
        session = self.session
        transport = session.transport
        if volatile and (not transport.writable or transport.congested):
            return  # all parts or none
        for packet in outgoing:
            session.send_packet(packet, volatile=volatile)

    # ------------------------------------------------------------------ closing

    def on_close(self, reason: str) -> None:
        """The Engine.IO session closed."""
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        for socket in list(self.nsps.values()):
            socket._on_close(reason)
        self.nsps.clear()

    def close(self, reason: str = "forced close") -> None:
        """Close the connection. Sockets see ``forced server close`` unless it is a
        protocol error (``parse error``)."""
        socket_reason = reason if reason == "parse error" else "forced server close"
        for socket in list(self.nsps.values()):
            socket._on_close(socket_reason)
        self.nsps.clear()
        self.session.close(reason)

    def disconnect_all(self) -> None:
        """``socket.disconnect(True)``: leave every namespace, then close the connection."""
        for socket in list(self.nsps.values()):
            socket.disconnect()
        self.close()
