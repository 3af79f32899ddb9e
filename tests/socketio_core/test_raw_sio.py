"""Bad input from a raw WebSocket peer speaking Engine.IO + Socket.IO by hand.

Each case uses its own connection; after each, a fresh client on the same server must still
connect and get its echo. Expectations follow the Node.js reference server (socket.io 4):

* a packet the parser refuses closes the connection; the sockets see ``parse error``;
* a well-formed packet in the wrong state (EVENT for a namespace not joined, a second
  CONNECT) closes the connection like Node's ``Client.close()``: ``forced server close``;
* a refused or unknown namespace gets a CONNECT_ERROR and the connection stays usable.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from socketio_core import ConnectRefused, Server, Socket

from .conftest import WAIT, RawClient, Recorder

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def io(make_server: Any, recorder: Recorder) -> Server:
    io = await make_server()

    def setup(name: str) -> None:
        @io.of(name).on("connection")
        def connected(socket: Socket) -> None:
            socket.on("echo", lambda *args: socket.emit("echo", *args))
            socket.on("disconnect", recorder.putter(f"reason {socket.id}"))
            socket.on_any(lambda *args: recorder.put(f"event {socket.id}", args))

    setup("/")
    setup("/custom")

    @io.of("/private").use
    def refuse(socket: Socket) -> None:
        raise ConnectRefused("not authorized", {"code": 42})

    return io


async def healthy(io: Server, raw_client: Any) -> None:
    """A fresh client connects and gets its echo."""
    raw = await raw_client(io.port)
    sid = (await raw.connect())["sid"]
    assert sid in io.sockets.sockets
    await raw.send('42["echo","health",{"n":1}]')
    assert await raw.recv() == '42["echo","health",{"n":1}]'
    await raw.close()


async def joined(io: Server, raw_client: Any) -> tuple[RawClient, str]:
    raw = await raw_client(io.port)
    return raw, (await raw.connect())["sid"]


async def assert_closed_with(raw: RawClient, sid: str, recorder: Recorder, reason: str) -> None:
    """The server closes the connection without sending anything more; ``reason`` server-side."""
    assert await raw.closed() == []
    assert await recorder.get(f"reason {sid}") == reason


# ---------------------------------------------------------------------- the handshake


async def test_handshake_by_hand(io: Server, raw_client: Any) -> None:
    raw = await raw_client(io.port)
    assert raw.handshake["upgrades"] == []
    assert set(raw.handshake) >= {"sid", "pingInterval", "pingTimeout", "maxPayload"}
    await raw.send("40")
    message = await raw.recv()
    assert isinstance(message, str) and message.startswith('40{"sid":')
    sid = json.loads(message[2:])["sid"]
    assert sid in io.sockets.sockets and sid != raw.sid  # the Socket.IO id is not the engine's
    custom = await raw.connect("/custom")
    assert custom["sid"] in io.of("/custom").sockets
    await raw.send('42/custom,["echo",1]')
    assert await raw.recv() == '42/custom,["echo",1]'
    await raw.send('42/custom,7["echo",2]')  # with an ack id nobody answers: still dispatched
    assert await raw.recv() == '42/custom,["echo",2]'


# ---------------------------------------------------------------------- parse errors


@pytest.mark.parametrize(
    "frames",
    [
        ["49"],
        ['42["x"'],
        ["43abc[]"],
        ['42["x",1]trailing'],
        ["42{}"],
        ["42[]"],
        ["42null"],
        ["42"],
        ['42["connect"]'],
        ['42["disconnect","x"]'],
        ['42["connect_error"]'],
        ["4"],
        ['451-["x",{"_placeholder":true,"num":0}]', '42["echo","text"]'],
        ['451-["x",{"_placeholder":true,"num":5}]', b"\x01"],
        ['451-["x",{"_placeholder":true,"num":0}]', '451-["x",{"_placeholder":true,"num":0}]'],
        ['45x-["x"]'],
        ['4511-["x"]'],  # more attachments than the parser accepts
        [b"\x00\x01"],  # binary frame when none is expected
    ],
    ids=[
        "unknown-type", "bad-json", "ack-id-not-a-number", "trailing-garbage", "event-object",
        "event-empty", "event-null", "event-no-payload", "reserved-connect",
        "reserved-disconnect", "reserved-connect-error", "empty", "attachment-then-text",
        "placeholder-out-of-range", "attachment-then-attachment-header", "bad-attachment-count",
        "too-many-attachments", "unexpected-binary",
    ],
)
async def test_parse_error_closes(io: Server, raw_client: Any, recorder: Recorder,
                                  frames: list[str | bytes]) -> None:
    raw, sid = await joined(io, raw_client)
    for frame in frames:
        await raw.send(frame)
    await assert_closed_with(raw, sid, recorder, "parse error")
    assert recorder.empty(f"event {sid}")  # nothing was dispatched
    assert sid not in io.sockets.sockets
    await healthy(io, raw_client)


async def test_attachment_that_never_comes(io: Server, raw_client: Any,
                                           recorder: Recorder) -> None:
    """The decoder waits for the announced attachment: nothing is dispatched meanwhile."""
    raw, sid = await joined(io, raw_client)
    await raw.send('451-["echo",{"_placeholder":true,"num":0}]')
    await healthy(io, raw_client)  # the server serves others meanwhile
    assert recorder.empty(f"event {sid}")
    assert sid in io.sockets.sockets
    await raw.send(b"late")  # it completes the packet
    assert await raw.recv() == '451-["echo",{"_placeholder":true,"num":0}]'
    assert await raw.recv() == b"late"
    await raw.ws.close()
    assert await recorder.get(f"reason {sid}") == "transport close"


async def test_megabyte_of_nested_arrays(io: Server, raw_client: Any,
                                         recorder: Recorder) -> None:
    raw, sid = await joined(io, raw_client)
    head, tail = '42["x",', "]"
    depth = (999_000 - len(head) - len(tail)) // 2
    payload = head + "[" * depth + "]" * depth + tail
    assert 990_000 < len(payload) < io.engine.max_http_buffer_size
    await raw.send(payload)
    await assert_closed_with(raw, sid, recorder, "parse error")
    await healthy(io, raw_client)


async def test_deep_but_reasonable_nesting_is_delivered(io: Server, raw_client: Any) -> None:
    raw, _ = await joined(io, raw_client)
    await raw.send('42["echo",' + "[" * 100 + "]" * 100 + "]")
    assert await raw.recv() == '42["echo",' + "[" * 100 + "]" * 100 + "]"


# ---------------------------------------------------------------------- namespaces


async def test_connect_to_forbidden_namespace(io: Server, raw_client: Any) -> None:
    raw = await raw_client(io.port)
    await raw.send("40/private,")
    assert await raw.recv() == '44/private,{"message":"not authorized","data":{"code":42}}'
    await raw.send('40/private,{"token":"wrong"}')
    assert await raw.recv() == '44/private,{"message":"not authorized","data":{"code":42}}'
    # The connection stays usable for other namespaces.
    await raw.connect()
    await raw.send('42["echo","still here"]')
    assert await raw.recv() == '42["echo","still here"]'
    await healthy(io, raw_client)


async def test_connect_to_unknown_namespace(io: Server, raw_client: Any) -> None:
    raw = await raw_client(io.port)
    await raw.send("40/nope,")
    assert await raw.recv() == '44/nope,{"message":"Invalid namespace"}'
    await raw.connect("/custom")
    await raw.send('42/custom,["echo",1]')
    assert await raw.recv() == '42/custom,["echo",1]'
    assert "/nope" not in io._nsps
    await healthy(io, raw_client)


async def test_connect_with_invalid_auth_is_a_parse_error(io: Server, raw_client: Any,
                                                          recorder: Recorder) -> None:
    raw, sid = await joined(io, raw_client)
    await raw.send('40/custom,"a string"')  # the CONNECT payload must be an object
    await assert_closed_with(raw, sid, recorder, "parse error")
    await healthy(io, raw_client)


async def test_event_for_namespace_not_joined(io: Server, raw_client: Any,
                                              recorder: Recorder) -> None:
    raw, sid = await joined(io, raw_client)
    await raw.send('42/custom,["echo",1]')
    await assert_closed_with(raw, sid, recorder, "forced server close")
    assert recorder.empty(f"event {sid}")
    await healthy(io, raw_client)


async def test_second_connect_to_joined_namespace(io: Server, raw_client: Any,
                                                  recorder: Recorder) -> None:
    raw, sid = await joined(io, raw_client)
    await raw.send("40")
    await assert_closed_with(raw, sid, recorder, "forced server close")
    await healthy(io, raw_client)


async def test_event_before_any_connect(io: Server, raw_client: Any) -> None:
    raw = await raw_client(io.port)
    await raw.send('42["echo",1]')
    assert await raw.closed() == []
    await healthy(io, raw_client)


async def test_client_namespace_disconnect_by_hand(io: Server, raw_client: Any,
                                                   recorder: Recorder) -> None:
    raw, sid = await joined(io, raw_client)
    custom = (await raw.connect("/custom"))["sid"]
    await raw.send("41/custom,")
    assert await recorder.get(f"reason {custom}") == "client namespace disconnect"
    await raw.send('42["echo","main still works"]')  # the connection stays open
    assert await raw.recv() == '42["echo","main still works"]'
    await raw.send("41")
    assert await recorder.get(f"reason {sid}") == "client namespace disconnect"
    await healthy(io, raw_client)


# ---------------------------------------------------------------------- fuzzing


SIO_PREFIXES = ["0", "1", "2", "3", "4", "5", "6", "7", "40", "41", "42", "43", "451-",
                "461-", "4/custom,", "42/custom,", "43/", "2", "3", "6", ""]

frames_strategy = st.lists(
    st.one_of(
        st.text(max_size=60),
        st.builds(lambda p, t: p + t, st.sampled_from(SIO_PREFIXES), st.text(max_size=40)),
        st.builds(lambda p, v: p + json.dumps(v), st.sampled_from(SIO_PREFIXES),
                  st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                               lambda c: st.lists(c, max_size=3)
                               | st.dictionaries(st.text(max_size=5), c, max_size=3),
                               max_leaves=8)),
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(frames=frames_strategy, connect_first=st.booleans())
async def test_random_text_frames_never_crash(io: Server, raw_client: Any,
                                              frames: list[str], connect_first: bool) -> None:
    raw = await raw_client(io.port)
    if connect_first:
        await raw.connect()
    try:
        for frame in frames:
            await raw.send(frame)  # raw Engine.IO text: may not even be a message
        # Whatever happened, the server either still answers this peer or has closed it.
        await raw.send('40' if not connect_first else '42["echo","after"]')
        async with asyncio.timeout(WAIT):
            while True:
                message = await raw.recv()
                if message == '42["echo","after"]' or (not connect_first):
                    break
    except ConnectionClosed:
        pass
    finally:
        await raw.close()
    await healthy(io, raw_client)
