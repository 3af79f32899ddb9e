"""Every event of the gateway's contract crosses nodes (issue 10, "How it is proven", first item).

Two nodes share a private Redis (each test runs with SOCKET_ADAPTER redis-streams, redis
and redis-sharded); HAProxy is in front. Users are pinned to a node by
connecting to its port directly (A to node 1, B to node 2), or go through the balancer
(polling clients kept on one node by the SERVERID cookie, WebSocket clients). The clients
are the real npm ``socket.io-client`` 4.8.4, driven through ``tests/interop/gateway_client.mjs``.
"Nothing arrives" is checked after a settle delay (SETTLE).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from .fleet import Fleet, FleetPuppet, running_fleet, sockets_per_node, unique, wait_until

SETTLE = 1.0  # seconds given to an event that must NOT arrive (or to an ack in flight)


@pytest.fixture(scope="module", params=["redis-streams", "redis", "redis-sharded"])
def fleet(request: pytest.FixtureRequest) -> Iterator[Fleet]:
    """Every SOCKET_ADAPTER that makes a fleet (the module's tests run once per adapter)."""
    with running_fleet(nodes=2, env={"SOCKET_ADAPTER": request.param}) as running:
        yield running


def stats(fleet: Fleet, index: int) -> dict[str, Any]:
    status, body = fleet.node(index).http("GET", "/stats")
    assert status == 200, body
    return body


def online(fleet: Fleet, index: int, user: str) -> bool:
    status, body = fleet.node(index).http("GET", f"/api/users/{user}/online")
    assert status == 200, body
    return bool(body["online"])


def send(puppet: FleetPuppet, name: str, target: str, text: str) -> dict[str, Any]:
    ack = puppet.emit(name, "private-message", {"targetUserId": target, "message": text},
                      ack=True, timeout_ms=8000)
    assert ack and ack.get("success") is True, f"{name} -> {target}: {ack}"
    return ack


# ---------------------------------------------------------------------- fleet-wide numbers
# First in the module: the fleet is fresh, so the counts below are this test's own.


def test_stats_and_online_users_are_fleet_wide(fleet: Fleet, puppet: FleetPuppet) -> None:
    def settled_count() -> int:
        one, two = stats(fleet, 1), stats(fleet, 2)
        return one["connectedClients"] if one["connectedClients"] == two["connectedClients"] \
            else -1

    before = wait_until(lambda: (c := settled_count()) >= 0 and c + 1, 10,
                        "both nodes to report the same connectedClients") - 1
    u1, u2 = unique("stats-one"), unique("stats-two")
    puppet.connect_to(fleet.node(1).url, "u1", u1)
    puppet.connect_to(fleet.node(2).url, "u2", u2)
    puppet.connect_to(fleet.node(2).url, "u2b", u2)

    for index in (1, 2):
        body = wait_until(lambda i=index: (s := stats(fleet, i))["connectedClients"]
                          == before + 3 and s, 10,
                          f"node{index}'s /stats connectedClients == {before + 3} (fleet-wide)")
        nodes = sockets_per_node(body)
        assert set(nodes) == {"node1", "node2"}, body
        assert sum(nodes.values()) == body["connectedClients"], body
        assert body["onlineUsers"] >= 2, body

    for index in (1, 2):
        status, body = fleet.node(index).http("GET", "/api/online-users")
        assert status == 200 and {u1, u2} <= set(body["users"]), (index, body)
        assert online(fleet, index, u1) and online(fleet, index, u2), index

    for name in ("u1", "u2", "u2b"):
        puppet.disconnect(name)
    for index in (1, 2):
        wait_until(lambda i=index: not online(fleet, i, u1) and not online(fleet, i, u2), 10,
                   f"node{index} to see both users offline")
        wait_until(lambda i=index: stats(fleet, i)["connectedClients"] == before, 10,
                   f"node{index}'s connectedClients back to {before}")


# ---------------------------------------------------------------------- private messages


def test_private_message_crosses_nodes_and_the_ack_deletes_the_stored_copy(
    fleet: Fleet, puppet: FleetPuppet
) -> None:
    a, b = unique("alice"), unique("bob")
    puppet.connect_to(fleet.node(1).url, "a1", a)
    puppet.connect_to(fleet.node(2).url, "b", b)
    ack = send(puppet, "b", a, "hello across nodes")
    [message] = puppet.wait_payloads("a1", "private-message", timeout_ms=8000)
    assert message["id"] == ack["id"], (message, ack)
    assert message["senderId"] == b and message["message"] == "hello across nodes"
    [sent] = puppet.wait_payloads("b", "message-sent")
    assert sent["id"] == ack["id"] and sent["targetUserId"] == a
    # a1 acked it on node 1: the stored copy is gone, a new device (on node 2) gets nothing.
    time.sleep(SETTLE)
    puppet.connect_to(fleet.node(2).url, "a2", a)
    time.sleep(SETTLE)
    assert puppet.payloads("a2", "private-message") == []
    assert len(puppet.payloads("a1", "private-message")) == 1


def test_unacked_private_message_is_kept_for_the_next_device_on_another_node(
    fleet: Fleet, puppet: FleetPuppet
) -> None:
    a, b = unique("alice"), unique("bob")
    puppet.connect_to(fleet.node(1).url, "a1", a, ackPrivate=False)
    puppet.connect_to(fleet.node(2).url, "b", b)
    ack = send(puppet, "b", a, "keep me until acked")
    [first] = puppet.wait_payloads("a1", "private-message", timeout_ms=8000)
    assert first["id"] == ack["id"]
    puppet.disconnect("a1")
    # Stored until a device acks: the next one, on the other node, gets it (and acks it).
    puppet.connect_to(fleet.node(2).url, "a2", a)
    [again] = puppet.wait_payloads("a2", "private-message", timeout_ms=8000)
    assert again["id"] == ack["id"] and again["message"] == "keep me until acked"
    time.sleep(SETTLE)
    puppet.connect_to(fleet.node(1).url, "a3", a)
    time.sleep(SETTLE)
    assert puppet.payloads("a3", "private-message") == [], "acked on node 2: deleted"


def test_private_message_reaches_every_device_of_the_target_on_both_nodes(
    fleet: Fleet, puppet: FleetPuppet
) -> None:
    a, b = unique("alice"), unique("bob")
    puppet.connect_to(fleet.node(1).url, "a1", a)
    puppet.connect_to(fleet.node(2).url, "a2", a)
    puppet.connect_to(fleet.node(1).url, "b", b)
    ack = send(puppet, "b", a, "to both devices")
    for name in ("a1", "a2"):
        [message] = puppet.wait_payloads(name, "private-message", timeout_ms=8000)
        assert message["id"] == ack["id"], name
    time.sleep(SETTLE)
    for name in ("a1", "a2"):
        assert len(puppet.payloads(name, "private-message")) == 1, name


# ---------------------------------------------------------------------- notifications


def test_service_api_on_node1_notifies_a_user_on_node2(fleet: Fleet, puppet: FleetPuppet) -> None:
    a, b = unique("alice"), unique("bob")
    puppet.connect_to(fleet.node(1).url, "a", a)
    puppet.connect_to(fleet.node(2).url, "b", b)
    status, body = fleet.node(1).http("POST", "/api/notifications",
                                      {"userIds": [b], "type": "info", "message": "from node1",
                                       "data": {"k": 1}})
    assert status == 200 and body["success"] is True, body
    assert body["deliveredSockets"] == 1 and body.get("complete") is True, \
        f"deliveredSockets counts the fleet: {body}"
    [note] = puppet.wait_payloads("b", "notification", timeout_ms=8000)
    assert note["type"] == "info" and note["message"] == "from node1" and note["data"] == {"k": 1}
    time.sleep(SETTLE)
    assert puppet.payloads("a", "notification") == []
    assert len(puppet.payloads("b", "notification")) == 1


def test_broadcast_notification_reaches_users_on_both_nodes(
    fleet: Fleet, puppet: FleetPuppet
) -> None:
    a, b = unique("alice"), unique("bob")
    puppet.connect_to(fleet.node(1).url, "a", a)
    puppet.connect_to(fleet.node(2).url, "b", b)
    text = unique("to everyone")
    status, body = fleet.node(2).http("POST", "/api/notifications",
                                      {"all": True, "type": "system", "message": text})
    assert status == 200, body
    for name in ("a", "b"):
        notes = puppet.wait_payloads(name, "notification", timeout_ms=8000)
        assert [n for n in notes if n["message"] == text], (name, notes)


# ---------------------------------------------------------------------- music sync


def test_music_sync_and_late_join_music_state_cross_nodes(
    fleet: Fleet, puppet: FleetPuppet
) -> None:
    a, b, c = unique("dj"), unique("listener"), unique("late")
    room = unique("room")
    puppet.connect_to(fleet.node(1).url, "a", a)
    puppet.connect_to(fleet.node(2).url, "b", b)
    for name in ("a", "b"):
        ack = puppet.emit(name, "join-room", {"room": room}, ack=True)
        assert ack["success"] is True, (name, ack)
    ack = puppet.emit("a", "music-sync", {"action": "play", "songId": "song-7",
                                          "currentTime": 12, "room": room}, ack=True)
    assert ack["success"] is True, ack
    [sync] = puppet.wait_payloads("b", "music-sync", timeout_ms=8000)
    assert (sync["action"], sync["songId"], sync["currentTime"], sync["userId"]) == \
        ("play", "song-7", 12, a)
    # A late joiner on the other node gets the room's state.
    puppet.connect_to(fleet.node(2).url, "c", c)
    ack = puppet.emit("c", "join-room", {"room": room}, ack=True)
    assert ack["success"] is True, ack
    [state] = puppet.wait_payloads("c", "music-state", timeout_ms=8000)
    assert state["room"] == room and state["songId"] == "song-7" and state["playing"] is True
    assert state["currentTime"] >= 12
    # Without a room: the sender's other devices, here on the other node.
    puppet.connect_to(fleet.node(2).url, "a2", a)
    ack = puppet.emit("a", "music-sync", {"action": "pause", "songId": "song-7",
                                          "currentTime": 30}, ack=True)
    assert ack["success"] is True, ack
    [mine] = puppet.wait_payloads("a2", "music-sync", timeout_ms=8000)
    assert mine["action"] == "pause" and mine["userId"] == a
    # A leave on node 2 is seen by the room's broadcasts from node 1.
    ack = puppet.emit("b", "leave-room", {"room": room}, ack=True)
    assert ack["success"] is True, ack
    ack = puppet.emit("a", "music-sync", {"action": "seek", "songId": "song-7",
                                          "currentTime": 40, "room": room}, ack=True)
    assert ack["success"] is True, ack
    [seek] = [m for m in puppet.wait_payloads("c", "music-sync", count=1, timeout_ms=8000)
              if m["action"] == "seek"]
    assert seek["currentTime"] == 40
    time.sleep(SETTLE)
    assert [m["action"] for m in puppet.payloads("b", "music-sync")] == ["play"], "b left"


# ---------------------------------------------------------------------- presence


def test_presence_across_nodes_offline_only_after_the_last_device(
    fleet: Fleet, puppet: FleetPuppet
) -> None:
    a, b = unique("alice"), unique("follower")
    status, body = fleet.node(1).http("PUT", "/api/follows", {"followerId": b, "followeeId": a})
    assert status == 200 and body["success"] is True, body
    puppet.connect_to(fleet.node(2).url, "b", b)
    puppet.connect_to(fleet.node(1).url, "a1", a)
    [came] = puppet.wait_payloads("b", "user-online", timeout_ms=8000)
    assert came == {"userId": a}
    puppet.connect_to(fleet.node(2).url, "a2", a)  # A's second device, on the other node
    assert online(fleet, 1, a) and online(fleet, 2, a)

    puppet.disconnect("a1")
    time.sleep(SETTLE)
    assert puppet.payloads("b", "user-offline") == [], "A still has a device on node 2"
    assert online(fleet, 1, a) and online(fleet, 2, a)
    assert len(puppet.payloads("b", "user-online")) == 1, "A never went offline"

    puppet.disconnect("a2")
    [gone] = puppet.wait_payloads("b", "user-offline", timeout_ms=8000)
    assert gone == {"userId": a}
    for index in (1, 2):
        wait_until(lambda i=index: not online(fleet, i, a), 5, f"node{index}: A offline")

    # A follower connecting later is told who is online, whichever node A is on.
    puppet.connect_to(fleet.node(1).url, "a3", a)
    puppet.connect_to(fleet.node(2).url, "b2", b)
    [told] = puppet.wait_payloads("b2", "user-online", timeout_ms=8000)
    assert told == {"userId": a}


# ---------------------------------------------------------------------- through the balancer


@pytest.mark.parametrize("transports", [["polling"], ["websocket"], ["polling", "websocket"]],
                         ids=["polling-only", "websocket-only", "polling-then-upgrade"])
def test_basic_flow_through_the_balancer(
    fleet: Fleet, puppet: FleetPuppet, transports: list[str]
) -> None:
    """Polling needs the sticky cookie (the client keeps it: withCredentials in Node)."""
    users = [unique("lb") for _ in range(4)]
    names = [f"c{i}" for i in range(len(users))]
    for name, user in zip(names, users, strict=True):
        puppet.connect_to(fleet.url, name, user, transports=transports, withCredentials=True)
    # Each sends to the next one: with four clients, both nodes hold some (leastconn).
    acks = {}
    for i, name in enumerate(names):
        target = users[(i + 1) % len(users)]
        acks[target] = send(puppet, name, target, f"ring {i}")
    for i, name in enumerate(names):
        [message] = puppet.wait_payloads(name, "private-message", timeout_ms=8000)
        assert message["id"] == acks[users[i]]["id"], name
        assert message["senderId"] == users[i - 1]
    status, body = fleet.node(1).http("GET", "/stats")
    per_node = sockets_per_node(body)
    assert per_node.get("node1", 0) > 0 and per_node.get("node2", 0) > 0, \
        f"the balancer put every client on one node: {body}"

    status, body = fleet.http_through_balancer("POST", "/api/notifications", {
        "userIds": users, "type": "info", "message": "through haproxy"})
    assert status == 200, body
    for name in names:
        [note] = puppet.wait_payloads(name, "notification", timeout_ms=8000)
        assert note["message"] == "through haproxy"
    # Several polling round trips later the sessions are still alive (no "Session ID unknown").
    time.sleep(SETTLE)
    for name in names:
        disconnects = puppet.events(name, "$disconnect")
        assert disconnects == [], f"{name} was disconnected: {disconnects}"
