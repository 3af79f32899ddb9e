"""One Engine.IO session seen from Socket.IO: decodes packets, multiplexes namespaces."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from engineio_core import OutgoingPacket, Session

from .packet import Packet, PacketType, ProtocolError

if TYPE_CHECKING:
    from .server import Server
    from .socket import Socket

logger = logging.getLogger(__name__)

# Enum members as module constants: attribute access on an Enum class is slow on
# Python 3.11, and these are read once or more per packet.
_CONNECT = PacketType.CONNECT
_DISCONNECT = PacketType.DISCONNECT
_CONNECT_ERROR = PacketType.CONNECT_ERROR

__all__ = ["MAX_CONNECT_REFUSALS", "Client"]

#: A connection whose CONNECT packets were refused this many times is closed: a client
#: retries a refused namespace at most a few times, an attacker thousands.
MAX_CONNECT_REFUSALS = 10


class Client:
    __slots__ = (
        "_attachment_timer",
        "_connect_timer",
        "_handlers_in_flight",
        "_refusals",
        "decoder",
        "nsps",
        "server",
        "session",
    )

    def __init__(self, server: Server, session: Session) -> None:
        self.server = server
        self.session = session
        self.decoder = server.parser.decoder()
        self._handlers_in_flight = 0
        self._refusals = 0
        self._attachment_timer: asyncio.TimerHandle | None = None
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
            if self._attachment_timer is not None:
                self._attachment_timer.cancel()
                self._attachment_timer = None
            self._on_packet(packet)
        elif self._attachment_timer is None:
            # Half a packet: its attachments must follow in bounded time, else the
            # buffers received so far would be held for the life of the connection.
            self._attachment_timer = self.server.engine.loop.call_later(
                self.server.attachment_timeout, self._on_attachment_timeout
            )

    def _on_attachment_timeout(self) -> None:
        self._attachment_timer = None
        if not self.is_open:
            return
        if self.session.reading_paused:
            # The attachments may be among the bytes we are not reading: wait more.
            self._attachment_timer = self.server.engine.loop.call_later(
                self.server.attachment_timeout, self._on_attachment_timeout
            )
            return
        logger.debug("session %s: attachments did not arrive in time", self.session.sid)
        self.close("parse error")

    # ------------------------------------------------------------------ handler tasks

    def spawn_handler(self, awaitable: Any) -> None:
        """Run the coroutine of a handler of this client's packets, counted.

        At ``server.max_concurrent_handlers`` in flight the session stops reading from
        the client (TCP, or the POST's answer, slows it down); it reads again once half
        of them finished. One client cannot make the server hold unbounded tasks.
        """
        task = self.server.engine.spawn(awaitable)
        limit = self.server.max_concurrent_handlers
        if limit is None:
            return
        self._handlers_in_flight += 1
        if self._handlers_in_flight >= limit:
            self.session.pause_reading()
        task.add_done_callback(self._handler_done)

    def _handler_done(self, _task: asyncio.Task[Any]) -> None:
        self._handlers_in_flight -= 1
        limit = self.server.max_concurrent_handlers
        if limit is not None and self._handlers_in_flight <= limit // 2:
            self.session.resume_reading()

    def on_connect_refused(self) -> None:
        """A CONNECT of this client was refused (middleware, unknown namespace)."""
        self._refusals += 1
        if self._refusals >= MAX_CONNECT_REFUSALS and self.is_open:
            logger.debug("session %s: %d refused CONNECTs, closing",
                          self.session.sid, self._refusals)
            self.close("forced close")

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
        self.spawn_handler(self._connect_dynamic(name, auth))

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
        self.on_connect_refused()

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
        if self._attachment_timer is not None:
            self._attachment_timer.cancel()
            self._attachment_timer = None
        for socket in list(self.nsps.values()):
            socket._on_close(reason)
        self.nsps.clear()
        self.session.data = None  # session <-> client is a reference cycle: break it

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
