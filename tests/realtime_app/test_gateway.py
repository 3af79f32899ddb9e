"""Socket.IO behaviour of the gateway, with python-socketio's client, on both stores.

Every test that takes ``gw`` or ``make_gateway`` runs once with the memory store and once
with the Redis store (``store_kind``).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

from realtime_app.store import MemoryStore

from .conftest import WAIT, GatewayFactory, Harness, eventually

pytestmark = pytest.mark.timeout(40)

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def follow(gw: Harness, follower: str, followee: str) -> None:
    status, _, body = await gw.http("PUT", "/api/follows",
                                    json={"followerId": follower, "followeeId": followee})
    assert status == 200, body


async def pending_ids(gw: Harness, user: str) -> list[str]:
    return [m["id"] for m in await gw.store.pending_messages(user)]


async def until_pending(gw: Harness, user: str, ids: list[str]) -> None:
    async def check() -> bool:
        return await pending_ids(gw, user) == ids

    await eventually(check)


async def until_online(gw: Harness, user: str, online: bool = True) -> None:
    async def check() -> bool:
        return await gw.store.is_online(user) is online

    await eventually(check)


def refused(error: str) -> dict[str, Any]:
    return {"success": False, "error": error}


# ====================================================================== rooms


async def test_join_and_leave_room(gw: Harness) -> None:
    alice = await gw.connect("alice")
    assert await alice.call("join-room", {"room": "lobby"}) == {"success": True, "room": "lobby"}
    assert await alice.next("joined-room") == {"room": "lobby"}
    socket = gw.app.io.sockets.sockets[alice.sid]
    assert "lobby" in socket.rooms
    # joining again is harmless
    assert (await alice.call("join-room", {"room": "lobby"}))["success"] is True
    assert await alice.call("leave-room", {"room": "lobby"}) == {"success": True, "room": "lobby"}
    assert await alice.next("left-room") == {"room": "lobby"}
    assert "lobby" not in socket.rooms
    assert "user:alice" in socket.rooms


async def test_events_without_ack_answer_with_events(gw: Harness) -> None:
    alice = await gw.connect("alice")
    await alice.emit("join-room", {"room": "a.b:c@d#e-f_1"})
    assert await alice.next("joined-room") == {"room": "a.b:c@d#e-f_1"}
    await alice.emit("join-room", {"room": "no spaces"})
    error = await alice.next("error")
    assert error["event"] == "join-room" and "Invalid room name" in error["message"]
    await alice.emit("leave-room", {"room": "a.b:c@d#e-f_1"})
    assert await alice.next("left-room") == {"room": "a.b:c@d#e-f_1"}


ROOM_REFUSALS: list[tuple[str, Any, str]] = [
    ("no-payload", None, "Invalid message format"),
    ("string-payload", "lobby", "Invalid message format"),
    ("list-payload", ["lobby"], "Invalid message format"),
    ("number-payload", 7, "Invalid message format"),
    ("missing-room", {}, "room must be a string"),
    ("null-room", {"room": None}, "room must be a string"),
    ("number-room", {"room": 5}, "room must be a string"),
    ("object-room", {"room": {"$ne": ""}}, "room must be a string"),
    ("list-room", {"room": ["a", "b"]}, "room must be a string"),
    ("empty-room", {"room": ""}, "room must not be empty"),
    ("blank-room", {"room": "   "}, "room must not be empty"),
    ("long-room", {"room": "r" * 129}, "room is too long (max 128 characters)"),
    ("huge-room", {"room": "r" * 200_000}, "room is too long (max 128 characters)"),
    ("space", {"room": "a b"}, "Invalid room name"),
    ("slash", {"room": "a/b"}, "Invalid room name"),
    ("unicode", {"room": "café"}, "Invalid room name"),
    ("newline", {"room": "a\nb"}, "Invalid room name"),
]


async def test_room_refusals(gw: Harness) -> None:
    alice = await gw.connect("alice")
    for name, payload, error in ROOM_REFUSALS:
        for event in ("join-room", "leave-room"):
            answer = await alice.call(event, payload)
            assert answer["success"] is False, (name, event, answer)
            assert answer["error"].startswith(error), (name, event, answer)
    assert alice.all("joined-room") == [] and alice.all("left-room") == []
    socket = gw.app.io.sockets.sockets[alice.sid]
    assert socket.rooms == {alice.sid, "user:alice"}
    assert alice.connected


async def test_room_128_characters_is_fine(gw: Harness) -> None:
    alice = await gw.connect("alice")
    room = "r" * 128
    assert await alice.call("join-room", {"room": room}) == {"success": True, "room": room}


async def test_reserved_user_rooms(gw: Harness) -> None:
    alice = await gw.connect("alice")
    bob = await gw.connect("bob")
    assert await alice.call("join-room", {"room": "user:bob"}) == refused("Room name is reserved")
    assert await alice.call("join-room", {"room": "user:alice"}) == refused(
        "Room name is reserved")
    assert await alice.call("leave-room", {"room": "user:alice"}) == refused(
        "Room name is reserved")
    assert "user:alice" in gw.app.io.sockets.sockets[alice.sid].rooms
    assert "user:bob" not in gw.app.io.sockets.sockets[alice.sid].rooms
    # bob's private channel still reaches bob only
    await alice.call("private-message", {"targetUserId": "bob", "message": "hi"})
    assert (await bob.next("private-message"))["message"] == "hi"
    assert alice.all("private-message") == []


async def test_too_many_rooms(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway({"MAX_ROOMS_PER_SOCKET": "3"})
    alice = await gw.connect("alice")
    for room in ("r1", "r2", "r3"):
        assert (await alice.call("join-room", {"room": room}))["success"] is True
    assert await alice.call("join-room", {"room": "r4"}) == refused("Too many rooms (max 3)")
    assert (await alice.call("join-room", {"room": "r2"}))["success"] is True  # already in
    await alice.call("leave-room", {"room": "r1"})
    assert (await alice.call("join-room", {"room": "r4"}))["success"] is True
    assert gw.app.io.sockets.sockets[alice.sid].rooms == {
        alice.sid, "user:alice", "r2", "r3", "r4"}
    # the limit is per socket: another device of the same user has its own
    other = await gw.connect("alice")
    assert (await other.call("join-room", {"room": "r9"}))["success"] is True


async def test_leave_room_not_joined_is_answered_and_changes_nothing(gw: Harness) -> None:
    # The issue does not say whether this is a refusal; it must be answered either way.
    alice = await gw.connect("alice")
    await alice.call("join-room", {"room": "kept"})
    answer = await alice.call("leave-room", {"room": "never-joined"})
    assert isinstance(answer, dict) and isinstance(answer.get("success"), bool)
    assert gw.app.io.sockets.sockets[alice.sid].rooms == {alice.sid, "user:alice", "kept"}


async def test_unknown_event_emits_error(gw: Harness) -> None:
    alice = await gw.connect("alice")
    await alice.emit("no-such-event", {"x": 1})
    assert await alice.next("error") == {"event": "no-such-event", "message": "Unknown event"}
    await alice.emit("connected", {"fake": True})  # a server-to-client event name
    assert await alice.next("error") == {"event": "connected", "message": "Unknown event"}
    assert alice.connected
    assert (await alice.call("join-room", {"room": "still-works"}))["success"] is True


async def test_unknown_event_with_ack_is_answered(gw: Harness) -> None:
    # "each answered by ack when the client asks for an ack": an unknown event sent with an
    # ack request gets {success: false, error: "Unknown event"} like every other refusal.
    alice = await gw.connect("alice")
    answer = await alice.call("no-such-event", {"x": 1}, timeout=1)
    assert answer == refused("Unknown event")


# ====================================================================== private messages


async def test_private_message_online(gw: Harness) -> None:
    alice = await gw.connect("alice", username="Alice")
    bob = await gw.connect("bob")
    bob2 = await gw.connect("bob")  # second device
    answer = await alice.call("private-message", {"targetUserId": "bob", "message": "hi bob"})
    assert answer["success"] is True and isinstance(answer["id"], str)
    sent = await alice.next("message-sent")
    assert sent["id"] == answer["id"]
    assert (sent["targetUserId"], sent["message"]) == ("bob", "hi bob")
    assert ISO.match(sent["timestamp"])
    for device in (bob, bob2):
        received = await device.next("private-message")
        assert received == {"id": answer["id"], "senderId": "alice", "senderUsername": "Alice",
                            "message": "hi bob", "timestamp": sent["timestamp"]}
    # acked by bob's devices: deleted from the store
    await until_pending(gw, "bob", [])
    assert alice.all("private-message") == []
    assert gw.metric("realtime_stored_messages_total") == 1


async def test_private_message_without_ack_request(gw: Harness) -> None:
    alice = await gw.connect("alice")
    bob = await gw.connect("bob")
    await alice.emit("private-message", {"targetUserId": "bob", "message": "no ack asked"})
    sent = await alice.next("message-sent")
    assert (await bob.next("private-message"))["id"] == sent["id"]


async def test_private_message_username_defaults_to_user_id(gw: Harness) -> None:
    alice = await gw.connect("alice")
    bob = await gw.connect("bob")
    await alice.call("private-message", {"targetUserId": "bob", "message": "x"})
    assert (await bob.next("private-message"))["senderUsername"] == "alice"


MESSAGE_REFUSALS: list[tuple[str, Any, str]] = [
    ("no-payload", None, "Invalid message format"),
    ("string-payload", "hello", "Invalid message format"),
    ("list-payload", [{"targetUserId": "bob", "message": "x"}], "Invalid message format"),
    ("missing-target", {"message": "x"}, "targetUserId must be a string"),
    ("number-target", {"targetUserId": 42, "message": "x"}, "targetUserId must be a string"),
    ("list-target", {"targetUserId": ["bob"], "message": "x"}, "targetUserId must be a string"),
    ("empty-target", {"targetUserId": "", "message": "x"}, "targetUserId must not be empty"),
    ("long-target", {"targetUserId": "b" * 129, "message": "x"},
     "targetUserId is too long (max 128 characters)"),
    ("missing-message", {"targetUserId": "bob"}, "message must be a string"),
    ("number-message", {"targetUserId": "bob", "message": 1}, "message must be a string"),
    ("object-message", {"targetUserId": "bob", "message": {"a": 1}},
     "message must be a string"),
    ("empty-message", {"targetUserId": "bob", "message": ""}, "message must not be empty"),
    ("blank-message", {"targetUserId": "bob", "message": " \n\t "},
     "message must not be empty"),
    ("long-message", {"targetUserId": "bob", "message": "m" * 1001},
     "message is too long (max 1000 characters)"),
    ("huge-message", {"targetUserId": "bob", "message": "m" * 300_000},
     "message is too long (max 1000 characters)"),
    ("banned", {"targetUserId": "bob", "message": "buy spam now"},
     "Inappropriate content detected"),
    ("banned-mixed-case", {"targetUserId": "bob", "message": "SpAm"},
     "Inappropriate content detected"),
    ("banned-second-word", {"targetUserId": "bob", "message": "stop the ABUSE"},
     "Inappropriate content detected"),
]


async def test_private_message_refusals(gw: Harness) -> None:
    alice = await gw.connect("alice")
    bob = await gw.connect("bob")
    for name, payload, error in MESSAGE_REFUSALS:
        answer = await alice.call("private-message", payload)
        assert answer == refused(error), (name, answer)
    # the same refusals without an ack request come as `error` events
    for name, payload, error in MESSAGE_REFUSALS:
        await alice.emit("private-message", payload)
        assert await alice.next("error") == {"event": "private-message", "message": error}, name
    await bob.quiet("private-message")
    assert alice.all("message-sent") == []
    assert await gw.store.pending_messages("bob") == []
    assert gw.metric("realtime_rejections_total", reason="banned_words") == 6
    # still fine afterwards
    ok = await alice.call("private-message", {"targetUserId": "bob", "message": "m" * 1000})
    assert ok["success"] is True
    assert (await bob.next("private-message"))["message"] == "m" * 1000


async def test_configured_banned_words(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway({"BANNED_WORDS": "Darn, heck"})
    alice = await gw.connect("alice")
    assert await alice.call("private-message", {"targetUserId": "bob", "message": "DARN it"}) \
        == refused("Inappropriate content detected")
    answer = await alice.call("private-message",
                              {"targetUserId": "bob", "message": "what the Heck"})
    assert answer == refused("Inappropriate content detected")
    # the default list is replaced
    assert (await alice.call("private-message",
                             {"targetUserId": "bob", "message": "spam"}))["success"] is True


async def test_offline_messages_delivered_in_order_and_deleted_on_ack(gw: Harness) -> None:
    alice = await gw.connect("alice")
    ids = []
    for n in range(3):
        answer = await alice.call("private-message", {"targetUserId": "bob", "message": f"#{n}"})
        ids.append(answer["id"])
    assert await pending_ids(gw, "bob") == ids
    # bob connects but his client never acks: delivered, still stored
    bob = await gw.connect("bob", ack_private=False)
    received = await bob.next_n("private-message", 3)
    assert [m["id"] for m in received] == ids
    assert [m["message"] for m in received] == ["#0", "#1", "#2"]
    assert all(m["senderId"] == "alice" for m in received)
    assert await pending_ids(gw, "bob") == ids
    await bob.close()
    # reconnect with an acking client: the same messages, in order, then deleted
    bob = await gw.connect("bob")
    assert [m["id"] for m in await bob.next_n("private-message", 3)] == ids
    await until_pending(gw, "bob", [])
    await bob.close()
    bob = await gw.connect("bob")
    await bob.quiet("private-message")


async def test_live_message_not_acked_stays_stored(gw: Harness) -> None:
    alice = await gw.connect("alice")
    bob = await gw.connect("bob", ack_private=False)
    answer = await alice.call("private-message", {"targetUserId": "bob", "message": "live"})
    assert (await bob.next("private-message"))["id"] == answer["id"]
    assert await pending_ids(gw, "bob") == [answer["id"]]
    await bob.close()
    bob = await gw.connect("bob")
    assert (await bob.next("private-message"))["id"] == answer["id"]
    await until_pending(gw, "bob", [])


async def test_message_to_self_is_delivered_to_own_devices(gw: Harness) -> None:
    alice = await gw.connect("alice")
    phone = await gw.connect("alice")
    answer = await alice.call("private-message", {"targetUserId": "alice", "message": "note"})
    assert (await phone.next("private-message"))["id"] == answer["id"]


class GatedStore(MemoryStore):
    """A memory store whose calls can be held, to replay a race deterministically."""

    def __init__(self) -> None:
        super().__init__()
        self.hold_following = asyncio.Event()
        self.hold_ack = asyncio.Event()
        self.hold_following.set()
        self.hold_ack.set()

    async def following(self, user_id: str) -> list[str]:
        await asyncio.wait_for(self.hold_following.wait(), WAIT)
        return await super().following(user_id)

    async def ack_message(self, user_id: str, message_id: str) -> bool:
        await asyncio.wait_for(self.hold_ack.wait(), WAIT)
        return await super().ack_message(user_id, message_id)


async def test_message_during_connect_not_duplicated(gateway_factory: GatewayFactory) -> None:
    # bob's connect work (_after_connect) reads his stored messages after a few store round
    # trips; a message sent in that window is delivered live AND again from the inbox, to
    # the same socket. Replayed deterministically by holding the store calls.
    store = GatedStore()
    gw = await gateway_factory("memory", store=store)
    alice = await gw.connect("alice")
    store.hold_following.clear()  # bob's connect work stops before reading his inbox
    store.hold_ack.clear()  # bob's ack is not applied yet
    bob = await gw.connect("bob", settle=False)
    answer = await alice.call("private-message", {"targetUserId": "bob", "message": "once"})
    assert (await bob.next("private-message"))["id"] == answer["id"]
    store.hold_following.set()
    await gw.settled()
    store.hold_ack.set()
    await bob.quiet("private-message", 0.3)


# ====================================================================== music sync


def music(action: str, song: str = "song-1", **extra: Any) -> dict[str, Any]:
    return {"action": action, "songId": song, **extra}


async def test_music_sync_in_a_room(gw: Harness) -> None:
    alice = await gw.connect("alice")
    bob = await gw.connect("bob")
    outsider = await gw.connect("carol")
    for client in (alice, bob):
        await client.call("join-room", {"room": "party"})
    answer = await alice.call("music-sync", music("play", currentTime=10, room="party"))
    assert answer == {"success": True, "room": "party"}
    sync = await bob.next("music-sync")
    assert {k: sync[k] for k in ("action", "songId", "currentTime", "userId")} == {
        "action": "play", "songId": "song-1", "currentTime": 10, "userId": "alice"}
    assert ISO.match(sync["timestamp"])
    await alice.quiet("music-sync", 0.1)
    await outsider.quiet("music-sync", 0.1)
    # a later joiner gets the state
    dave = await gw.connect("dave")
    await dave.call("join-room", {"room": "party"})
    state = await dave.next("music-state")
    assert state["room"] == "party" and state["songId"] == "song-1"
    assert state["playing"] is True
    assert state["currentTime"] >= 10
    # pause: everyone else in the room is told, the state stops advancing
    await bob.call("music-sync", music("pause", currentTime=42.5, room="party"))
    assert (await alice.next("music-sync"))["action"] == "pause"
    assert (await dave.next("music-sync"))["userId"] == "bob"
    eve = await gw.connect("eve")
    await eve.call("join-room", {"room": "party"})
    state = await eve.next("music-state")
    assert (state["currentTime"], state["playing"]) == (42.5, False)


async def test_music_sync_defaults_to_own_user_room(gw: Harness) -> None:
    laptop = await gw.connect("alice")
    phone = await gw.connect("alice")
    bob = await gw.connect("bob")
    answer = await laptop.call("music-sync", music("seek", currentTime=3))
    assert answer == {"success": True, "room": "user:alice"}
    sync = await phone.next("music-sync")
    assert (sync["action"], sync["currentTime"], sync["userId"]) == ("seek", 3, "alice")
    await bob.quiet("music-sync", 0.1)
    state = await gw.store.get_music_state("user:alice")
    assert state is not None and state["position"] == 3


async def test_music_sync_requires_membership(gw: Harness) -> None:
    alice = await gw.connect("alice")
    bob = await gw.connect("bob")
    await bob.call("join-room", {"room": "party"})
    not_in_room = refused("You are not in this room")
    assert await alice.call("music-sync", music("play", room="party")) == not_in_room
    assert await alice.call("music-sync", music("play", room="user:bob")) == not_in_room
    await alice.emit("music-sync", music("play", room="party"))
    assert await alice.next("error") == {"event": "music-sync",
                                         "message": "You are not in this room"}
    await bob.quiet("music-sync", 0.1)
    assert await gw.store.get_music_state("party") is None
    await alice.call("join-room", {"room": "party"})
    await alice.call("leave-room", {"room": "party"})
    assert await alice.call("music-sync", music("play", room="party")) == not_in_room


MUSIC_REFUSALS: list[tuple[str, Any, str]] = [
    ("no-payload", None, "Invalid message format"),
    ("string-payload", "play", "Invalid message format"),
    ("missing-action", {"songId": "s"}, "action must be play, pause or seek"),
    ("bad-action", music("stop"), "action must be play, pause or seek"),
    ("action-case", music("PLAY"), "action must be play, pause or seek"),
    ("missing-song", {"action": "play"}, "songId must be a string"),
    ("number-song", {"action": "play", "songId": 5}, "songId must be a string"),
    ("empty-song", music("play", song=""), "songId must not be empty"),
    ("long-song", music("play", song="s" * 129), "songId is too long (max 128 characters)"),
    ("negative-time", music("seek", currentTime=-1), "currentTime must be a non-negative number"),
    ("string-time", music("seek", currentTime="10"), "currentTime must be a non-negative number"),
    ("bool-time", music("seek", currentTime=True), "currentTime must be a non-negative number"),
    ("list-time", music("seek", currentTime=[1]), "currentTime must be a non-negative number"),
    ("bad-room", music("play", room="a b"), "Invalid room name"),
    ("number-room", music("play", room=3), "room must be a string"),
]


async def test_music_sync_refusals(gw: Harness) -> None:
    alice = await gw.connect("alice")
    phone = await gw.connect("alice")
    for name, payload, error in MUSIC_REFUSALS:
        answer = await alice.call("music-sync", payload)
        assert answer["success"] is False and answer["error"].startswith(error), (name, answer)
    await phone.quiet("music-sync", 0.1)
    assert await gw.store.get_music_state("user:alice") is None


async def test_music_state_position_advances_while_playing(gw: Harness) -> None:
    now_ms = int(time.time() * 1000)
    await gw.store.set_music_state("playing-room", {
        "songId": "s", "position": 100.0, "playing": True, "updatedAt": now_ms - 5000,
        "userId": "x"})
    await gw.store.set_music_state("paused-room", {
        "songId": "s", "position": 100.0, "playing": False, "updatedAt": now_ms - 5000,
        "userId": "x"})
    alice = await gw.connect("alice")
    await alice.call("join-room", {"room": "playing-room"})
    state = await alice.next("music-state")
    assert state["playing"] is True
    assert 104.9 <= state["currentTime"] < 100 + 5 + WAIT * 4
    await alice.call("join-room", {"room": "paused-room"})
    state = await alice.next("music-state")
    assert (state["playing"], state["currentTime"]) == (False, 100.0)
    await alice.call("join-room", {"room": "silent-room"})
    await alice.quiet("music-state", 0.1)


async def test_music_seek_and_song_change_rules(gw: Harness) -> None:
    alice = await gw.connect("alice")
    await alice.call("join-room", {"room": "r"})
    await alice.call("music-sync", music("play", currentTime=0, room="r"))
    # seek on the playing song keeps playing
    await alice.call("music-sync", music("seek", currentTime=50, room="r"))
    state = await gw.store.get_music_state("r")
    assert (state["playing"], state["position"], state["songId"]) == (True, 50, "song-1")
    # seek to another song does not start it
    await alice.call("music-sync", music("seek", song="song-2", currentTime=5, room="r"))
    state = await gw.store.get_music_state("r")
    assert (state["playing"], state["position"], state["songId"]) == (False, 5, "song-2")
    # play without currentTime continues from the stored position
    await alice.call("music-sync", music("play", song="song-2", room="r"))
    state = await gw.store.get_music_state("r")
    assert state["playing"] is True and state["position"] == 5


# ====================================================================== rate limits


async def test_private_message_rate_limit(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway({"RATE_LIMIT_PRIVATE_MESSAGE": "2"})
    alice = await gw.connect("alice")
    carol = await gw.connect("carol")
    bob = await gw.connect("bob")
    for n in range(2):
        assert (await alice.call("private-message",
                                 {"targetUserId": "bob", "message": f"{n}"}))["success"]
    before = int(time.time() * 1000)
    over = await alice.call("private-message", {"targetUserId": "bob", "message": "too many"})
    assert over == refused("Rate limit exceeded")
    exceeded = await alice.next("rate-limit-exceeded")
    assert exceeded["event"] == "private-message" and exceeded["limit"] == 2
    assert isinstance(exceeded["resetTime"], int) and exceeded["resetTime"] > before
    assert exceeded["resetTime"] <= before + 61_000
    # without an ack request: dropped, the event only
    await alice.emit("private-message", {"targetUserId": "bob", "message": "still too many"})
    assert (await alice.next("rate-limit-exceeded"))["event"] == "private-message"
    assert [m["message"] for m in await bob.next_n("private-message", 2)] == ["0", "1"]
    await bob.quiet("private-message")
    assert len(alice.all("message-sent")) == 2
    # the limit is per user and per event: carol and other events are unaffected
    assert (await carol.call("private-message",
                             {"targetUserId": "bob", "message": "carol"}))["success"]
    assert (await alice.call("join-room", {"room": "r"}))["success"] is True
    # and per user across devices
    alice2 = await gw.connect("alice")
    assert await alice2.call("private-message", {"targetUserId": "bob", "message": "x"}) \
        == refused("Rate limit exceeded")
    assert gw.metric("realtime_rate_limit_hits_total", event="private-message") == 3


async def test_join_room_rate_limit_without_ack(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway({"RATE_LIMIT_JOIN_ROOM": "1"})
    alice = await gw.connect("alice")
    await alice.emit("join-room", {"room": "r1"})
    await alice.next("joined-room")
    await alice.emit("join-room", {"room": "r2"})
    exceeded = await alice.next("rate-limit-exceeded")
    assert (exceeded["event"], exceeded["limit"]) == ("join-room", 1)
    await alice.quiet("joined-room", 0.1)
    assert "r2" not in gw.app.io.sockets.sockets[alice.sid].rooms


async def test_music_sync_and_default_rate_limits(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway({"RATE_LIMIT_MUSIC_SYNC": "1", "RATE_LIMIT_DEFAULT": "2"})
    alice = await gw.connect("alice")
    assert (await alice.call("music-sync", music("play")))["success"]
    assert await alice.call("music-sync", music("pause")) == refused("Rate limit exceeded")
    assert (await alice.next("rate-limit-exceeded"))["limit"] == 1
    for _ in range(2):
        assert (await alice.call("leave-room", {"room": "x"}))["success"]
    assert await alice.call("leave-room", {"room": "x"}) == refused("Rate limit exceeded")
    exceeded = await alice.next("rate-limit-exceeded")
    assert (exceeded["event"], exceeded["limit"]) == ("leave-room", 2)


async def test_invalid_events_count_against_the_limit(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway({"RATE_LIMIT_PRIVATE_MESSAGE": "2"})
    alice = await gw.connect("alice")
    for _ in range(2):
        assert (await alice.call("private-message", {}))["success"] is False
    assert await alice.call("private-message", {"targetUserId": "bob", "message": "ok"}) \
        == refused("Rate limit exceeded")


async def test_unknown_events_are_rate_limited(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway({"RATE_LIMIT_DEFAULT": "2"})
    alice = await gw.connect("alice")
    for _ in range(3):
        await alice.emit("bogus", {})
    assert len(await alice.next_n("error", 2)) == 2
    assert (await alice.next("rate-limit-exceeded"))["limit"] == 2
    await alice.quiet("error", 0.1)


# ====================================================================== presence


async def test_multi_device_presence_and_follower_notifications(gw: Harness) -> None:
    await follow(gw, "fan", "star")
    fan = await gw.connect("fan")
    stranger = await gw.connect("stranger")
    laptop = await gw.connect("star")
    note = await fan.next("notification")
    assert (note["type"], note["userId"]) == ("user-online", "star")
    assert ISO.match(note["timestamp"])
    assert await fan.next("user-online") == {"userId": "star"}
    assert await gw.online("star")
    phone = await gw.connect("star")
    await until_online(gw, "star")
    await laptop.close()
    await fan.quiet("user-online", 0.2)
    await fan.quiet("user-offline", 0.1)
    await fan.quiet("notification", 0.0)
    assert await gw.online("star")  # the phone is still connected
    await phone.close()
    note = await fan.next("notification")
    assert (note["type"], note["userId"]) == ("user-offline", "star")
    assert await fan.next("user-offline") == {"userId": "star"}
    assert not await gw.online("star")
    await stranger.quiet("notification", 0.0)
    assert stranger.all("user-online") == [] and stranger.all("user-offline") == []


async def test_follower_learns_who_is_online_when_connecting(gw: Harness) -> None:
    await follow(gw, "fan", "star")
    await follow(gw, "fan", "offline-star")
    await gw.connect("star")
    await until_online(gw, "star")
    fan = await gw.connect("fan")
    assert await fan.next("user-online") == {"userId": "star"}
    await fan.quiet("user-online", 0.2)


async def test_unfollow_stops_notifications(gw: Harness) -> None:
    await follow(gw, "fan", "star")
    status, _, _ = await gw.http("DELETE", "/api/follows",
                                 json={"followerId": "fan", "followeeId": "star"})
    assert status == 200
    fan = await gw.connect("fan")
    star = await gw.connect("star")
    await until_online(gw, "star")
    await star.close()
    await until_online(gw, "star", False)
    await fan.quiet("notification", 0.1)
    assert fan.all("user-online") == [] and fan.all("user-offline") == []


async def test_presence_is_shared_by_two_gateways_on_redis(gateway_factory: GatewayFactory,
                                                          redis_prefix: str) -> None:
    # two processes with one Redis: presence, follows and stored messages are shared
    one = await gateway_factory("redis")
    two = await gateway_factory("redis", {"REDIS_PREFIX": redis_prefix})
    await follow(one, "fan", "star")
    star = await one.connect("star")
    await until_online(two, "star")
    fan = await two.connect("fan")
    assert await fan.next("user-online") == {"userId": "star"}
    await two.connect("star")
    await star.close()
    assert await two.online("star")
    answer = await fan.call("private-message", {"targetUserId": "nobody", "message": "later"})
    assert await pending_ids(one, "nobody") == [answer["id"]]


# ====================================================================== robustness


async def test_bad_input_loses_nothing_and_affects_no_one(gw: Harness) -> None:
    alice = await gw.connect("alice")
    carol = await gw.connect("carol")
    stored = [
        (await alice.call("private-message", {"targetUserId": "bob", "message": f"keep {n}"}))[
            "id"] for n in range(2)
    ]
    mallory = await gw.connect("mallory")
    payloads: list[Any] = [
        None, "x", 0, -1, 1e308, True, [], [1, [2, [3]]], {}, {"room": {"$gt": ""}},
        {"targetUserId": ["bob"], "message": "x"}, {"targetUserId": "bob", "message": None},
        {"targetUserId": "bob", "message": "x" * 200_000}, {"a": {"b": {"c": {"d": [1] * 50}}}},
        b"\x00\x01binary", {"targetUserId": "bob", "message": b"bytes"},
        {"action": "play", "songId": "s", "room": "user:alice"},
    ]
    for event in ("join-room", "leave-room", "private-message", "music-sync"):
        for payload in payloads:
            answer = await mallory.call(event, payload)
            assert answer["success"] is False, (event, payload, answer)
            await mallory.emit(event, payload)
    for event in ("bogus", "disconnect-me", "x" * 1000):
        await mallory.emit(event, {"a": 1})
    # several arguments where one is expected
    await mallory.sio.emit("private-message", ({"targetUserId": "bob", "message": 1}, "extra"))
    assert mallory.connected and alice.connected and carol.connected
    # mallory still works, the others were not disturbed
    ok = await mallory.call("private-message", {"targetUserId": "carol", "message": "hello"})
    assert ok["success"] is True
    assert (await carol.next("private-message"))["id"] == ok["id"]
    assert carol.all("error") == [] and alice.all("error") == []
    assert carol.all("music-sync") == [] and alice.all("music-sync") == []
    # nothing stored was lost, nothing bad was stored
    assert await pending_ids(gw, "bob") == stored
    bob = await gw.connect("bob")
    assert [m["message"] for m in await bob.next_n("private-message", 2)] == ["keep 0", "keep 1"]
    await bob.quiet("private-message", 0.1)


async def test_oversized_packet_closes_only_the_sender(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway({"MAX_HTTP_BUFFER_SIZE": "65536"})
    alice = await gw.connect("alice")
    mallory = await gw.connect("mallory")
    await mallory.emit("private-message", {"targetUserId": "alice", "message": "x" * 100_000})

    async def dropped() -> bool:
        return not mallory.connected

    await eventually(dropped)
    assert alice.connected
    assert (await alice.call("join-room", {"room": "fine"}))["success"] is True
    await alice.quiet("private-message", 0.1)
