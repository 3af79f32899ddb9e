"""The gateway's event contract, end to end, with the real npm socket.io-client (Node).

The gateway runs as a subprocess (``python -m realtime_app --port 0``) with a fixed
JWT_SECRET and API_KEY, RATE_LIMIT_PRIVATE_MESSAGE=3 and MAX_ROOMS_PER_SOCKET=2; each test
drives Node sockets through ``tests/interop/gateway_client.mjs``. Rate limits are per user,
so every test uses fresh user ids. "Nothing arrives" is checked after a short settle delay.
"""

from __future__ import annotations

import time

import pytest

from .conftest import (
    API_KEY,
    JWT_SECRET,
    GatewayProcess,
    Puppet,
    mint_token,
    require_node,
    running_gateway,
    unique_user,
)

SETTLE = 0.4  # seconds given to events that must NOT arrive


def connect(puppet: Puppet, name: str, user: str, **kw: object) -> dict[str, object]:
    reply = puppet.connect(name, mint_token(user), **kw)
    assert reply["connected"], reply
    puppet.wait(name, "connected")
    return reply


# ---------------------------------------------------------------------- handshake


def test_connect_with_token_gets_connected_event(puppet: Puppet) -> None:
    user = unique_user("alice")
    reply = puppet.connect("a", mint_token(user, "Alice"))
    assert reply["connected"] is True
    [[payload]] = puppet.wait("a", "connected")
    assert payload == {"message": "Connected successfully", "userId": user,
                       "socketId": reply["socketId"], "recovered": False}


def test_connect_with_authorization_header(puppet: Puppet) -> None:
    user = unique_user("header")
    reply = puppet.connect("h", auth=None, transports=["polling"],
                           extraHeaders={"Authorization": f"Bearer {mint_token(user)}"})
    assert reply["connected"] is True, reply
    [[payload]] = puppet.wait("h", "connected")
    assert payload["userId"] == user


@pytest.mark.parametrize("case", ["missing", "wrong-secret", "expired", "garbage", "no-sub",
                                  "token-not-string"])
def test_bad_or_missing_token_is_refused(puppet: Puppet, case: str) -> None:
    import jwt

    user = unique_user("mallory")
    auth: object = {
        "missing": None,
        "wrong-secret": {"token": mint_token(user, secret="x" * 40)},
        "expired": {"token": mint_token(user, ttl=-3600)},
        "garbage": {"token": "not.a.jwt"},
        "no-sub": {"token": jwt.encode({"username": "m", "exp": int(time.time()) + 60},
                                       JWT_SECRET, algorithm="HS256")},
        "token-not-string": {"token": 12345},
    }[case]
    reply = puppet.connect("m", auth=auth)
    assert reply["connected"] is False
    assert reply["error"]["message"] == "Authentication failed"
    assert reply["error"]["data"] == {"code": "UNAUTHORIZED"}
    assert puppet.events("m", "connected") == []


# ---------------------------------------------------------------------- rooms


def test_join_and_leave_room(puppet: Puppet) -> None:
    connect(puppet, "r", unique_user("roomer"))
    assert puppet.emit("r", "join-room", {"room": "lobby"}, ack=True) == {
        "success": True, "room": "lobby"}
    [[joined]] = puppet.wait("r", "joined-room")
    assert joined == {"room": "lobby"}
    assert puppet.emit("r", "leave-room", {"room": "lobby"}, ack=True) == {
        "success": True, "room": "lobby"}
    [[left]] = puppet.wait("r", "left-room")
    assert left == {"room": "lobby"}
    # without an ack callback the same events come, and no error
    puppet.emit("r", "join-room", {"room": "lobby2"})
    assert puppet.wait("r", "joined-room", 2)[1] == [{"room": "lobby2"}]
    assert puppet.events("r", "error") == []


ROOM_REFUSALS = [
    ({"room": "user:someone"}, "Room name is reserved"),
    ({"room": "bad room!"}, "Invalid room name (letters, digits and _ . : @ # - only)"),
    ({}, "room must be a string"),
    ({"room": ""}, "room must not be empty"),
    ({"room": 42}, "room must be a string"),
    ("lobby", "Invalid message format"),
]


def test_room_refusals_with_ack(puppet: Puppet) -> None:
    connect(puppet, "r", unique_user("refused"))
    for payload, error in ROOM_REFUSALS:
        assert puppet.emit("r", "join-room", payload, ack=True) == {
            "success": False, "error": error}, payload
    assert puppet.emit("r", "leave-room", {"room": "user:x"}, ack=True) == {
        "success": False, "error": "Room name is reserved"}
    assert puppet.events("r", "joined-room") == []
    assert puppet.events("r", "error") == []


def test_room_refusals_without_ack_emit_error_event(puppet: Puppet) -> None:
    connect(puppet, "r", unique_user("refused-noack"))
    for payload, _ in ROOM_REFUSALS:
        puppet.emit("r", "join-room", payload)
    puppet.emit("r", "leave-room", {"room": "user:x"})
    errors = [args[0] for args in puppet.wait("r", "error", len(ROOM_REFUSALS) + 1)]
    expected = [{"event": "join-room", "message": m} for _, m in ROOM_REFUSALS]
    expected.append({"event": "leave-room", "message": "Room name is reserved"})
    assert errors == expected
    assert puppet.events("r", "joined-room") == []


def test_too_many_rooms(puppet: Puppet) -> None:
    connect(puppet, "r", unique_user("collector"))
    for room in ("r1", "r2"):
        assert puppet.emit("r", "join-room", {"room": room}, ack=True) == {
            "success": True, "room": room}
    assert puppet.emit("r", "join-room", {"room": "r3"}, ack=True) == {
        "success": False, "error": "Too many rooms (max 2)"}
    # joining a room the socket is already in is not a new room
    assert puppet.emit("r", "join-room", {"room": "r1"}, ack=True)["success"] is True
    puppet.emit("r", "join-room", {"room": "r4"})
    [[error]] = puppet.wait("r", "error")
    assert error == {"event": "join-room", "message": "Too many rooms (max 2)"}
    # leaving frees a slot
    assert puppet.emit("r", "leave-room", {"room": "r2"}, ack=True)["success"] is True
    assert puppet.emit("r", "join-room", {"room": "r3"}, ack=True) == {
        "success": True, "room": "r3"}


def test_unknown_event_gets_error_event(puppet: Puppet) -> None:
    connect(puppet, "u", unique_user("curious"))
    puppet.emit("u", "no-such-event", {"x": 1})
    [[error]] = puppet.wait("u", "error")
    assert error == {"event": "no-such-event", "message": "Unknown event"}


# ---------------------------------------------------------------------- private messages


def test_private_message_between_two_users(puppet: Puppet) -> None:
    alice, bob = unique_user("alice"), unique_user("bob")
    connect(puppet, "a", alice)
    connect(puppet, "b", bob)
    ack = puppet.emit("a", "private-message", {"targetUserId": bob, "message": "hi bob"},
                      ack=True)
    assert ack["success"] is True and isinstance(ack["id"], str) and ack["id"]
    [[received]] = puppet.wait("b", "private-message")
    assert set(received) == {"id", "senderId", "senderUsername", "message", "timestamp"}
    assert received["id"] == ack["id"]
    assert received["senderId"] == alice
    assert received["senderUsername"] == alice.upper()  # the token's username claim
    assert received["message"] == "hi bob"
    assert received["timestamp"].endswith("Z")
    [[sent]] = puppet.wait("a", "message-sent")
    assert sent["id"] == ack["id"]
    assert sent["targetUserId"] == bob and sent["message"] == "hi bob"
    assert puppet.events("b", "private-message")[0]["hasAck"] is True
    assert puppet.events("a", "private-message") == []
    # bob acked the live delivery: a new connection of bob gets nothing again
    time.sleep(0.2)
    puppet.disconnect("b")
    connect(puppet, "b2", bob)
    time.sleep(SETTLE)
    assert puppet.events("b2", "private-message") == []


PM_REFUSALS = [
    ({"targetUserId": "x", "message": ""}, "message must not be empty"),
    ({"targetUserId": "x", "message": "   "}, "message must not be empty"),
    ({"targetUserId": "x", "message": "a" * 1001}, "message is too long (max 1000 characters)"),
    ({"targetUserId": "x", "message": "buy SPAM now"}, "Inappropriate content detected"),
    ({"targetUserId": "x", "message": 123}, "message must be a string"),
    ({"targetUserId": 7, "message": "hello"}, "targetUserId must be a string"),
    ({"message": "hello"}, "targetUserId must be a string"),
    ("hello", "Invalid message format"),
]


@pytest.mark.parametrize(("payload", "error"), PM_REFUSALS,
                         ids=["empty", "blank", "too-long", "banned", "message-int",
                              "target-int", "no-target", "not-object"])
def test_private_message_refusals(puppet: Puppet, payload: object, error: str) -> None:
    connect(puppet, "s", unique_user("sender"))
    assert puppet.emit("s", "private-message", payload, ack=True) == {
        "success": False, "error": error}
    puppet.emit("s", "private-message", payload)
    [[event]] = puppet.wait("s", "error")
    assert event == {"event": "private-message", "message": error}
    assert puppet.events("s", "message-sent") == []


def test_private_message_of_1000_chars_is_accepted(puppet: Puppet) -> None:
    target = unique_user("target")
    connect(puppet, "s", unique_user("sender"))
    ack = puppet.emit("s", "private-message", {"targetUserId": target, "message": "a" * 1000},
                      ack=True)
    assert ack["success"] is True


def test_private_message_rate_limit(puppet: Puppet) -> None:
    target = unique_user("target")
    connect(puppet, "s", unique_user("chatty"))
    for i in range(3):
        ack = puppet.emit("s", "private-message", {"targetUserId": target, "message": f"m{i}"},
                          ack=True)
        assert ack["success"] is True, (i, ack)
    before = int(time.time() * 1000)
    ack = puppet.emit("s", "private-message", {"targetUserId": target, "message": "m3"},
                      ack=True)
    assert ack == {"success": False, "error": "Rate limit exceeded"}
    [[event]] = puppet.wait("s", "rate-limit-exceeded")
    assert event["event"] == "private-message"
    assert event["limit"] == 3
    assert isinstance(event["resetTime"], int)
    assert before < event["resetTime"] <= before + 61_000
    assert len(puppet.events("s", "message-sent")) == 3


# ---------------------------------------------------------------------- offline delivery


def _send_offline(puppet: Puppet, target: str, count: int = 3) -> list[str]:
    connect(puppet, "s", unique_user("sender"))
    ids = []
    for i in range(count):
        ack = puppet.emit("s", "private-message",
                          {"targetUserId": target, "message": f"offline {i}"}, ack=True)
        assert ack["success"] is True, ack
        ids.append(ack["id"])
    return ids


def test_offline_messages_delivered_on_connect_and_not_again_after_ack(puppet: Puppet) -> None:
    target = unique_user("sleeper")
    ids = _send_offline(puppet, target)
    connect(puppet, "t1", target)
    messages = [args[0] for args in puppet.wait("t1", "private-message", 3)]
    assert [m["message"] for m in messages] == ["offline 0", "offline 1", "offline 2"]
    assert [m["id"] for m in messages] == ids
    assert all(e["hasAck"] for e in puppet.events("t1", "private-message"))
    time.sleep(0.2)  # the acks reach the gateway
    puppet.disconnect("t1")
    connect(puppet, "t2", target)
    time.sleep(SETTLE)
    assert puppet.events("t2", "private-message") == []


def test_offline_messages_redelivered_when_not_acked(puppet: Puppet) -> None:
    target = unique_user("forgetful")
    ids = _send_offline(puppet, target)
    connect(puppet, "t1", target, ack_private=False)
    first = [args[0]["id"] for args in puppet.wait("t1", "private-message", 3)]
    assert first == ids
    puppet.disconnect("t1")
    connect(puppet, "t2", target)  # acks this time
    second = [args[0]["id"] for args in puppet.wait("t2", "private-message", 3)]
    assert second == ids
    time.sleep(0.2)
    puppet.disconnect("t2")
    connect(puppet, "t3", target)
    time.sleep(SETTLE)
    assert puppet.events("t3", "private-message") == []


def test_live_message_acked_by_one_device_is_not_redelivered(puppet: Puppet) -> None:
    target = unique_user("two-devices")
    connect(puppet, "old", target, ack_private=False)  # e.g. a client without the ack
    connect(puppet, "new", target)
    connect(puppet, "s", unique_user("sender"))
    ack = puppet.emit("s", "private-message", {"targetUserId": target, "message": "live"},
                      ack=True)
    assert ack["success"] is True
    puppet.wait("new", "private-message")
    puppet.wait("old", "private-message")
    time.sleep(0.3)  # the ack of "new" reaches the gateway
    puppet.disconnect("new")
    connect(puppet, "newer", target)
    time.sleep(SETTLE)
    assert puppet.events("newer", "private-message") == []


def test_full_inbox_refuses_and_drops_nothing() -> None:
    node = require_node()
    env = {"JWT_SECRET": JWT_SECRET, "API_KEY": API_KEY, "MAX_STORED_MESSAGES": "2",
           "MAX_STORED_MESSAGES_PER_SENDER": "2"}
    with running_gateway(env) as small:
        puppet = Puppet(node, small.url)
        try:
            target = unique_user("capped")
            connect(puppet, "s", unique_user("sender"))
            ids = []
            for i in range(2):
                ack = puppet.emit("s", "private-message",
                                  {"targetUserId": target, "message": f"offline {i}"}, ack=True)
                assert ack["success"] is True, ack
                ids.append(ack["id"])
            ack = puppet.emit("s", "private-message",
                              {"targetUserId": target, "message": "offline 2"}, ack=True)
            assert ack == {"success": False, "error": "Inbox full", "code": "INBOX_FULL"}
            connect(puppet, "t", target)
            got = [args[0]["id"] for args in puppet.wait("t", "private-message", 2)]
            assert got == ids  # nothing acked was dropped
            time.sleep(SETTLE)
            assert len(puppet.events("t", "private-message")) == 2
        finally:
            puppet.close()


# ---------------------------------------------------------------------- presence


def _online(gateway: GatewayProcess, user: str) -> bool:
    status, body = gateway.http("GET", f"/api/users/{user}/online")
    assert status == 200, body
    assert body["userId"] == user
    return body["online"]


def test_multi_device_presence(puppet: Puppet, gateway: GatewayProcess) -> None:
    a, b, c = unique_user("star"), unique_user("fan"), unique_user("late-fan")
    for follower in (b, c):
        status, body = gateway.http("PUT", "/api/follows", {"followerId": follower,
                                                            "followeeId": a})
        assert status == 200 and body == {"success": True, "created": True}, body
    assert _online(gateway, a) is False
    connect(puppet, "b", b)
    connect(puppet, "a1", a)
    [[online]] = puppet.wait("b", "user-online")
    assert online == {"userId": a}
    connect(puppet, "a2", a)
    time.sleep(SETTLE)
    assert len(puppet.events("b", "user-online")) == 1
    notes = [n for n in puppet.payloads("b", "notification") if n["type"] == "user-online"]
    assert len(notes) == 1
    assert notes[0]["userId"] == a and notes[0]["message"] == f"{a} is online"
    assert _online(gateway, a) is True
    # a follower connecting while A is online learns it from a replayed user-online
    connect(puppet, "c", c)
    assert puppet.wait("c", "user-online") == [[{"userId": a}]]

    puppet.disconnect("a1")
    time.sleep(SETTLE)
    assert puppet.events("b", "user-offline") == []
    assert _online(gateway, a) is True

    puppet.disconnect("a2")
    [[offline]] = puppet.wait("b", "user-offline")
    assert offline == {"userId": a}
    puppet.wait("b", "notification", 2)
    notes = [n for n in puppet.payloads("b", "notification") if n["type"] == "user-offline"]
    assert len(notes) == 1 and notes[0]["userId"] == a
    assert _online(gateway, a) is False
    assert len(puppet.events("b", "user-online")) == 1


# ---------------------------------------------------------------------- music sync


def test_music_sync_between_devices_of_one_user(puppet: Puppet) -> None:
    user = unique_user("listener")
    connect(puppet, "d1", user)
    connect(puppet, "d2", user)
    ack = puppet.emit("d1", "music-sync", {"action": "play", "songId": "song-1",
                                           "currentTime": 12.5}, ack=True)
    assert ack == {"success": True, "room": f"user:{user}"}
    [[sync]] = puppet.wait("d2", "music-sync")
    assert set(sync) == {"action", "songId", "currentTime", "userId", "timestamp"}
    assert sync["action"] == "play" and sync["songId"] == "song-1"
    assert sync["currentTime"] == 12.5 and sync["userId"] == user
    time.sleep(0.2)
    assert puppet.events("d1", "music-sync") == []  # not echoed to the sender


def test_music_sync_in_shared_room(puppet: Puppet) -> None:
    p1, p2, p3 = unique_user("dj"), unique_user("guest"), unique_user("latecomer")
    room = f"party-{p1}"
    for name, user in (("p1", p1), ("p2", p2)):
        connect(puppet, name, user)
        assert puppet.emit(name, "join-room", {"room": room}, ack=True)["success"] is True
    ack = puppet.emit("p1", "music-sync", {"action": "play", "songId": "anthem",
                                           "currentTime": 30, "room": room}, ack=True)
    assert ack == {"success": True, "room": room}
    [[sync]] = puppet.wait("p2", "music-sync")
    assert sync["action"] == "play" and sync["songId"] == "anthem"
    assert sync["currentTime"] == 30 and sync["userId"] == p1

    time.sleep(0.5)
    connect(puppet, "p3", p3)
    started = time.time()
    assert puppet.emit("p3", "join-room", {"room": room}, ack=True)["success"] is True
    [[state]] = puppet.wait("p3", "music-state")
    elapsed = time.time() - started + 0.5
    assert state["room"] == room and state["songId"] == "anthem"
    assert state["playing"] is True
    assert 30 + 0.4 <= state["currentTime"] <= 30 + elapsed + 5, state
    assert isinstance(state["updatedAt"], int)

    # p3 is not in "elsewhere": refused, as an ack and as an error event
    refusal = {"action": "pause", "songId": "anthem", "room": "elsewhere"}
    assert puppet.emit("p3", "music-sync", refusal, ack=True) == {
        "success": False, "error": "You are not in this room"}
    puppet.emit("p3", "music-sync", refusal)
    [[error]] = puppet.wait("p3", "error")
    assert error == {"event": "music-sync", "message": "You are not in this room"}
    assert puppet.emit("p3", "music-sync", {"action": "dance", "songId": "x"}, ack=True) == {
        "success": False, "error": "action must be play, pause or seek"}
    assert puppet.emit("p3", "music-sync", {"action": "play", "songId": "x",
                                            "currentTime": -1}, ack=True) == {
        "success": False, "error": "currentTime must be a non-negative number"}
    time.sleep(0.2)
    assert len(puppet.events("p1", "music-sync")) == 0
    assert len(puppet.events("p2", "music-sync")) == 1


# ---------------------------------------------------------------------- notifications


def test_notifications_from_the_http_api(puppet: Puppet, gateway: GatewayProcess) -> None:
    n1, n2 = unique_user("reader"), unique_user("other")
    connect(puppet, "n1a", n1)
    connect(puppet, "n1b", n1)
    connect(puppet, "n2", n2)
    status, body = gateway.http("POST", "/api/notifications", {
        "userIds": [n1, "nobody-connected"], "type": "info", "message": "targeted",
        "data": {"k": 1}})
    assert status == 200, body
    assert body["success"] is True and body["deliveredSockets"] == 2
    for name in ("n1a", "n1b"):
        [[note]] = puppet.wait(name, "notification")
        assert note["type"] == "info" and note["message"] == "targeted"
        assert note["data"] == {"k": 1} and note["timestamp"].endswith("Z")

    status, body = gateway.http("POST", "/api/notifications", {
        "all": True, "type": "broadcast", "message": "to everyone"})
    assert status == 200 and body["deliveredSockets"] >= 3, body
    for name in ("n1a", "n1b", "n2"):
        notes = puppet.wait(name, "notification", 2 if name != "n2" else 1)
        assert notes[-1][0]["type"] == "broadcast"
        assert notes[-1][0]["message"] == "to everyone"
    assert [n["message"] for n in puppet.payloads("n2", "notification")] == ["to everyone"]


@pytest.mark.parametrize(("key", "status"), [(None, 401), ("wrong-key-0123456789", 403)])
def test_service_api_needs_the_key(gateway: GatewayProcess, key: str | None,
                                   status: int) -> None:
    got, body = gateway.http("POST", "/api/notifications",
                             {"all": True, "type": "x", "message": "y"}, api_key=key)
    assert got == status, body
    got, _ = gateway.http("PUT", "/api/follows", {"followerId": "a", "followeeId": "b"},
                          api_key=key)
    assert got == status
