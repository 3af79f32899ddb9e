"""WebSocket transport on the sans-I/O layer of ``websockets``.

The upgrade handshake is answered by the HTTP layer (h11 sends the 101); from then on the
connection's bytes go to a ``websockets.protocol.Protocol`` in the OPEN state, which does
the framing, control frames, size limit and closing handshake; small data frames are read
by the fast path in front of it (``frame_reader.FrameReader``), with the same result. This
module maps data frames to Engine.IO packets and back.

Outgoing frames normally skip the Protocol: a server frame is unmasked, so the bytes an
``OutgoingPacket`` caches are valid for every connection and a broadcast encodes once.
With permessage-deflate each connection compresses with its own context, so frames then
go through the Protocol one connection at a time.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.headers import build_extension, parse_extension
from websockets.protocol import Protocol as WsProtocol
from websockets.protocol import Side, State
from websockets.utils import accept_key

from .frame_reader import FrameReader
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
# Inbound bytes are handed to the frame parser at most this many at a time, and one peer's
# frames are delivered for at most PROCESS_BUDGET seconds per loop iteration.
INBOUND_SLICE = 16 * 1024
PROCESS_BUDGET = 0.002


class Writer(Protocol):
    """The subset of ``asyncio.Transport`` the WebSocket transport writes through."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def get_write_buffer_size(self) -> int: ...

    def abort(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


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
    """Engine.IO transport over one WebSocket connection.

    Inbound work is budgeted: bytes are fed to the frame parser in slices and frames are
    delivered until ``PROCESS_BUDGET`` seconds have passed; the rest waits for the next
    loop iteration while the socket is not read. One peer that sends thousands of small
    frames at once cannot hold the event loop, and a peer whose handlers are busy
    (``pause_reading``) is slowed down by TCP instead of growing a queue.

    Outbound, a congested peer (more than the high-water mark waiting in the socket's
    buffer) gets its frames queued here by reference instead of copied into the socket
    buffer, so a broadcast held for many slow peers costs its bytes once.
    """

    __slots__ = (
        "_backlog",
        "_backlog_bytes",
        "_batch",
        "_batch_bytes",
        "_batcher",
        "_clock",
        "_close_timer",
        "_closer",
        "_deflate",
        "_failed",
        "_fragment_opcode",
        "_fragments",
        "_frames",
        "_high_water",
        "_inbound",
        "_paused",
        "_processing",
        "_protocol",
        "_reader",
        "_resume_scheduled",
        "_socket_paused",
        "_writer",
        "closed",
        "congested",
        "congested_since",
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
        high_water: int = 64 * 1024,
        closer: Callable[[], object] | None = None,
    ) -> None:
        protocol = WsProtocol(Side.SERVER, state=_STATE_OPEN, max_size=max_message_size)
        if extensions:
            protocol.extensions = list(extensions)
        self._protocol = protocol
        # Parses what the peer sends: small data frames itself, the rest through protocol.
        self._reader = FrameReader(protocol)
        self._deflate = bool(extensions)
        self._writer = writer
        #: Ends the TCP connection once our side of the WebSocket is done (the HTTP layer
        #: passes one that lets the peer read our close frame first).
        self._closer = closer
        self._batcher = batcher
        self._batch: list[bytes] | None = None
        self._batch_bytes = 0
        self._high_water = high_water
        self._backlog: deque[bytes] | None = None
        self._backlog_bytes = 0
        self._clock = clock
        self._close_timer: TimerHandle | None = None
        self._fragments: list[bytes] | None = None
        self._fragment_opcode = _OP_TEXT
        self._inbound: deque[bytes] | None = None
        self._frames: deque[Frame] | None = None
        self._failed = False
        self._paused = False
        self._socket_paused = False
        self._processing = False
        self._resume_scheduled = False
        self.closed = False
        #: Mirrors ``protocol.state is OPEN`` as a plain attribute (read per delivery).
        self.writable = True
        self.congested = False
        self.congested_since = 0.0
        self.session: Session | None = None

    # ---------------------------------------------------------------- from the socket

    def receive_data(self, data: bytes) -> None:
        if self.closed:
            return
        if self._inbound is None and self._frames is None and not self._paused:
            if len(data) <= INBOUND_SLICE:
                # The usual case, one read holding a few frames: no queues.
                events = self._reader.receive(data)
                self._after_parse()
                if len(events) == 1:
                    self._on_frame(events[0])
                    self._check_failed()
                elif events:
                    self._frames = deque(events)
                    self._process()
                else:
                    self._check_failed()
                return
            self._inbound = deque()
        if self._inbound is None:
            self._inbound = deque()
        self._inbound.append(data)
        self._process()

    def _process(self) -> None:
        """Parse and deliver within the time budget; leave the rest for later."""
        if self._processing:
            return  # re-entered from a handler: the outer call carries on
        self._processing = True
        try:
            clock = self._clock
            deadline = clock.time() + PROCESS_BUDGET
            reader = self._reader
            while not self.closed and not self._paused:
                frames = self._frames
                if frames:
                    self._on_frame(frames.popleft())
                    if clock.time() > deadline:
                        break
                    continue
                self._frames = None
                inbound = self._inbound
                if self._failed or not inbound:
                    self._inbound = None
                    break
                chunk = inbound.popleft()
                if len(chunk) > INBOUND_SLICE:
                    inbound.appendleft(chunk[INBOUND_SLICE:])
                    chunk = chunk[:INBOUND_SLICE]
                events = reader.receive(chunk)
                if events:
                    self._frames = deque(events)
                self._after_parse()
        finally:
            self._processing = False
        if self.closed:
            return
        if not self._frames and not self._inbound:
            self._frames = self._inbound = None
            self._check_failed()
            if not self.closed and not self._paused:
                self._read_socket(True)
            return
        # Work left: stop reading the socket until it is done.
        self._read_socket(False)
        if not self._paused and not self._resume_scheduled:
            self._resume_scheduled = True
            self._clock.call_at(clock.time(), self._continue)

    def _continue(self) -> None:
        self._resume_scheduled = False
        self._process()

    def _after_parse(self) -> None:
        protocol = self._protocol
        if protocol.state is _STATE_OPEN:
            # Only after a ping is there anything to send (the check: ~70 ns less per read).
            if protocol.writes:
                self._flush_protocol()  # pongs to the peer's pings
            return
        # Closing: nothing after this point of the stream means anything.
        self._inbound = None
        if protocol.close_rcvd is None:
            # The Protocol failed the connection (bad framing, a message too big). The
            # frames before the failure are delivered first, then it is closed.
            self._failed = True

    def _check_failed(self) -> None:
        if self._failed and not self.closed and not self._frames:
            logger.debug("websocket failed: %r", self._protocol.parser_exc)
            self._flush_protocol()  # our close frame, after what was sent before it
            self.writable = False
            self._on_closed(error=True)

    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        # Frame.data is typed for every producer; the parser and FrameReader make bytes.
        data = cast(bytes, frame.data)
        if opcode is _OP_TEXT or opcode is _OP_BINARY:
            if frame.fin:
                self._deliver(opcode, data)
            else:
                self._fragment_opcode = opcode
                self._fragments = [data]
        elif opcode is _OP_CONT and self._fragments is not None:
            self._fragments.append(data)
            if frame.fin:
                payload = b"".join(self._fragments)
                self._fragments = None
                self._deliver(self._fragment_opcode, payload)
        elif opcode is _OP_CLOSE:
            self._frames = self._inbound = None
            self._flush_protocol()  # queued frames, then the reply to the close
            self.writable = False
            self._on_closed(error=False)

    def pause_reading(self) -> None:
        self._paused = True
        self._read_socket(False)

    def resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            if not self._resume_scheduled:
                self._resume_scheduled = True
                self._clock.call_at(self._clock.time(), self._continue)

    def _read_socket(self, read: bool) -> None:
        if read is self._socket_paused and not self.closed:
            self._socket_paused = not read
            try:
                if read:
                    self._writer.resume_reading()
                else:
                    self._writer.pause_reading()
            except (AttributeError, RuntimeError):  # closing, or a writer without flow control
                pass

    def connection_lost(self) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self.writable = False
        self._frames = self._inbound = self._backlog = None
        if not self.closed:
            self._on_closed(error=False)
        self.closed = True
        # The frame parser is a generator whose frame refers to its Protocol, and a parse
        # error keeps a traceback: reference cycles that would keep this connection's
        # memory until a full garbage collection. Nothing is parsed any more: break them.
        protocol = self._protocol
        protocol.parser_exc = None
        protocol.parser.close()
        self._closer = None

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
            self._frames = None
            self._after_parse()
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
        self._frames = self._inbound = None
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
        if self._backlog is not None:
            self._hold(frame)
            return
        batch = self._batch
        if batch is not None:
            batch.append(frame)
            self._batch_bytes += len(frame)
            if self._batch_bytes > self._high_water:
                self.flush_batch()  # do not let one iteration build a huge write
        elif self._batcher is not None:
            self._batch = [frame]
            self._batch_bytes = len(frame)
            self._batcher.add(self)
        else:
            self._write(frame)

    def flush_batch(self) -> None:
        batch, self._batch = self._batch, None
        if batch and self.writable:
            self._write(batch[0] if len(batch) == 1 else b"".join(batch))

    def _write(self, data: bytes) -> None:
        if self._backlog is not None:
            self._hold(data)
        else:
            self._writer.write(data)  # may call on_pause_writing

    def _hold(self, data: bytes) -> None:
        assert self._backlog is not None
        self._backlog.append(data)
        self._backlog_bytes += len(data)

    def on_pause_writing(self) -> None:
        """More than the high-water mark is waiting in the socket's buffer."""
        if not self.congested:
            self.congested = True
            self.congested_since = self._clock.time()
        if self._backlog is None:
            self._backlog = deque()

    def on_resume_writing(self) -> None:
        """The socket's buffer drained below its low-water mark: send what was held."""
        self.congested = False
        backlog = self._backlog
        if backlog is None:
            return
        self._backlog = None
        self._backlog_bytes = 0
        writer = self._writer
        while backlog:
            chunk = [backlog.popleft()]
            size = len(chunk[0])
            while backlog and size < self._high_water:
                data = backlog.popleft()
                chunk.append(data)
                size += len(data)
            writer.write(chunk[0] if len(chunk) == 1 else b"".join(chunk))
            if self._backlog is not None:  # congested again: keep the rest, in order
                backlog.extend(self._backlog)
                self._backlog = backlog
                self._backlog_bytes = sum(len(d) for d in backlog)
                return

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
        return self._writer.get_write_buffer_size() + self._backlog_bytes

    def close(self, callback: Callable[[], object] | None = None) -> None:
        protocol = self._protocol
        if protocol.state is _STATE_OPEN:
            if self.congested:
                # A peer that is not reading would never get our close frame: cut it.
                self.writable = False
                self._abort()
            else:
                if self._batch:
                    self.flush_batch()  # what was sent before the close goes out before it
                self.writable = False
                protocol.send_close()
                self._flush_protocol()
                clock = self._clock
                if not self.closed and self._close_timer is None:
                    self._close_timer = clock.call_at(clock.time() + CLOSE_TIMEOUT, self._finish)
        if callback is not None:
            callback()

    def discard(self) -> None:
        self.session = None

    def _flush_protocol(self) -> None:
        if self._batch:
            self.flush_batch()  # data frames queued before a control frame go first
        for data in self._protocol.data_to_send():
            if data:
                self._write(data)
            else:
                # End of stream: the server side of a WebSocket closes TCP first.
                self._finish()
                return

    def _finish(self) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._frames = self._inbound = None
        if self._backlog is not None or self.congested:
            self._abort()  # what is still waiting would keep the connection (and memory)
        elif self._closer is not None:
            self._closer()
        else:
            self._writer.close()

    def _abort(self) -> None:
        self._backlog = None
        self._backlog_bytes = 0
        self._writer.abort()
