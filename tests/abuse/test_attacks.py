"""The attacks of issue 8, one per test, each against a fresh gateway process while five
well-behaved clients keep messaging each other (see conftest.py).

Scaled to run in seconds; ``ABUSE_FULL=1`` runs the issue's full scale where it differs
(slow consumers in a room, connection churn) and asserts the issue's latency targets there.
No test asserts a duration in the default run: latencies are recorded, RSS growth bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import time
from typing import Any

import jwt
import pytest

from .conftest import FULL, NORMAL_CLIENTS, Harness
from .support import (
    API_KEY,
    HOST,
    ORIGIN,
    SIO_PATH,
    HttpConnection,
    PollingSession,
    SioClient,
    abort,
    blocking_connect,
    connected_sockets,
    mint_token,
    open_socket,
    recv_until_eof,
    send_all,
    unique_user,
    upgrade_request,
    ws_frame,
    ws_open,
    ws_read_frame,
)

pytestmark = pytest.mark.timeout(900 if FULL else 150)

#: The engine's header_timeout; the gateway has no setting for it.
HEADER_TIMEOUT = 10.0
#: The engine's body_timeout (a stalled body; the gateway has no setting for it).
BODY_TIMEOUT = 20.0
#: Scheduling slack on a loaded machine when checking that a timeout fired.
TIMEOUT_SLACK = 6.0
#: RSS growth bound of issue 8 (item 15) for the slow-consumer attacks.
SLOW_CONSUMER_RSS_MIB = 50.0
#: RSS an 800 KB payload may still hold once processed and answered.
PAYLOAD_RSS_MIB = 32.0
MAX_SOCKETS_PER_USER = 10
MAX_LOG_LINES = 200


def private_packet(target: str, text: str) -> str:
    return json.dumps(["private-message", {"targetUserId": target, "message": text}])


async def logged_in_polling(h: Harness, user: str) -> PollingSession:
    session = await PollingSession(h.port).open()
    await session.login(mint_token(user))
    return session


async def stop_task(task: asyncio.Future[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(task, 5)


# ---------------------------------------------------------------------- 1. event floods


async def _polling_flood(h: Harness, packet: str, count: int) -> None:
    await h.start()
    attacker = await logged_in_polling(h, unique_user("flooder"))
    await h.begin()
    stop, seen = asyncio.Event(), [0]
    drain = asyncio.ensure_future(attacker.drain(stop, seen))
    payload = "\x1e".join([packet] * count).encode()
    started = time.monotonic()
    try:
        status, body = await attacker.post(payload, timeout=60)
    except (OSError, TimeoutError, ConnectionError) as exc:
        status, body = 0, repr(exc).encode()
    h.record["post_s"] = round(time.monotonic() - started, 2)
    h.record["post_status"] = status
    # The handlers run on while the normal clients keep messaging.
    await asyncio.sleep(2)
    stop.set()
    await stop_task(drain)
    attacker.close()
    await h.end()
    h.record["packets_back"] = seen[0]
    h.record["payload_bytes"] = len(payload)
    # Answered is what matters (held until the handlers drain, or refused): not 200 only.
    assert status, f"the flood POST was not answered: {body[:200]!r}"
    h.assert_served()


async def test_polling_post_of_3000_unknown_events(abuse: Harness) -> None:
    """Item 1: one POST, 3,000 ``42["x"]``: one task (and store call) per event."""
    abuse.record["attack"] = 'polling POST of 3,000 `42["x"]`'
    await _polling_flood(abuse, '42["x"]', 3000)


async def test_polling_post_of_3000_private_messages(abuse: Harness) -> None:
    """Item 1 with the costliest event: 3,000 private messages to an offline user."""
    abuse.record["attack"] = "polling POST of 3,000 private messages"
    packet = "42" + private_packet(unique_user("offline"), "flood " + "x" * 50)
    await _polling_flood(abuse, packet, 3000)


# ---------------------------------------------------------------------- 2. huge payloads


async def test_polling_post_of_100k_tiny_events(abuse: Harness) -> None:
    """Item 2: an 800 KB POST of 100,000 events must not hold the loop nor the memory."""
    abuse.record["attack"] = "800 KB POST of 100,000 events"
    await _polling_flood(abuse, '42["x"]', 100_000)
    assert abuse.growth() < PAYLOAD_RSS_MIB, (
        f"RSS still {abuse.growth()} MiB above its level before the payload "
        f"(bound {PAYLOAD_RSS_MIB})")


async def test_polling_post_of_8000_refused_connects(abuse: Harness) -> None:
    """Item 2: nobody logged in; 8,000 CONNECTs with bad tokens in one POST. The session
    must be closed after repeated refusals, and the log must not get a line per refusal."""
    abuse.record["attack"] = "POST of 8,000 CONNECTs with bad tokens"
    h = abuse
    await h.start()
    packets = []
    for i in range(8000):
        bad = jwt.encode({"sub": f"u{i}"}, "not-the-secret-0123456789abcdefghijk",
                         algorithm="HS256")
        packets.append('40{"token":"' + bad + '"}')
    payload = "\x1e".join(packets).encode()
    assert len(payload) < 1_000_000
    attacker = await PollingSession(h.port).open()
    await h.begin()
    try:
        status, _ = await attacker.post(payload, timeout=60)
    except (OSError, TimeoutError, ConnectionError) as exc:
        status = 0
        h.record["post_error"] = repr(exc)
    h.record["post_status"] = status
    closed, refusals = "", 0
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and not closed:
        try:
            get_status, answer = await attacker.get(timeout=max(1.0, deadline - time.monotonic()))
        except TimeoutError:
            break  # a long poll waiting for data: the session is alive
        except (OSError, ConnectionError) as exc:
            closed = f"GET failed: {exc!r}"
            break
        refusals += sum(1 for p in answer if p.startswith("44"))
        if get_status != 200:
            closed = f"GET answered {get_status}"
        elif "1" in answer:
            closed = "close packet"
    attacker.close()
    await h.end()
    log_lines = h.attack_log().count("\n")
    h.record.update({"session_closed": closed or "no", "refusals_seen": refusals,
                     "log_lines": log_lines})
    assert closed, f"the session survived {refusals} refused CONNECTs"
    assert log_lines < MAX_LOG_LINES, f"{log_lines} log lines for one POST"
    h.assert_served()


# ---------------------------------------------------------------------- 3. slow consumers


async def _fill_inbox(port: int, target: str, total: int = 1000, senders: int = 20) -> int:
    """``total`` 1,000-character messages for ``target`` from ``senders`` users (several,
    so that a per-sender share of the inbox does not stop the filling). Returns how many
    were accepted."""
    accepted = 0

    async def send(index: int) -> int:
        client = await SioClient.connect(port, mint_token(unique_user("filler")), local=HOST)
        try:
            text = f"{index:03d}" + "m" * 997
            futures = [client.emit_raw(private_packet(target, text))
                       for _ in range(total // senders)]
            answers = await asyncio.wait_for(asyncio.gather(*futures), 60)
            return sum(1 for a in answers if isinstance(a, dict) and a.get("success"))
        finally:
            await client.close()

    for result in await asyncio.gather(*(send(i) for i in range(senders))):
        accepted += result
    return accepted


async def _non_reader(port: int, token: str, *, wait_connect: bool) -> Any:
    """A raw WebSocket that logs in and never reads again (4 KiB receive buffer)."""
    reader, writer = await ws_open(port, rcvbuf=4096)
    writer.write(ws_frame("40" + json.dumps({"token": token})))
    if wait_connect:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            _, payload = await asyncio.wait_for(ws_read_frame(reader),
                                                deadline - time.monotonic())
            if payload.startswith(b"40"):
                break
            if payload.startswith(b"44"):
                raise ConnectionRefusedError(payload[:200])
    # From here nothing is read: asyncio would otherwise keep reading into the
    # StreamReader's buffer behind our back.
    writer.transport.pause_reading()
    return writer


async def _open_non_readers(port: int, tokens: list[str], *, wait_connect: bool) -> list[Any]:
    writers: list[Any] = []
    failures = 0
    for start in range(0, len(tokens), 50):
        results = await asyncio.gather(
            *(_non_reader(port, t, wait_connect=wait_connect) for t in tokens[start:start + 50]),
            return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                failures += 1
            else:
                writers.append(result)
    return writers


async def test_slow_consumers_with_a_full_inbox(abuse: Harness) -> None:
    """Item 3: raw WebSockets log in as a user whose inbox holds 1,000 messages of 1,000
    characters and never read: RSS must stay bounded and they must not all stay."""
    h = abuse
    readers = 50
    h.record["attack"] = f"{readers} non-reading WebSockets of a user with a full inbox"
    await h.start()
    victim = unique_user("inbox")
    h.record["stored"] = await _fill_inbox(h.port, victim)
    await h.begin()
    token = mint_token(victim)
    writers = await _open_non_readers(h.port, [token] * readers, wait_connect=False)
    h.record["opened"] = len(writers)
    await asyncio.sleep(6)
    connected = await connected_sockets(h.port)
    remaining = None if connected is None else connected - NORMAL_CLIENTS
    h.record["non_readers_still_connected"] = remaining
    for writer in writers:
        abort(writer)
    await h.end()
    assert h.peak_growth() < SLOW_CONSUMER_RSS_MIB, (
        f"RSS grew by {h.peak_growth()} MiB for {readers} handshakes")
    assert remaining is not None and remaining <= MAX_SOCKETS_PER_USER, (
        f"{remaining} non-reading sockets of one user still connected")
    h.assert_served()


async def test_slow_consumers_in_a_room_receiving_broadcasts(abuse: Harness) -> None:
    """Items 3 and 15: clients stop reading while 1 KiB broadcasts go to their room; RSS
    growth stays under 50 MiB and the normal clients (in the room too) get every one."""
    h = abuse
    # The kernel absorbs about 4 MiB per non-reading loopback socket (tcp_wmem): the scaled
    # run sends fewer but larger broadcasts so that each slow socket is sent well past it.
    readers, count, rate, size = (200, 20_000, 2000.0, 1) if FULL else (50, 2000, 1000.0, 4)
    h.record["attack"] = (f"{readers} non-readers, {count:,} broadcasts of {size} KiB at "
                          f"{rate:,.0f}/s")
    await h.start()
    users = [unique_user("slow") for _ in range(readers)]
    writers = await _open_non_readers(h.port, [mint_token(u) for u in users],
                                      wait_connect=True)
    h.record["opened"] = len(writers)
    await h.begin()
    # The normal clients on WebSocket are in the room too. Not the one on polling: a
    # python-socketio polling client on a loaded machine does not keep up with this rate,
    # and the server rightly cuts it when more than max_write_buffer waits for it.
    recipients = users + h.normal_users[:-1]
    next_index = iter(range(count))
    statuses: dict[int, int] = {}
    started = time.monotonic()

    async def worker() -> None:
        connection = HttpConnection(h.port, local=HOST)
        headers = [("Authorization", f"Bearer {API_KEY}"), ("Content-Type", "application/json")]
        try:
            for index in next_index:
                delay = started + index / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                body = json.dumps({"type": "abuse-broadcast", "message": "b" * 1000,
                                   "userIds": recipients,
                                   "data": {"t": time.time(), "seq": index,
                                            "pad": "p" * (size - 1) * 1024}}).encode()
                try:
                    status, _, _ = await connection.request(
                        "POST", "/api/notifications", body, headers, timeout=30)
                except (OSError, TimeoutError, ConnectionError) as exc:
                    status = 0
                    h.record.setdefault("broadcast_error", repr(exc))
                    connection.close()
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            connection.close()

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(8))), 120 if not FULL
                           else 600)
    h.record["broadcast_s"] = round(time.monotonic() - started, 2)
    h.record["broadcast_rate"] = round(count / max(0.001, h.record["broadcast_s"]))
    h.record["broadcast_statuses"] = statuses
    await asyncio.sleep(2)
    connected = await connected_sockets(h.port)
    h.record["non_readers_still_connected"] = (None if connected is None
                                               else connected - NORMAL_CLIENTS)
    for writer in writers:
        abort(writer)
    observed = await h.end(broadcasts=count)
    h.record["broadcast_worst_ms"] = observed.get("broadcast_worst_ms")
    h.record["broadcast_p99_ms"] = observed.get("broadcast_p99_ms")
    assert statuses == {200: count}, f"broadcast requests: {statuses}"
    assert h.peak_growth() < SLOW_CONSUMER_RSS_MIB, (
        f"RSS grew by {h.peak_growth()} MiB with {readers} clients not reading")
    h.assert_served()
    if FULL:
        for key in ("broadcast_p99_ms", "clients_p99_ms"):
            assert (observed.get(key) or 0) < 100, f"{key} = {observed.get(key)}"


# ---------------------------------------------------------------------- 4. slowloris


async def test_slowloris_heads_and_silent_bodies(abuse: Harness) -> None:
    """Item 4: 200 connections sending a request head one byte every 3 s, and POSTs that
    declare ``Content-Length: 100`` and send nothing: all closed within the timeouts."""
    h = abuse
    heads = 200
    h.record["attack"] = f"slowloris: {heads} heads at 1 byte/3 s + 2 silent bodies"
    await h.start()
    session = await PollingSession(h.port).open()
    await h.begin()
    started = time.monotonic()
    bound = {"head": HEADER_TIMEOUT + TIMEOUT_SLACK, "body": BODY_TIMEOUT + TIMEOUT_SLACK}
    deadline = started + max(bound.values()) + 1
    closed_after: dict[str, list[float]] = {"head": [], "body": []}
    head = f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: slow\r\n".encode()

    async def watch(kind: str, reader: asyncio.StreamReader) -> None:
        """Until the server closes (EOF or reset), bounded by the deadline."""
        try:
            while await asyncio.wait_for(reader.read(4096), deadline - time.monotonic()):
                pass
        except TimeoutError:
            return
        except (OSError, ConnectionError):
            pass
        closed_after[kind].append(time.monotonic() - started)

    async def slow_head() -> None:
        reader, writer = await open_socket(h.port)
        watcher = asyncio.ensure_future(watch("head", reader))
        try:
            for byte in head:
                if watcher.done():
                    break
                with contextlib.suppress(OSError, RuntimeError):
                    writer.write(bytes([byte]))
                await asyncio.wait([watcher], timeout=3)
                if time.monotonic() > deadline:
                    break
            await asyncio.wait([watcher], timeout=max(0, deadline - time.monotonic()))
        finally:
            abort(writer)
            await stop_task(watcher)

    async def silent_body(target: str) -> None:
        reader, writer = await open_socket(h.port)
        writer.write((f"POST {target} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: text/plain\r\n"
                      "Content-Length: 100\r\n\r\n").encode())
        try:
            await watch("body", reader)
        finally:
            abort(writer)

    polling = f"{SIO_PATH}?EIO=4&transport=polling&sid={session.sid}"
    await asyncio.gather(*(slow_head() for _ in range(heads)),
                         silent_body(polling), silent_body("/api/notifications"),
                         return_exceptions=True)
    session.close()
    await h.end()
    for kind, total in (("head", heads), ("body", 2)):
        times = closed_after[kind]
        within = [t for t in times if t <= bound[kind]]
        h.record[f"{kind}_closed"] = f"{len(within)}/{total}"
        h.record[f"{kind}_closed_worst_s"] = round(max(times), 1) if times else None
    h.record["header_timeout_s"] = HEADER_TIMEOUT
    h.record["body_timeout_s"] = BODY_TIMEOUT
    assert h.record["head_closed"] == f"{heads}/{heads}", (
        f"slow heads closed within {bound['head']} s: {h.record['head_closed']}")
    assert h.record["body_closed"] == "2/2", (
        f"silent bodies closed within {bound['body']} s: {h.record['body_closed']}")
    h.assert_served()


# ---------------------------------------------------------------------- 5. inbox spam


async def test_inbox_spam_never_evicts_an_acked_message(abuse: Harness) -> None:
    """Item 5: a legitimate message, then 1,000 from a spammer, to an offline user: every
    message acked with success reaches the target; the spammer is told when refused."""
    h = abuse
    h.record["attack"] = "inbox spam: 1,000 messages after a legit one"
    await h.start()
    await h.begin()
    target = unique_user("target")
    legit = await SioClient.connect(h.port, mint_token(unique_user("friend")), local=HOST)
    answer = await legit.call("private-message", {"targetUserId": target,
                                                  "message": "the one that matters"})
    await legit.close()
    assert isinstance(answer, dict) and answer.get("success"), answer
    legit_id = answer["id"]
    spammer = await SioClient.connect(h.port, mint_token(unique_user("spammer")))
    futures = [spammer.emit_raw(private_packet(target, f"buy now {i}")) for i in range(1000)]
    answers = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 60)
    await spammer.close()
    accepted = {a["id"] for a in answers if isinstance(a, dict) and a.get("success")}
    refused = [a for a in answers if not (isinstance(a, dict) and a.get("success"))]
    h.record.update({"spam_accepted": len(accepted), "spam_refused": len(refused),
                     "refusal_example": str(refused[0])[:120] if refused else None})
    reader = await SioClient.connect(h.port, mint_token(target), local=HOST)
    expected = accepted | {legit_id}

    def got() -> set[str]:
        return {m.get("id") for m in reader.received("private-message") if isinstance(m, dict)}

    await reader.wait_for(lambda: expected <= got(), 30)
    received = got()
    await reader.close()
    await h.end()
    h.record["legit_delivered"] = legit_id in received
    h.record["accepted_but_lost"] = len(expected - received)
    assert legit_id in received, "the legitimate message was evicted by the spam"
    assert not expected - received, f"{len(expected - received)} acked messages were lost"
    assert all(isinstance(a, dict) and a.get("error") for a in refused), refused[:3]
    h.assert_served()


# ---------------------------------------------------------------------- 6. protocol edges


async def test_head_requests_to_gateway_paths(abuse: Harness) -> None:
    """Item 9: HEAD is answered (no body) on the same connection; no ERROR in the log."""
    h = abuse
    h.record["attack"] = "HEAD to every gateway path"
    await h.start()
    await h.begin()
    paths = ["/healthz", "/readyz", "/metrics", "/", "/app.js", "/api/notifications",
             "/stats", "/nope", f"{SIO_PATH}?EIO=4&transport=polling"]
    outcomes: dict[str, str] = {}
    for path in paths:
        connection = HttpConnection(h.port)
        try:
            status, _, body = await connection.request("HEAD", path, timeout=10)
            again, _, _ = await connection.request("GET", "/healthz", timeout=10)
            outcomes[path] = f"{status}, then GET {again}" + (" (body!)" if body else "")
        except Exception as exc:  # the outcome is what we record
            outcomes[path] = f"failed: {type(exc).__name__} {exc}"[:120]
        finally:
            connection.close()
    await h.end()
    log = h.attack_log()
    h.record["head_outcomes"] = outcomes
    h.record["log_errors"] = log.count(" ERROR ") + log.count("Traceback")
    failed = {p: o for p, o in outcomes.items() if "GET 200" not in o or "body!" in o}
    assert not failed, f"HEAD requests not answered properly: {failed}"
    assert h.record["log_errors"] == 0, f"errors logged:\n{log[-3000:]}"
    h.assert_served()


def _oversized_post(port: int, sid: str) -> dict[str, str]:
    size = 10_000_000
    sock = blocking_connect(port)
    try:
        head = (f"POST {SIO_PATH}?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
                f"Host: {HOST}\r\nOrigin: {ORIGIN}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {size}\r\n\r\n").encode()
        deadline = time.monotonic() + 20
        sent = send_all(sock, head + b"4" + b"a" * (size - 1), deadline)
        data, ended = recv_until_eof(sock, time.monotonic() + 10)
    finally:
        sock.close()
    return {"send": sent, "status_line": data.split(b"\r\n", 1)[0].decode(errors="replace"),
            "ended": ended}


async def test_oversized_polling_post_gets_its_413(abuse: Harness) -> None:
    """Item 14: a 10 MB POST gets the 413 answer, not a connection reset."""
    h = abuse
    h.record["attack"] = "10 MB polling POST"
    await h.start()
    session = await PollingSession(h.port).open()
    await h.begin()
    result = await asyncio.to_thread(_oversized_post, h.port, session.sid)
    session.close()
    await h.end()
    h.record.update(result)
    assert " 413 " in result["status_line"] + " ", f"no 413 received: {result}"
    # What a browser sees: an upload that ends in a reset is a network error, whatever
    # the kernel happened to keep readable.
    assert "reset" not in result["send"] + result["ended"], f"connection reset: {result}"
    h.assert_served()


def _parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames, i = [], 0
    while i + 2 <= len(data):
        opcode, length = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if length == 126:
            length = struct.unpack("!H", data[i:i + 2])[0]
            i += 2
        elif length == 127:
            length = struct.unpack("!Q", data[i:i + 8])[0]
            i += 8
        frames.append((opcode, data[i:i + length]))
        i += length
    return frames


def _oversized_ws_message(port: int) -> dict[str, Any]:
    sock = blocking_connect(port)
    try:
        sock.sendall(upgrade_request(port))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        status, _, rest = head.partition(b"\r\n\r\n")
        if not status.startswith(b"HTTP/1.1 101"):
            return {"upgrade": status[:100].decode(errors="replace")}
        deadline = time.monotonic() + 20
        sent = send_all(sock, ws_frame(b"4" + b"a" * 9_999_999, mask=b"\0\0\0\0"), deadline)
        data, ended = recv_until_eof(sock, time.monotonic() + 10)
    finally:
        sock.close()
    frames = _parse_frames(rest + data)
    closes = [f for f in frames if f[0] == 8]
    code = struct.unpack("!H", closes[0][1][:2])[0] if closes and len(closes[0][1]) >= 2 \
        else None
    return {"send": sent, "ended": ended, "close_code": code}


async def test_oversized_websocket_message_gets_1009(abuse: Harness) -> None:
    """Item 14: a 10 MB WebSocket message gets close code 1009, not a reset."""
    h = abuse
    h.record["attack"] = "10 MB WebSocket message"
    await h.start()
    await h.begin()
    result = await asyncio.to_thread(_oversized_ws_message, h.port)
    await h.end()
    h.record.update(result)
    assert result.get("close_code") == 1009, f"no close frame 1009 received: {result}"
    assert "reset" not in result["send"] + result["ended"], f"connection reset: {result}"
    h.assert_served()


async def test_lone_surrogate_does_not_disconnect(abuse: Harness) -> None:
    """Item 12: half an emoji (``\\ud83d`` as JSON.stringify writes it) is accepted."""
    h = abuse
    h.record["attack"] = "private message with a lone surrogate"
    await h.start()
    await h.begin()
    target_user = unique_user("surrogate-target")
    sender = await SioClient.connect(h.port, mint_token(unique_user("surrogate")))
    target = await SioClient.connect(h.port, mint_token(target_user), local=HOST)
    body = ('["private-message",{"targetUserId":' + json.dumps(target_user)
            + ',"message":"half an emoji \\ud83d here"}]')
    try:
        answer: Any = await asyncio.wait_for(sender.emit_raw(body), 10)
    except (ConnectionError, TimeoutError) as exc:
        answer = f"no ack: {exc!r}"
    then: Any = None
    if not sender.closed.is_set():
        with contextlib.suppress(ConnectionError, TimeoutError):
            then = await sender.call("private-message",
                                     {"targetUserId": target_user, "message": "still here"},
                                     timeout=10)
    await target.wait_for(lambda: len(target.received("private-message")) >= 2, 3)
    h.record.update({
        "ack": str(answer)[:120], "disconnected": sender.closed.is_set(),
        "close": sender.close_code or sender.close_reason or None,
        "echoed_escaped": any("\\ud83d" in raw for raw in target.raw_events)})
    await sender.close()
    await target.close()
    await h.end()
    assert isinstance(answer, dict) and "success" in answer, f"no answer: {answer}"
    assert isinstance(then, dict) and then.get("success"), "the sender was disconnected"
    h.assert_served()


# ---------------------------------------------------------------------- 7. churn


async def test_connection_churn(abuse: Harness) -> None:
    """Item 15: thousands of connections opened and dropped abruptly; RSS is recorded
    (asserted to come back within 10% with ABUSE_FULL=1, after up to a minute)."""
    h = abuse
    total = 15_000 if FULL else 3000
    h.record["attack"] = f"churn: {total:,} connections dropped abruptly"
    await h.start()
    tokens = [mint_token(unique_user("churn")) for _ in range(total)]
    await h.begin()
    before = h.gw.rss() or 0
    clients: list[SioClient] = []
    failures: list[str] = []
    for start in range(0, total, 100):
        results = await asyncio.gather(
            *(SioClient.connect(h.port, t, timeout=30) for t in tokens[start:start + 100]),
            return_exceptions=True)
        for result in results:
            if isinstance(result, SioClient):
                clients.append(result)
            elif len(failures) < 5:
                failures.append(repr(result)[:120])
            else:
                failures.append("")
    h.record["connected"] = len(clients)
    h.record["connect_failures"] = len(failures)
    h.record["connect_failure_examples"] = [f for f in failures if f][:5]
    h.record["rss_with_connections_mib"] = round((h.gw.rss() or 0) / 2**20, 1)
    for client in clients:
        client.abort()
    clients.clear()
    wait = 60.0 if FULL else 5.0
    deadline = time.monotonic() + wait
    after = h.gw.rss() or 0
    while time.monotonic() < deadline:
        await asyncio.sleep(1)
        after = h.gw.rss() or 0
        if after <= before * 1.1:
            break
    h.record["rss_after_drop_mib"] = round(after / 2**20, 1)
    h.record["rss_after_drop_ratio"] = round(after / before, 3) if before else None
    h.record["rss_back_within_10pct"] = after <= before * 1.1
    await h.end()
    assert h.record["connected"] > 0, failures[:5]
    h.assert_served()
    if FULL:
        assert h.record["rss_back_within_10pct"], (
            f"RSS {after / 2**20:.1f} MiB vs {before / 2**20:.1f} MiB before the churn")
