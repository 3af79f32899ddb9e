"""The service HTTP API on the gateway's port: keys, JSON, endpoints, CORS, dev tokens."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from engineio_core import Request

from .conftest import API_KEY, FRONTEND, GatewayFactory, Harness, eventually

pytestmark = pytest.mark.timeout(30)

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
EVIL = "http://evil.example"

KEYED = [
    ("GET", "/stats", None),
    ("POST", "/api/notifications", {"all": True, "type": "t", "message": "m"}),
    ("PUT", "/api/follows", {"followerId": "a", "followeeId": "b"}),
    ("DELETE", "/api/follows", {"followerId": "a", "followeeId": "b"}),
    ("GET", "/api/users/alice/online", None),
    ("GET", "/api/online-users", None),
]


# ---------------------------------------------------------------------- keys


@pytest.mark.parametrize(("method", "path", "body"), KEYED, ids=[f"{m} {p}" for m, p, _ in KEYED])
async def test_api_key_required(method: str, path: str, body: Any, memory_gw: Harness) -> None:
    gw = memory_gw
    status, _, answer = await gw.http(method, path, json=body, key=None)
    assert status == 401, answer
    assert "error" in answer
    status, _, _ = await gw.http(method, path, json=body,
                                 headers={"Authorization": f"Basic {API_KEY}"}, key=None)
    assert status == 401
    status, _, answer = await gw.http(method, path, json=body, key="wrong-key-0123456789")
    assert status == 403, answer
    status, _, _ = await gw.http(method, path, json=body, key=API_KEY + "x")
    assert status == 403
    status, _, _ = await gw.http(method, path, json=body, key=API_KEY[:-1])
    assert status == 403
    status, _, _ = await gw.http(method, path, json=body, key=None,
                                 headers={"Authorization": f"bearer {API_KEY}"})
    assert status == 200
    status, _, _ = await gw.http(method, path, json=body)
    assert status == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_open_endpoints_need_no_key(path: str, gw: Harness) -> None:
    status, _, _ = await gw.http("GET", path, key=None)
    assert status == 200
    status, _, _ = await gw.http("GET", path, key="wrong-key-0123456789")
    assert status == 200


async def test_health_and_ready(gw: Harness) -> None:
    node = gw.app.gateway.node_id
    assert node.endswith(f":{gw.app.port}")  # NODE_ID's default: host:port
    assert (await gw.http("GET", "/healthz", key=None))[::2] == (200, {"status": "ok",
                                                                      "node": node})
    assert (await gw.http("GET", "/readyz", key=None))[::2] == (200, {"status": "ready",
                                                                     "node": node})


async def test_readyz_503_when_redis_unreachable(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory("memory", {"REDIS_URL": "redis://127.0.0.1:1/0"})
    status, _, body = await gw.http("GET", "/readyz", key=None)
    assert status == 503 and body["status"] == "unavailable"
    assert (await gw.http("GET", "/healthz", key=None))[0] == 200
    # store-backed endpoints answer 503, not 500
    status, _, body = await gw.http("GET", "/api/online-users")
    assert status == 503 and body == {"error": "Service temporarily unavailable"}


async def test_unknown_path_and_wrong_method(memory_gw: Harness) -> None:
    assert (await memory_gw.http("GET", "/nope"))[0] == 404
    assert (await memory_gw.http("GET", "/api/follows"))[0] == 405
    assert (await memory_gw.http("POST", "/healthz", key=None))[0] == 405


# ---------------------------------------------------------------------- JSON bodies

BODIES = [b"{not json", b"", b"null", b"[]", b'"text"', b"42", b"\xff\xfe"]


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/api/notifications"), ("PUT", "/api/follows"), ("DELETE", "/api/follows")])
async def test_malformed_json_is_400(method: str, path: str, memory_gw: Harness) -> None:
    for body in BODIES:
        status, _, answer = await memory_gw.http(
            method, path, data=body, headers={"Content-Type": "application/json"})
        assert status == 400, (body, answer)
        assert "error" in answer


# ---------------------------------------------------------------------- notifications


async def test_notifications_to_users(gw: Harness) -> None:
    alice = await gw.connect("alice")
    alice_phone = await gw.connect("alice")
    bob = await gw.connect("bob")
    carol = await gw.connect("carol")
    status, _, body = await gw.http("POST", "/api/notifications", json={
        "userIds": ["alice", "bob", "alice", "offline-user"], "type": "promo",
        "message": "Sale!", "data": {"discount": 10}})
    assert status == 200, body
    assert body["success"] is True and body["deliveredSockets"] == 3
    assert ISO.match(body["timestamp"])
    for client in (alice, alice_phone, bob):
        note = await client.next("notification")
        assert (note["type"], note["message"], note["data"]) == ("promo", "Sale!", {"discount": 10})
        assert ISO.match(note["timestamp"])
    await carol.quiet("notification", 0.1)
    await alice.quiet("notification", 0.0)  # once per socket even if listed twice


async def test_notifications_to_all(gw: Harness) -> None:
    clients = [await gw.connect(user) for user in ("alice", "bob", "carol")]
    status, _, body = await gw.http("POST", "/api/notifications",
                                    json={"all": True, "type": "maintenance", "message": ""})
    assert status == 200 and body["deliveredSockets"] == 3
    for client in clients:
        note = await client.next("notification")
        assert note["type"] == "maintenance" and "data" not in note


NOTIFICATION_REFUSALS = [
    {"userIds": ["a"], "message": "m"},
    {"userIds": ["a"], "type": "", "message": "m"},
    {"userIds": ["a"], "type": "t" * 65, "message": "m"},
    {"userIds": ["a"], "type": 5, "message": "m"},
    {"userIds": ["a"], "type": "t"},
    {"userIds": ["a"], "type": "t", "message": 5},
    {"userIds": ["a"], "type": "t", "message": "m" * 1001},
    {"type": "t", "message": "m"},
    {"all": False, "type": "t", "message": "m"},
    {"all": "true", "type": "t", "message": "m"},
    {"userIds": [], "type": "t", "message": "m"},
    {"userIds": "alice", "type": "t", "message": "m"},
    {"userIds": [1], "type": "t", "message": "m"},
    {"userIds": ["a b"], "type": "t", "message": "m"},
    {"userIds": ["a/b"], "type": "t", "message": "m"},
    {"userIds": ["u" * 129], "type": "t", "message": "m"},
    {"userIds": [f"u{n}" for n in range(10_001)], "type": "t", "message": "m"},
]


async def test_notification_refusals(memory_gw: Harness) -> None:
    alice = await memory_gw.connect("alice")
    for body in NOTIFICATION_REFUSALS:
        status, _, answer = await memory_gw.http("POST", "/api/notifications", json=body)
        assert status == 400, (body, answer)
        assert isinstance(answer.get("error"), str)
    await alice.quiet("notification", 0.1)


# ---------------------------------------------------------------------- follows


async def test_follow_and_unfollow(gw: Harness) -> None:
    pair = {"followerId": "fan", "followeeId": "star"}
    assert (await gw.http("PUT", "/api/follows", json=pair))[::2] == (
        200, {"success": True, "created": True})
    assert (await gw.http("PUT", "/api/follows", json=pair))[::2] == (
        200, {"success": True, "created": False})
    assert await gw.store.followers("star") == ["fan"]
    assert (await gw.http("DELETE", "/api/follows", json=pair))[::2] == (
        200, {"success": True, "removed": True})
    assert (await gw.http("DELETE", "/api/follows", json=pair))[::2] == (
        200, {"success": True, "removed": False})
    assert await gw.store.followers("star") == []


FOLLOW_REFUSALS = [
    {}, {"followerId": "a"}, {"followeeId": "b"},
    {"followerId": 1, "followeeId": "b"}, {"followerId": "a", "followeeId": None},
    {"followerId": "", "followeeId": "b"}, {"followerId": "a b", "followeeId": "b"},
    {"followerId": "a", "followeeId": "b" * 129}, {"followerId": "a", "followeeId": "a"},
    {"followerId": ["a"], "followeeId": "b"},
]


async def test_follow_refusals(memory_gw: Harness) -> None:
    for method in ("PUT", "DELETE"):
        for body in FOLLOW_REFUSALS:
            status, _, answer = await memory_gw.http(method, "/api/follows", json=body)
            assert status == 400, (method, body, answer)
    assert await memory_gw.store.following("a") == []


# ---------------------------------------------------------------------- presence


async def test_user_online_and_online_users(gw: Harness) -> None:
    assert (await gw.http("GET", "/api/users/alice/online"))[::2] == (
        200, {"userId": "alice", "online": False})
    assert (await gw.http("GET", "/api/online-users"))[::2] == (200, {"users": [], "count": 0})
    alice = await gw.connect("alice")
    await gw.connect("bob")

    async def both_online() -> Any:
        _, _, body = await gw.http("GET", "/api/online-users")
        return body if body.get("count") == 2 else None

    assert await eventually(both_online) == {"users": ["alice", "bob"], "count": 2}
    assert (await gw.http("GET", "/api/users/alice/online"))[2]["online"] is True
    await alice.close()

    async def alice_offline() -> bool:
        return not (await gw.http("GET", "/api/users/alice/online"))[2]["online"]

    await eventually(alice_offline)
    assert (await gw.http("GET", "/api/online-users"))[2] == {"users": ["bob"], "count": 1}


async def test_user_online_bad_id(memory_gw: Harness) -> None:
    status, _, _ = await memory_gw.http("GET", "/api/users/" + "u" * 129 + "/online")
    assert status == 400


# ---------------------------------------------------------------------- stats and metrics


async def test_stats(gw: Harness) -> None:
    minute = int(time.time() // 60)  # the per-minute figures restart with each minute
    alice = await gw.connect("alice")
    bob = await gw.connect("bob")
    await gw.connect("bob")
    await alice.call("join-room", {"room": "lobby"})
    await alice.call("private-message", {"targetUserId": "bob", "message": "hi"})
    await bob.close()

    async def settled() -> Any:
        status, _, body = await gw.http("GET", "/stats")
        assert status == 200
        if int(time.time() // 60) != minute:
            return body
        return body if body["disconnections"] >= 1 and body["connections"] >= 3 else None

    stats = await eventually(settled)
    assert set(stats) == {"connectedClients", "onlineUsers", "rooms", "connections",
                          "disconnections", "activeUsers", "messageCount", "timestamp",
                          "node", "nodes", "complete"}
    assert stats["connectedClients"] == 2
    assert stats["nodes"] == [{"node": gw.app.gateway.node_id, "connectedClients": 2}]
    assert stats["complete"] is True
    # each socket's own room, user:alice, user:bob, lobby
    assert stats["rooms"] == 2 + 3
    assert stats["onlineUsers"] == 2
    assert stats["rooms"] >= 1
    assert ISO.match(stats["timestamp"])
    if int(time.time() // 60) == minute:
        assert (stats["connections"], stats["disconnections"]) == (3, 1)
        assert stats["messageCount"] == 1
        assert stats["activeUsers"] == 2  # alice (connected, sent) and bob (connected)


async def test_metrics_text(gw: Harness) -> None:
    alice = await gw.connect("alice")
    await gw.refused(auth={"token": "bad"})
    await alice.call("join-room", {"room": "r"})
    await alice.call("private-message", {"targetUserId": "bob", "message": "spam"})
    status, headers, text = await gw.http("GET", "/metrics", key=None)
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    # every per-node series says which node (prometheus_client sorts label names)
    node = f'node="{gw.app.gateway.node_id}"'
    for line in (
        "# TYPE realtime_connections_total counter",
        f"realtime_connections_total{{{node}}} 1.0",
        f'realtime_events_total{{event="join-room",{node}}} 1.0',
        f'realtime_events_total{{event="private-message",{node}}} 1.0',
        f'realtime_rejections_total{{{node},reason="invalid_token"}} 1.0',
        f'realtime_rejections_total{{{node},reason="banned_words"}} 1.0',
        f"realtime_rate_limit_hits_total{{{node}}} 0.0",
        f"realtime_stored_messages_total{{{node}}} 0.0",
        f"realtime_stored_messages_refused_total{{{node}}} 0.0",
        f"realtime_store_errors_total{{{node}}} 0.0",
        "# TYPE realtime_connected_sockets gauge",
        f"realtime_connected_sockets{{{node}}} 1.0",
        "realtime_fleet_online_users 1.0",  # fleet-wide: no node label
        # prometheus_client's: histograms, per-namespace gauges, the process collector
        f'realtime_event_handling_seconds_count{{event="join-room",{node}}} 1.0',
        f'realtime_namespace_sockets{{namespace="/",{node}}} 1.0',
        "# TYPE process_resident_memory_bytes gauge",
    ):
        assert line in text.splitlines(), line


# ---------------------------------------------------------------------- CORS


async def test_cors_allowed_origin_is_echoed(memory_gw: Harness) -> None:
    for method, path, key in (("GET", "/healthz", None), ("GET", "/api/online-users", API_KEY),
                              ("GET", "/api/online-users", None)):
        _, headers, _ = await memory_gw.http(method, path, key=key, headers={"Origin": FRONTEND})
        assert headers.get("Access-Control-Allow-Origin") == FRONTEND
        assert headers.get("Access-Control-Allow-Credentials") == "true"
    status, headers, _ = await memory_gw.http(
        "OPTIONS", "/api/notifications", key=None,
        headers={"Origin": FRONTEND, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"})
    assert status == 204
    assert headers.get("Access-Control-Allow-Origin") == FRONTEND
    assert "POST" in headers.get("Access-Control-Allow-Methods", "")
    assert "Authorization" in headers.get("Access-Control-Allow-Headers", "")


async def test_cors_other_origin_is_never_echoed(memory_gw: Harness) -> None:
    requests = [("GET", "/healthz", None), ("GET", "/api/online-users", API_KEY),
                ("POST", "/api/notifications", API_KEY), ("GET", "/nope", None),
                ("OPTIONS", "/api/notifications", None), ("OPTIONS", "/socket.io/", None),
                ("GET", "/socket.io/?EIO=4&transport=polling", None)]
    for origin in (EVIL, "null", FRONTEND + ".evil.example", FRONTEND + ":81"):
        for method, path, key in requests:
            _, headers, _ = await memory_gw.http(
                method, path, key=key, json={} if method == "POST" else None,
                headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
            allow = headers.get("Access-Control-Allow-Origin")
            assert allow is None, (origin, method, path, allow)
            assert "*" not in headers.get("Access-Control-Allow-Origin", "")


async def test_cors_on_the_socketio_endpoint(memory_gw: Harness) -> None:
    status, headers, _ = await memory_gw.http(
        "GET", "/socket.io/?EIO=4&transport=polling", key=None, headers={"Origin": FRONTEND})
    assert status == 200
    assert headers.get("Access-Control-Allow-Origin") == FRONTEND


# ---------------------------------------------------------------------- dev tokens


async def dev_gateway(gateway_factory: GatewayFactory) -> Harness:
    return await gateway_factory("memory", {"DEV_MODE": "1"}, drop=("JWT_SECRET",))


async def test_dev_token_in_dev_mode(gateway_factory: GatewayFactory) -> None:
    gw = await dev_gateway(gateway_factory)
    assert gw.config.dev_mode
    status, _, body = await gw.http("POST", "/api/dev/token", key=None,
                                    json={"userId": "dev-user", "username": "Dev"})
    assert status == 200, body
    assert (body["userId"], body["username"]) == ("dev-user", "Dev")
    client = await gw.connect("dev-user", token=body["token"])
    assert client.all("connected")[0]["userId"] == "dev-user"
    assert gw.app.io.sockets.sockets[client.sid].data["username"] == "Dev"
    # username defaults to the user id
    status, _, body = await gw.http("POST", "/api/dev/token", key=None, json={"userId": "u2"})
    assert status == 200 and body["username"] == "u2"
    # a token with the well-known test secret is not accepted by a dev gateway
    assert (await gw.refused(auth={"token": gw.token("x")}))["message"] == \
        "Authentication failed"


@pytest.mark.parametrize("body", [
    {}, {"userId": ""}, {"userId": 5}, {"userId": "a b"}, {"userId": "u" * 129},
    {"userId": "u", "username": 7}, {"userId": "u", "username": "n" * 129},
])
async def test_dev_token_bad_input(body: dict[str, Any], gateway_factory: GatewayFactory) -> None:
    gw = await dev_gateway(gateway_factory)
    status, _, answer = await gw.http("POST", "/api/dev/token", key=None, json=body)
    assert status == 400, answer
    status, _, _ = await gw.http("POST", "/api/dev/token", key=None, data=b"{bad")
    assert status == 400


def raw_request(
    address: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Request:
    sent = {"content-type": "application/json", "host": "127.0.0.1:3000", **(headers or {})}
    return Request(method="POST", url="/api/dev/token", path="/api/dev/token", query={},
                   headers=sent, body=orjson.dumps(body), remote_address=(address, 40000))


async def test_dev_token_loopback_only(gateway_factory: GatewayFactory) -> None:
    gw = await dev_gateway(gateway_factory)
    for address in ("192.0.2.7", "10.0.0.1", "::ffff:192.0.2.7", "2001:db8::1"):
        response = await gw.app.api.handle(raw_request(
            address, {"userId": "u"}, {"x-forwarded-for": "127.0.0.1", "x-real-ip": "127.0.0.1"}))
        assert response.status == 403, address
        assert b"token" not in response.body or b"loopback" in response.body
    for address in ("127.0.0.1", "127.5.5.5", "::1"):
        response = await gw.app.api.handle(raw_request(address, {"userId": "u"}))
        assert response.status == 200, address
    response = await gw.app.api.handle(
        Request(method="POST", url="/api/dev/token", path="/api/dev/token", query={},
                headers={}, body=b'{"userId": "u"}', remote_address=None))
    assert response.status == 403


async def test_dev_token_404_when_jwt_secret_configured(memory_gw: Harness) -> None:
    for key in (None, API_KEY):
        status, _, _ = await memory_gw.http("POST", "/api/dev/token", key=key,
                                            json={"userId": "u"})
        assert status == 404
    response = await memory_gw.app.api.handle(raw_request("127.0.0.1", {"userId": "u"}))
    assert response.status == 404


async def test_dev_token_404_when_public_key_configured(
    tmp_path: Path, gateway_factory: GatewayFactory
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "pub.pem"
    pem.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    gw = await gateway_factory(
        "memory", {"JWT_PUBLIC_KEY_FILE": str(pem), "JWT_ALGORITHMS": "RS256"},
        drop=("JWT_SECRET",))
    status, _, _ = await gw.http("POST", "/api/dev/token", key=None, json={"userId": "u"})
    assert status == 404
