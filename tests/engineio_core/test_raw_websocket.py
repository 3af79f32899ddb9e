"""Raw WebSocket differential tests: handshakes, upgrades, bad frames, closing.

Same setup as ``test_raw_http.py``: each test runs against the Node.js reference
(kind ``node``) and our server (kind ``python``), started once per module with
``--ping-interval 300 --ping-timeout 200 --max-payload 1000 --cors '*'``, and
asserts the reference's client-visible behaviour. Frames are written by hand
(``raw_support.RawWebSocket``) where a real client would refuse to send them;
the WebSocket-only happy path uses the ``websockets`` client.

Not asserted, because they differ harmlessly: the reason text of close frames
(``ws`` sends none), the relative order of a pong and a data frame, header order.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct

import pytest
from websockets.asyncio.client import connect

from .raw_support import (
    ENGINE_PATH,
    IO_TIMEOUT,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    SERVER_KINDS,
    PollingSession,
    RawWebSocket,
    WsClosed,
    assert_error,
    assert_fresh_client_works,
    http_request,
    raw_exchange,
    raw_server,
    start_pending_get,
)

P = ENGINE_PATH
WS_ONLY = f"{P}?EIO=4&transport=websocket"


@pytest.fixture(scope="module", params=SERVER_KINDS)
def server(request: pytest.FixtureRequest):
    with raw_server(request.param) as srv:
        yield srv


# ------------------------------------------------------------------ helpers


async def open_ws_session(server) -> tuple[RawWebSocket, str]:
    """A WebSocket-only session: returns the socket (open packet consumed) and the sid."""
    ws = await RawWebSocket.connect(server.port, WS_ONLY)
    assert ws.response is not None and ws.response.status == 101, ws.response
    first = await ws.recv_frame()
    assert first.opcode == OP_TEXT and first.payload.startswith(b"0{"), first
    return ws, json.loads(first.payload[1:])["sid"]


async def upgrade(server) -> tuple[PollingSession, RawWebSocket]:
    """The upgrade dance by hand: polling handshake, probe, release of the GET, ``5``."""
    session = await PollingSession.open(server.port, server.path)
    pending = await start_pending_get(session)
    ws = await RawWebSocket.connect(server.port, session.url("websocket"))
    assert ws.response is not None and ws.response.status == 101, ws.response
    await ws.send_text("2probe")
    frame = await ws.recv_frame()
    assert (frame.opcode, frame.payload) == (OP_TEXT, b"3probe"), frame
    # The GET held by the server is released with a noop so the client can pause
    # polling (if the first ping came first, answer it and poll again).
    loop = asyncio.get_running_loop()
    deadline = loop.time() + IO_TIMEOUT
    while True:
        res = await pending
        assert res.status == 200, res
        if res.body == b"6":
            break
        assert res.body == b"2", res
        assert loop.time() < deadline, "the pending GET was never released with a noop"
        assert (await session.post("3")).status == 200
        pending = asyncio.ensure_future(session.get())
    await ws.send_text("5")
    return session, ws


async def expect_close_frame(ws: RawWebSocket, code: int | None) -> None:
    """The server closes: a close frame with ``code`` (None: no code at all), only pings
    before it; we answer the close and the server ends the TCP connection."""
    close, before = await ws.wait_close(IO_TIMEOUT)
    assert close is not None, f"connection dropped without a close frame; frames {before!r}"
    assert all(f.opcode == OP_TEXT and f.payload == b"2" for f in before), before
    assert close.close_code == code, close
    if code is None:
        assert close.payload == b"", close
    await ws.send_frame(OP_CLOSE, close.payload[:2])
    await ws.wait_eof(IO_TIMEOUT)


async def wait_ws_session_gone(server, sid: str) -> None:
    """Poll the sid until "Session ID unknown" (bounded). While the server has not yet
    noticed, it answers "Bad request" (the sid belongs to a websocket session)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + IO_TIMEOUT
    while True:
        res = await http_request(server.port, "GET", f"{P}?EIO=4&transport=polling&sid={sid}")
        if res.json()["code"] == 1:
            assert_error(res, 1)
            return
        assert_error(res, 3)
        assert loop.time() < deadline, "the websocket session is still registered"
        await asyncio.sleep(0.05)


def abort_upgrade_bytes(message: str) -> bytes:
    """What the reference writes on the socket when it refuses an upgrade."""
    body = message.encode()
    return (
        b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-type: text/html\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


# ------------------------------------------------------------------ WebSocket-only session


async def test_websocket_only_session(server) -> None:
    url = f"ws://{server.host}:{server.port}{WS_ONLY}"
    async with connect(url, compression=None, open_timeout=IO_TIMEOUT) as ws:
        first = await asyncio.wait_for(ws.recv(), IO_TIMEOUT)
        assert isinstance(first, str) and first.startswith("0{"), first
        data = json.loads(first[1:])
        assert re.fullmatch(r"[A-Za-z0-9_-]{20}", data["sid"]), data
        assert first == "0" + json.dumps(
            {
                "sid": data["sid"],
                "upgrades": [],
                "pingInterval": 300,
                "pingTimeout": 200,
                "maxPayload": 1000,
            },
            separators=(",", ":"),
        )

        async def recv_answering_pings() -> str | bytes:
            while True:
                message = await asyncio.wait_for(ws.recv(), IO_TIMEOUT)
                if message != "2":
                    return message
                await ws.send("3")

        await ws.send("4hi")
        assert await recv_answering_pings() == "4hi"
        await ws.send(b"\x00\x01\xfe\xff")
        assert await recv_answering_pings() == b"\x00\x01\xfe\xff"
        # Heartbeat: pings keep coming and answering them keeps the session open.
        for _ in range(3):
            assert await asyncio.wait_for(ws.recv(), IO_TIMEOUT) == "2"
            await ws.send("3")
        await ws.send("4still")
        assert await recv_answering_pings() == "4still"

        # The sid of a websocket session cannot be used for polling.
        sid = data["sid"]
        res = await http_request(server.port, "GET", f"{P}?EIO=4&transport=polling&sid={sid}")
        assert_error(res, 3)
        res = await http_request(
            server.port, "POST", f"{P}?EIO=4&transport=polling&sid={sid}", body="4x"
        )
        assert_error(res, 3)
    await assert_fresh_client_works(server.port)


async def test_websocket_fragmented_message(server) -> None:
    ws, _ = await open_ws_session(server)
    try:
        await ws.send_frame(OP_TEXT, b"4he", fin=False)
        await ws.send_frame(OP_PING, b"x")  # a control frame between fragments
        await ws.send_frame(OP_CONT, b"llo", fin=True)
        got = []
        while len(got) < 2:
            frame = await ws.recv_frame()
            if frame.payload != b"2":
                got.append((frame.opcode, frame.payload))
        # The order of the pong and the echo is not asserted.
        assert sorted(got) == [(OP_TEXT, b"4hello"), (OP_PONG, b"x")]
    finally:
        await ws.close()
    await assert_fresh_client_works(server.port)


async def test_websocket_heartbeat_not_answered(server) -> None:
    ws, sid = await open_ws_session(server)
    try:
        frame = await ws.recv_frame()
        assert (frame.opcode, frame.payload) == (OP_TEXT, b"2"), frame
        # No pong: the server closes the WebSocket (a close frame without a code).
        await expect_close_frame(ws, None)
    finally:
        await ws.close()
    await wait_ws_session_gone(server, sid)
    await assert_fresh_client_works(server.port)


async def test_websocket_client_close_frame(server) -> None:
    ws, sid = await open_ws_session(server)
    try:
        await ws.send_frame(OP_CLOSE, struct.pack("!H", 1000) + b"bye")
        close, before = await ws.wait_close()
        assert close is not None and close.close_code == 1000, (close, before)
        await ws.wait_eof()
    finally:
        await ws.close()
    await wait_ws_session_gone(server, sid)
    await assert_fresh_client_works(server.port)


async def test_websocket_client_half_close(server) -> None:
    # The client shuts down its sending side (TCP FIN) without a close frame: the
    # reference ends the connection at once, without a close frame of its own.
    ws, sid = await open_ws_session(server)
    try:
        ws.writer.write_eof()
        while True:
            try:
                frame = await ws.recv_frame(3)
            except WsClosed:
                break  # EOF: what the reference does
            assert (frame.opcode, frame.payload) == (OP_TEXT, b"2"), frame
    finally:
        await ws.close()
    await wait_ws_session_gone(server, sid)
    await assert_fresh_client_works(server.port)


# ------------------------------------------------------------------ bad WebSocket input


@pytest.mark.parametrize(
    "payload",
    [b"9x", b"", b"2", b"x"],
    ids=["unknown-type", "empty", "ping", "garbage"],
)
async def test_websocket_bad_text_packet(server, payload: bytes) -> None:
    # An unknown packet type, an empty frame (parse errors) or a ping from the client
    # (wrong heartbeat direction): the server closes without a close code.
    ws, sid = await open_ws_session(server)
    try:
        await ws.send_frame(OP_TEXT, payload)
        await expect_close_frame(ws, None)
    finally:
        await ws.close()
    await wait_ws_session_gone(server, sid)
    await assert_fresh_client_works(server.port)


async def test_websocket_invalid_utf8(server) -> None:
    ws, sid = await open_ws_session(server)
    try:
        await ws.send_frame(OP_TEXT, b"4\xff\xfe")
        await expect_close_frame(ws, 1007)
    finally:
        await ws.close()
    await wait_ws_session_gone(server, sid)
    await assert_fresh_client_works(server.port)


@pytest.mark.parametrize("kind", ["text", "binary", "fragmented"])
async def test_websocket_message_over_max_payload(server, kind: str) -> None:
    ws, sid = await open_ws_session(server)
    try:
        if kind == "text":
            await ws.send_frame(OP_TEXT, b"4" + b"x" * 1999)
        elif kind == "binary":
            await ws.send_frame(OP_BINARY, b"x" * 2000)
        else:  # two fragments of 600 bytes: the limit is on the message
            await ws.send_frame(OP_TEXT, b"4" + b"a" * 599, fin=False)
            await ws.send_frame(OP_CONT, b"b" * 600)
        await expect_close_frame(ws, 1009)
    finally:
        await ws.close()
    await wait_ws_session_gone(server, sid)
    await assert_fresh_client_works(server.port)


async def test_websocket_unmasked_client_frame(server) -> None:
    ws, sid = await open_ws_session(server)
    try:
        await ws.send_frame(OP_TEXT, b"4x", mask=False)
        await expect_close_frame(ws, 1002)
    finally:
        await ws.close()
    await wait_ws_session_gone(server, sid)
    await assert_fresh_client_works(server.port)


async def test_websocket_close_packet_is_ignored(server) -> None:
    # The reference handles a "1" packet only on polling; over a WebSocket it is
    # ignored and the session goes on.
    ws, _ = await open_ws_session(server)
    try:
        await ws.send_text("1")
        await ws.send_text("4after")
        frame = await ws.recv_data()
        assert (frame.opcode, frame.payload) == (OP_TEXT, b"4after"), frame
    finally:
        await ws.close()
    await assert_fresh_client_works(server.port)


async def test_websocket_meaningless_packets_are_ignored(server) -> None:
    # open, upgrade, noop and an unsolicited pong from the client change nothing.
    ws, _ = await open_ws_session(server)
    try:
        for text in ("0", "5", "6", "3"):
            await ws.send_text(text)
        await ws.send_text("4after")
        frame = await ws.recv_data()
        assert (frame.opcode, frame.payload) == (OP_TEXT, b"4after"), frame
    finally:
        await ws.close()
    await assert_fresh_client_works(server.port)


# ------------------------------------------------------------------ refused upgrades


@pytest.mark.parametrize(
    "query,message",
    [
        ("EIO=4&transport=websocket&sid=doesnotexist", "Session ID unknown"),
        ("EIO=4&transport=foo", "Transport unknown"),
        ("EIO=4", "Transport unknown"),
    ],
    ids=["unknown-sid", "unknown-transport", "no-transport"],
)
async def test_upgrade_refused(server, query: str, message: str) -> None:
    # A refused upgrade is answered with raw bytes (no Date, no CORS), then closed.
    data = await raw_exchange(server.port, RawWebSocket.upgrade_request(f"{P}?{query}"))
    assert data == abort_upgrade_bytes(message)
    await assert_fresh_client_works(server.port)


@pytest.mark.parametrize("eio", ["3", None, "5"], ids=["EIO3", "no-EIO", "EIO5"])
async def test_upgrade_with_sid_and_wrong_protocol(server, eio: str | None) -> None:
    # The upgrade request of a session must use the session's protocol revision.
    session = await PollingSession.open(server.port, server.path)
    query = f"transport=websocket&sid={session.sid}"
    if eio is not None:
        query = f"EIO={eio}&{query}"
    ws = await RawWebSocket.connect(server.port, f"{P}?{query}")
    try:
        assert ws.response is not None
        assert ws.response.head + ws.response.body == abort_upgrade_bytes("Bad request"), (
            ws.response
        )
        assert await ws.wait_eof() == b""
    finally:
        await ws.close()
    await assert_fresh_client_works(server.port)


@pytest.mark.parametrize("eio", ["3", None, "5"], ids=["EIO3", "no-EIO", "EIO5"])
async def test_upgrade_handshake_with_bad_protocol_version(server, eio: str | None) -> None:
    # The reference checks the version only after the WebSocket handshake: it sends the
    # 101 and then writes its raw 400 answer on the upgraded socket and closes. A
    # client sees the connection fail either way; what is asserted is that no session
    # is opened, the refusal message is the last thing on the wire and the server
    # closes the connection. (Whether a 101 comes first is reported, not asserted.)
    query = "transport=websocket" if eio is None else f"EIO={eio}&transport=websocket"
    data = await raw_exchange(server.port, RawWebSocket.upgrade_request(f"{P}?{query}"), 3)
    assert data.endswith(abort_upgrade_bytes("Unsupported protocol version")), data
    assert b"0{" not in data, data
    await assert_fresh_client_works(server.port)


async def test_upgrade_without_websocket_key(server) -> None:
    # An invalid WebSocket handshake: a raw 400 and the connection is closed. (The
    # message differs: the reference's `ws` says "Missing or invalid Sec-WebSocket-Key
    # header"; it is not asserted.)
    request = (
        f"GET {P}?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    data = await raw_exchange(server.port, request, 3)
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n"), data
    assert b"\r\nConnection: close\r\n" in data, data
    await assert_fresh_client_works(server.port)


async def test_upgrade_request_for_polling_transport(server) -> None:
    # Upgrade headers with transport=polling and no sid: the reference completes the
    # WebSocket handshake, then closes it at once (polling does not handle upgrades);
    # no session is opened.
    ws = await RawWebSocket.connect(server.port, f"{P}?EIO=4&transport=polling")
    try:
        assert ws.response is not None and ws.response.status == 101, ws.response
        await expect_close_frame(ws, None)
    finally:
        await ws.close()
    await assert_fresh_client_works(server.port)


async def test_upgrade_request_for_polling_transport_with_sid(server) -> None:
    # The same for an existing polling session: the WebSocket is closed at once (it
    # does not become an upgrade candidate: a probe gets no answer) and the polling
    # session is not affected.
    session = await PollingSession.open(server.port, server.path)
    ws = await RawWebSocket.connect(server.port, session.url("polling"))
    try:
        assert ws.response is not None and ws.response.status == 101, ws.response
        await ws.send_text("2probe")
        frame = await ws.recv_frame()
        assert frame.opcode == OP_CLOSE, frame
    finally:
        await ws.close()
    assert (await session.post("4still")).status == 200
    assert await session.collect_messages(1) == ["4still"]
    await assert_fresh_client_works(server.port)


async def test_upgrade_response_cors(server) -> None:
    ws = await RawWebSocket.connect(server.port, WS_ONLY, extra=[("Origin", "http://example.com")])
    try:
        assert ws.response is not None and ws.response.status == 101, ws.response
        assert ws.response.header("access-control-allow-origin") == "*", ws.response
    finally:
        await ws.close()
    await assert_fresh_client_works(server.port)


# ------------------------------------------------------------------ upgrade


async def test_upgrade_dance(server) -> None:
    session, ws = await upgrade(server)
    try:
        await ws.send_text("4after")
        frame = await ws.recv_data()
        assert (frame.opcode, frame.payload) == (OP_TEXT, b"4after"), frame
        await ws.send_binary(b"\x01\x02\x03")
        frame = await ws.recv_data()
        assert (frame.opcode, frame.payload) == (OP_BINARY, b"\x01\x02\x03"), frame
        # Pings now come over the WebSocket.
        frame = await ws.recv_data(answer_pings=False)
        assert (frame.opcode, frame.payload) == (OP_TEXT, b"2"), frame
        await ws.send_text("3")
        # Polling requests with the sid are refused: the session left polling.
        assert_error(await session.get(timeout=2), 3)
        assert_error(await session.post("4x"), 3)
        await ws.send_text("4still")
        frame = await ws.recv_data()
        assert (frame.opcode, frame.payload) == (OP_TEXT, b"4still"), frame
    finally:
        await ws.close()
    await assert_fresh_client_works(server.port)


async def test_upgrade_without_probe(server) -> None:
    # "5" straight away, without the probe: the reference upgrades anyway.
    session = await PollingSession.open(server.port, server.path)
    ws = await RawWebSocket.connect(server.port, session.url("websocket"))
    try:
        assert ws.response is not None and ws.response.status == 101, ws.response
        await ws.send_text("5")
        await ws.send_text("4after")
        frame = await ws.recv_data()
        assert (frame.opcode, frame.payload) == (OP_TEXT, b"4after"), frame
        assert_error(await session.get(timeout=2), 3)
    finally:
        await ws.close()
    await assert_fresh_client_works(server.port)


async def test_upgrade_aborted_by_unexpected_packet(server) -> None:
    # A message on the probe WebSocket before "5": the candidate is closed, the
    # session stays on polling.
    session = await PollingSession.open(server.port, server.path)
    ws = await RawWebSocket.connect(server.port, session.url("websocket"))
    try:
        await ws.send_text("2probe")
        frame = await ws.recv_frame()
        assert (frame.opcode, frame.payload) == (OP_TEXT, b"3probe"), frame
        await ws.send_text("4during")
        await expect_close_frame(ws, None)
    finally:
        await ws.close()
    assert (await session.post("4still")).status == 200
    messages = await session.collect_messages(1)
    assert messages == ["4still"], messages
    await assert_fresh_client_works(server.port)


async def test_second_websocket_after_upgrade(server) -> None:
    # The reference accepts the WebSocket handshake, then closes it (no code); the
    # upgraded session is not affected.
    session, ws = await upgrade(server)
    second = await RawWebSocket.connect(server.port, session.url("websocket"))
    try:
        assert second.response is not None and second.response.status == 101, second.response
        await expect_close_frame(second, None)
        await ws.send_text("4still")
        frame = await ws.recv_data()
        assert (frame.opcode, frame.payload) == (OP_TEXT, b"4still"), frame
    finally:
        await second.close()
        await ws.close()
    await assert_fresh_client_works(server.port)


async def test_second_websocket_during_upgrade(server) -> None:
    session = await PollingSession.open(server.port, server.path)
    first = await RawWebSocket.connect(server.port, session.url("websocket"))
    second: RawWebSocket | None = None
    try:
        await first.send_text("2probe")
        frame = await first.recv_frame()
        assert (frame.opcode, frame.payload) == (OP_TEXT, b"3probe"), frame
        second = await RawWebSocket.connect(server.port, session.url("websocket"))
        assert second.response is not None and second.response.status == 101, second.response
        await expect_close_frame(second, None)
        # The first candidate can still complete the upgrade.
        await first.send_text("5")
        await first.send_text("4after")
        frame = await first.recv_data()
        assert (frame.opcode, frame.payload) == (OP_TEXT, b"4after"), frame
    finally:
        if second is not None:
            await second.close()
        await first.close()
    await assert_fresh_client_works(server.port)
