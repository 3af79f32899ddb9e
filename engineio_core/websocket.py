"""WebSocket transport on the sans-I/O layer of ``websockets``.

The upgrade handshake is answered by the HTTP layer (h11 sends the 101); from then on the
connection's bytes go to a ``websockets.protocol.Protocol`` in the OPEN state, which does
the framing, control frames, size limit and closing handshake. This module maps data
frames to Engine.IO packets and back.

Outgoing frames normally skip the Protocol: a server frame is unmasked, so the bytes an
``OutgoingPacket`` caches are valid for every connection and a broadcast encodes once.
With permessage-deflate each connection compresses with its own context, so frames then
go through the Protocol one connection at a time.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Opcode
from websockets.headers import build_extension, parse_extension
from websockets.protocol import Protocol as WsProtocol
from websockets.protocol import Side, State
from websockets.utils import accept_key

from .packet import OutgoingPacket, ProtocolError, decode_packet

if TYPE_CHECKING:
    from websockets.extensions import Extension

    from .session import Clock, Session, TimerHandle

logger = logging.getLogger(__name__)
_STATE_OPEN = State.OPEN

# Enum members as module constants: attribute access on an Enum class is slow on
# Python 3.11, and these are read once or more per packet.
_OP_TEXT = Opcode.TEXT
_OP_BINARY = Opcode.BINARY
_OP_CONT = Opcode.CONT
_OP_CLOSE = Opcode.CLOSE

__all__ = ["HandshakeError", "WebSocketTransport", "WriteBatcher", "negotiate"]

# After our close frame, how long the peer gets to answer before the TCP connection is cut.
CLOSE_TIMEOUT = 5.0


class Writer(Protocol):
    """The subset of ``asyncio.Transport`` the WebSocket transport writes through."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def get_write_buffer_size(self) -> int: ...


class WriteBatcher:
    """Coalesces the frames written to each connection during one event-loop iteration.

    A burst of broadcasts (several messages handled in one iteration) would otherwise
    cost one ``send`` system call per frame per recipient; batched, each recipient costs
    one call per iteration. Frames are flushed by a single ``call_soon`` callback.
    """

    __slots__ = ("_dirty", "_loop", "_scheduled")

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self._dirty: list[WebSocketTransport] = []
        self._scheduled = False

    def add(self, transport: WebSocketTransport) -> None:
        self._dirty.append(transport)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for transport in dirty:
            transport.flush_batch()


class HandshakeError(Exception):
    """The upgrade request is not a valid WebSocket handshake."""


def negotiate(
    headers: dict[str, str], *, per_message_deflate: bool
) -> tuple[list[tuple[str, str]], list[Extension]]:
    """Validate a WebSocket upgrade request (RFC 6455 section 4.2.1).

    ``headers`` maps lower-case names to values (repeated headers joined with ", ").
    Returns the headers of the 101 answer and the negotiated extensions.
    """
    if "websocket" not in headers.get("upgrade", "").lower():
        raise HandshakeError("missing Upgrade: websocket")
    connection = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    if "upgrade" not in connection:
        raise HandshakeError("missing Connection: upgrade")
    if headers.get("sec-websocket-version") != "13":
        raise HandshakeError("unsupported Sec-WebSocket-Version")
    key = headers.get("sec-websocket-key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise HandshakeError("invalid Sec-WebSocket-Key")
    except binascii.Error:
        raise HandshakeError("invalid Sec-WebSocket-Key") from None
    response = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(key)),
    ]
    extensions: list[Extension] = []
    offered = headers.get("sec-websocket-extensions")
    if per_message_deflate and offered:
        factory = ServerPerMessageDeflateFactory()
        try:
            for name, params in parse_extension(offered):
                if name != factory.name:
                    continue
                try:
                    response_params, extension = factory.process_request_params(params, [])
                except Exception:  # websockets raises NegotiationError subclasses
                    continue
                extensions.append(extension)
                response.append(
                    ("Sec-WebSocket-Extensions", build_extension([(name, response_params)]))
                )
                break
        except Exception:
            raise HandshakeError("invalid Sec-WebSocket-Extensions") from None
    return response, extensions


class WebSocketTransport:
    """Engine.IO transport over one WebSocket connection."""

    __slots__ = (
        "_batch",
        "_batcher",
        "_clock",
        "_close_timer",
        "_deflate",
        "_fragment_opcode",
        "_fragments",
        "_protocol",
        "_writer",
        "closed",
        "congested",
        "session",
        "writable",
    )

    name = "websocket"

    def __init__(
        self,
        writer: Writer,
        clock: Clock,
        *,
        max_message_size: int,
        extensions: list[Extension] | None = None,
        batcher: WriteBatcher | None = None,
    ) -> None:
        protocol = WsProtocol(Side.SERVER, state=_STATE_OPEN, max_size=max_message_size)
        if extensions:
            protocol.extensions = list(extensions)
        self._protocol = protocol
        self._deflate = bool(extensions)
        self._writer = writer
        self._batcher = batcher
        self._batch: list[bytes] | None = None
        self._clock = clock
        self._close_timer: TimerHandle | None = None
        self._fragments: list[bytes] | None = None
        self._fragment_opcode = _OP_TEXT
        self.closed = False
        #: Mirrors ``protocol.state is OPEN`` as a plain attribute (read per delivery).
        self.writable = True
        self.congested = False
        self.session: Session | None = None

    # ---------------------------------------------------------------- from the socket

    def receive_data(self, data: bytes) -> None:
        protocol = self._protocol
        protocol.receive_data(data)
        for frame in protocol.events_received():
            opcode = frame.opcode
            if opcode is _OP_TEXT or opcode is _OP_BINARY:
                if frame.fin:
                    self._deliver(opcode, frame.data)
                else:
                    self._fragment_opcode = opcode
                    self._fragments = [frame.data]
            elif opcode is _OP_CONT and self._fragments is not None:
                self._fragments.append(frame.data)
                if frame.fin:
                    payload = b"".join(self._fragments)
                    self._fragments = None
                    self._deliver(self._fragment_opcode, payload)
            elif opcode is _OP_CLOSE:
                self._flush_protocol()  # queued frames, then the reply to the close
                self.writable = False
                self._on_closed(error=False)
                return
        self._flush_protocol()
        self.writable = protocol.state is _STATE_OPEN
        if not self.writable and not self.closed:
            # The Protocol failed the connection: bad framing or a message too big.
            logger.debug("websocket failed: %r", protocol.parser_exc)
            self._on_closed(error=True)

    def connection_lost(self) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self.writable = False
        if not self.closed:
            self._protocol.receive_eof()
            self._on_closed(error=False)
        self.closed = True

    def _deliver(self, opcode: Opcode, payload: bytes) -> None:
        session = self.session
        if session is None:
            return
        if opcode is not _OP_TEXT:
            session.receive_message(self, payload)  # a binary frame is a binary message
            return
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            self._protocol.fail(1007, "invalid UTF-8")
            return
        if text[:1] == "4":
            session.receive_message(self, text[1:])
            return
        try:
            packet = decode_packet(text)
        except ProtocolError:
            session.on_parse_error(self)
            return
        session.receive(self, packet)

    def _on_closed(self, *, error: bool) -> None:
        if self.closed:
            return
        self.closed = True
        session = self.session
        if session is not None:
            if error:
                session.on_transport_error(self, "websocket error")
            else:
                session.on_transport_close(self)
        self._finish()

    # ---------------------------------------------------------------- from the session

    def send_one(self, packet: OutgoingPacket) -> None:
        if not self.writable:
            return
        if self._deflate:
            self.send([packet])
            return
        frame = packet._frame or packet.websocket_frame
        batch = self._batch
        if batch is not None:
            batch.append(frame)
        elif self._batcher is not None:
            self._batch = [frame]
            self._batcher.add(self)
        else:
            self._writer.write(frame)

    def flush_batch(self) -> None:
        batch, self._batch = self._batch, None
        if batch and self.writable:
            self._writer.write(batch[0] if len(batch) == 1 else b"".join(batch))

    def send(self, packets: list[OutgoingPacket]) -> None:
        protocol = self._protocol
        if not self.writable:
            return
        if self._deflate:
            for packet in packets:
                data = packet.websocket_data
                if isinstance(data, str):
                    protocol.send_text(data.encode())
                else:
                    protocol.send_binary(data)
            self._flush_protocol()
        else:
            for packet in packets:
                self.send_one(packet)

    def buffered_amount(self) -> int:
        return self._writer.get_write_buffer_size()

    def close(self, callback: Callable[[], object] | None = None) -> None:
        protocol = self._protocol
        if protocol.state is _STATE_OPEN:
            if self._batch:
                self.flush_batch()  # what was sent before the close goes out before it
            self.writable = False
            protocol.send_close()
            self._flush_protocol()
            clock = self._clock
            self._close_timer = clock.call_at(clock.time() + CLOSE_TIMEOUT, self._finish)
        if callback is not None:
            callback()

    def discard(self) -> None:
        self.session = None

    def _flush_protocol(self) -> None:
        if self._batch:
            self.flush_batch()  # data frames queued before a control frame go first
        writer = self._writer
        for data in self._protocol.data_to_send():
            if data:
                writer.write(data)
            else:
                # End of stream: the server side of a WebSocket closes TCP first.
                self._finish()
                return

    def _finish(self) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._writer.close()
