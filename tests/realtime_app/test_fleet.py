"""Two gateway nodes in one process sharing one Redis: every event kind crosses nodes.

Each test runs once per Redis adapter (SOCKET_ADAPTER). The clients are python-socketio
(recovery off here, see conftest); the fleet behind HAProxy, with socket.io-client,
SIGKILL and rolling restarts, is tested in tests/realtime_app_fleet.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from .conftest import GatewayFactory, Harness, eventually

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["redis-streams", "redis", "redis-sharded"])
def adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def fleet(gateway_factory: GatewayFactory, adapter: str,
                **overrides: Any) -> tuple[Harness, Harness]:
    env = {"SOCKET_ADAPTER": adapter}
    one = await gateway_factory("redis", env, node_id="one", **overrides)
    two = await gateway_factory("redis", env, node_id="two", **overrides)
    return one, two


async def follow(gw: Harness, follower: str, followee: str) -> None:
    status, _, body = await gw.http("PUT", "/api/follows",
                                    json={"followerId": follower, "followeeId": followee})
    assert status == 200, body


async def test_private_messages_cross_nodes_and_acks_delete(
    gateway_factory: GatewayFactory, adapter: str
) -> None:
    one, two = await fleet(gateway_factory, adapter)
    alice = await one.connect("alice")
    bob_phone = await two.connect("bob")
    bob_laptop = await one.connect("bob")
    answer = await alice.call("private-message", {"targetUserId": "bob", "message": "hi"})
    assert answer["success"] is True
    for device in (bob_phone, bob_laptop):  # one device on each node
        got = await device.next("private-message")
        assert (got["id"], got["message"], got["senderId"]) == (answer["id"], "hi", "alice")

    async def deleted() -> bool:  # acked by a device on some node: the stored copy goes
        return await one.store.pending_messages("bob") == []

    await eventually(deleted)
    await bob_phone.quiet("private-message", 0.2)  # once per device


async def test_notifications_and_counts_are_fleet_wide(
    gateway_factory: GatewayFactory, adapter: str
) -> None:
    one, two = await fleet(gateway_factory, adapter)
    bob = await two.connect("bob")
    await two.connect("bob")
    carol = await one.connect("carol")
    status, _, body = await one.http("POST", "/api/notifications", json={
        "userIds": ["bob", "carol"], "type": "deploy", "message": "v2"})
    assert status == 200 and body["deliveredSockets"] == 3 and body["complete"] is True
    assert (await bob.next("notification"))["message"] == "v2"
    assert (await carol.next("notification"))["message"] == "v2"
    status, _, stats = await two.http("GET", "/stats")
    assert status == 200 and stats["connectedClients"] == 3 and stats["complete"] is True
    assert sorted((n["node"], n["connectedClients"]) for n in stats["nodes"]) == [
        ("one", 1), ("two", 2)]
    # 3 sockets' own rooms + user:bob + user:carol, each counted once across nodes
    assert stats["rooms"] == 5
    for gw in (one, two):
        status, _, online = await gw.http("GET", "/api/online-users")
        assert online["users"] == ["bob", "carol"]


async def test_music_sync_and_late_join_state_cross_nodes(
    gateway_factory: GatewayFactory, adapter: str
) -> None:
    one, two = await fleet(gateway_factory, adapter)
    dj = await one.connect("dj")
    listener = await two.connect("listener")
    for client in (dj, listener):
        assert (await client.call("join-room", {"room": "party"}))["success"] is True
    answer = await dj.call("music-sync", {"action": "play", "songId": "s1", "currentTime": 3,
                                          "room": "party"})
    assert answer["success"] is True
    sync = await listener.next("music-sync")
    assert (sync["action"], sync["songId"], sync["userId"]) == ("play", "s1", "dj")
    late = await one.connect("late")
    await late.call("join-room", {"room": "party"})
    state = await late.next("music-state")
    assert (state["songId"], state["playing"]) == ("s1", True)


async def test_presence_across_nodes(gateway_factory: GatewayFactory, adapter: str) -> None:
    one, two = await fleet(gateway_factory, adapter)
    await follow(one, "fan", "star")
    fan = await two.connect("fan")
    phone = await one.connect("star")
    assert await fan.next("user-online") == {"userId": "star"}
    laptop = await two.connect("star")
    await phone.close()
    await fan.quiet("user-offline", 0.3)  # the laptop is still on node two
    await laptop.close()
    assert await fan.next("user-offline") == {"userId": "star"}
    assert not await one.online("star")


async def test_a_dead_nodes_users_go_offline(gateway_factory: GatewayFactory,
                                              adapter: str) -> None:
    # Node one stops refreshing presence without a disconnect being seen (as if killed):
    # once its entries expire, some node tells the followers, once.
    one, two = await fleet(gateway_factory, adapter, presence_ttl=1.5)
    await follow(one, "fan", "star")
    fan = await two.connect("fan")
    await one.connect("star")
    assert await fan.next("user-online") == {"userId": "star"}
    assert one.app.gateway._maintenance is not None
    one.app.gateway._maintenance.cancel()  # node one "dies" for presence
    one.app.gateway._maintenance = None
    await one.app.store.refresh_connections([], 1.5)
    note = await fan.next("user-offline", timeout=10)
    assert note == {"userId": "star"}
    await fan.quiet("user-offline", 1.0)


async def test_readyz_reports_the_adapter(gateway_factory: GatewayFactory, adapter: str) -> None:
    one, _ = await fleet(gateway_factory, adapter)
    status, _, body = await one.http("GET", "/readyz", key=None)
    assert (status, body["status"], body["node"]) == (200, "ready", "one")
    await one.app.adapter.aclose()  # as if its subscription were lost
    status, _, body = await one.http("GET", "/readyz", key=None)
    assert status == 503 and body["error"] == "adapter not subscribed to Redis"


async def test_graceful_stop_finishes_handlers_in_flight(
    gateway_factory: GatewayFactory, adapter: str
) -> None:
    one, two = await fleet(gateway_factory, adapter)
    alice = await one.connect("alice")
    bob = await two.connect("bob")
    store = one.app.store
    original = store.store_message
    entered = asyncio.Event()

    async def slow_store(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        await asyncio.sleep(0.5)  # a handler in flight when SIGTERM comes
        return await original(*args, **kwargs)

    store.store_message = slow_store  # type: ignore[method-assign]
    call = asyncio.ensure_future(alice.call("private-message",
                                            {"targetUserId": "bob", "message": "last"}))
    await entered.wait()
    shutdown = asyncio.ensure_future(one.app.shutdown())
    await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    # /readyz says so; new sessions are refused with 503, the port stays open for the
    # existing ones (a polling client's requests come on new connections)
    status, _, body = await one.http("GET", "/readyz", key=None)
    assert status == 503 and body["error"] == "shutting down"
    status, _, body = await one.http("GET", "/socket.io/?EIO=4&transport=polling", key=None)
    assert status == 503 and body["message"] == "Server shutting down"
    answer = await call
    assert answer["success"] is True  # acked before the connection closed
    assert (await bob.next("private-message"))["id"] == answer["id"]
    await shutdown

    async def dropped() -> bool:
        return not alice.connected or bool(alice.sio.eio.state != "connected")

    await eventually(dropped)


async def test_a_lost_delivery_is_resent_once_the_cluster_is_back(
    gateway_factory: GatewayFactory, adapter: str
) -> None:
    # The hand-over of a stored message to the other nodes is lost (as when Redis went
    # away for a moment): the sender's node sees its publish fail and asks every node to
    # resend its sockets their inboxes; the target gets it, once, while connected.
    one, two = await fleet(gateway_factory, adapter)
    bob = await one.connect("bob")
    alice = await two.connect("alice")
    first = await alice.call("private-message", {"targetUserId": "bob", "message": "one"})
    assert (await bob.next("private-message"))["id"] == first["id"]  # in flight until acked
    io = two.app.io
    sent = io.server_side_emit

    def lose_it(event: str, *args: Any) -> None:
        two.app.adapter.stats.publish_errors += 1  # what the adapter counts when it fails

    io.server_side_emit = lose_it  # type: ignore[method-assign]
    answer = await alice.call("private-message", {"targetUserId": "bob", "message": "two"})
    io.server_side_emit = sent  # type: ignore[method-assign]
    assert answer["success"] is True
    got = await bob.next("private-message", timeout=10)
    assert (got["id"], got["message"]) == (answer["id"], "two")
    await bob.quiet("private-message", 1.5)  # "one" was acked, "two" comes once
    assert one.metric("realtime_inbox_resyncs_total") == 1


async def test_a_stopping_node_sends_no_stored_messages(
    gateway_factory: GatewayFactory, adapter: str
) -> None:
    # While a node stops, a message for a client on it stays stored (the client reconnects
    # elsewhere and gets it there); one sent just before is acked before the node stops
    # reading, so that it is not sent a second time from the inbox.
    one, two = await fleet(gateway_factory, adapter)
    bob = await one.connect("bob")
    alice = await two.connect("alice")
    first = await alice.call("private-message", {"targetUserId": "bob", "message": "before"})
    assert (await bob.next("private-message"))["id"] == first["id"]
    await one.app.gateway.stop_sending_stored(5.0)  # returns once bob's ack was in
    assert one.app.gateway._states and not any(
        s.in_flight for s in one.app.gateway._states.values())
    later = await alice.call("private-message", {"targetUserId": "bob", "message": "after"})
    await bob.quiet("private-message", 0.5)
    assert [m["id"] for m in await one.store.pending_messages("bob")] == [later["id"]]
