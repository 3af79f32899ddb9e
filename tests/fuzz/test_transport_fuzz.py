"""Fuzzing both transports of a real ``socketio_core.Server``: random and mutated bytes over
a WebSocket and in polling POST bodies, on loopback.

The server runs in a thread with its own event loop; the test talks to it over real sockets
(the most stable seam: nothing here depends on how the engine is built inside). After every
example, checked on the server's loop:

* no exception reached the event loop's exception handler and nothing was logged at ERROR
  by ``engineio_core`` / ``socketio_core`` (an exception escaping into the I/O layer);
* every registered session is open (or closing) and consistent: its client's sockets are
  connected and registered in their namespace and adapter;
* every socket of a namespace belongs to a registered session;
* once the peer is gone, its session is fully removed: not in ``engine.sessions``, closed,
  its sockets disconnected and out of their namespaces and adapters, no timer pending.

Example count: ``FUZZ_EXAMPLES // TRANSPORT_DIVISOR`` (tests/fuzz/support.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from socketio_core import Server
from socketio_core.client import Client
from socketio_core.errors import ConnectRefused
from socketio_core.packet import Packet, PacketType, encode

from .raw_peer import Closed, Polling, RawWebSocket, frame
from .support import fuzz_transport
from .test_codec_fuzz import js_text, json_data, mutations, packets

SETTLE_TIMEOUT = 5.0  # for the server thread's calls
REMOVAL_TIMEOUT = 2.0  # for a session to be removed once its peer is gone (heartbeat: 0.5 s)
#: Small limits so that oversized input is cheap to send; a short heartbeat so that a
#: silent peer is dropped quickly (the timer path is fuzzed too).
SERVER_OPTIONS: dict[str, Any] = {
    "ping_interval": 0.25,
    "ping_timeout": 0.25,
    "connect_timeout": 1.0,
    "max_http_buffer_size": 20_000,
}


# ---------------------------------------------------------------- the server


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("engineio_core", "socketio_core")):
            self.records.append(record)


class ServerThread:
    """A Server on 127.0.0.1:0 in a thread; ``call`` runs a function on its loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop_errors: list[dict[str, Any]] = []
        self.sessions: list[Any] = []  # every session seen (to check how it ended)
        self.sockets: list[Any] = []  # every Socket.IO socket seen
        self.reasons: dict[str, str] = {}  # sid -> why its session closed
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="fuzz-server", daemon=True)
        self.thread.start()
        if not self._ready.wait(SETTLE_TIMEOUT):
            raise RuntimeError("server thread did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.set_exception_handler(lambda _loop, ctx: self.loop_errors.append(ctx))
        self.io = io = Server(**SERVER_OPTIONS)
        io.engine.on("connection", self.sessions.append)
        io.engine.on("close", self._closed)

        def setup(nsp: Any) -> None:
            @nsp.on("connection")
            def connected(socket: Any) -> None:
                self.sockets.append(socket)

                @socket.on("echo")
                def echo(*args: Any) -> None:
                    socket.emit("echo", *args)

                @socket.on("echo-ack")
                def echo_ack(*args: Any) -> tuple[Any, ...]:
                    return args

                @socket.on("join")
                def join(*args: Any) -> None:
                    room = str(args[0]) if args else "r"
                    socket.join(room)
                    socket.to(room).emit("joined", socket.id)

                @socket.on("slow")
                async def slow(*args: Any) -> Any:
                    await asyncio.sleep(0.01)
                    return list(args)

                @socket.on("bye")
                def bye(*_args: Any) -> None:
                    socket.disconnect()

        setup(io.of("/"))
        setup(io.of("/admin"))

        @io.of("/private").use
        def refuse(_socket: Any) -> None:
            raise ConnectRefused("no")

        self.loop.run_until_complete(io.start("127.0.0.1", 0))
        self.port = io.port
        self._ready.set()
        self.loop.run_forever()

    def _closed(self, session: Any, reason: str) -> None:
        self.reasons[session.sid] = reason

    def call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(SETTLE_TIMEOUT)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.io.stop(), self.loop).result(SETTLE_TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(SETTLE_TIMEOUT)
        self.loop.close()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    log = ErrorLog()
    logging.getLogger().addHandler(log)
    srv = ServerThread()
    srv.error_log = log  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        srv.stop()
        logging.getLogger().removeHandler(log)


# ---------------------------------------------------------------- invariants


def _timers_pending(obj: Any, now: float) -> list[str]:
    """Timer slots (any name containing 'timer') still scheduled in the future."""
    names = {n for cls in type(obj).__mro__ for n in getattr(cls, "__slots__", ())}
    out = []
    for name in sorted(n for n in names if "timer" in n):
        timer = getattr(obj, name, None)
        if isinstance(timer, asyncio.TimerHandle) and not timer.cancelled() and timer.when() > now:
            out.append(f"{type(obj).__name__}.{name}")
    return out


def problems(srv: ServerThread, gone: set[str]) -> list[str]:
    """Everything wrong with the server's state now. ``gone``: sids whose peer went away
    (their session must be fully removed)."""
    io = srv.io
    engine = io.engine
    now = srv.loop.time()
    out: list[str] = []
    for sid, session in engine.sessions.items():
        if session.sid != sid:
            out.append(f"session registered as {sid} is {session.sid}")
        if sid in gone:
            out.append(f"{sid}: peer gone, session still registered ({session.state})")
        if not session.is_open:
            continue  # closing: checked once it is gone
        client = session.data
        if not isinstance(client, Client):
            out.append(f"{sid}: open session without a Socket.IO client")
            continue
        for name, sock in client.nsps.items():
            if not sock.connected:
                out.append(f"{sid}: socket in {name} not connected")
            if sock.nsp.sockets.get(sock.id) is not sock:
                out.append(f"{sid}: socket in {name} missing from its namespace")
            if sock.id not in sock.adapter.sids:
                out.append(f"{sid}: socket in {name} missing from its adapter")
    for nsp in list(io._nsps.values()):
        for sock_id, sock in nsp.sockets.items():
            session = sock.client.session
            if engine.sessions.get(session.sid) is not session:
                out.append(f"socket {sock_id} in {nsp.name}: its session is not registered")
            if not sock.connected:
                out.append(f"socket {sock_id} in {nsp.name} is not connected")
        for sock_id in nsp.adapter.sids:
            if sock_id not in nsp.sockets:
                out.append(f"adapter of {nsp.name} holds rooms of a socket not in it")
    for session in srv.sessions:
        if session.sid in engine.sessions:
            continue
        # removed: must be closed for good
        if session.is_open:
            out.append(f"{session.sid}: removed but open ({session.state})")
        out += [f"{session.sid}: {t}" for t in _timers_pending(session, now)]
        client = session.data
        if isinstance(client, Client):
            if client.nsps:
                out.append(f"{session.sid}: removed, client still in {list(client.nsps)}")
            out += [f"{session.sid}: {t}" for t in _timers_pending(client, now)]
    for sock in srv.sockets:
        if sock.client.session.sid not in engine.sessions and sock.connected:
            out.append(f"socket {sock.id} of a removed session is connected")
    return out


def check(srv: ServerThread, gone: set[str] | None = None) -> None:
    """Assert the invariants; where a peer is gone, wait (bounded) for its removal."""
    gone = gone or set()
    deadline = time.monotonic() + REMOVAL_TIMEOUT
    while True:
        found = srv.call(lambda: problems(srv, gone))
        if not found or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    errors = [r.getMessage() for r in srv.error_log.records]  # type: ignore[attr-defined]
    loop_errors = [str(c.get("exception") or c.get("message")) for c in srv.loop_errors]
    srv.error_log.records.clear()  # type: ignore[attr-defined]
    srv.loop_errors.clear()
    assert not loop_errors, f"exceptions reached the event loop: {loop_errors}"
    assert not errors, f"errors logged: {errors}"
    assert not found, found
    # forget what ended well, so the lists stay small over a long run
    srv.call(lambda: _forget_removed(srv))


def _forget_removed(srv: ServerThread) -> None:
    sessions = srv.io.engine.sessions
    srv.sessions[:] = [s for s in srv.sessions if s.sid in sessions]
    srv.sockets[:] = [s for s in srv.sockets if s.client.session.sid in sessions]
    srv.reasons.clear()


def describe(srv: ServerThread, sid: str) -> str:
    """For the statistics (--hypothesis-show-statistics): where the example left the peer."""

    def look() -> str:
        session = srv.io.engine.sessions.get(sid)
        if session is None or not session.is_open:
            return f"closed ({srv.reasons.get(sid, 'closing')})"
        client = session.data
        return f"open, {len(client.nsps) if isinstance(client, Client) else 0} namespace(s)"

    return str(srv.call(look))


# ---------------------------------------------------------------- inputs

NSPS = ["", "/admin", "/private", "/nope"]
#: Per example, the share (in %) of messages that are not valid: none, a little, a lot; so
#: that the examples end both in open sessions with sockets and in closed ones.
HOSTILITY = st.sampled_from([0, 0, 5, 30, 100])
#: The namespaces a peer connects to first (usually sockets to play with; sometimes none).
namespaces_joined = st.sampled_from([[""], [""], ["", "/admin"], ["/admin"], []])


def _with_nsp(nsp: str, head: str) -> str:
    return head + (f"{nsp}," if nsp else "")


@st.composite
def valid_sio_messages(draw: st.DrawFn, joined: list[str]) -> list[str | bytes]:
    """A Socket.IO packet a client may send: connects (some refused), leaving, events with
    any data (lone surrogates, binary attachments) and acks, on the namespaces joined."""
    nsp = draw(st.sampled_from(joined or [""]))
    kind = draw(st.integers(0, 9))
    if kind == 0:  # refused (a second CONNECT to a joined namespace is a violation)
        target = draw(st.sampled_from(["/private", "/nope"]))
        return [_with_nsp(target, "0") + draw(st.sampled_from(["", '{"token":"x"}']))]
    if kind == 1:  # leaving a namespace never joined: harmless
        return [_with_nsp("/nope", "1")]
    if kind == 2:
        return [_with_nsp(nsp, "3") + draw(st.sampled_from(["1", "7"])) + "[]"]
    event = draw(st.sampled_from(["echo", "echo-ack", "join", "slow", "nothing"] * 3 + ["bye"]))
    args = draw(st.lists(json_data | st.binary(max_size=8), max_size=3))
    ack = draw(st.none() | st.integers(0, 2**32))
    return encode(Packet(PacketType.EVENT, [event, *args], nsp or "/", ack))


@st.composite
def invalid_sio_messages(draw: st.DrawFn) -> list[str | bytes]:
    """What a client may not send: mutated packets, attachments missing, doubled or out of
    order, packets for namespaces not joined, nonsense text and binary."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        messages = encode(draw(packets()))
        text = messages[0]
        assert isinstance(text, str)
        return [draw(mutations(text)), *messages[1:]]
    if kind == 1:
        messages = encode(Packet(PacketType.EVENT, ["echo", b"a", b"b"]))
        rest = messages[1:]
        rest = draw(st.permutations(rest + rest[:1]))[: draw(st.integers(0, len(rest) + 1))]
        return [messages[0], *rest]
    if kind == 2:
        return [_with_nsp(draw(st.sampled_from(NSPS)), draw(st.sampled_from(["2", "4", "0"])))
                + draw(st.sampled_from(['["echo"]', '{"message":"x"}', "[]", "1"]))]
    if kind == 3:
        return [draw(js_text)]
    return [draw(st.binary(max_size=16))]


@st.composite
def eio_messages(draw: st.DrawFn, hostility: int, joined: list[str]) -> list[str | bytes]:
    """Engine.IO messages: Socket.IO packets (``4`` + text, or binary), or other types."""
    if draw(st.integers(0, 99)) < hostility:
        if draw(st.integers(0, 3)) == 0:
            return [draw(st.sampled_from(["2", "3", "5", "6", "2probe", "", "7", "1"]))]
        messages = draw(invalid_sio_messages())
    else:
        messages = draw(valid_sio_messages(joined))
    return [m if isinstance(m, bytes) else "4" + m for m in messages]


# ---------------------------------------------------------------- WebSocket


@st.composite
def ws_actions(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """What the peer sends: whole messages in frames (sometimes fragmented), and with some
    hostility frames a client must not send, or bytes that are not frames at all."""
    hostility = draw(HOSTILITY)
    joined = draw(namespaces_joined)
    actions: list[tuple[str, Any]] = [("text", _with_nsp(n, "40")) for n in joined]
    for _ in range(draw(st.integers(1, 10))):
        if draw(st.integers(0, 99)) >= hostility or draw(st.integers(0, 2)) > 0:
            messages = draw(eio_messages(hostility, joined))
            if len(messages) == 1 and draw(st.integers(0, 5)) == 0:
                # a message in fragments, a ping between them
                text = messages[0]
                opcode = 2 if isinstance(text, bytes) else 1
                data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
                cut = draw(st.integers(0, len(data)))
                actions.append(("raw", frame(opcode, data[:cut], fin=False)))
                actions.append(("raw", frame(9, b"p")))
                actions.append(("raw", frame(0, data[cut:])))
                continue
            for message in messages:
                actions.append(("binary" if isinstance(message, bytes) else "text", message))
            continue
        choice = draw(st.integers(0, 4))
        if choice == 0:  # invalid UTF-8 in a text frame
            actions.append(("raw", frame(1, b'42["echo","\xff\xfe"]')))
        elif choice == 1:  # a frame a client may not send
            opcode, data = draw(st.sampled_from([
                (3, b"x"), (0xB, b""), (0, b"orphan continuation"), (9, b"p" * 126),
                (8, b"\x03"), (8, b"\x03\xe8bye"), (10, b"unsolicited pong"), (8, b""),
            ]))
            actions.append(("raw", frame(opcode, data, mask=draw(st.booleans()),
                                         rsv=draw(st.sampled_from([0, 0, 1, 4])))))
        elif choice == 2:  # a length the peer never sends, or beyond the limit
            actions.append(("garbage", frame(draw(st.sampled_from([1, 2])), b"42",
                                             length=draw(st.sampled_from([100, 70_000, 2**40])))))
        elif choice == 3:
            actions.append(("garbage", draw(st.binary(min_size=1, max_size=24))))
        else:
            actions.append(("close", None))
    return actions


def _drain(ws: RawWebSocket, timeout: float) -> bool:
    """Read what the server sends until it goes quiet; False once it closed."""
    try:
        while True:
            kind, data = ws.recv(timeout)
            if kind == "close":
                return False
            if kind == "text" and data == "2":
                ws.send_text("3")
    except TimeoutError:
        return True
    except Closed:
        return False


@fuzz_transport
@given(ws_actions())
def test_websocket_fuzz(server: ServerThread, actions: list[tuple[str, Any]]) -> None:
    ws = RawWebSocket(server.port)
    try:
        framed = True
        try:
            for kind, data in actions:
                if kind == "text":
                    ws.send_text(data)
                elif kind == "binary":
                    ws.send_binary(data)
                elif kind == "close":
                    ws.send_raw(frame(8, b"\x03\xe8"))
                else:  # "raw": frames as given; "garbage": the stream is no longer framed
                    framed = framed and kind == "raw"
                    ws.send_raw(data)
            if framed:
                # A sync: the ack (or the close) shows the server read everything before it.
                ws.send_text('421["echo-ack","sync"]')
                _drain(ws, 0.2)
        except Closed:
            pass
        # Still connected or not, the server's state must be consistent now...
        event(f"websocket afterwards: {describe(server, ws.sid)}")
        check(server)
    finally:
        ws.close()
    # ...and once the peer is gone, its session must be fully removed.
    check(server, {ws.sid})


# ---------------------------------------------------------------- polling


@st.composite
def polling_bodies(draw: st.DrawFn, hostility: int, joined: list[str]) -> bytes:
    """A POST body: Engine.IO packets joined by the record separator (binary ones in
    base64); with some hostility mangled, too large, or not UTF-8 at all."""
    if draw(st.integers(0, 99)) < hostility:
        kind = draw(st.integers(0, 2))
        if kind == 0:
            return draw(st.binary(max_size=40))
        if kind == 1:
            return b"4" + b"x" * draw(st.sampled_from([19_990, 25_000]))  # about the limit
    parts = []
    for _ in range(draw(st.integers(1, 6))):
        for message in draw(eio_messages(hostility, joined)):
            if isinstance(message, bytes):
                parts.append("b" + base64.b64encode(message).decode())
            else:
                parts.append(message)
    body = "\x1e".join(parts)
    if draw(st.integers(0, 99)) < hostility:
        body = draw(mutations(body))
    return body.encode("utf-8", "surrogatepass")


@st.composite
def polling_script(draw: st.DrawFn) -> list[bytes]:
    hostility = draw(HOSTILITY)
    joined = draw(namespaces_joined)
    first = "\x1e".join("4" + _with_nsp(n, "0") for n in joined).encode()
    bodies = draw(st.lists(polling_bodies(hostility, joined), min_size=1, max_size=5))
    return [first, *bodies] if first else bodies


@fuzz_transport
@given(polling_script(), st.booleans())
def test_polling_fuzz(server: ServerThread, bodies: list[bytes], get_between: bool) -> None:
    peer = Polling(server.port)
    sid = peer.sid
    try:
        try:
            for body in bodies:
                status, _ = peer.post(body)
                if status != 200:
                    break  # refused: the session is closed (or was never valid)
                if get_between:
                    status, _ = peer.get()  # returns at once or at the next ping
                    if status != 200:
                        break
        except Closed:
            pass
        event(f"polling afterwards: {describe(server, sid)}")
        check(server)
        # End it: a close packet, or silence until the heartbeat gives up on it.
        with contextlib.suppress(Closed):
            if server.call(lambda: sid in server.io.engine.sessions):
                peer.post(b"1")
    finally:
        peer.close()
    check(server, {sid})


# ---------------------------------------------------------------- raw HTTP


@fuzz_transport
@given(st.sampled_from([
    b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /socket.io/?EIO=4&transport=polling&sid=nope HTTP/1.1\r\nContent-Length: 2\r\n\r\n40",
    b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
    b"dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
]), st.data())
def test_raw_http_fuzz(server: ServerThread, request: bytes, data: st.DataObject) -> None:
    """Mutated HTTP requests: whatever the server answers, nothing escapes and any session
    it opened is removed once the peer is gone."""
    buf = bytearray(request)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(buf)))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and at < len(buf):
            buf[at] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del buf[at:]
        else:
            buf[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    before = set(server.call(lambda: list(server.io.engine.sessions)))
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=2.0)
    answer = b""
    try:
        sock.sendall(bytes(buf))
        sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
                if len(answer) > 100_000:
                    break
    except OSError:
        pass
    finally:
        sock.close()
    opened = set(server.call(lambda: list(server.io.engine.sessions))) - before
    check(server)
    # A polling session opened by a handshake stays until its heartbeat ends it.
    check(server, {s for s in opened if b"websocket" in bytes(buf)})
