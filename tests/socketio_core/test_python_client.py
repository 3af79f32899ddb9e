"""python-socketio's AsyncClient (an independent implementation) against our server, in process.

Handlers are registered with the Python API inline, so these tests double as a check that
the API is pleasant to use. Connection state recovery and clients that never CONNECT or
never answer pings are driven with the raw protocol client from conftest (python-socketio's
client has no recovery support: it never sends ``pid``/``offset``).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from email.utils import parsedate_to_datetime
from typing import Any

import engineio
import pytest
import socketio
from socketio.exceptions import ConnectionError as SioConnectionError

from socketio_core import (
    AckTimeoutError,
    BroadcastOptions,
    ConnectRefused,
    RecoveryOptions,
    Server,
    Socket,
)

from .conftest import WAIT, Recorder, url

pytestmark = pytest.mark.timeout(30)


# ---------------------------------------------------------------------- helpers


async def connect(
    sio: socketio.AsyncClient,
    io: Server,
    transports: list[str] | None = ["websocket"],  # noqa: B006 - never mutated
    path: str = "",
    **kwargs: Any,
) -> None:
    await sio.connect(url(io) + path, transports=transports, wait_timeout=WAIT, **kwargs)


def server_socket(io: Server, sio: socketio.AsyncClient, nsp: str = "/") -> Socket:
    return io.of(nsp).sockets[sio.get_sid(nsp)]


class Inbox:
    """Every event a python-socketio client receives in one namespace, in order."""

    def __init__(self, sio: socketio.AsyncClient, namespace: str = "/") -> None:
        self.queue: asyncio.Queue[tuple[str, tuple[Any, ...]]] = asyncio.Queue()
        sio.on("*", self._on_any, namespace=namespace)

    async def _on_any(self, event: str, *args: Any) -> None:
        self.queue.put_nowait((event, args))

    async def next(self) -> tuple[str, tuple[Any, ...]]:
        return await asyncio.wait_for(self.queue.get(), WAIT)

    async def until(self, event: str) -> list[tuple[str, tuple[Any, ...]]]:
        """Everything received up to and including ``event``."""
        seen = []
        while True:
            item = await self.next()
            seen.append(item)
            if item[0] == event:
                return seen


def record_disconnects(io: Server, recorder: Recorder, nsp: str = "/") -> None:
    @io.of(nsp).on("connection")
    def connected(socket: Socket) -> None:
        socket.on("disconnect", lambda reason: recorder.put(f"reason {nsp}", reason))


def add_echo(io: Server, nsp: str = "/") -> None:
    @io.of(nsp).on("connection")
    def connected(socket: Socket) -> None:
        @socket.on("echo-ack")
        def echo_ack(*args: Any) -> tuple[Any, ...]:
            return args


# ---------------------------------------------------------------------- connecting


@pytest.mark.parametrize(
    "transports", [["websocket"], ["polling"], None], ids=["websocket", "polling", "upgrade"]
)
async def test_connect_auth_and_handshake(server: Server, sio_client: Any,
                                          transports: list[str] | None) -> None:
    io = server
    sockets: asyncio.Queue[Socket] = asyncio.Queue()
    io.on("connection", sockets.put_nowait)
    add_echo(io)
    sio = sio_client()
    before = int(time.time() * 1000)
    await connect(sio, io, transports, path="/?room=lobby&n=1", auth={"token": "abc", "n": 3},
                  headers={"X-Custom": "yes", "Origin": "http://example.com"})
    socket = await asyncio.wait_for(sockets.get(), WAIT)
    assert socket.id == sio.get_sid("/")
    assert socket.nsp is io.sockets
    hs = socket.handshake
    assert hs.auth == {"token": "abc", "n": 3}
    assert hs.headers["x-custom"] == "yes"
    assert hs.headers["host"] == f"127.0.0.1:{io.port}"
    assert hs.query["room"] == "lobby" and hs.query["n"] == "1"
    assert hs.query["EIO"] == "4"
    assert hs.query["transport"] == (transports or ["polling"])[0]
    assert hs.address == "127.0.0.1"
    assert hs.url.startswith("/socket.io/?") and "room=lobby" in hs.url
    assert before - 1000 <= hs.issued <= int(time.time() * 1000) + 1000
    assert abs(parsedate_to_datetime(hs.time).timestamp() - hs.issued / 1000) < 2
    assert hs.secure is False
    assert hs.xdomain is True  # an Origin header was sent

    assert await sio.call("echo-ack", {"x": 1}, timeout=WAIT) == {"x": 1}
    if transports is None:
        # Polling first, then upgraded to WebSocket: still the same socket afterwards.
        deadline = asyncio.get_running_loop().time() + WAIT
        while sio.transport() != "websocket":
            assert asyncio.get_running_loop().time() < deadline, "never upgraded"
            await asyncio.sleep(0.02)
        assert await sio.call("echo-ack", "after upgrade", timeout=WAIT) == "after upgrade"
        assert list(io.sockets.sockets) == [socket.id]


async def test_handshake_without_origin_is_not_xdomain(server: Server, sio_client: Any) -> None:
    sockets: asyncio.Queue[Socket] = asyncio.Queue()
    server.on("connection", sockets.put_nowait)
    sio = sio_client()
    await connect(sio, server)
    socket = await asyncio.wait_for(sockets.get(), WAIT)
    assert socket.handshake.xdomain is False
    assert socket.handshake.auth == {}


async def test_namespaces_multiplexed_on_one_connection(server: Server, sio_client: Any) -> None:
    io = server
    joined: asyncio.Queue[Socket] = asyncio.Queue()
    for name in ("/", "/custom"):
        add_echo(io, name)
        io.of(name).on("connection", joined.put_nowait)

        @io.of(name).on("connection")
        def connected(socket: Socket, name: str = name) -> None:
            socket.on("where", lambda: socket.nsp.name)

    sio = sio_client()
    custom = Inbox(sio, "/custom")
    await connect(sio, io, namespaces=["/", "/custom"])
    first = await asyncio.wait_for(joined.get(), WAIT)
    second = await asyncio.wait_for(joined.get(), WAIT)
    assert {first.nsp.name, second.nsp.name} == {"/", "/custom"}
    assert first.client is second.client  # one Engine.IO connection
    assert first.id != second.id
    assert await sio.call("where", timeout=WAIT) == "/"
    assert await sio.call("where", namespace="/custom", timeout=WAIT) == "/custom"

    io.of("/custom").emit("only-custom", 1)
    io.emit("only-main", 2)
    assert await custom.next() == ("only-custom", (1,))
    assert len(io.sockets.sockets) == 1 and len(io.of("/custom").sockets) == 1


# ---------------------------------------------------------------------- acks


async def test_client_call_gets_handler_return_value(server: Server, sio_client: Any) -> None:
    io = server

    @io.on("connection")
    def connected(socket: Socket) -> None:
        @socket.on("add")
        def add(a: int, b: int) -> int:
            return a + b

        @socket.on("pair")
        async def pair(x: Any) -> tuple[Any, Any]:
            await asyncio.sleep(0)
            return x, [x]

        @socket.on("nothing")
        def nothing() -> None:
            return None

    sio = sio_client()
    await connect(sio, io)
    assert await sio.call("add", (2, 3), timeout=WAIT) == 5
    assert await sio.call("pair", "p", timeout=WAIT) == ("p", ["p"])
    assert await sio.call("nothing", timeout=WAIT) is None


async def test_server_emit_with_ack_answered_by_client(server: Server, sio_client: Any) -> None:
    sio = sio_client()

    @sio.on("question")
    async def question(x: int) -> int:
        return x * 2

    @sio.on("two")
    def two() -> tuple[str, str]:
        return "a", "b"

    await connect(sio, server)
    socket = server_socket(server, sio)
    assert await socket.emit_with_ack("question", 21) == 42
    assert await socket.emit_with_ack("question", 1, timeout=WAIT) == 2
    assert await socket.timeout(WAIT).emit_with_ack("two") == ("a", "b")

    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    socket.emit("question", 5, callback=lambda value: got.set_result(value))
    assert await asyncio.wait_for(got, WAIT) == 10


async def test_server_emit_with_ack_times_out(server: Server, sio_client: Any) -> None:
    sio = sio_client()
    release = asyncio.Event()

    @sio.on("slow")
    async def slow() -> str:
        await release.wait()  # python-socketio acks when the handler returns
        return "too late"

    await connect(sio, server)
    socket = server_socket(server, sio)
    try:
        with pytest.raises(AckTimeoutError):
            await socket.emit_with_ack("slow", timeout=0.2)
        with pytest.raises(AckTimeoutError):
            await socket.timeout(0.2).emit_with_ack("slow")
        # A late ack for a timed-out emit is ignored, the socket keeps working.
        release.set()
        assert socket.connected
    finally:
        release.set()


async def test_handler_with_explicit_ack_answers_later(server: Server, sio_client: Any,
                                                       recorder: Recorder) -> None:
    io = server

    @io.on("connection")
    def connected(socket: Socket) -> None:
        @socket.on("later")
        def later(x: int, ack: Any) -> str:
            asyncio.get_running_loop().call_later(0.05, ack, x + 1, "done")
            return "ignored: the handler acks by itself"

        @socket.on("async-later")
        async def async_later(x: int, *, ack: Any) -> None:
            await asyncio.sleep(0.01)
            ack({"x": x})

        @socket.on("maybe")
        def maybe(x: int, ack: Any = None) -> None:
            # Without an ack requested, the handler is called without ``ack``.
            recorder.put("maybe", (x, ack is None))
            if ack is not None:
                ack(x)

    sio = sio_client()
    await connect(sio, io)
    assert await sio.call("later", 1, timeout=WAIT) == (2, "done")
    assert await sio.call("async-later", 7, timeout=WAIT) == {"x": 7}
    await sio.emit("maybe", 1)
    assert await recorder.get("maybe") == (1, True)
    assert await sio.call("maybe", 2, timeout=WAIT) == 2
    assert await recorder.get("maybe") == (2, False)


# ---------------------------------------------------------------------- binary


NESTED = {
    "bin": b"\x00\x01\x02",
    "list": [b"first", {"deep": b"\xff" * 10, "text": "t"}, [b"", b"last"]],
    "n": 1,
}


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]], ids=["websocket", "polling"])
async def test_nested_binary_both_ways(server: Server, sio_client: Any, recorder: Recorder,
                                       transports: list[str]) -> None:
    io = server

    @io.on("connection")
    def connected(socket: Socket) -> None:
        @socket.on("upload")
        def upload(data: Any, extra: bytes) -> Any:
            recorder.put("upload", (data, extra))
            return {"echo": data, "extra": extra}

        @socket.on("send-me")
        def send_me() -> None:
            socket.emit("binary", NESTED, b"tail")

    sio = sio_client()
    inbox = Inbox(sio)
    await connect(sio, io, transports)

    reply = await sio.call("upload", (NESTED, b"\x09"), timeout=WAIT)
    assert reply == {"echo": NESTED, "extra": b"\x09"}
    assert await recorder.get("upload") == (NESTED, b"\x09")

    await sio.emit("send-me")
    assert await inbox.next() == ("binary", (NESTED, b"tail"))

    # Binary in an ack from the client to the server.
    sio.on("give-bytes", lambda: {"blob": [b"\x01", b"\x02"]})
    socket = server_socket(io, sio)
    assert await socket.emit_with_ack("give-bytes", timeout=WAIT) == {"blob": [b"\x01", b"\x02"]}
    # And in a broadcast.
    io.emit("broadcast-bin", [b"a", {"b": b"b"}])
    assert await inbox.next() == ("broadcast-bin", ([b"a", {"b": b"b"}],))


async def test_binary_broadcast_to_mixed_transports(server: Server, sio_client: Any) -> None:
    """One encoding shared by WebSocket and polling recipients."""
    inboxes = []
    for transports in (["websocket"], ["polling"], ["websocket"], ["polling"]):
        sio = sio_client()
        inboxes.append(Inbox(sio))
        await connect(sio, server, transports)
    payload = {"a": b"\x00" * 100, "b": [b"\xfe\xff", "text"]}
    server.emit("bin", payload, b"second")
    server.emit("text", "plain")
    for inbox in inboxes:
        assert await inbox.next() == ("bin", (payload, b"second"))
        assert await inbox.next() == ("text", ("plain",))


async def test_send_and_message_event(server: Server, sio_client: Any,
                                      recorder: Recorder) -> None:
    @server.on("connection")
    def connected(socket: Socket) -> None:
        socket.on("message", recorder.putter("message"))
        socket.send("welcome")

    sio = sio_client()
    inbox = Inbox(sio)
    await connect(sio, server)
    assert await inbox.next() == ("message", ("welcome",))
    await sio.send({"from": "client"})
    assert await recorder.get("message") == {"from": "client"}
    server.send("to all")
    assert await inbox.next() == ("message", ("to all",))


# ---------------------------------------------------------------------- rooms


async def three_clients(io: Server, sio_client: Any) -> dict[str, tuple[Any, Inbox, Socket]]:
    clients = {}
    for name in ("a", "b", "c"):
        sio = sio_client()
        inbox = Inbox(sio)
        await connect(sio, io)
        clients[name] = (sio, inbox, server_socket(io, sio))
    return clients


async def received_before_sentinel(io: Server, clients: dict[str, Any]) -> dict[str, list[Any]]:
    """Emit a sentinel to everyone; return what each client got before it."""
    io.emit("sentinel")
    result = {}
    for name, (_, inbox, _) in clients.items():
        items = await inbox.until("sentinel")
        result[name] = [[event, list(args)] for event, args in items[:-1]]
    return result


async def test_rooms_join_leave_and_targets(server: Server, sio_client: Any) -> None:
    io = server
    clients = await three_clients(io, sio_client)
    a, b, c = (clients[n][2] for n in "abc")
    a.join("r1")
    b.join(["r1", "r2"])
    c.join("r2", "r3")
    assert a.rooms == {a.id, "r1"}
    assert b.rooms == {b.id, "r1", "r2"}

    io.to("r1").emit("to-r1", 1)
    a.to("r1").emit("from-a", 2)  # sender excluded
    io.except_("r1").emit("not-r1", 3)
    io.to("r1").to("r2").emit("r1-or-r2", 4)  # b is in both: one copy
    io.in_(["r1", "r3"]).except_("r2").emit("r1-r3-not-r2", 5)
    io.to("empty-room").emit("nobody", 6)
    got = await received_before_sentinel(io, clients)
    assert got["a"] == [["to-r1", [1]], ["r1-or-r2", [4]], ["r1-r3-not-r2", [5]]]
    assert got["b"] == [["to-r1", [1]], ["from-a", [2]], ["r1-or-r2", [4]]]
    assert got["c"] == [["not-r1", [3]], ["r1-or-r2", [4]]]

    b.leave("r1")
    assert b.rooms == {b.id, "r2"}
    io.to("r1").emit("after-leave")
    b.to(b.id).emit("self-excluded")  # to its own room, but the sender is excluded
    a.to(b.id).emit("private")  # every socket is in its own room
    got = await received_before_sentinel(io, clients)
    assert got == {"a": [["after-leave", []]], "b": [["private", []]], "c": []}


async def test_fetch_sockets_join_leave_disconnect(server: Server, sio_client: Any,
                                                   recorder: Recorder) -> None:
    io = server
    clients = await three_clients(io, sio_client)
    a, b, c = (clients[n][2] for n in "abc")
    for socket in (a, b, c):
        socket.on("disconnect", recorder.putter(f"reason {socket.id}"))
    b.join("r2")
    c.join("r2")
    assert {s.id for s in await io.in_("r2").fetch_sockets()} == {b.id, c.id}
    assert {s.id for s in await io.fetch_sockets()} == {a.id, b.id, c.id}
    assert {s.id for s in await io.except_("r2").fetch_sockets()} == {a.id}
    assert await io.in_("nope").fetch_sockets() == []

    io.in_("r2").sockets_join("r3", "r4")
    assert c.rooms == {c.id, "r2", "r3", "r4"} and a.rooms == {a.id}
    io.sockets_join("everyone")
    assert all("everyone" in s.rooms for s in (a, b, c))
    io.in_("r3").except_(c.id).sockets_leave(["r4", "everyone"])
    assert b.rooms == {b.id, "r2", "r3"}
    assert c.rooms == {c.id, "r2", "r3", "r4", "everyone"}
    io.sockets_leave("everyone")
    assert "everyone" not in a.rooms | b.rooms | c.rooms

    sio_b = clients["b"][0]
    client_disconnected = asyncio.Event()
    sio_b.on("disconnect", lambda *reason: client_disconnected.set())
    io.in_("r2").disconnect_sockets()
    assert await recorder.get(f"reason {b.id}") == "server namespace disconnect"
    assert await recorder.get(f"reason {c.id}") == "server namespace disconnect"
    await asyncio.wait_for(client_disconnected.wait(), WAIT)
    assert list(io.sockets.sockets) == [a.id]
    assert await io.in_("r2").fetch_sockets() == []
    assert "r2" not in io.sockets.adapter.rooms


async def test_volatile_emit_reaches_websocket_client(server: Server, sio_client: Any) -> None:
    sio = sio_client()
    inbox = Inbox(sio)
    await connect(sio, server)
    socket = server_socket(server, sio)
    socket.volatile.emit("v1", 1)
    server.volatile.emit("v2", {"b": b"\x01"})
    server.to(socket.id).volatile.emit("v3")
    assert await inbox.next() == ("v1", (1,))
    assert await inbox.next() == ("v2", ({"b": b"\x01"},))
    assert await inbox.next() == ("v3", ())


# ---------------------------------------------------------------------- middlewares


async def connect_error_of(sio: socketio.AsyncClient, io: Server, nsp: str,
                           **kwargs: Any) -> Any:
    errors: asyncio.Queue[Any] = asyncio.Queue()
    sio.on("connect_error", errors.put_nowait, namespace=nsp)
    with pytest.raises(SioConnectionError):
        await connect(sio, io, namespaces=[nsp], **kwargs)
    return await asyncio.wait_for(errors.get(), WAIT)


async def test_middleware_refusal_with_data(server: Server, sio_client: Any) -> None:
    io = server
    private = io.of("/private")
    seen: list[str] = []

    @private.use
    def check(socket: Socket) -> None:
        seen.append(socket.nsp.name)
        if socket.handshake.auth.get("token") != "secret":
            raise ConnectRefused("not authorized", {"code": 42})
        socket.data = {"user": "alice"}

    add_echo(io, "/private")

    @private.on("connection")
    def connected(socket: Socket) -> None:
        socket.on("whoami", lambda: socket.data)

    err = await connect_error_of(sio_client(), io, "/private")
    assert err == {"message": "not authorized", "data": {"code": 42}}
    assert private.sockets == {}

    sio = sio_client()
    await connect(sio, io, namespaces=["/private"], auth={"token": "secret"})
    assert await sio.call("whoami", namespace="/private", timeout=WAIT) == {"user": "alice"}
    assert seen == ["/private", "/private"]


async def test_async_middlewares_run_in_order(server: Server, sio_client: Any) -> None:
    io = server
    order: list[str] = []

    @io.use
    async def first(socket: Socket) -> None:
        await asyncio.sleep(0.01)
        order.append("first")
        socket.data = ["first"]

    @io.use
    def second(socket: Socket) -> None:
        order.append("second")
        socket.data.append("second")

    @io.use
    async def third(socket: Socket) -> None:
        order.append("third")
        if socket.handshake.auth.get("refuse"):
            raise ConnectRefused("refused late")

    @io.on("connection")
    def connected(socket: Socket) -> None:
        socket.on("data", lambda: socket.data)

    sio = sio_client()
    await connect(sio, io)
    assert await sio.call("data", timeout=WAIT) == ["first", "second"]
    assert order == ["first", "second", "third"]

    err = await connect_error_of(sio_client(), io, "/", auth={"refuse": True})
    assert err == {"message": "refused late"}


async def test_middleware_crash_is_server_error(server: Server, sio_client: Any) -> None:
    io = server

    @io.of("/boom").use
    def boom(socket: Socket) -> None:
        raise RuntimeError("secret internals")

    @io.of("/async-boom").use
    async def async_boom(socket: Socket) -> None:
        raise KeyError("secret internals")

    assert await connect_error_of(sio_client(), io, "/boom") == {"message": "Server error"}
    assert await connect_error_of(sio_client(), io, "/async-boom") == {"message": "Server error"}


async def test_unknown_namespace_is_refused(server: Server, sio_client: Any) -> None:
    err = await connect_error_of(sio_client(), server, "/nope")
    assert err == {"message": "Invalid namespace"}


async def test_dynamic_namespaces(server: Server, sio_client: Any, recorder: Recorder) -> None:
    io = server
    io.on("new_namespace", lambda nsp: recorder.put("new", nsp.name))
    parent = io.of(re.compile(r"^/dyn-\d+$"))

    @parent.use
    def needs_token(socket: Socket) -> None:
        if socket.handshake.auth.get("token") != "t":
            raise ConnectRefused("no token", {"nsp": socket.nsp.name})

    @parent.on("connection")
    def connected(socket: Socket) -> None:
        recorder.put("connection", socket.nsp.name)
        socket.on("where", lambda: socket.nsp.name)

    async def allowed(name: str, auth: dict[str, Any]) -> bool:
        await asyncio.sleep(0)
        return name.startswith("/pred-") and auth.get("ok") is True

    predicate = io.of(allowed)
    predicate.on("connection", lambda socket: recorder.put("pred", socket.nsp.name))

    sio = sio_client()
    dyn = Inbox(sio, "/dyn-1")
    await connect(sio, io, namespaces=["/dyn-1"], auth={"token": "t"})
    assert await recorder.get("new") == "/dyn-1"
    assert await recorder.get("connection") == "/dyn-1"
    assert await sio.call("where", namespace="/dyn-1", timeout=WAIT) == "/dyn-1"
    child = io.of("/dyn-1")  # the child is a regular namespace now
    assert sio.get_sid("/dyn-1") in child.sockets
    parent.emit("to-children", 1)  # the parent broadcasts to every child
    assert await dyn.next() == ("to-children", (1,))

    # The parent's middlewares apply to children, including to an existing child.
    err = await connect_error_of(sio_client(), io, "/dyn-1")
    assert err == {"message": "no token", "data": {"nsp": "/dyn-1"}}
    err = await connect_error_of(sio_client(), io, "/dyn-2")
    assert err == {"message": "no token", "data": {"nsp": "/dyn-2"}}

    sio2 = sio_client()
    await connect(sio2, io, namespaces=["/pred-x"], auth={"ok": True})
    assert await recorder.get("pred") == "/pred-x"
    assert await connect_error_of(sio_client(), io, "/pred-y", auth={"ok": False}) == {
        "message": "Invalid namespace"
    }
    assert await connect_error_of(sio_client(), io, "/dyn-x") == {"message": "Invalid namespace"}
    assert "/pred-y" not in io._nsps


# ---------------------------------------------------------------------- broadcast acks


async def test_broadcast_acks(server: Server, sio_client: Any) -> None:
    io = server
    release = asyncio.Event()
    names = ("a", "b", "c")
    for name in names:
        sio = sio_client()

        async def answer(*args: Any, name: str = name) -> Any:
            if name == "c" and args == ("slow",):
                await release.wait()
            return name

        sio.on("need-ack", answer)
        await connect(sio, io)
    try:
        assert sorted(await io.timeout(WAIT).emit_with_ack("need-ack")) == ["a", "b", "c"]
        assert sorted(await io.emit_with_ack("need-ack")) == ["a", "b", "c"]
        with pytest.raises(AckTimeoutError) as info:
            await io.timeout(0.5).emit_with_ack("need-ack", "slow")
        assert sorted(info.value.responses) == ["a", "b"]
        assert await io.to("no-one").timeout(0.5).emit_with_ack("need-ack") == []
    finally:
        release.set()


# ---------------------------------------------------------------------- disconnections


async def test_server_namespace_disconnect(server: Server, sio_client: Any,
                                           recorder: Recorder) -> None:
    io = server
    record_disconnects(io, recorder)
    sio = sio_client()
    sio.on("disconnect", recorder.putter("client"))
    await connect(sio, io)
    server_socket(io, sio).disconnect()
    assert await recorder.get("reason /") == "server namespace disconnect"
    await recorder.get("client")
    assert io.sockets.sockets == {}


async def test_client_namespace_disconnect(server: Server, sio_client: Any,
                                           recorder: Recorder) -> None:
    io = server
    record_disconnects(io, recorder)
    record_disconnects(io, recorder, "/custom")
    sio = sio_client()
    # Polling: over WebSocket, python-socketio's disconnect() closes the socket before its
    # write loop has sent the DISCONNECT packets, so the server only sees the close.
    await connect(sio, io, ["polling"], namespaces=["/", "/custom"])
    await sio.disconnect()
    assert sorted(await recorder.get_n("reason /", 1) + await recorder.get_n(
        "reason /custom", 1)) == ["client namespace disconnect"] * 2


async def test_transport_close(server: Server, sio_client: Any, recorder: Recorder) -> None:
    io = server
    record_disconnects(io, recorder)
    sio = sio_client()
    await connect(sio, io)
    await sio.eio.ws.close()  # the WebSocket goes away without Socket.IO/Engine.IO goodbye
    assert await recorder.get("reason /") == "transport close"


async def test_ping_timeout_python_client(make_server: Any, sio_client: Any,
                                          recorder: Recorder) -> None:
    io = await make_server(ping_interval=0.2, ping_timeout=0.2)
    record_disconnects(io, recorder)
    sio = sio_client()
    await connect(sio, io)
    original = sio.eio._receive_packet

    async def no_pong(pkt: Any) -> None:
        if pkt.packet_type != engineio.packet.PING:
            await original(pkt)

    sio.eio._receive_packet = no_pong
    sio.eio.ping_timeout = 60  # the client must not give up first (its read timeout)
    assert await recorder.get("reason /") == "ping timeout"


async def test_ping_timeout_raw_client(make_server: Any, raw_client: Any,
                                       recorder: Recorder) -> None:
    io = await make_server(ping_interval=0.2, ping_timeout=0.2)
    record_disconnects(io, recorder)
    raw = await raw_client(io.port)
    raw.answer_pings = False
    await raw.connect()
    assert await recorder.get("reason /") == "ping timeout"
    assert "2" in await raw.closed()  # it did get pinged


async def test_server_shutting_down(make_server: Any, sio_client: Any,
                                    recorder: Recorder) -> None:
    io = await make_server()
    record_disconnects(io, recorder)
    record_disconnects(io, recorder, "/custom")
    sio = sio_client()
    sio.on("disconnect", recorder.putter("client"))
    await connect(sio, io, namespaces=["/", "/custom"])
    await asyncio.wait_for(io.stop(), WAIT)
    assert await recorder.get("reason /") == "server shutting down"
    assert await recorder.get("reason /custom") == "server shutting down"
    await recorder.get("client")


async def test_disconnect_close_leaves_every_namespace(server: Server, sio_client: Any,
                                                       recorder: Recorder) -> None:
    io = server
    record_disconnects(io, recorder)
    record_disconnects(io, recorder, "/custom")
    sio = sio_client()
    sio.on("disconnect", lambda *reason: recorder.put("client /"))
    sio.on("disconnect", lambda *reason: recorder.put("client /custom"), namespace="/custom")
    await connect(sio, io, namespaces=["/", "/custom"])
    engine_sessions = len(io.engine.sessions)
    assert engine_sessions == 1
    server_socket(io, sio, "/custom").disconnect(True)
    assert await recorder.get("reason /") == "server namespace disconnect"
    assert await recorder.get("reason /custom") == "server namespace disconnect"
    await recorder.get("client /")
    await recorder.get("client /custom")
    deadline = asyncio.get_running_loop().time() + WAIT
    while io.engine.sessions or sio.eio.state == "connected":
        assert asyncio.get_running_loop().time() < deadline, "connection not closed"
        await asyncio.sleep(0.02)


async def test_disconnecting_sees_rooms(server: Server, sio_client: Any,
                                        recorder: Recorder) -> None:
    io = server

    @io.on("connection")
    def connected(socket: Socket) -> None:
        socket.join(["room-1", "room-2"])
        socket.on("disconnecting", lambda reason: recorder.put(
            "disconnecting", (reason, sorted(socket.rooms), socket.connected)))
        socket.on("disconnect", lambda reason: recorder.put(
            "disconnect", (reason, sorted(socket.rooms), socket.connected)))

    sio = sio_client()
    await connect(sio, io, ["polling"])  # see test_client_namespace_disconnect
    sid = sio.get_sid("/")
    await sio.disconnect()
    reason, rooms, connected_flag = await recorder.get("disconnecting")
    assert reason == "client namespace disconnect"
    assert rooms == sorted(["room-1", "room-2", sid])
    assert connected_flag is True
    assert await recorder.get("disconnect") == ("client namespace disconnect", [], False)
    assert [key for key, _ in recorder.log] == ["disconnecting", "disconnect"]
    assert "room-1" not in io.sockets.adapter.rooms


# ---------------------------------------------------------------------- per-socket hooks


async def test_packet_middleware(server: Server, sio_client: Any, recorder: Recorder) -> None:
    io = server

    @io.on("connection")
    def connected(socket: Socket) -> None:
        @socket.use
        def shout(packet: list[Any]) -> None:
            if packet[0] == "forbidden":
                raise PermissionError("nope")
            if packet[0] == "say":
                packet[1] = packet[1].upper()

        @socket.use
        async def tag(packet: list[Any]) -> None:
            await asyncio.sleep(0)
            if packet[0] == "async-forbidden":
                raise ValueError("async nope")
            packet.append("tagged")

        socket.on("say", lambda text, tag: (text, tag))
        socket.on("forbidden", lambda *a: recorder.put("forbidden handler ran"))
        socket.on("async-forbidden", lambda *a: recorder.put("forbidden handler ran"))
        socket.on("sync", lambda *a: "synced")
        socket.on("error", lambda exc: recorder.put("error", exc))

    sio = sio_client()
    await connect(sio, io)
    assert await sio.call("say", "hi", timeout=WAIT) == ("HI", "tagged")
    await sio.emit("forbidden", 1)
    error = await recorder.get("error")
    assert isinstance(error, PermissionError) and str(error) == "nope"
    await sio.emit("async-forbidden", 1)
    error = await recorder.get("error")
    assert isinstance(error, ValueError)
    assert await sio.call("sync", timeout=WAIT) == "synced"
    assert recorder.empty("forbidden handler ran")


async def test_any_listeners(server: Server, sio_client: Any) -> None:
    io = server
    calls: list[tuple[str, tuple[Any, ...]]] = []
    holder: dict[str, Any] = {}

    @io.on("connection")
    def connected(socket: Socket) -> None:
        holder["socket"] = socket

        def first(event: str, *args: Any) -> None:
            calls.append(("first", (event, *args)))

        def second(event: str, *args: Any) -> None:
            calls.append(("prepended", (event, *args)))

        holder["first"] = socket.on_any(first)
        holder["second"] = socket.prepend_any(second)
        socket.on_any_outgoing(lambda event, *args: calls.append(("out", (event, *args))))
        socket.on("sync", lambda: None)

    sio = sio_client()
    inbox = Inbox(sio)
    await connect(sio, io)
    socket: Socket = holder["socket"]

    await sio.emit("x", {"a": 1})
    await sio.call("sync", timeout=WAIT)
    assert calls == [("prepended", ("x", {"a": 1})), ("first", ("x", {"a": 1})),
                     ("prepended", ("sync",)), ("first", ("sync",))]

    calls.clear()
    socket.off_any(holder["first"])
    await sio.call("sync", timeout=WAIT)
    assert calls == [("prepended", ("sync",))]
    calls.clear()
    socket.off_any()
    await sio.call("sync", timeout=WAIT)
    assert calls == []

    socket.emit("direct", 1)
    io.emit("broadcast", 2)
    assert await inbox.next() == ("direct", (1,))
    assert await inbox.next() == ("broadcast", (2,))
    assert calls == [("out", ("direct", 1)), ("out", ("broadcast", 2))]
    calls.clear()
    socket.off_any_outgoing()
    socket.emit("direct", 3)
    assert await inbox.next() == ("direct", (3,))
    assert calls == []


# ---------------------------------------------------------------------- recovery


async def test_connection_state_recovery_raw(make_server: Any, raw_client: Any,
                                             recorder: Recorder) -> None:
    io = await make_server(
        connection_state_recovery=RecoveryOptions(max_disconnection_duration=5)
    )

    @io.on("connection")
    def connected(socket: Socket) -> None:
        recorder.put("connection", (socket.id, socket.recovered, sorted(socket.rooms),
                                    socket.data))
        if not socket.recovered:
            socket.join("news")
            socket.data = {"n": 1}
        socket.on("disconnect", recorder.putter("reason"))

    raw = await raw_client(io.port)
    first = await raw.connect()
    sid, pid = first["sid"], first["pid"]
    assert isinstance(pid, str) and pid
    assert await recorder.get("connection") == (sid, False, [sid], {})

    io.emit("e", 1)
    event, one, offset = await raw.recv_json("42")
    assert (event, one) == ("e", 1) and isinstance(offset, str)

    await raw.ws.close()  # dropped transport: the session is kept
    assert await recorder.get("reason") == "transport close"

    io.to("news").emit("e", 2)
    io.emit("e", 3)
    io.except_("news").emit("e", "not for it")
    io.to("other").emit("e", "not for it either")
    io.volatile.emit("e", "volatile: never stored")
    io.emit("e", {"bin": b"\x01"})  # binary packets are replayed as well

    again = await raw_client(io.port)
    second = await again.connect(auth={"pid": pid, "offset": offset})
    assert second["sid"] == sid
    missed = [await again.recv() for _ in range(3)]
    assert json.loads(missed[0][2:])[:2] == ["e", 2]
    assert json.loads(missed[1][2:])[:2] == ["e", 3]
    assert missed[2].startswith("451-[")
    assert await again.recv() == b"\x01"
    offsets = [json.loads(m[2:])[-1] for m in missed[:2]]
    assert all(isinstance(o, str) and o != offset for o in offsets)
    assert await recorder.get("connection") == (sid, True, sorted([sid, "news"]), {"n": 1})

    # Recovering again from the last offset replays nothing; an unknown pid starts afresh.
    io.emit("e", 4)
    assert json.loads((await again.recv())[2:])[:2] == ["e", 4]
    third = await raw_client(io.port)
    fresh = await third.connect(auth={"pid": "unknown", "offset": offset})
    assert fresh["sid"] != sid
    assert (await recorder.get("connection"))[1] is False


async def test_no_recovery_after_client_namespace_disconnect(make_server: Any,
                                                            raw_client: Any) -> None:
    io = await make_server(connection_state_recovery=True)
    raw = await raw_client(io.port)
    first = await raw.connect()
    io.emit("e", 1)
    offset = (await raw.recv_json("42"))[-1]
    await raw.send("41")  # a deliberate disconnection is not recoverable
    again = await raw_client(io.port)
    second = await again.connect(auth={"pid": first["pid"], "offset": offset})
    assert second["sid"] != first["sid"]
    assert io.sockets.sockets[second["sid"]].recovered is False


async def test_python_client_against_recovery_server(make_server: Any, sio_client: Any) -> None:
    io = await make_server(connection_state_recovery=True)
    add_echo(io)
    sio = sio_client()
    inbox = Inbox(sio)
    await connect(sio, io)
    assert await sio.call("echo-ack", "x", timeout=WAIT) == "x"
    io.emit("e", 1)
    event, args = await inbox.next()
    assert event == "e" and args[0] == 1 and isinstance(args[1], str)  # the offset


async def test_client_that_never_connects_is_closed(make_server: Any, raw_client: Any) -> None:
    io = await make_server(connect_timeout=0.3)
    raw = await raw_client(io.port)
    assert await raw.closed() == []
    assert io.engine.sessions == {}


async def test_client_refused_everywhere_is_closed_after_connect_timeout(
    make_server: Any, raw_client: Any
) -> None:
    io = await make_server(connect_timeout=0.3)

    @io.use
    def refuse(socket: Socket) -> None:
        raise ConnectRefused("no")

    raw = await raw_client(io.port)
    await raw.send("40")
    assert await raw.closed() == ['44{"message":"no"}']


def test_the_recovery_log_is_bounded() -> None:
    """A client flooding events cannot make the server keep every answer for
    max_disconnection_duration: the in-memory log keeps ``max_packets``, sessions
    ``max_sessions``; the oldest go first."""
    from socketio_core.adapter import SessionSnapshot
    from socketio_core.packet import Packet, PacketType

    io = Server(connection_state_recovery=RecoveryOptions(max_packets=3, max_sessions=2))
    adapter = io.sockets.adapter
    for n in range(5):
        adapter.broadcast(Packet(PacketType.EVENT, ["e", n], "/"), BroadcastOptions())
    assert [data[1] for _, _, _, data in adapter._packets] == [2, 3, 4]
    for pid in ("a", "b", "c"):
        adapter.persist_session(SessionSnapshot(pid, pid, [], None))
    assert list(adapter._sessions) == ["b", "c"]
